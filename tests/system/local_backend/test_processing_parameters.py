"""The local backend declares its job options (``GET /processing_parameters``) and keeps those a job was given."""

from __future__ import annotations

import openeo

from local_backend.launcher import LocalBackend
from local_backend.parameters import CREATE_JOB_PARAMETERS
from tests.system.local_backend.conftest import simple_cube


def test_processing_parameters_are_served_without_login(openeo_backend: LocalBackend) -> None:
    response = openeo.connect(openeo_backend.url).get("/processing_parameters", expected_status=200)
    parameters = {p["name"]: p for p in response.json()["create_job_parameters"]}
    assert sorted(parameters) == sorted(p["name"] for p in CREATE_JOB_PARAMETERS)
    assert parameters["executor-memory"]["schema"] == {"type": "string", "pattern": r"^\d+[mg]$"}
    assert parameters["executor-cores"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 8}


def test_a_job_keeps_every_option_it_was_created_with(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    options = {"executor-memory": "4g", "anything": {"the": "backend keeps it"}, "local_backend": {"run_seconds": 0}}
    job = simple_cube(conn).create_job(title="kept options", job_options=options)

    [listed] = [j for j in openeo_backend.jobs() if j["id"] == job.job_id]
    assert listed["job_options"] == options
