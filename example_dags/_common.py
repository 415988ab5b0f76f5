"""Settings the example DAGs share, read from the environment so one file runs locally and in production.

``make demo`` and the tests point these at local openEO backends; on a real deployment set them to yours.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The two backends every example spreads its rows over: Airflow connections ``openeo_foo`` / ``openeo_bar``
#: and pools ``openeo_foo`` / ``openeo_bar`` (``python -m airflow_provider_openeo.pools``).
BACKENDS = {
    "foo": {
        "conn_id": "openeo_foo",
        "parallel_jobs": int(os.environ.get("OPENEO_EXAMPLE_PARALLEL_JOBS", "2")),
    },
    "bar": {
        "conn_id": "openeo_bar",
        "parallel_jobs": int(os.environ.get("OPENEO_EXAMPLE_PARALLEL_JOBS", "2")),
    },
}

#: Where the user-defined process of the process-based examples is published (a URL, as openEO namespaces are).
UDP_URL = os.environ.get("OPENEO_EXAMPLE_UDP_URL", "https://example.org/openeo/udp/ndvi_timeseries.json")

#: Results land in RESULTS_DIR/<dag id>/job_<id>/ ; any fsspec URL works (s3://bucket/prefix with a connection).
RESULTS_DIR = os.environ.get(
    "OPENEO_EXAMPLE_RESULTS_DIR", str(Path(os.environ.get("AIRFLOW_HOME", ".")) / "openeo_results")
)

#: The job database: an Airflow connection (``postgres`` or ``sqlite``) for production; unset, the embedded SQLite
#: file (``OPENEO_EXAMPLE_SQLITE_PATH``, default ``$AIRFLOW_HOME/openeo_jobs.db``). One table per DAG.
JOB_DB_CONN_ID = os.environ.get("OPENEO_EXAMPLE_JOB_DB_CONN_ID") or None
SQLITE_PATH = None if JOB_DB_CONN_ID else (os.environ.get("OPENEO_EXAMPLE_SQLITE_PATH") or None)

#: Seconds between status polls in the triggerer; production backends: a minute is polite.
POLL_INTERVAL = float(os.environ.get("OPENEO_EXAMPLE_POLL_INTERVAL", "60"))


def results_dir(dag_id: str) -> str:
    return f"{RESULTS_DIR.rstrip('/')}/{dag_id}"
