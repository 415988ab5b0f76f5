"""The benchmark DAGs (``make bench``): the workload of ``benchmarks.workload`` as an ``openeo_job_batch``.

``bench_warmup`` runs one no-op task before anything is measured: the first task process after the scheduler
starts pays a one-off 3-4 s, which a running deployment paid long ago (and MBJM's process, already importing
everything, never pays within its timing).

``OPENEO_BENCH`` (JSON, set by ``benchmarks.live``) names the work directory (job databases, results), the
poll interval and the backends' ``parallel_jobs``. Each DAG runs once per ``make bench``; the rows come from
the trigger's Params, titled ``<tag>-<n>`` so that the run's jobs can be told apart on the shared backends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from airflow.sdk import DAG, Param, task

from airflow_provider_openeo.batch.task_groups import openeo_job_batch
from benchmarks import workload

CONFIG: dict[str, Any] = json.loads(os.environ.get("OPENEO_BENCH") or "{}")
WORK_DIR = Path(CONFIG.get("work_dir", "."))
BACKENDS = {
    name: {"conn_id": f"openeo_{name}", "parallel_jobs": int(slots)}
    for name, slots in CONFIG.get("parallel_jobs", {"foo": 4, "bar": 4}).items()
}


def rows_from_params(context: Any) -> pd.DataFrame:
    params = context["params"]
    return workload.rows_of_profile(str(params["profile"]), int(params["rows"]), str(params["tag"]))


for dag_id in ("bench_openeo_throughput", "bench_openeo_heterogeneous", "bench_openeo_scale"):
    with DAG(
        dag_id,
        schedule=None,
        catchup=False,
        max_active_runs=1,
        params={
            "rows": Param(24, type="integer", minimum=1),
            "tag": Param("bench", type="string"),
            "profile": Param("standard", enum=list(workload.PROFILES)),
        },
        tags=["openeo", "benchmark"],
    ) as dag:
        openeo_job_batch(
            backends=BACKENDS,
            job_source=rows_from_params,
            job_table=dag_id,
            sqlite_path=str(WORK_DIR / f"{dag_id}.db"),
            start_job=workload.start_job,
            root_dir=str(WORK_DIR / "results" / dag_id),
            poll_interval=float(CONFIG.get("poll_interval", 5.0)),
        )
    globals()[dag_id] = dag


with DAG("bench_warmup", schedule=None, catchup=False, tags=["benchmark"]) as bench_warmup:

    @task
    def warm_up() -> None:
        """Nothing: the task process itself is the point."""

    warm_up()
