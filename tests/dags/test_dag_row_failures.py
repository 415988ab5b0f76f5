"""A three-row ``openeo_job_batch`` where two rows are bad, for tests/system/operators/test_openeo_batch_dag.py.

``OPENEO_TEST_ROW_FAILURES`` (JSON) sets the connection, job source file, SQLite job database and results folder.
Without it (another session parsing the bundle) the DAG is built with harmless defaults and never run.
"""

from __future__ import annotations

import json
import os
from typing import Any

import openeo
import pandas as pd
from airflow.sdk import DAG

from airflow_provider_openeo.batch.task_groups import openeo_job_batch

DAG_ID = "test_dag_row_failures"
CONFIG: dict[str, Any] = json.loads(os.environ.get("OPENEO_TEST_ROW_FAILURES") or "{}")
ADD = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}


def start_job(row: pd.Series, connection: openeo.Connection, provider: str, **kwargs: Any) -> openeo.BatchJob:
    """MBJM-style; a row titled ``...explode`` raises, as user code does."""
    if str(row["title"]).endswith("explode"):
        raise ValueError(f"field 'title' is {row['title']!r}: this start_job cannot handle it")
    options = {"local_backend": {"queue_seconds": 0.2, "run_seconds": 0.5}}
    return connection.create_job(ADD, title=str(row["title"]), job_options=options)


with DAG(DAG_ID, schedule=None, catchup=False, max_active_runs=1, tags=["openeo", "test"]) as dag:
    openeo_job_batch(
        backends={"local": {"conn_id": CONFIG.get("conn_id", "openeo_local"), "parallel_jobs": 2}},
        job_source=CONFIG.get("source"),
        job_table=CONFIG.get("table", DAG_ID),
        sqlite_path=CONFIG.get("sqlite_path"),
        start_job=start_job,
        root_dir=CONFIG.get("root_dir", "."),
        poll_interval=0.3,
        retries=0,
    )
