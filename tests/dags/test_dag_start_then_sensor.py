"""``OpenEOStartJobOperator`` then ``OpenEOJobSensor`` on the job id it returned, for test_openeo_batch_dag.py.

``OPENEO_TEST_START_SENSOR`` (JSON) sets the connection, the job table (SQLite file) and the results folder.
"""

from __future__ import annotations

import json
import os
from typing import Any

import openeo
import pandas as pd
from airflow.sdk import DAG

from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.operators.openeo import OpenEOStartJobOperator
from airflow_provider_openeo.sensors.openeo import OpenEOJobSensor

DAG_ID = "test_dag_start_then_sensor"
CONFIG: dict[str, Any] = json.loads(os.environ.get("OPENEO_TEST_START_SENSOR") or "{}")
CONN_ID = CONFIG.get("conn_id", "openeo_local")
TABLE = CONFIG.get("table", DAG_ID)
ADD = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}


def start_job(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
    options = {"local_backend": {"queue_seconds": 0.2, "run_seconds": 0.5}}
    return connection.create_job(ADD, title=str(row["title"]), job_options=options)


with DAG(DAG_ID, schedule=None, catchup=False, tags=["openeo", "test"]) as dag:
    start = OpenEOStartJobOperator(
        task_id="start",
        row_id=0,
        start_job=start_job,
        openeo_conn_id=CONN_ID,
        backend_name="local",
        job_table=TABLE,
        sqlite_path=CONFIG.get("sqlite_path"),
    )
    wait = OpenEOJobSensor(
        task_id="wait",
        job_id="{{ ti.xcom_pull(task_ids='start') }}",
        openeo_conn_id=CONN_ID,
        deferrable=True,
        poll_interval=0.3,
        handler=OpenEOJobHandler(root_dir=CONFIG.get("root_dir", ".")),
        row=JobRowRef(TABLE, 0, sqlite_path=CONFIG.get("sqlite_path")),
    )
    start >> wait
