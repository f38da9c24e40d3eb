"""The temporary Prefect server of a command run without ``PREFECT_API_URL``: a child process
that dies with its parent.

Prefect starts it on the first API call and stops it at exit (``atexit``); a parent killed with
``kill -9`` runs no exit handlers, and the server (about 200 MB) kept running until someone
found it. ``adopt_temporary_server()`` puts in Prefect's place (the one instance Prefect's
clients use) a server whose process gets SIGTERM from the kernel when its parent ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from prefect.server.api.server import SubprocessASGIServer

from storage.children import die_with_parent


class ChildServer(SubprocessASGIServer):
    """Prefect's temporary server, started so that it dies with this process."""

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        import prefect
        from prefect.settings import get_current_settings

        # the command and environment of SubprocessASGIServer (prefect 3.9), plus the preexec_fn
        server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                      "PREFECT__SERVER_FINAL": "1"}
        return subprocess.Popen(
            args=[sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
                  "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                  "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env={**os.environ, **server_env,
                 **get_current_settings().to_environment_variables(exclude_unset=True)},
            preexec_fn=die_with_parent(),
        )


def adopt_temporary_server() -> None:
    """Make the temporary server this process may start a ``ChildServer``; call it from the
    main thread before the first Prefect API call (the kernel ties the child's signal to the
    thread that starts it, and the first call is the main thread's). No-op when one exists."""
    if None not in SubprocessASGIServer._instances:
        ChildServer()  # registers itself as the instance for "any port", which Prefect asks for


#: How long the Prefect server may stay unreachable before a command gives up.
SERVER_GONE_S = 30.0


def watch_server(command: str, api_url: str | None, gone_s: float = SERVER_GONE_S,
                 every_s: float = 3.0) -> None:
    """End this process with one line when the Prefect server at ``api_url`` stops answering.

    A flow run whose server dies does not end: Prefect's client keeps proposing states to a
    closed port. Work already finished is safe (results are written with their marker before
    any state is reported; a batch without its marker is redone by the next run), so the
    command stops, says so in one line, and exits 1 after ``gone_s`` seconds without an
    answer from ``{api_url}/health``. Does nothing without ``api_url`` (a temporary server is
    this process's own child).
    """
    import threading
    import time
    import urllib.request

    if not api_url:
        return
    health = api_url.rstrip("/") + "/health"

    def watch() -> None:
        last = time.monotonic()
        while True:
            time.sleep(every_s)
            try:
                with urllib.request.urlopen(health, timeout=every_s):
                    last = time.monotonic()
            except OSError:
                if time.monotonic() - last >= gone_s:
                    print(f"fmp {command}: error: the Prefect server at {api_url} has not answered "
                          f"for {gone_s:g} s; stopping (batches without results are redone by the "
                          "next run)", file=sys.stderr, flush=True)
                    sys.stdout.flush()
                    os._exit(1)

    threading.Thread(target=watch, name="fmp-server-watch", daemon=True).start()
