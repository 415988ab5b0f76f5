"""The batch DAGs of the live pre-flight checks (tests/system/deploy/test_pool_check.py), one mistake each.

- ``pool_missing_bar``: backend ``bar`` has no pool;
- ``connection_missing``: backend ``baz``'s connection ``openeo_baz`` does not exist (its pool does);
- ``password_wrong``: the backend refuses the password of backend ``qux``'s connection ``openeo_qux``.

``OPENEO_POOL_DAGS`` (JSON) names the work directory (job database, results); without it (another session
parsing this folder) the DAG still loads, pointing at the current directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import openeo
import pandas as pd
from airflow.sdk import DAG

from airflow_provider_openeo.batch.task_groups import openeo_job_batch

CONFIG: dict[str, Any] = json.loads(os.environ.get("OPENEO_POOL_DAGS") or "{}")
WORK_DIR = Path(CONFIG.get("work_dir", "."))
#: Each DAG's backends beside ``foo`` (whose pool and connection are right).
MISTAKES = {
    "pool_missing_bar": {"bar": {"conn_id": "openeo_bar", "parallel_jobs": 3}},
    "connection_missing": {"baz": {"conn_id": "openeo_baz", "parallel_jobs": 2}},
    "password_wrong": {"qux": {"conn_id": "openeo_qux", "parallel_jobs": 2}},
}


def rows_of(dag_id: str) -> Any:
    def rows(context: Any) -> pd.DataFrame:
        return pd.DataFrame({"title": [f"{dag_id} row {i}" for i in range(4)]})

    return rows


def start_job(row: pd.Series, connection: openeo.Connection, provider: str, **kwargs: Any) -> openeo.BatchJob:
    cube = connection.load_collection(
        "S2_FOOBAR",
        spatial_extent={"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1},
        temporal_extent=["2024-01-01", "2024-02-01"],
        bands=["B04"],
    )
    return cube.create_job(title=str(row["title"]))


for dag_id, wrong in MISTAKES.items():
    with DAG(dag_id, schedule=None, tags=["openeo", "test", "pools"]) as dag:
        openeo_job_batch(
            backends={"foo": {"conn_id": "openeo_foo", "parallel_jobs": 2}, **wrong},
            job_source=rows_of(dag_id),
            job_table=dag_id,
            sqlite_path=str(WORK_DIR / f"{dag_id}.db"),
            start_job=start_job,
            root_dir=str(WORK_DIR / "results"),
            poll_interval=1.0,
            continue_until_done=False,
        )
