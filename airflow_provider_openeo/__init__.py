"""Apache Airflow provider that runs batches of openEO jobs, one mapped task instance per job-table row."""

from __future__ import annotations

from airflow_provider_openeo.get_provider_info import get_provider_info
from airflow_provider_openeo.version import __version__

__all__ = ["__version__", "get_provider_info"]
