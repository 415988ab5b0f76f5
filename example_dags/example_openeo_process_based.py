"""One openEO job per date window, spread over two backends: MBJM's classic use, as an Airflow DAG.

The rows are computed from the trigger form's Params (start, end, frequency); each row fills the
``temporal_extent`` parameter of a user-defined process through ``ProcessBasedJobCreator``, exactly as with
``MultiBackendJobManager.run_jobs``. Trigger it from the UI, change the dates, and watch one mapped task per row.

Each run loads its rows into the DAG's job table by key (the rows' values): new dates add new rows and run them;
dates already run are found, not run again, and the summary says how many of the run's rows were already done.
To run some again (failed ones, or everything), tick their statuses under "Run again the rows of these
statuses" (the Param ``rerun_statuses``) when you trigger. "Dry run" builds and validates every row's job without
creating any; "Budget (max_costs)" stops new starts once the batch's recorded costs reach it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from airflow.sdk import DAG, Param
from openeo.extra.job_management import ProcessBasedJobCreator

from _common import BACKENDS, JOB_DB_CONN_ID, POLL_INTERVAL, SQLITE_PATH, UDP_URL, results_dir
from airflow_provider_openeo.budget import MAX_COSTS_PARAM, max_costs_param
from airflow_provider_openeo.dry_run import DRY_RUN_PARAM, dry_run_param
from airflow_provider_openeo.reruns import RERUN_PARAM, rerun_param
from airflow_provider_openeo.task_groups import openeo_job_batch

DAG_ID = "example_openeo_process_based"

start_job = ProcessBasedJobCreator(
    process_id="ndvi_timeseries",
    namespace=UDP_URL,
    parameter_defaults={"spatial_extent": {"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1}},
)


def date_windows(context: Any) -> pd.DataFrame:
    """The job table: one row per window between the Params' start and end."""
    params = context["params"]
    starts = pd.date_range(params["start"], params["end"], freq=params["frequency"], inclusive="left")
    if len(starts) == 0:
        raise ValueError(f"no windows between start {params['start']} and end {params['end']}")
    ends = [*list(starts[1:]), pd.Timestamp(params["end"])]
    return pd.DataFrame(
        {
            "title": [f"NDVI {s:%Y-%m-%d}" for s in starts],
            "temporal_extent": [[f"{s:%Y-%m-%d}", f"{e:%Y-%m-%d}"] for s, e in zip(starts, ends, strict=False)],
        }
    )


with DAG(
    DAG_ID,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["openeo", "example"],
    doc_md=__doc__,
    params={
        "start": Param("2024-01-01", type="string", format="date", title="First day"),
        "end": Param("2024-03-01", type="string", format="date", title="Day after the last window"),
        "frequency": Param("MS", type="string", title="Window length (pandas frequency: MS, W, 10D ...)"),
        RERUN_PARAM: rerun_param(),
        MAX_COSTS_PARAM: max_costs_param(),  # empty: no budget
        DRY_RUN_PARAM: dry_run_param(),
    },
) as dag:
    openeo_job_batch(
        backends=BACKENDS,
        job_source=date_windows,
        job_table=DAG_ID,
        job_db_conn_id=JOB_DB_CONN_ID,
        sqlite_path=SQLITE_PATH,
        start_job=start_job,
        root_dir=results_dir(DAG_ID),
        poll_interval=POLL_INTERVAL,
    )
