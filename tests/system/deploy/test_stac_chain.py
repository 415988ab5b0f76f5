"""Results as a data product on a live Airflow: a tiled batch on two local backends becomes one STAC collection,
whose Asset event starts the next batch, which works on the collection's items.

One test, the example chain (``example_dags/example_openeo_stac_chain.py``) as a user runs it: stage 1 triggered
through the REST API, stage 2 started by the scheduler from stage 1's asset event (no trigger of ours), then one
tile run again (its item replaced, stage 2 started again and running only that tile's new results).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shapely

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from deploy.live_airflow import AirflowSettings, LiveAirflow
from local_backend.launcher import LocalBackend
from tests.conftest import REPO
from tests.stac_checks import assert_validates_offline, items_by_row
from tests.system.example_dags.conftest import UDP_FILE, remote_job

STAGE_1 = "example_openeo_stac_tiles"
STAGE_2 = "example_openeo_stac_stage2"
PARALLEL_JOBS = 2
#: The first tile of the default area (2 x 2 tiles of 0.05 degrees): a trigger with this area re-runs that tile.
FIRST_TILE = {"west": 5.0, "south": 51.0, "east": 5.05, "north": 51.05}


@pytest.fixture
def work_dir() -> Iterator[Path]:
    path = REPO / "build" / "test-stac-chain" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def table(work_dir: Path, name: str) -> Any:
    db = OpenEOJobDbHook(table=name, sqlite_path=str(work_dir / "jobs.db"))
    try:
        return db.read()
    finally:
        db.dispose()


def stage_2_runs(airflow: LiveAirflow) -> list[dict[str, Any]]:
    return airflow.api("GET", f"/dags/{STAGE_2}/dagRuns", params={"limit": 100}).get("dag_runs", [])


def wait_for_stage_2_run(airflow: LiveAirflow, seen: int, timeout: float = 240.0) -> dict[str, Any]:
    """The stage 2 run the scheduler starts from the asset event after the ``seen`` earlier ones, once it ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = sorted(stage_2_runs(airflow), key=lambda run: run["queued_at"] or "")
        if len(runs) > seen:
            return airflow.wait_for_run(STAGE_2, runs[seen]["dag_run_id"], timeout=timeout)
        time.sleep(1.0)
    raise AssertionError(f"no asset-triggered run of {STAGE_2} within {timeout:.0f} s")


def check_collection(work_dir: Path, tiles: Any) -> dict[Any, Any]:
    """The collection validates offline; one item per finished row, with the row's tile and openable assets."""
    collection = assert_validates_offline(work_dir / "results" / STAGE_1 / "stac" / STAGE_1 / "collection.json")
    items = items_by_row(collection)
    assert set(items) == set(tiles.index[tiles["status"] == "finished"]) == set(tiles.index)
    for row_id, item in items.items():
        tile = tiles.loc[row_id]
        assert shapely.geometry.shape(item.geometry).equals_exact(tile.geometry, tolerance=1e-12), row_id
        assert item.properties["openeo_provider:job_id"] == tile["id"]
        assert item.properties["openeo_provider:backend"] == tile["backend_name"]
        tif = Path(item.assets["result.tif"].get_absolute_href())
        assert tif == work_dir / "results" / STAGE_1 / f"job_{tile['id']}" / "result.tif"
        assert tif.read_bytes()[:2] == b"II", "the asset opens"
    bbox = collection.extent.spatial.bboxes[0]
    assert bbox == pytest.approx(list(tiles.geometry.union_all().bounds))
    return items


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiled_batch_becomes_one_collection_whose_asset_event_runs_stage_2(
    openeo_backends: dict[str, LocalBackend], work_dir: Path
) -> None:
    for backend in openeo_backends.values():
        backend.configure(queue_seconds=0.3, run_seconds=1.0)
    udp_url = openeo_backends["foo"].add_process_definition("ndvi_timeseries", json.loads(UDP_FILE.read_text()))
    airflow = LiveAirflow(
        work_dir / "airflow-home",
        AirflowSettings(
            paused_at_creation=True,  # only the chain runs; the other examples stay paused
            env={
                "OPENEO_EXAMPLE_UDP_URL": udp_url,
                "OPENEO_EXAMPLE_RESULTS_DIR": str(work_dir / "results"),
                "OPENEO_EXAMPLE_SQLITE_PATH": str(work_dir / "jobs.db"),
                "OPENEO_EXAMPLE_POLL_INTERVAL": "0.5",
                "OPENEO_EXAMPLE_PARALLEL_JOBS": str(PARALLEL_JOBS),
            },
        ),
    )
    try:
        airflow.prepare()
        airflow.start_for_local_backends(
            {name: backend.url for name, backend in openeo_backends.items()}, parallel_jobs=PARALLEL_JOBS
        )
        airflow.wait_for_dag(STAGE_2)  # unpaused, so stage 1's asset event starts it

        # Stage 1: 4 tiles on two backends -> one collection, one item per finished row.
        run = airflow.wait_for_run(STAGE_1, airflow.trigger_dag(STAGE_1, {}), timeout=300)
        assert run["state"] == "success"
        tiles = table(work_dir, STAGE_1)
        assert len(tiles) == 4 and set(tiles["status"]) == {"finished"}
        assert set(tiles["backend_name"]) == {"foo", "bar"}, "the tiles ran on both backends"
        items = check_collection(work_dir, tiles)

        # Stage 2, started by the scheduler from stage 1's asset event: one row per item, each loading its item.
        second = wait_for_stage_2_run(airflow, seen=0)
        assert second["state"] == "success" and second["run_type"] == "asset_triggered"
        stage_2 = table(work_dir, STAGE_2)
        assert set(stage_2["status"]) == {"finished"}
        assert sorted(stage_2["upstream_item"]) == sorted(item.get_self_href() for item in items.values())
        assert sorted(stage_2["upstream_job_id"]) == sorted(tiles["id"])
        for _, row in stage_2.iterrows():
            graph = remote_job(openeo_backends[row["backend_name"]], row["id"])["process"]["process_graph"]
            (load,) = [node for node in graph.values() if node["process_id"] == "load_stac"]
            assert load["arguments"]["url"] == row["upstream_item"]

        # Tile 0 runs again: a new job, its item replaced; the others keep theirs; stage 2 runs the new item only.
        old = tiles.loc[0, "id"]
        rerun = airflow.trigger_dag(STAGE_1, {**FIRST_TILE, "rerun_statuses": ["finished"]})
        assert airflow.wait_for_run(STAGE_1, rerun, timeout=300)["state"] == "success"
        again = table(work_dir, STAGE_1)
        assert again.loc[0, "id"] != old and again.loc[0, "status"] == "finished"
        assert (again.loc[1:, "id"] == tiles.loc[1:, "id"]).all()
        replaced = check_collection(work_dir, again)
        assert replaced[0].properties["openeo_provider:job_id"] == again.loc[0, "id"]
        third = wait_for_stage_2_run(airflow, seen=1)
        assert third["state"] == "success"
        stage_2 = table(work_dir, STAGE_2)
        assert len(stage_2) == 5 and set(stage_2["status"]) == {"finished"}
        assert set(stage_2["upstream_job_id"]) == {*tiles["id"], again.loc[0, "id"]}
    finally:
        airflow.stop()
