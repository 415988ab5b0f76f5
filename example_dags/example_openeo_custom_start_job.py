"""Migrating an MBJM script: its ``start_job`` callable and its CSV job database, both unchanged.

The MBJM script this replaces::

    manager = MultiBackendJobManager(root_dir="results")
    manager.add_backend("foo", connection=openeo.connect(FOO_URL).authenticate_basic(...), parallel_jobs=2)
    manager.add_backend("bar", connection=openeo.connect(BAR_URL).authenticate_basic(...), parallel_jobs=2)
    job_db = create_job_db("jobs.csv", df=pd.DataFrame({"year": [2020, 2021, 2022, 2023]}), on_exists="skip")
    manager.run_jobs(start_job=start_job, job_db=job_db)

Backends become Airflow connections and pools, ``jobs.csv`` is imported into the SQL job table on the first
run with the states and job ids MBJM left in it (later runs read it again only to find rows added to it: rows the
table holds keep the table's state), and ``start_job`` is called with the same arguments.
"""

from __future__ import annotations

import os

import openeo
import pandas as pd
from airflow.sdk import DAG

from _common import BACKENDS, JOB_DB_CONN_ID, POLL_INTERVAL, SQLITE_PATH, results_dir
from airflow_provider_openeo.task_groups import openeo_job_batch

DAG_ID = "example_openeo_custom_start_job"
JOBS_CSV = os.environ.get("OPENEO_EXAMPLE_JOBS_CSV", "jobs.csv")


def start_job(row: pd.Series, connection: openeo.Connection, provider: str, **kwargs) -> openeo.BatchJob:
    """Verbatim from the MBJM script: one yearly NDVI composite per row."""
    year = int(row["year"])
    cube = connection.load_collection(
        "S2_FOOBAR",
        spatial_extent={"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1},
        temporal_extent=[f"{year}-01-01", f"{year + 1}-01-01"],
        bands=["B04", "B08"],
    )
    ndvi = cube.ndvi(nir="B08", red="B04").max_time()
    return ndvi.create_job(title=f"NDVI max {year} on {provider}", out_format="GTiff")


with DAG(
    DAG_ID,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["openeo", "example"],
    doc_md=__doc__,
) as dag:
    openeo_job_batch(
        backends=BACKENDS,
        job_source=JOBS_CSV,
        job_table=DAG_ID,
        job_db_conn_id=JOB_DB_CONN_ID,
        sqlite_path=SQLITE_PATH,
        start_job=start_job,
        root_dir=results_dir(DAG_ID),
        poll_interval=POLL_INTERVAL,
    )
