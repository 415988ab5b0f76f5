"""A monthly batch: each month adds that month's rows (one per field and week) and runs them.

``job_source`` is a function of the run's context, so every data interval computes its own rows; the rows are
appended to one job table that keeps the whole history. A month run again (a cleared or repeated run) finds its
rows in the table by their key and runs none of them again. ``catchup=False``: a new deployment starts with the
current month instead of replaying the past.

The schedule is an explicit ``CronDataIntervalTimetable``: in Airflow 3 a plain ``"@monthly"`` becomes a
``CronTriggerTimetable`` (unless ``[scheduler] create_cron_data_intervals`` is on), whose runs have an empty data
interval, so there would be no month to compute rows for. With data intervals, the run at the start of February
processes January, and a manual run from the UI processes the last complete month.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from airflow.sdk import DAG, CronDataIntervalTimetable
from openeo.extra.job_management import ProcessBasedJobCreator

from _common import BACKENDS, JOB_DB_CONN_ID, POLL_INTERVAL, SQLITE_PATH, UDP_URL, results_dir
from airflow_provider_openeo.task_groups import openeo_job_batch

DAG_ID = "example_openeo_recurring"
FIELDS = {
    "north": {"west": 5.0, "south": 51.2, "east": 5.1, "north": 51.3},
    "south": {"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1},
}

start_job = ProcessBasedJobCreator(process_id="ndvi_timeseries", namespace=UDP_URL)


def rows_of_interval(context: Any) -> pd.DataFrame:
    """One row per field and week of this run's data interval; ids are unique across months."""
    start, end = context["data_interval_start"], context["data_interval_end"]
    weeks = pd.date_range(start, end, freq="7D", inclusive="left")
    if len(weeks) == 0:
        raise ValueError(f"data interval {start} - {end} is empty: this DAG needs a schedule with data intervals")
    rows = []
    for field, extent in FIELDS.items():
        for week in weeks:
            week_end = min(week + pd.Timedelta(days=7), pd.Timestamp(end))
            rows.append(
                {
                    "row": f"{field}/{week:%Y-%m-%d}",
                    "title": f"{field} {week:%Y-%m-%d}",
                    "spatial_extent": extent,
                    "temporal_extent": [f"{week:%Y-%m-%d}", f"{week_end:%Y-%m-%d}"],
                }
            )
    return pd.DataFrame(rows).set_index("row")


with DAG(
    DAG_ID,
    schedule=CronDataIntervalTimetable("0 0 1 * *", timezone="UTC"),
    start_date=pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime(),
    catchup=False,
    max_active_runs=1,
    tags=["openeo", "example"],
    doc_md=__doc__,
) as dag:
    openeo_job_batch(
        backends=BACKENDS,
        job_source=rows_of_interval,
        on_exists="append",
        job_table=DAG_ID,
        job_db_conn_id=JOB_DB_CONN_ID,
        sqlite_path=SQLITE_PATH,
        start_job=start_job,
        root_dir=results_dir(DAG_ID),
        poll_interval=POLL_INTERVAL,
        continue_until_done=False,
    )
