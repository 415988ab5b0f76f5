"""The provider's Airflow plugin, registered through the ``airflow.plugins`` entry point and provider info.

It carries the scheduler-side listener that checks a batch's pools before any of its rows starts
(:mod:`airflow_provider_openeo.pool_listener`). Importing this module stays light (no pandas, no openEO client):
every Airflow process that loads plugins imports it.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_openeo import pool_listener

PLUGIN_NAME = "openeo"


class OpenEOPlugin(AirflowPlugin):
    """openEO batches: the pools check in the scheduler."""

    name = PLUGIN_NAME
    listeners = [pool_listener]
