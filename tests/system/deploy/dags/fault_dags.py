"""The batch DAGs of the fault tests on a live Airflow (tests/system/deploy/test_faults.py): one per scenario.

Each scenario gets a DAG of its own, so each has its own job table (its own SQLite file) and its own titles on the
backends (``<dag id> ...``): what a run created is told apart from the rest by title, whatever else ran before.
The rows come from the trigger's Params (how many, how long they queue and run, which rows run long, an optional
pinned backend), so the test shapes each run without re-parsing; what must be fixed at parse time (retries,
``cancel_running_job_after``, the schedule) is set per DAG below.

``OPENEO_FAULT_DAGS`` (JSON) names the work directory (job databases, results) and the poll interval; without it
(another session parsing this folder) the DAGs still load, pointing at the current directory.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import openeo
import pandas as pd
from airflow.sdk import DAG, DeltaDataIntervalTimetable, Param

from airflow_provider_openeo.batch.budget import MAX_COSTS_PARAM, max_costs_param
from airflow_provider_openeo.batch.dry_run import DRY_RUN_PARAM, ESTIMATES_PARAM, dry_run_estimates_param, dry_run_param
from airflow_provider_openeo.batch.task_groups import openeo_job_batch

CONFIG: dict[str, Any] = json.loads(os.environ.get("OPENEO_FAULT_DAGS") or "{}")
WORK_DIR = Path(CONFIG.get("work_dir", "."))
POLL_INTERVAL = float(CONFIG.get("poll_interval", 1.0))
PARALLEL_JOBS = int(CONFIG.get("parallel_jobs", 3))
BACKENDS = {
    "foo": {"conn_id": "openeo_foo", "parallel_jobs": PARALLEL_JOBS},
    "bar": {"conn_id": "openeo_bar", "parallel_jobs": PARALLEL_JOBS},
}
#: Airflow retries do the recovering where a task fails; kept short so a scenario ends in seconds.
RETRIES = int(CONFIG.get("retries", 4))
RETRY_DELAY = timedelta(seconds=float(CONFIG.get("retry_delay", 2)))
#: The recurring DAG's interval: short, so two consecutive intervals run within a test.
RECURRING_INTERVAL = timedelta(seconds=float(CONFIG.get("recurring_interval", 30)))

PARAMS = {
    "rows": Param(10, type="integer", minimum=1),
    "queue_seconds": Param(0.5, type="number", minimum=0),
    "run_seconds": Param(3.0, type="number", minimum=0),
    "long_rows": Param([], type="array", description="indices of rows that run long_run_seconds"),
    "long_run_seconds": Param(60.0, type="number", minimum=0),
    "backend": Param("", type="string", description="pin every row to this backend; empty: spread"),
    "pins": Param({}, type="object", description="row index -> the backend that row is pinned to"),
    "row_options": Param({}, type="object", description="row index -> more job options of that row"),
}


def _job_options(queue_seconds: float, run_seconds: float, more: dict[str, Any] | None = None) -> str:
    """The row's job options: its timings in ``local_backend``, plus ``more`` (its ``local_backend`` keys merged)."""
    more = dict(more or {})
    local = {"queue_seconds": queue_seconds, "run_seconds": run_seconds, **more.pop("local_backend", {})}
    return json.dumps({**more, "local_backend": local})


def rows_from_params(context: Any) -> pd.DataFrame:
    """``rows`` rows titled ``<dag id> row <i>``; their job options tell the local backend how long to take."""
    params = context["params"]
    dag_id = context["dag"].dag_id
    long_rows = {int(i) for i in params["long_rows"]}
    row_options = {int(i): options for i, options in (params.get("row_options") or {}).items()}
    rows = [
        {
            "title": f"{dag_id} row {i}",
            "job_options": _job_options(
                float(params["queue_seconds"]),
                float(params["long_run_seconds"] if i in long_rows else params["run_seconds"]),
                row_options.get(i),
            ),
        }
        for i in range(int(params["rows"]))
    ]
    table = pd.DataFrame(rows)
    if params["backend"]:
        table["backend_name"] = params["backend"]
    for index, backend in (params.get("pins") or {}).items():
        table.loc[int(index), "backend_name"] = backend
    return table


def rows_of_interval(context: Any) -> pd.DataFrame:
    """Like ``example_openeo_recurring``: each data interval adds its own rows, ids unique across intervals."""
    start = pd.Timestamp(context["data_interval_start"])
    end = pd.Timestamp(context["data_interval_end"])
    if end <= start:
        raise ValueError(f"data interval {start} - {end} is empty: this DAG needs a schedule with data intervals")
    dag_id = context["dag"].dag_id
    stamp = f"{start:%Y-%m-%dT%H:%M:%S}"
    return pd.DataFrame(
        [
            {
                "row": f"{stamp}/{field}",
                "title": f"{dag_id} {stamp} {field}",
                "job_options": _job_options(0.5, 2.0),
            }
            for field in ("north", "south")
        ]
    ).set_index("row")


def start_job(row: pd.Series, connection: openeo.Connection, provider: str, **kwargs: Any) -> openeo.BatchJob:
    """MBJM-style: a tiny graph titled after the row; the row's ``job_options`` steer the local backend."""
    cube = connection.load_collection(
        "S2_FOOBAR",
        spatial_extent={"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1},
        temporal_extent=["2024-01-01", "2024-02-01"],
        bands=["B04"],
    )
    options = row.get("job_options")
    return cube.create_job(
        title=str(row["title"]),
        job_options=json.loads(options) if isinstance(options, str) and options else None,
    )


def rows_with_bad_processes(context: Any) -> pd.DataFrame:
    """``rows_from_params``, and the rows listed in the Param ``bad_rows`` name a process no backend knows."""
    table = rows_from_params(context)
    bad = [int(i) for i in context["params"].get("bad_rows") or ()]
    if bad:
        table["process"] = None
        table.loc[bad, "process"] = "no_such_process"
    return table


def start_job_naming_its_process(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
    """``start_job``, with the row's ``process`` (when it has one) applied to the cube: an unknown one fails."""
    cube = connection.load_collection(
        "S2_FOOBAR",
        spatial_extent={"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1},
        temporal_extent=["2024-01-01", "2024-02-01"],
        bands=["B04"],
    )
    if isinstance(row.get("process"), str):
        cube = cube.process(row["process"], data=cube)
    options = row.get("job_options")
    return cube.create_job(title=str(row["title"]), job_options=json.loads(options) if options else None)


def batch_dag(
    dag_id: str,
    *,
    schedule: Any = None,
    job_source: Any = rows_from_params,
    params: dict[str, Any] | None = None,
    **batch: Any,
) -> DAG:
    """One scenario's DAG: the same batch shape, its own job table and results folder."""
    scheduled = schedule is not None
    with DAG(
        dag_id,
        schedule=schedule,
        start_date=pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime() if scheduled else None,
        catchup=False,
        max_active_runs=1,
        params={} if scheduled else {**PARAMS, **(params or {})},
        tags=["openeo", "test", "faults"],
    ) as dag:
        openeo_job_batch(
            backends=BACKENDS,
            job_source=job_source,
            job_table=dag_id,
            sqlite_path=str(WORK_DIR / "jobs" / f"{dag_id}.db"),
            start_job=batch.pop("start_job", start_job),
            root_dir=str(WORK_DIR / "results" / dag_id),
            poll_interval=POLL_INTERVAL,
            retries=RETRIES,
            retry_delay=RETRY_DELAY,
            **batch,
        )
    return dag


kill_triggerer = batch_dag("fault_kill_triggerer")
kill_scheduler = batch_dag("fault_kill_scheduler")
kill_worker = batch_dag("fault_kill_worker")
kill_during_dispatch = batch_dag("fault_kill_during_dispatch")
# A POST /jobs answered 5xx may have created a job: the row is marked start_failed instead of risking a second
# job (no blind retry of a create). After checking the backend, the user re-runs those rows: this DAG does so.
flaky_backend = batch_dag("fault_flaky_backend", rerun_statuses=["start_failed"])
job_limit = batch_dag("fault_job_limit")
backend_down = batch_dag("fault_backend_down")
# A backend down for the whole batch: rows pinned to it give up after this long (the default is an hour).
backend_outage = batch_dag("fault_backend_outage", backend_outage_limit=timedelta(seconds=20))
# A backend down for the whole batch, nothing pinned: rows its group would have taken continue in the next run.
backend_down_chain = batch_dag("fault_backend_down_chain")
account_full = batch_dag("fault_account_full")
shared_a = batch_dag("fault_shared_backend_a")
shared_b = batch_dag("fault_shared_backend_b")
cancel_after = batch_dag("fault_cancel_after", cancel_running_job_after=5)
mark_failed = batch_dag("fault_mark_failed")
# Both backends imitating one production server each turn (local_backend/README.md, profiles).
profiles = {name: batch_dag(f"fault_profile_{name}") for name in ("geopyspark", "aggregator", "fastapi")}
# Triggered with Params A, B, then A again: each run works on the rows of its own Params, known rows are not run
# twice (tests/system/deploy/test_faults.py, test_retrigger_with_params_a_b_a_runs_each_row_once).
retrigger = batch_dag("fault_retrigger")
# The default failure policy (no argument, as a user has it): an out-of-memory row is retried with more memory, a
# no-data row is not (tests/system/deploy/test_faults.py, test_failure_policy_retries_out_of_memory_not_no_data).
failure_policy = batch_dag("fault_failure_policy")
recurring = batch_dag(
    "fault_recurring",
    schedule=DeltaDataIntervalTimetable(RECURRING_INTERVAL),
    job_source=rows_of_interval,
    on_exists="append",
    continue_until_done=False,
)
# A dry run, then real runs under a budget set from the trigger form (tests/system/deploy/test_faults.py,
# test_dry_run_then_a_budget_that_stops_new_starts_at_the_cap).
budget = batch_dag(
    "fault_budget",
    job_source=rows_with_bad_processes,
    start_job=start_job_naming_its_process,
    params={
        "bad_rows": Param([], type="array", description="indices of rows whose process no backend knows"),
        MAX_COSTS_PARAM: max_costs_param(),
        DRY_RUN_PARAM: dry_run_param(),
    },
)
# A dry run past max_rows_per_run, checked whole by its chain of runs (tests/system/deploy/test_faults.py,
# test_a_dry_run_past_max_rows_per_run_checks_every_row_once_across_its_chain).
dry_run_chain = batch_dag(
    "fault_dry_run_chain",
    job_source=rows_with_bad_processes,
    start_job=start_job_naming_its_process,
    max_rows_per_run=2,
    params={
        "bad_rows": Param([], type="array", description="indices of rows whose process no backend knows"),
        DRY_RUN_PARAM: dry_run_param(),
        ESTIMATES_PARAM: dry_run_estimates_param(),
    },
)
