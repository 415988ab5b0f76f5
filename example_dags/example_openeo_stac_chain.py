"""Two batches chained through their results: stage 2 runs on what stage 1 produced, started by an Airflow Asset.

Stage 1 (``example_openeo_stac_tiles``) tiles an area with openeo's ``split_area`` (``TiledArea``) and runs the
NDVI user-defined process once per tile. Its results are one STAC collection (``root_dir/stac/<job table>/``), and
its ``summary`` updates the asset ``STAGE_1_RESULTS`` with the collection's location in the event's ``extra``.

Stage 2 (``example_openeo_stac_stage2``) is scheduled on that asset: each time stage 1's summary runs, stage 2 makes
its rows from the collection's items (``collection_rows``: one row per tile, with its geometry, time window and
the item's href) and runs one job per item that ``load_stac``\\ s it. Rows are keyed by their values, so a stage 2
run only runs items it has not seen: a tile stage 1 ran again (a new job) is a new row, the others are done.

The backend reads the item's href itself: on a deployment, ``root_dir`` must be storage the backend can read
(an object store it can reach, served over http(s)); a local path, as in the tests, only names the item.
"""

from __future__ import annotations

import os
from typing import Any

import geopandas as gpd
import openeo
import pandas as pd
from airflow.sdk import DAG, Asset, Param
from openeo.extra.job_management import ProcessBasedJobCreator

from _common import BACKENDS, JOB_DB_CONN_ID, POLL_INTERVAL, SQLITE_PATH, UDP_URL, results_dir
from airflow_provider_openeo.reruns import rerun_param
from airflow_provider_openeo.stac_collection import collection_rows
from airflow_provider_openeo.task_groups import openeo_job_batch
from airflow_provider_openeo.tiling import TiledArea

STAGE_1 = "example_openeo_stac_tiles"
STAGE_2 = "example_openeo_stac_stage2"
#: The asset stage 1's summary updates; its events carry ``stac_collection``.
STAGE_1_RESULTS = Asset(f"openeo://{STAGE_1}/results")

#: Stage 1's default area (near Mol, Belgium) and tile edge, in degrees: 2 x 2 tiles.
AREA = {"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1}
TILE_DEGREES = float(os.environ.get("OPENEO_EXAMPLE_TILE_DEGREES", "0.05"))

ndvi_per_tile = ProcessBasedJobCreator(process_id="ndvi_timeseries", namespace=UDP_URL)


def tiles(context: Any) -> gpd.GeoDataFrame:
    """The run's tiles: the area of the trigger form (default ``AREA``) cut by ``split_area``."""
    params = context["params"]
    area = {side: float(params[side]) for side in ("west", "south", "east", "north")}
    return TiledArea(
        area,
        tile_size=float(params["tile_degrees"]),
        projection="EPSG:4326",
        columns={"temporal_extent": [params["start"], params["end"]]},
    )(context)


def stage_1_collection(context: Any) -> str:
    """Where stage 1's collection is: the triggering asset event's ``stac_collection`` (or the Param, by hand)."""
    given = context["params"].get("stage1_collection")
    if given:
        return given
    events = context["triggering_asset_events"][STAGE_1_RESULTS]
    if not events:
        raise ValueError(f"stage1_collection: this run was not triggered by {STAGE_1_RESULTS.uri}; give the Param")
    return events[-1].extra["stac_collection"]


def items_of_stage_1(context: Any) -> pd.DataFrame:
    """One row per item of stage 1's collection (tile geometry, time window, item href, stage 1's job)."""
    return collection_rows(stage_1_collection(context))


def load_stage_1_item(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
    """MBJM's ``start_job``: load the tile's stage 1 results with ``load_stac`` and store them as GeoTIFF."""
    cube = connection.load_stac(url=row["upstream_item"])
    return cube.save_result(format="GTiff").create_job(title=f"stage 2 of {row['title']}")


with DAG(
    STAGE_1,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["openeo", "example", "stac"],
    doc_md=__doc__,
    params={
        **{side: Param(value, type="number", title=side) for side, value in AREA.items()},
        "tile_degrees": Param(TILE_DEGREES, type="number", exclusiveMinimum=0, title="Tile edge (degrees)"),
        "start": Param("2024-05-01", type="string", format="date", title="Start date"),
        "end": Param("2024-06-01", type="string", format="date", title="End date (exclusive)"),
        "rerun_statuses": rerun_param(),
    },
) as stage_1_dag:
    openeo_job_batch(
        backends=BACKENDS,
        job_source=tiles,
        job_table=STAGE_1,
        job_db_conn_id=JOB_DB_CONN_ID,
        sqlite_path=SQLITE_PATH,
        start_job=ndvi_per_tile,
        root_dir=results_dir(STAGE_1),
        poll_interval=POLL_INTERVAL,
        outlets=[STAGE_1_RESULTS],
        label_columns=("title",),
    )

with DAG(
    STAGE_2,
    schedule=[STAGE_1_RESULTS],
    catchup=False,
    max_active_runs=1,
    tags=["openeo", "example", "stac"],
    doc_md=__doc__,
    params={"stage1_collection": Param("", type="string", title="Stage 1's collection (empty: from the asset)")},
) as stage_2_dag:
    openeo_job_batch(
        backends=BACKENDS,
        job_source=items_of_stage_1,
        job_table=STAGE_2,
        job_db_conn_id=JOB_DB_CONN_ID,
        sqlite_path=SQLITE_PATH,
        start_job=load_stage_1_item,
        root_dir=results_dir(STAGE_2),
        poll_interval=POLL_INTERVAL,
        label_columns=("title",),
    )
