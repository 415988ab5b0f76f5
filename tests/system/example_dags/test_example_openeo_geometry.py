"""The geometry example: one job per field polygon, the polygon sent as the UDP's GeoJSON ``spatial_extent``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Polygon, mapping

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from tests.system.example_dags.conftest import (
    assert_batch_consistent,
    backend_job_ids,
    fresh_table,
    load_example,
    new_jobs,
    process_arguments,
    remote_job,
    results_root,
    run_labels,
)


def as_geojson(geometry) -> dict:
    """The GeoJSON a geometry becomes on the wire (tuples turned into lists)."""
    return json.loads(json.dumps(mapping(geometry)))


def check_fields_run(example_env, module, run, source: gpd.GeoDataFrame, before) -> None:
    """Table, folders and backends agree; geometry kept exactly; each job got its own polygon as GeoJSON."""
    assert run.state == "success"
    table = OpenEOJobDbHook(table=module.DAG_ID, sqlite_path=os.environ["OPENEO_EXAMPLE_SQLITE_PATH"]).read()
    assert isinstance(table, gpd.GeoDataFrame)
    assert table.crs == source.crs
    assert list(table["title"]) == list(source["title"])
    assert table.geometry.geom_equals_exact(source.geometry.set_axis(table.index), tolerance=0).all()
    assert_batch_consistent(table, example_env, new_jobs(example_env, before), results_root(module))
    for row_id, row in table.iterrows():
        arguments = process_arguments(remote_job(example_env[row["backend_name"]], row["id"]))
        assert arguments["spatial_extent"] == as_geojson(source.geometry.iloc[row_id]), f"row {row_id}"
        assert arguments["temporal_extent"] == ["2024-05-01", "2024-09-01"]
    assert sorted(run_labels(run).values()) == sorted(f"{i}: {t}" for i, t in table["title"].items())


@pytest.fixture
def geometry_example(example_env):
    module = load_example("example_openeo_geometry")
    fresh_table(module.DAG_ID)
    return module


def test_sample_geodataframe(example_env, geometry_example):
    before = backend_job_ids(example_env)
    run = geometry_example.dag.test()
    check_fields_run(example_env, geometry_example, run, geometry_example.sample_fields(), before)


def test_geoparquet_from_fields_path_param(example_env, geometry_example, tmp_path: Path):
    fields = gpd.GeoDataFrame(
        {"title": ["triangle", "L-shape", "square with hole"]},
        geometry=[
            Polygon([(5.012345678901234, 51.1), (5.02, 51.123456789012345), (5.03, 51.1)]),
            Polygon([(5.1, 51.2), (5.12, 51.2), (5.12, 51.21), (5.11, 51.21), (5.11, 51.22), (5.1, 51.22)]),
            Polygon(
                [(5.2, 51.3), (5.23, 51.3), (5.23, 51.33), (5.2, 51.33)],
                holes=[[(5.21, 51.31), (5.22, 51.31), (5.22, 51.32), (5.21, 51.32)]],
            ),
        ],
        crs="EPSG:4326",
    )
    path = tmp_path / "fields.parquet"
    fields.to_parquet(path)
    before = backend_job_ids(example_env)
    run = geometry_example.dag.test(run_conf={"fields_path": str(path)})
    check_fields_run(example_env, geometry_example, run, fields, before)
