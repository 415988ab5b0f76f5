"""Two batch DAGs that name no ``job_table`` (tests/system/batch/test_task_groups.py): each must get a table of its own.

``OPENEO_TEST_DEFAULT_TABLES`` (JSON) gives the SQLite job database and results folder; without it (another
session parsing the bundle) the DAGs use harmless defaults.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd
from airflow.sdk import DAG

from airflow_provider_openeo.batch.task_groups import openeo_job_batch

CONFIG: dict[str, Any] = json.loads(os.environ.get("OPENEO_TEST_DEFAULT_TABLES") or "{}")
BACKENDS = {"foo": {"conn_id": "openeo_foo", "parallel_jobs": 2}, "bar": {"conn_id": "openeo_bar", "parallel_jobs": 2}}
DAG_IDS = ("test_dag_default_table_a", "test_dag_default_table_b")


def start_job(row: pd.Series, connection: Any, provider: str, **kwargs: Any) -> Any:
    cube = connection.load_collection(
        "S2_FOOBAR",
        spatial_extent={"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1},
        temporal_extent=["2024-01-01", "2024-02-01"],
        bands=["B04"],
    )
    return cube.create_job(title=f"{row['title']} on {provider}")


for dag_id in DAG_IDS:
    with DAG(dag_id, schedule=None, catchup=False, max_active_runs=1, tags=["openeo", "test"]) as dag:
        openeo_job_batch(
            backends=BACKENDS,
            job_source=pd.DataFrame({"title": [f"{dag_id} row {i}" for i in range(2)]}),
            sqlite_path=CONFIG.get("sqlite_path"),
            start_job=start_job,
            root_dir=CONFIG.get("root_dir", "."),
            poll_interval=0.3,
            retries=0,
        )
    globals()[dag_id] = dag
