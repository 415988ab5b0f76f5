"""The STAC chain example: stage 1 tiles an area into jobs whose results become one STAC collection; stage 2 makes
its rows from that collection's items and ``load_stac``\\ s each. (The asset-triggered run is the live test's,
``tests/system/deploy/test_stac_chain.py``; here stage 2 is given the collection as its Param.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import shapely

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from tests.stac_checks import assert_validates_offline, items_by_row
from tests.system.example_dags.conftest import (
    backend_job_ids,
    fresh_table,
    load_example,
    new_jobs,
    process_arguments,
    remote_job,
)


@pytest.fixture
def chain(example_env):
    module = load_example("example_openeo_stac_chain")
    for table in (module.STAGE_1, module.STAGE_2):
        fresh_table(table)
    return module


def table_of(name: str):
    return OpenEOJobDbHook(table=name, sqlite_path=os.environ["OPENEO_EXAMPLE_SQLITE_PATH"]).read()


def test_stage_2_runs_on_the_items_of_stage_1s_collection(example_env, chain):
    stage_1, stage_2 = chain.stage_1_dag, chain.stage_2_dag
    before = backend_job_ids(example_env)

    run = stage_1.test()
    assert run.state == "success"
    tiles = table_of(chain.STAGE_1)
    assert len(tiles) == 4 and set(tiles["status"]) == {"finished"}
    root = Path(os.environ["OPENEO_EXAMPLE_RESULTS_DIR"]) / chain.STAGE_1
    collection_path = root / "stac" / chain.STAGE_1
    collection = assert_validates_offline(collection_path / "collection.json")
    items = items_by_row(collection)
    assert set(items) == set(tiles.index), "one item per finished row"
    for row_id, item in items.items():
        tile = tiles.loc[row_id]
        assert shapely.geometry.shape(item.geometry).equals_exact(tile.geometry, tolerance=1e-12), "the tile's own"
        assert item.properties["openeo_provider:job_id"] == tile["id"]
        assert (item.properties["start_datetime"], item.properties["end_datetime"]) == (
            "2024-05-01T00:00:00Z",
            "2024-06-01T00:00:00Z",
        )
        tif = Path(item.assets["result.tif"].get_absolute_href())
        assert tif.parent == root / f"job_{tile['id']}"
        assert tif.read_bytes()[:2] == b"II", "the asset opens: the stored GeoTIFF"
        # The job got the tile as its GeoJSON spatial_extent (ProcessBasedJobCreator's geometry link).
        arguments = process_arguments(remote_job(example_env[tile["backend_name"]], tile["id"]))
        assert shapely.geometry.shape(arguments["spatial_extent"]).equals_exact(tile.geometry, tolerance=1e-12)

    run = stage_2.test(run_conf={"stage1_collection": str(collection_path / "collection.json")})
    assert run.state == "success"
    second = table_of(chain.STAGE_2)
    assert set(second["status"]) == {"finished"}
    assert sorted(second["upstream_job_id"]) == sorted(tiles["id"])
    for _, row in second.iterrows():
        item = items[int(row["upstream_item"].rsplit("row_", 1)[1].removesuffix(".json"))]
        assert row["upstream_item"] == item.get_self_href()
        graph = remote_job(example_env[row["backend_name"]], row["id"])["process"]["process_graph"]
        (load,) = [node for node in graph.values() if node["process_id"] == "load_stac"]
        assert load["arguments"]["url"] == row["upstream_item"], "stage 2's job loads stage 1's item"
    created = new_jobs(example_env, before)
    assert sum(len(jobs) for jobs in created.values()) == 8
