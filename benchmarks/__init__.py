"""Benchmark scripts, run by hand (``python -m benchmarks.<name>``); each prints its figures as JSON."""
