"""A three-row ``openeo_job_batch`` with batch-wide and per-row job options, for
tests/system/operators/test_openeo_batch_dag.py.

``OPENEO_TEST_JOB_OPTIONS`` (JSON) sets the connection, job source file, SQLite job database and results folder.
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

DAG_ID = "test_dag_job_options"
CONFIG: dict[str, Any] = json.loads(os.environ.get("OPENEO_TEST_JOB_OPTIONS") or "{}")
ADD = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}
#: Every job of the batch: the backend's fast timings, and executor memory a row may raise.
BATCH_OPTIONS = {"executor-memory": "2g", "local_backend": {"queue_seconds": 0.2, "run_seconds": 0.5}}


def start_job(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
    """MBJM-style, setting an option of its own (the batch's and the row's go over it)."""
    return connection.create_job(ADD, title=str(row["title"]), job_options={"driver-memory": "1g"})


with DAG(DAG_ID, schedule=None, catchup=False, max_active_runs=1, tags=["openeo", "test"]) as dag:
    openeo_job_batch(
        backends={"local": {"conn_id": CONFIG.get("conn_id", "openeo_local"), "parallel_jobs": 2}},
        job_source=CONFIG.get("source"),
        job_table=CONFIG.get("table", DAG_ID),
        sqlite_path=CONFIG.get("sqlite_path"),
        start_job=start_job,
        job_options=BATCH_OPTIONS,
        root_dir=CONFIG.get("root_dir", "."),
        poll_interval=0.3,
        retries=0,
    )
