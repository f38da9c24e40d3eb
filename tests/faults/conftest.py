"""Fault-injection fixtures: the session's Prefect server is ``prefect_api`` in tests/conftest.py
(shared with the integration tests; their runs are told apart by their own databases)."""
