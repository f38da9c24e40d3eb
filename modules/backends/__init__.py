"""Backend kinds: torch vision models, a fact table for llm_query, and a scripted fake."""
