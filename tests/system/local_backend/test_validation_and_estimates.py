"""What the budget and the dry run need of the local backend: a validation that can refuse, estimates, costs."""

from __future__ import annotations

import openeo
import pytest
from openeo.rest import OpenEoApiError

from local_backend.launcher import LocalBackend
from tests.system.local_backend.conftest import create_job, simple_cube, statuses_until_done


def validation_errors(conn: openeo.Connection, graph: dict) -> list[dict]:
    return conn.post("/validation", json={"process_graph": graph}, expected_status=200).json()["errors"]


def test_validation_refuses_an_unknown_process_and_accepts_a_known_graph(conn: openeo.Connection) -> None:
    assert conn.capabilities().supports_endpoint("/validation", "POST")
    assert validation_errors(conn, simple_cube(conn).flat_graph()) == []
    unknown = {"node": {"process_id": "no_such_process", "arguments": {}, "result": True}}
    [error] = validation_errors(conn, unknown)
    assert error["code"] == "ProcessUnsupported"


def test_validation_refuses_what_create_refuses(openeo_backend: LocalBackend, conn: openeo.Connection) -> None:
    openeo_backend.configure(reject_process_graphs="S2_FOOBAR")
    graph = simple_cube(conn).flat_graph()
    assert [e["code"] for e in validation_errors(conn, graph)] == ["ProcessGraphInvalid"]
    with pytest.raises(OpenEoApiError, match="reject_process_graphs"):
        create_job(conn)


def test_the_estimate_foretells_the_costs_and_the_budget_is_kept(conn: openeo.Connection) -> None:
    job = simple_cube(conn).create_job(
        title="estimated", additional={"budget": 4.5, "local_backend": {"queue_seconds": 0, "run_seconds": 0.4}}
    )
    assert job.estimate()["costs"] == 0.2
    job.start()
    assert statuses_until_done(job)[-1] == "finished"
    described = job.describe()
    assert (described["costs"], described["budget"]) == (0.2, 4.5)
