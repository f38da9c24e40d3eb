"""Benchmarks: procedural scenes with exact ground truth, demo queries, model training."""
