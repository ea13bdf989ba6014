"""Pipelines: fitting a user's data, the demo, and the benchmarks."""
