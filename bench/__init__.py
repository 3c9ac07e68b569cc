"""Benchmarks for issue 7: `python -m bench` (see bench/runner.py)."""
