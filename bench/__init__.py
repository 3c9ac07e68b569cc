"""Benchmarks: `python -m bench` (see bench/runner.py)."""
