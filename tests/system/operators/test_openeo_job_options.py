"""Job options per batch and per row reach the job whatever ``start_job`` is; bad ones are refused before any job.

Against the real local backend, which serves ``GET /processing_parameters`` and keeps the options each job was
created with: what reached the backend is read back from the backend's job (control API), never from our side.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import openeo
import pandas as pd
import pytest
from openeo.extra.job_management import ProcessBasedJobCreator

from tests.system.operators.conftest import ADD_GRAPH, FAST, RowOps, run_row

#: A UDP with default job options (processing-parameters extension), as ProcessBasedJobCreator reads it by URL.
UDP = {
    "id": "plus_one",
    "parameters": [{"name": "x", "description": "a number", "schema": {"type": "number"}}],
    "process_graph": {
        "plus": {"process_id": "add", "arguments": {"x": {"from_parameter": "x"}, "y": 1}, "result": True}
    },
    "default_job_options": {"driver-memory": "1g", "executor-memory": "1g", "local_backend": FAST},
}


def backend_options(row_ops: RowOps, title: str) -> dict[str, Any]:
    [job] = row_ops.jobs(title)
    return job["job_options"]


def test_plain_start_job_gets_batch_and_row_options_over_its_own(row_ops: RowOps):
    """Precedence: row > batch > start_job's own; a row's null drops a batch option."""
    titles = row_ops.table(2, job_options=[json.dumps({"executor-memory": "4g", "log_level": None}), None])
    batch = {"executor-memory": "2g", "executor-cores": 2, "log_level": "debug"}

    for row_id in (0, 1):
        run_row(row_ops.operator(row_id, job_options=batch))

    assert backend_options(row_ops, titles[0]) == {
        "local_backend": FAST,  # start_job's own
        "executor-memory": "4g",  # the row's, over the batch's
        "executor-cores": 2,
    }
    assert backend_options(row_ops, titles[1]) == {"local_backend": FAST, **batch}
    assert row_ops.row(0)["status"] == row_ops.row(1)["status"] == "finished"


def test_options_start_job_passed_top_level_are_kept_inside_job_options(row_ops: RowOps):
    """``additional=`` puts options at the top level, which openeo-python-driver ignores beside ``job_options``."""
    [title] = row_ops.table(job_options=[{"executor-cores": 3}])

    def start_job(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
        return connection.create_job(
            ADD_GRAPH, title=str(row["title"]), additional={"local_backend": FAST, "driver-memory": "3g"}
        )

    run_row(row_ops.operator(start_job=start_job))

    assert backend_options(row_ops, title) == {"local_backend": FAST, "driver-memory": "3g", "executor-cores": 3}


def test_process_based_job_creator_gets_process_defaults_batch_and_row_options(row_ops: RowOps):
    url = row_ops.backend.add_process_definition(f"plus_one_{uuid.uuid4().hex[:6]}", UDP)
    [title] = row_ops.table(x=[2], job_options=[{"executor-cores": 4, "driver-memory": "2g"}])
    creator = ProcessBasedJobCreator(process_id="plus_one", namespace=url)

    run_row(row_ops.operator(start_job=creator, job_options={"executor-memory": "3g", "driver-memory": "5g"}))

    assert backend_options(row_ops, title) == {
        "local_backend": FAST,  # the process's default
        "executor-memory": "3g",  # the batch's, over the default
        "driver-memory": "2g",  # the row's, over the batch's and the default
        "executor-cores": 4,
    }
    assert row_ops.row()["status"] == "finished"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"executor-memroy": "4g"}, "job option 'executor-memroy' is not one the backend knows"),
        ({"executor-cores": 16}, "job option 'executor-cores': 16 is more than the maximum 8"),
        ({"executor-memory": "4 GB"}, "job option 'executor-memory': '4 GB' does not match the pattern"),
        ({"log_level": "verbose"}, "job option 'log_level': 'verbose' is not one of"),
    ],
)
def test_an_option_the_backend_refuses_fails_the_row_before_any_job_exists(
    row_ops: RowOps, options: dict[str, Any], expected: str
):
    [title] = row_ops.table(job_options=[json.dumps(options)])

    with pytest.raises(Exception, match="no job was created for this row"):
        run_row(row_ops.operator())

    row = row_ops.row()
    assert row["status"] == "start_failed" and row["id"] is None
    assert row["error_message"].startswith(f"row 0 of job table {row_ops.db.table!r}: {expected}")
    assert "GET /processing_parameters of backend 'local'" in row["error_message"]
    assert row_ops.jobs(title) == []


def test_a_row_whose_job_options_are_no_json_object_fails_naming_the_field(row_ops: RowOps):
    [title] = row_ops.table(job_options=["[1, 2]"])

    with pytest.raises(Exception, match="field 'job_options' must be a JSON object"):
        run_row(row_ops.operator())

    assert row_ops.row()["status"] == "start_failed"
    assert row_ops.jobs(title) == []


def test_batch_job_options_must_be_a_json_object_when_the_operator_is_built(row_ops: RowOps):
    with pytest.raises(ValueError, match="job_options must be a JSON object"):
        row_ops.operator(job_options=["executor-memory", "4g"])


def test_a_job_created_through_connection_provider_gets_the_options_too(row_ops: RowOps):
    [title] = row_ops.table(job_options=[{"executor-cores": 5}])

    def start_job(row: pd.Series, connection_provider: Any, provider: str, **kwargs: Any) -> openeo.BatchJob:
        return connection_provider(provider).create_job(
            ADD_GRAPH, title=str(row["title"]), job_options={"local_backend": FAST}
        )

    run_row(row_ops.operator(start_job=start_job, job_options={"executor-memory": "1g"}))

    assert backend_options(row_ops, title) == {"local_backend": FAST, "executor-memory": "1g", "executor-cores": 5}
