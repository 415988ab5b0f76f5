"""A small ``openeo_job_batch`` DAG for tests/system/batch/test_task_groups.py, set by one environment variable.

``OPENEO_TEST_BATCH`` (JSON) sets backends, job source file, SQLite job database, results folder and the
batch knobs, so each test shapes the same DAG its own way. dag.test() re-parses this file from the test DAG
bundle while the test's environment is in place, so the stored DAG and the one the test runs agree.
Without the variable (another session parsing the bundle) it builds a harmless two-backend default.
"""

from __future__ import annotations

import json
import os
from typing import Any

import openeo
import pandas as pd
from airflow.sdk import DAG, Asset

from airflow_provider_openeo.batch.task_groups import openeo_job_batch

DAG_ID = "test_dag_batch_pipeline"
BATCH_ASSET = Asset("openeo://test_dag_batch_pipeline/batch")
JOB_ASSET = Asset("openeo://test_dag_batch_pipeline/job")

CONFIG: dict[str, Any] = json.loads(os.environ.get("OPENEO_TEST_BATCH") or "{}")
CONFIG_BACKENDS: dict[str, Any] = CONFIG.get(
    "backends",
    {"foo": {"conn_id": "openeo_foo", "parallel_jobs": 2}, "bar": {"conn_id": "openeo_bar", "parallel_jobs": 2}},
)


def start_job(row: pd.Series, connection: openeo.Connection, provider: str, **kwargs: Any) -> openeo.BatchJob:
    """MBJM-style: a tiny graph titled after the row; the row's ``job_options`` (JSON text) steer the local backend."""
    cube = connection.load_collection(
        "S2_FOOBAR",
        spatial_extent={"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1},
        temporal_extent=["2024-01-01", "2024-02-01"],
        bands=["B04"],
    )
    options = row.get("job_options")
    return cube.create_job(
        title=f"{row['title']} on {provider}",
        job_options=json.loads(options) if isinstance(options, str) and options else None,
    )


with DAG(DAG_ID, schedule=None, catchup=False, max_active_runs=1, tags=["openeo", "test"]) as dag:
    openeo_job_batch(
        backends=CONFIG_BACKENDS,
        job_source=CONFIG.get("source"),
        job_table=CONFIG.get("table", DAG_ID),
        sqlite_path=CONFIG.get("sqlite_path"),
        start_job=start_job,
        root_dir=CONFIG.get("root_dir", "."),
        poll_interval=CONFIG.get("poll_interval", 0.3),
        max_rows_per_run=CONFIG.get("max_rows_per_run"),
        continue_until_done=CONFIG.get("continue_until_done", True),
        export_path=CONFIG.get("export_path"),
        airflow_api_conn_id=CONFIG.get("airflow_api_conn_id"),
        outlets=[BATCH_ASSET],
        job_outlets=[JOB_ASSET] if CONFIG.get("job_outlets") else [],
        retries=0,
    )
