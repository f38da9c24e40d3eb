"""Integration fixtures: the session's Prefect server is ``prefect_harness`` in tests/conftest.py."""
