"""Scheduled runs named for what they do from the moment Prefect's scheduler creates them.

The server's scheduler service inserts a deployment's future runs itself (up to an hour
ahead; no client, no event) and gives each a random name (``generate_slug``), which the run
keeps until it starts and its flow names it: the UI's upcoming runs read
"crimson-fox", "witty-owl". ``install`` adds a trigger to the server's own database (SQLite or
Postgres, the two Prefect supports) that names each run the scheduler inserts for one of fmp's
flows as the flow names it when it starts (``discover/all streams``,
``ingest_feedback/all streams``, ``stream_batch/<stream>/next``), inside the insert's own
transaction: no moment exists when the run has another name. Runs of other flows keep
Prefect's names.

``make serve`` runs ``python -m flows.run_names`` once the server answers (the connection URL is
``PREFECT_SERVER_DATABASE_CONNECTION_URL``, Prefect's default: ``$PREFECT_HOME/prefect.db``).
Installing again replaces the trigger.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

#: The trigger (and, on Postgres, its function).
TRIGGER = "fmp_name_scheduled_runs"


def name_sql(dialect: str) -> str:
    """The SQL expression of a new run's name (``NEW`` is the inserted row; NULL for runs of
    other flows), as ``flows.discover``, ``flows.feedback_all`` and ``flows.stream_batch`` name
    their runs."""
    def param(key: str) -> str:
        if dialect == "sqlite":
            return f"json_extract(NEW.parameters, '$.{key}')"
        return f"(NEW.parameters::jsonb ->> '{key}')"

    return ("CASE (SELECT name FROM flow WHERE id = NEW.flow_id)"
            f" WHEN 'discover_batches' THEN 'discover/' || COALESCE({param('stream')}, 'all streams')"
            " WHEN 'ingest_feedback_all' THEN 'ingest_feedback/all streams'"
            f" WHEN 'stream_batch' THEN 'stream_batch/' || COALESCE({param('stream')}, '?') || '/'"
            f" || COALESCE({param('batch')}, 'next')"
            " ELSE NULL END")


def statements(dialect: str) -> list[str]:
    """The DDL that (re)creates the trigger on a Prefect server database of ``dialect``."""
    if dialect == "sqlite":
        expr = name_sql(dialect)
        return [
            f"DROP TRIGGER IF EXISTS {TRIGGER}",
            f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON flow_run FOR EACH ROW"
            f" WHEN NEW.auto_scheduled AND ({expr}) IS NOT NULL"
            f" BEGIN UPDATE flow_run SET name = ({expr}) WHERE id = NEW.id; END",
        ]
    if dialect == "postgresql":
        return [
            f"CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF NEW.auto_scheduled THEN NEW.name := COALESCE({name_sql(dialect)}, NEW.name);"
            " END IF; RETURN NEW; END $$",
            f"DROP TRIGGER IF EXISTS {TRIGGER} ON flow_run",
            f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON flow_run FOR EACH ROW"
            f" EXECUTE FUNCTION {TRIGGER}()",
        ]
    raise ValueError(f"Prefect server database {dialect!r}: expected sqlite or postgresql")


async def _install(url: str) -> str:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements(engine.dialect.name):
                await connection.execute(text(statement))
        return engine.dialect.name
    finally:
        await engine.dispose()


def install(url: str | None = None) -> str:
    """Install the trigger in the Prefect server database at ``url`` (default: this process's
    Prefect settings); returns the database's dialect."""
    if url is None:
        from prefect.settings import get_current_settings

        secret = get_current_settings().server.database.connection_url
        if secret is None:
            raise ValueError("no Prefect server database is configured "
                             "(PREFECT_SERVER_DATABASE_CONNECTION_URL)")
        url = secret.get_secret_value()
    return asyncio.run(_install(url))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="the Prefect server's database URL (default: "
                                      "PREFECT_SERVER_DATABASE_CONNECTION_URL, Prefect's default)")
    args = parser.parse_args(argv)
    try:
        dialect = install(args.url)
    except Exception as exc:  # one line: serve goes on; scheduled runs keep Prefect's names
        print(f"run names: could not name scheduled runs ({type(exc).__name__}: {exc}); they "
              "keep Prefect's names until they start", file=sys.stderr)
        return 1
    print(f"run names: scheduled runs of fmp's flows are named when created ({dialect} trigger "
          f"{TRIGGER})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
