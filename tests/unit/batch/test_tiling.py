"""Tiling as a job source: an area of interest split by openeo's ``split_area`` into one row per tile."""

from __future__ import annotations

import json

import geopandas as gpd
import pytest
from shapely.geometry import box, mapping

from airflow_provider_openeo.batch.job_source import load_job_source
from airflow_provider_openeo.batch.tiling import TiledArea, TilingError

BBOX = {"west": 5.0, "south": 51.0, "east": 5.2, "north": 51.1}


def test_bbox_and_tile_size_give_one_row_per_tile_with_the_columns_given():
    tiles = TiledArea(
        BBOX, tile_size=0.05, projection="EPSG:4326", columns={"temporal_extent": ["2024-05-01", "2024-09-01"]}
    )
    frame = tiles(None)
    assert len(frame) == len(tiles) == 8
    assert frame.crs == "EPSG:4326"
    assert list(frame["title"]) == [f"tile {i}" for i in range(8)]
    assert all(v == ["2024-05-01", "2024-09-01"] for v in frame["temporal_extent"])
    assert frame.geometry.union_all().symmetric_difference(box(5.0, 51.0, 5.2, 51.1)).area < 1e-12, "area covered"
    assert all(abs(g.area - 0.05 * 0.05) < 1e-12 for g in frame.geometry), "equal tiles of the size asked for"


def test_a_projected_grid_cuts_metres_and_rows_come_back_in_wgs84():
    tiles = TiledArea(BBOX, tile_size=5000, projection="EPSG:3035")(None)
    assert tiles.crs == "EPSG:4326"
    in_grid = tiles.to_crs("EPSG:3035")
    assert max(g.bounds[2] - g.bounds[0] for g in in_grid.geometry) == pytest.approx(5000, abs=1e-3)
    assert tiles.geometry.union_all().contains(box(5.0, 51.0, 5.2, 51.1).buffer(-1e-4))
    kept = TiledArea(BBOX, tile_size=5000, projection="EPSG:3035", output_crs=None)(None)
    assert kept.crs == "EPSG:3035"


def test_geojson_geodataframe_and_a_grid_of_ones_own():
    triangle = {"type": "Polygon", "coordinates": [[[5.01, 51.01], [5.15, 51.01], [5.15, 51.05], [5.01, 51.01]]]}
    collection = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": triangle, "properties": {}}],
    }
    grid = gpd.GeoDataFrame(
        {"tile": ["a", "b", "far"]},
        geometry=[box(5.0, 51.0, 5.1, 51.1), box(5.1, 51.0, 5.2, 51.1), box(9, 9, 10, 10)],
        crs="EPSG:4326",
    )
    in_web_mercator = gpd.GeoDataFrame.from_features(collection["features"], crs=4326).to_crs(3857)
    for aoi in (triangle, collection, in_web_mercator):
        frame = TiledArea(aoi, tile_grid=grid)(None)
        assert list(frame["tile"]) == ["a", "b"], "the grid's tiles touching the area, with the grid's columns"


@pytest.mark.parametrize(
    ("aoi", "kwargs", "text"),
    [
        (BBOX, {}, "give tile_size and projection"),
        (
            BBOX,
            {
                "tile_size": 0.1,
                "projection": "EPSG:4326",
                "tile_grid": gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs=4326),
            },
            "cannot be combined",
        ),
        (BBOX, {"tile_size": -1, "projection": "EPSG:4326"}, "Tile size must be positive"),
        (BBOX, {"tile_size": "big", "projection": "EPSG:4326"}, "tile_size must be a number"),
        ({**BBOX, "north": 50.0}, {"tile_size": 0.1, "projection": "EPSG:4326"}, "south must be less than north"),
        ({"type": "Point", "coordinates": [5, 51]}, {"tile_size": 0.1, "projection": "EPSG:4326"}, "polygonal GeoJSON"),
        ([5, 51, 6, 52], {"tile_size": 0.1, "projection": "EPSG:4326"}, "must be a bbox dict, GeoJSON"),
        (BBOX, {"tile_grid": gpd.GeoDataFrame(geometry=[box(9, 9, 10, 10)], crs=4326)}, "no tile touches"),
    ],
)
def test_bad_tiling_is_refused_when_the_dag_is_parsed(aoi, kwargs, text):
    with pytest.raises(TilingError, match=text):
        TiledArea(aoi, **kwargs)


def test_tiles_load_into_the_job_table_and_a_second_run_finds_them(sqlite_job_db):
    tiles = TiledArea(
        BBOX, tile_size=0.1, projection="EPSG:4326", columns={"temporal_extent": ["2024-05-01", "2024-06-01"]}
    )
    first = load_job_source(tiles, sqlite_job_db, run_key="dag/run1")
    assert (first["loaded"], first["source"]) == (2, repr(tiles))
    again = load_job_source(tiles, sqlite_job_db, run_key="dag/run2")
    assert (again["loaded"], again["known"]) == (0, 2), "the same tiles are the same rows"
    table = sqlite_job_db.read()
    assert isinstance(table, gpd.GeoDataFrame) and table.crs == "EPSG:4326"
    assert [json.loads(json.dumps(mapping(g))) for g in table.geometry] == [
        json.loads(json.dumps(mapping(g))) for g in tiles(None).geometry
    ]


def test_an_area_from_a_geojson_file_is_split_without_warnings(tmp_path, caplog):
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": mapping(box(5.0, 51.0, 5.2, 51.1))},
    ]}))  # fmt: skip
    caplog.set_level("WARNING")
    tiles = TiledArea(path, tile_size=0.1, projection="EPSG:4326")
    assert len(tiles) == 2 and not caplog.records, [r.getMessage() for r in caplog.records]
    with pytest.raises(TilingError, match="cannot read the area of interest"):
        TiledArea(tmp_path / "missing.geojson", tile_size=0.1, projection="EPSG:4326")
