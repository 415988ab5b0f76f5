"""Run the provider on a live Airflow: the harness the end-to-end tests and benchmarks share, and ``make demo``."""
