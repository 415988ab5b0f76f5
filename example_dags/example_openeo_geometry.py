"""One openEO job per field polygon: a GeoDataFrame (or GeoParquet file) whose geometry feeds a GeoJSON parameter.

``ProcessBasedJobCreator`` links the one geometry column to the process's one GeoJSON parameter by itself
(``spatial_extent`` here), as in MBJM. Give the Param ``fields_path`` a GeoParquet file of your own fields, or
leave it empty for the built-in sample.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
from airflow.sdk import DAG, Param
from openeo.extra.job_management import ProcessBasedJobCreator
from shapely.geometry import box

from _common import BACKENDS, JOB_DB_CONN_ID, POLL_INTERVAL, SQLITE_PATH, UDP_URL, results_dir
from airflow_provider_openeo.task_groups import openeo_job_batch

DAG_ID = "example_openeo_geometry"

start_job = ProcessBasedJobCreator(
    process_id="ndvi_timeseries",
    namespace=UDP_URL,
    parameter_defaults={"temporal_extent": ["2024-05-01", "2024-09-01"]},
)


def sample_fields() -> gpd.GeoDataFrame:
    """Six small fields near Mol, Belgium, in WGS 84."""
    cells = [(5.05 + 0.01 * (i % 3), 51.18 + 0.01 * (i // 3)) for i in range(6)]
    return gpd.GeoDataFrame(
        {"title": [f"field {i + 1}" for i in range(6)], "crop": ["maize", "wheat", "potato"] * 2},
        geometry=[box(x, y, x + 0.008, y + 0.008) for x, y in cells],
        crs="EPSG:4326",
    )


def fields(context: Any) -> gpd.GeoDataFrame:
    path = context["params"].get("fields_path")
    return gpd.read_parquet(path) if path else sample_fields()


with DAG(
    DAG_ID,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["openeo", "example"],
    doc_md=__doc__,
    params={
        "fields_path": Param(
            "",
            type="string",
            title="GeoParquet file of fields (empty: built-in sample)",
            description="A path or URL",
        )
    },
) as dag:
    openeo_job_batch(
        backends=BACKENDS,
        job_source=fields,
        job_table=DAG_ID,
        job_db_conn_id=JOB_DB_CONN_ID,
        sqlite_path=SQLITE_PATH,
        start_job=start_job,
        root_dir=results_dir(DAG_ID),
        poll_interval=POLL_INTERVAL,
        label_columns=("title",),
    )
