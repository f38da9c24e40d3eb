"""Prefect flows: orchestration only. The work lives in modules, policy_store and storage."""
