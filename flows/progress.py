"""Terminal feedback for the CLI: progress bars, spinners, and log lines without tracebacks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress() -> Iterator[Any]:
    """A rich progress bar on stderr (plain and quiet when stderr is not a terminal)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True)) as bar:
        yield bar


@contextmanager
def spinner(message: str) -> Iterator[None]:
    """A spinner with ``message`` on stderr while the block runs."""
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


class _WithoutTraceback(logging.Formatter):
    """Formats like ``inner`` but leaves out exception and stack text."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_tracebacks() -> None:
    """Keep tracebacks out of the terminal; the Prefect API still receives them.

    A failing flow logs its exception with the traceback; the CLI prints one line
    instead (``--debug`` skips this and shows everything).
    """
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect adds its handlers lazily; wrap them once they exist

    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                    handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter()))
