"""MBJM's ``start_job`` contract, unchanged: its keyword arguments, and ``ProcessBasedJobCreator`` as is.

What reaches the backend is read back from the backend (``GET /jobs/{id}``), not from our side.
"""

from __future__ import annotations

import uuid
from typing import Any

import geopandas as gpd
import openeo
import pandas as pd
import pytest
from openeo.extra.job_management import ProcessBasedJobCreator
from shapely.geometry import Polygon, mapping

from airflow_provider_openeo.operators.openeo import OpenEOStartJobOperator
from tests.system.operators.conftest import ADD_GRAPH, BACKEND_NAME, RowOps, fast_options, run_row

#: A user-defined process with every kind of parameter ProcessBasedJobCreator resolves.
UDP = {
    "id": "scaled_sum",
    "parameters": [
        {"name": "x", "description": "from a column", "schema": {"type": "number"}},
        {"name": "y", "description": "schema default", "schema": {"type": "number"}, "default": 5},
        {"name": "z", "description": "from parameter_defaults", "schema": {"type": "number"}},
        {"name": "label", "description": "optional", "schema": {"type": "string"}, "optional": True},
        {"name": "field", "description": "an area", "schema": {"type": "object", "subtype": "geojson"}},
    ],
    "process_graph": {
        "sum": {
            "process_id": "add",
            "arguments": {"x": {"from_parameter": "x"}, "y": {"from_parameter": "y"}},
            "result": True,
        }
    },
}
FIELD = Polygon([(5.0, 51.0), (5.1, 51.0), (5.1, 51.1), (5.0, 51.1)])


def published_udp(row_ops: RowOps, definition: dict[str, Any] = UDP) -> str:
    return row_ops.backend.add_process_definition(f"{definition['id']}_{uuid.uuid4().hex[:6]}", definition)


def posted_arguments(row_ops: RowOps, job_id: str) -> tuple[str, dict[str, Any]]:
    graph = row_ops.connection().job(job_id).describe()["process"]["process_graph"]
    [node] = graph.values()
    return node["namespace"], node["arguments"]


def test_callable_using_connection_provider_and_provider(row_ops: RowOps):
    [title] = row_ops.table()
    seen: dict[str, Any] = {}

    def start_job(row: pd.Series, connection_provider, provider: str, **kwargs: Any) -> openeo.BatchJob:
        seen.update(provider=provider, extra=kwargs, index=row.name)
        connection = connection_provider(provider)
        return connection.create_job(ADD_GRAPH, title=f"{row['title']}", job_options=fast_options())

    operator = row_ops.operator(start_job=start_job, start_job_kwargs={"season": "summer"})
    result = run_row(operator)

    assert seen["provider"] == BACKEND_NAME and seen["index"] == 0
    assert seen["extra"] == {"connection": seen["extra"]["connection"], "season": "summer"}
    assert isinstance(seen["extra"]["connection"], openeo.Connection)
    assert [job["id"] for job in row_ops.jobs(title)] == [result["job_id"]]
    assert row_ops.row()["status"] == "finished"


def test_unknown_backend_asked_of_connection_provider_fails_the_row(row_ops: RowOps):
    [title] = row_ops.table()

    def start_job(row: pd.Series, connection_provider, **kwargs: Any) -> openeo.BatchJob:
        return connection_provider("nowhere").create_job(ADD_GRAPH, title=title)

    with pytest.raises(Exception, match="unknown backend 'nowhere'"):
        run_row(row_ops.operator(start_job=start_job))
    assert row_ops.row()["status"] == "start_failed" and row_ops.jobs(title) == []


def test_process_based_job_creator_resolves_every_kind_of_parameter(row_ops: RowOps):
    url = published_udp(row_ops)
    titles = [f"{row_ops.prefix}-0"]
    frame = gpd.GeoDataFrame({"title": titles, "x_value": [3]}, geometry=[FIELD], crs="EPSG:4326")
    row_ops.db.initialize_from_df(frame)
    creator = ProcessBasedJobCreator(
        namespace=url, parameter_column_map={"x": "x_value", "field": "geometry"}, parameter_defaults={"z": 7}
    )

    result = run_row(row_ops.operator(start_job=creator))

    namespace, arguments = posted_arguments(row_ops, result["job_id"])
    assert namespace == url
    assert {name: arguments[name] for name in ("x", "y", "z")} == {"x": 3, "y": 5, "z": 7}
    assert sorted(arguments) == ["field", "x", "y", "z"]
    assert arguments["field"]["type"] == mapping(FIELD)["type"]
    assert [tuple(p) for p in arguments["field"]["coordinates"][0]] == list(FIELD.exterior.coords)
    assert "label" not in arguments  # optional, no value anywhere: left out
    assert [job["id"] for job in row_ops.jobs(titles[0])] == [result["job_id"]]
    assert row_ops.row()["status"] == "finished"


def test_process_based_job_creator_links_the_geometry_column_by_itself(row_ops: RowOps):
    """No parameter_column_map: the one GeoJSON parameter takes the one geometry column (MBJM's auto-link)."""
    url = published_udp(row_ops)
    title = f"{row_ops.prefix}-0"
    frame = gpd.GeoDataFrame({"title": [title], "x": [1.5], "z": [2]}, geometry=[FIELD], crs="EPSG:4326")
    row_ops.db.initialize_from_df(frame)

    job_id = run_row(row_ops.operator(start_job=ProcessBasedJobCreator(namespace=url)))["job_id"]

    _, arguments = posted_arguments(row_ops, job_id)
    assert arguments["x"] == 1.5 and arguments["z"] == 2 and arguments["y"] == 5
    assert arguments["field"]["type"] == "Polygon"
    assert [tuple(p) for p in arguments["field"]["coordinates"][0]] == list(FIELD.exterior.coords)
    assert [job["id"] for job in row_ops.jobs(title)] == [job_id]


def test_start_operator_returns_the_job_id_and_leaves_the_row_live(row_ops: RowOps):
    [title] = row_ops.table()
    job_id = run_row(row_ops.operator(cls=OpenEOStartJobOperator))
    [job] = row_ops.jobs(title)
    assert job_id == job["id"]
    row = row_ops.row()
    assert (row["id"], row["backend_name"]) == (job_id, BACKEND_NAME)
    assert row["status"] in ("queued", "running") and row["claimed_by"] is None and row["start_time"]
