"""Bad input, one row at a time: a clear error naming the row and the field, the row marked, no job created.

The batch-level view (other rows go on) is in ``test_openeo_batch_dag.py``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from openeo.extra.job_management import ProcessBasedJobCreator
from shapely.geometry import Polygon

from tests.system.operators.conftest import RowOps, make_context, run_row
from tests.system.operators.test_openeo_start_job_signature import UDP, published_udp

BOWTIE = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])


def failed_row(row_ops: RowOps, operator: Any, *, title: str) -> dict[str, Any]:
    """Run the row, expect a failure without retry; the row must carry the same message, and no job exist."""
    with pytest.raises(AirflowFailException) as failure:
        run_row(operator)
    row = row_ops.row()
    assert row["status"] == "start_failed" and row["claimed_by"] is None
    assert row["error_message"] == str(failure.value)
    assert row["error_message"].startswith(f"row 0 of job table {row_ops.db.table!r}")
    assert row_ops.jobs(title) == []
    return row


def test_missing_process_parameter_without_default(row_ops: RowOps):
    [title] = row_ops.table()  # no column x, no default for x
    creator = ProcessBasedJobCreator(namespace=published_udp(row_ops), parameter_defaults={"z": 1})
    row = failed_row(row_ops, row_ops.operator(start_job=creator), title=title)
    assert "Missing required parameter 'x'" in row["error_message"]


def test_nan_in_a_parameter_column(row_ops: RowOps):
    [title] = row_ops.table(x=[np.nan], z=[1])
    creator = ProcessBasedJobCreator(namespace=published_udp(row_ops), parameter_column_map={"field": "title"})
    row = failed_row(row_ops, row_ops.operator(start_job=creator), title=title)
    assert "empty field(s) in this row: 'x'" in row["error_message"]


def test_invalid_geometry(row_ops: RowOps):
    title = f"{row_ops.prefix}-0"
    row_ops.db.initialize_from_df(gpd.GeoDataFrame({"title": [title]}, geometry=[BOWTIE], crs="EPSG:4326"))
    row = failed_row(row_ops, row_ops.operator(), title=title)
    assert "field 'geometry' is not a valid geometry (Self-intersection" in row["error_message"]


@pytest.mark.parametrize("body", [None, "<html>not json</html>"], ids=["404", "not-json"])
def test_remote_process_definition_missing_or_not_json(row_ops: RowOps, body):
    [title] = row_ops.table(x=[1], z=[1])
    name = f"gone_{uuid.uuid4().hex[:6]}"
    url = row_ops.backend.add_process_definition(name, body if body is not None else UDP)
    if body is None:
        row_ops.backend.remove_process_definition(name)
    row = failed_row(row_ops, row_ops.operator(start_job=ProcessBasedJobCreator(namespace=url)), title=title)
    assert url in row["error_message"] or name in row["error_message"], row["error_message"]


def test_backend_refusing_the_process_graph(row_ops: RowOps):
    [title] = row_ops.table()
    row_ops.backend.configure(reject_process_graphs=True)
    row = failed_row(row_ops, row_ops.operator(), title=title)
    assert "[400] ProcessGraphInvalid" in row["error_message"]


def test_start_job_returning_a_non_job(row_ops: RowOps):
    [title] = row_ops.table()
    row = failed_row(row_ops, row_ops.operator(start_job=lambda row, connection, **kw: "j-123"), title=title)
    assert "start_job returned str" in row["error_message"]


def test_job_deleted_while_the_trigger_polls_ends_not_found(row_ops: RowOps):
    [title] = row_ops.table()
    operator = row_ops.operator(start_job=lambda row, connection, **kw: _long_job(row, connection))
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(make_context())
    job_id = deferred.value.trigger.job_id
    _long_job(pd.Series({"title": f"{title}-other"}), row_ops.connection())  # the listing shows another job
    row_ops.connection().job(job_id).delete()  # confirmed gone: absent from a complete listing showing others
    event = asyncio.run(asyncio.wait_for(anext(deferred.value.trigger.run()), 30)).payload
    assert event["status"] == "not_found"
    with pytest.raises(AirflowFailException, match="did not finish"):
        operator.execute_complete(make_context(), event=json.loads(json.dumps(event)))
    row = row_ops.row()
    assert row["status"] == "error" and row["id"] == job_id
    assert row["error_message"].startswith("field 'id': openEO job") and "gone from the backend" in row["error_message"]
    assert row_ops.jobs(title) == []

    replaced = run_row(row_ops.operator())  # a deliberate re-run records the loss and starts anew
    row = row_ops.row()
    assert [(h["id"], h["status"]) for h in row["job_history"]] == [(job_id, "deleted")]
    assert [job["id"] for job in row_ops.jobs(title)] == [replaced["job_id"]]


def _long_job(row: pd.Series, connection: Any) -> Any:
    return connection.create_job(
        {"a": {"process_id": "add", "arguments": {"x": 1, "y": 1}, "result": True}},
        title=str(row["title"]),
        job_options={"local_backend": {"queue_seconds": 0, "run_seconds": 30}},
    )
