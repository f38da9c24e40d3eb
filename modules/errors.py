"""Errors raised by the program runtime and the backend registry.

    FmpModuleError
    ├── CatalogError (ValueError)        a backend catalog entry is invalid or unknown
    ├── ProgramError (ValueError)        a program's source is outside the allowed subset
    └── ExecutionError (RuntimeError)    a program failed on one item (bad value, work bound hit)
"""

from __future__ import annotations


class FmpModuleError(Exception):
    """Root of the modules package's errors."""


class CatalogError(FmpModuleError, ValueError):
    """A backend catalog entry is invalid, or a backend name is unknown."""


class ProgramError(FmpModuleError, ValueError):
    """A program uses a construct outside the allowed subset."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None) -> None:
        where = f"line {line}, col {col}: " if line is not None else ""
        super().__init__(f"{where}{message}")
        self.line = line
        self.col = col


class ExecutionError(FmpModuleError, RuntimeError):
    """A program failed while running on one item."""
