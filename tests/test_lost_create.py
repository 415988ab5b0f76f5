"""What ``recording_created_jobs`` learns from the answers its connection's HTTP session receives."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import requests
from requests.hooks import dispatch_hook

from airflow_provider_openeo._lost_create import recording_created_jobs

URL = "https://openeo.example/openeo/1.2"


def _answer(session: requests.Session, method: str, path: str, status: int, headers: dict[str, str] | None = None):
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response.request = requests.Request(method, URL + path).prepare()
    dispatch_hook("response", session.hooks, response)


@pytest.mark.parametrize("status", [200, 202, 204])
def test_a_start_answered_with_any_2xx_is_noted_as_started(status: int):
    connection = SimpleNamespace(session=requests.Session())
    with recording_created_jobs(connection, on_created=lambda job_id: None) as log:
        _answer(connection.session, "POST", "/jobs/j-1/results", status)
    assert log.started == {"j-1"}


@pytest.mark.parametrize("status", [302, 400, 409, 429, 500, 503])
def test_a_start_the_backend_did_not_accept_is_not_noted(status: int):
    connection = SimpleNamespace(session=requests.Session())
    with recording_created_jobs(connection, on_created=lambda job_id: None) as log:
        _answer(connection.session, "POST", "/jobs/j-1/results", status)
        _answer(connection.session, "GET", "/jobs/j-2/results", 200)  # reading results is no start
    assert log.started == set()


def test_a_create_is_reported_at_once_and_not_taken_for_a_start():
    connection = SimpleNamespace(session=requests.Session())
    reported: list[str] = []
    with recording_created_jobs(connection, on_created=reported.append) as log:
        _answer(connection.session, "POST", "/jobs", 201, {"OpenEO-Identifier": "j-3"})
    assert reported == ["j-3"] and log.ids == ["j-3"] and log.started == set()
    assert connection.session.hooks["response"] == [], "the listener is removed on exit"
