"""The batch's STAC collection: items built from rows and results, the collection derived from the item files,
and no item lost while many processes write at once, on local disk and on S3 (moto) through ObjectStoragePath."""

from __future__ import annotations

import functools
import json
import os
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from shapely.geometry import box

from airflow_provider_openeo.handlers._stac_item import build_item, item_id_for
from airflow_provider_openeo.handlers.stac_collection import BatchCollection
from tests.fixtures.races import BARRIER_TIMEOUT, run_together
from tests.stac_checks import assert_validates_offline, items_by_row

RESULTS_DOCUMENT = {
    "type": "Collection",
    "id": "j-1",
    "extent": {
        "spatial": {"bbox": [[5.0, 51.0, 5.1, 51.1]]},
        "temporal": {"interval": [["2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z"]]},
    },
    "assets": {"result.tif": {"href": "https://b/r.tif", "type": "image/tiff", "roles": ["data"]}},
}


def item_for(row_id: Any, *, job_id: str = "j-1", row: dict[str, Any] | None = None, crs: Any = None, **kw) -> dict:
    return build_item(
        row_id=row_id,
        row=row or {"title": f"t{row_id}", "id": job_id},
        crs=crs,
        key_fields=["title"],
        job_id=job_id,
        job_table="tiles",
        backend="foo",
        metadata={"created": "2024-05-01T10:00:00Z"},
        results_document=kw.get("document", RESULTS_DOCUMENT),
        assets=kw.get("assets", {"result.tif": (f"../../../job_{job_id}/result.tif", {"type": "image/tiff"})}),
        collection_id="tiles",
    )


# -- items ---------------------------------------------------------------------------------------------------


def test_row_geometry_in_a_projected_crs_becomes_wgs84():
    tile = gpd.GeoSeries([box(5.0, 51.0, 5.1, 51.1)], crs="EPSG:4326").to_crs("EPSG:3857").iloc[0]
    item = item_for(0, row={"title": "tile 0", "geometry": tile}, crs="EPSG:3857")
    assert item["bbox"] == pytest.approx([5.0, 51.0, 5.1, 51.1])
    assert item["geometry"]["type"] == "Polygon"
    assert item["properties"]["title"] == "tile 0"


def test_without_row_geometry_the_results_document_gives_footprint_and_time():
    item = item_for(3)
    assert item["bbox"] == [5.0, 51.0, 5.1, 51.1]
    assert item["geometry"]["coordinates"][0][0] == [5.0, 51.0]
    assert item["properties"]["datetime"] is None
    assert item["properties"]["start_datetime"] == "2024-03-01T00:00:00Z"
    assert item["properties"]["end_datetime"] == "2024-04-01T00:00:00Z"


def test_row_temporal_extent_wins_and_key_fields_and_job_are_properties():
    row = {"title": "a", "temporal_extent": ["2024-01-01", "2024-02-01"], "row_key": "k1", "id": "j-9"}
    item = item_for(7, job_id="j-9", row=row, document={"assets": {}})
    properties = item["properties"]
    assert (properties["start_datetime"], properties["end_datetime"]) == (
        "2024-01-01T00:00:00Z",
        "2024-02-01T00:00:00Z",
    )
    assert properties["openeo_provider:job_id"] == "j-9"
    assert properties["openeo_provider:row_id"] == 7
    assert properties["openeo_provider:row_key"] == "k1"
    assert properties["openeo_provider:row"] == {"title": "a"}
    assert item["geometry"] is None and "bbox" not in item, "no footprint known: a null geometry, as STAC allows"


def test_item_ids_are_plain_file_names_even_for_hostile_row_ids():
    assert item_id_for(3) == "row_3"
    hostile = item_id_for("../../etc/x")
    assert "/" not in hostile and not hostile.startswith(".") and hostile != item_id_for("etc_x")


# -- the collection ------------------------------------------------------------------------------------------


def test_collection_follows_its_items_and_a_rerun_replaces_the_rows_item(tmp_path: Path):
    collection = BatchCollection(tmp_path, "tiles")
    collection.put_item(item_for(0, row={"title": "a", "geometry": box(5, 51, 6, 52)}))
    collection.put_item(item_for(1, row={"title": "b", "geometry": box(7, 50, 8, 51)}))
    stored = json.loads(collection.collection_path.read_text())
    assert stored["extent"]["spatial"]["bbox"] == [[5.0, 50.0, 8.0, 52.0]]
    assert [link["href"] for link in stored["links"] if link["rel"] == "item"] == [
        "./items/row_0.json",
        "./items/row_1.json",
    ]

    # Row 1 runs again: a new job, another footprint; its item is replaced, the extent follows.
    collection.put_item(item_for(1, job_id="j-2", row={"title": "b", "geometry": box(5, 51, 5.5, 51.5)}))
    read = assert_validates_offline(collection.collection_path)
    items = items_by_row(read)
    assert set(items) == {0, 1}
    assert items[1].properties["openeo_provider:job_id"] == "j-2"
    assert items[1].assets["result.tif"].get_absolute_href() == str(tmp_path / "job_j-2" / "result.tif")
    assert read.extent.spatial.bboxes == [[5.0, 51.0, 6.0, 52.0]]


def test_refresh_links_an_item_whose_writer_died_before_the_collection(tmp_path: Path):
    collection = BatchCollection(tmp_path, "tiles")
    collection.put_item(item_for(0))
    # A writer killed between its item and the collection: only the item file is there.
    (collection.items_dir / "row_1.json").write_text(json.dumps(item_for(1)))
    # Files that are not items (a temporary, another tool's file) are not linked.
    (collection.items_dir / ".row_2.json.part-abc").write_text("{")
    (collection.items_dir / "notes.json").write_text("[1, 2]")
    built = collection.refresh()
    assert [link["href"] for link in built["links"] if link["rel"] == "item"] == [
        "./items/row_0.json",
        "./items/row_1.json",
    ]
    assert json.loads(collection.collection_path.read_text()) == built


def test_a_hostile_job_table_name_stays_under_root(tmp_path: Path):
    collection = BatchCollection(tmp_path, "../../outside")
    assert collection.directory.resolve().is_relative_to(tmp_path.resolve())


# -- many writers at once, in real processes -----------------------------------------------------------------

WRITERS = 4
ITEMS_PER_WRITER = 6


def _write_items(root_spec: dict[str, Any], count: int, writer: int, barrier: Any) -> None:
    """One process's share: ``count`` items (rows ``writer*100 + i``), each with its collection refresh."""
    root: Any
    if root_spec["kind"] == "local":
        root = Path(root_spec["path"])
    else:
        os.environ.update(root_spec["env"])
        from airflow.sdk import ObjectStoragePath

        root = ObjectStoragePath(root_spec["url"])
    collection = BatchCollection(root, "tiles")
    barrier.wait(timeout=BARRIER_TIMEOUT)
    for i in range(count):
        row_id = writer * 100 + i
        west = float(writer)
        collection.put_item(item_for(row_id, row={"title": str(row_id), "geometry": box(west, i, west + 1, i + 1)}))


def _run_writers(root_spec: dict[str, Any], writers: int, per_writer: int) -> None:
    run_together(functools.partial(_write_items, root_spec, per_writer), writers)


def _expected_rows(writers: int, per_writer: int) -> set[int]:
    return {w * 100 + i for w in range(writers) for i in range(per_writer)}


def test_concurrent_writers_on_local_disk_lose_no_item(tmp_path: Path):
    _run_writers({"kind": "local", "path": str(tmp_path)}, WRITERS, ITEMS_PER_WRITER)
    collection = BatchCollection(tmp_path, "tiles")
    read = assert_validates_offline(collection.collection_path)
    assert set(items_by_row(read)) == _expected_rows(WRITERS, ITEMS_PER_WRITER)
    assert read.extent.spatial.bboxes == [[0.0, 0.0, float(WRITERS), float(ITEMS_PER_WRITER)]]
    assert json.loads(collection.collection_path.read_text()) == collection.build(collection.read_items())


# -- reading it downstream -------------------------------------------------------------------------------------


def test_a_next_batch_makes_its_rows_from_the_collection(tmp_path: Path):
    from airflow_provider_openeo.handlers.stac_collection import collection_rows

    collection = BatchCollection(tmp_path, "tiles")
    row = {"title": "a", "temporal_extent": ["2024-01-01", "2024-02-01"], "geometry": box(5, 51, 6, 52)}
    collection.put_item(build_item(
        row_id=0, row=row, crs="EPSG:4326", key_fields=["title", "temporal_extent"], job_id="j-1", job_table="tiles",
        backend="foo", metadata={}, results_document={}, assets={}, collection_id="tiles",
    ))  # fmt: skip
    rows = collection_rows(collection.uri)
    assert list(rows.columns) == ["title", "temporal_extent", "upstream_item", "upstream_job_id", "geometry"]
    assert rows.loc[0, "upstream_item"] == str(collection.item_path(0))
    assert rows.loc[0, "temporal_extent"] == ["2024-01-01", "2024-02-01"]
    assert rows.loc[0, "upstream_job_id"] == "j-1"
    assert rows.geometry.iloc[0].equals(box(5, 51, 6, 52)) and rows.crs == "EPSG:4326"


def test_the_collection_opens_from_object_storage(tmp_path: Path):
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    from airflow_provider_openeo.handlers.stac_collection import open_collection

    attach("memory", fs=MemoryFileSystem())
    root = ObjectStoragePath(f"memory://stac-{uuid.uuid4().hex[:8]}/results")
    collection = BatchCollection(root, "tiles")
    collection.put_item(item_for(0))
    collection.put_item(item_for(1))
    read = open_collection(collection.uri)
    assert sorted(item.id for item in read.get_items()) == ["row_0", "row_1"]


def test_a_refresh_that_keeps_seeing_changes_leaves_them_to_the_writer_making_them(tmp_path, monkeypatch, caplog):
    import airflow_provider_openeo.handlers.stac_collection as module

    collection = BatchCollection(tmp_path, "tiles")
    collection.put_item(item_for(0))
    (collection.items_dir / "row_1.json").write_text(json.dumps(item_for(1)))  # another writer, mid-way
    monkeypatch.setattr(module, "MAX_REFRESH_ROUNDS", 0)
    built = collection.refresh()
    assert "kept changing for 0 rounds" in caplog.text
    assert json.loads(collection.collection_path.read_text()) != built, "nothing raised, nothing written"
    monkeypatch.undo()
    assert json.loads(collection.collection_path.read_text()) != collection.build(collection.read_items())
    collection.refresh()  # that writer's own refresh
    assert json.loads(collection.collection_path.read_text()) == collection.build(collection.read_items())
