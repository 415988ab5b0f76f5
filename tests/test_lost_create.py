"""What ``recording_created_jobs`` learns from the answers its connection's HTTP session receives."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
import requests
from requests.hooks import dispatch_hook

from airflow_provider_openeo import _lost_create
from airflow_provider_openeo._lost_create import LostCreate, find_orphan, reaches_back_before, recording_created_jobs

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


# -- finding the orphan in any listing order ------------------------------------------------------------------------


class ListingConnection:
    """The part of ``openeo.Connection`` the orphan search uses, over pages of ``page_size`` jobs linked by ``next``."""

    root_url = URL

    def __init__(self, jobs: list[dict], page_size: int) -> None:
        self.pages = [jobs[i : i + page_size] for i in range(0, len(jobs), page_size)] or [[]]
        self.graphs = {job["id"]: job.pop("graph", None) for job in jobs}
        self.pages_read = 0

    def get(self, path: str, params: dict | None = None, expected_status: int = 200) -> SimpleNamespace:
        index = int(path.rsplit("page=", 1)[1]) if "page=" in path else 0
        self.pages_read += 1
        body: dict = {"jobs": self.pages[index], "links": []}
        if index + 1 < len(self.pages):
            body["links"] = [{"rel": "next", "href": f"{URL}/jobs?limit={len(self.pages[0])}&page={index + 1}"}]
        return SimpleNamespace(json=lambda: body)

    def job(self, job_id: str) -> SimpleNamespace:
        return SimpleNamespace(describe=lambda: {"id": job_id, "process": {"process_graph": self.graphs[job_id]}})


GRAPH = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}
ASKED_AT = 1_800_000_000.0


def _history(n: int) -> list[dict]:
    """``n`` old jobs (a day before the create), finished, as a long-lived account's listing holds them."""
    return [
        {"id": f"old-{i}", "status": "finished", "title": "t", "created": f"2027-01-14T00:{i // 60:02d}:{i % 60:02d}Z"}
        for i in range(n)
    ]


def _orphan() -> dict:
    return {"id": "orphan", "status": "created", "title": "t", "created": "2027-01-15T08:00:05Z", "graph": GRAPH}


def _find(connection: ListingConnection) -> str | None:
    lost = LostCreate("HTTP 502", json.dumps({"title": "t", "process": {"process_graph": GRAPH}}))
    return find_orphan(connection, lost, ASKED_AT, held_ids=set, label="row 0")


@pytest.mark.parametrize("order", ["oldest-first", "shuffled"])
def test_the_orphan_is_found_beyond_the_first_page_in_any_order(monkeypatch, order):
    monkeypatch.setattr(_lost_create, "ORPHAN_SEARCH_LIMIT", 10)
    jobs = [*_history(45), _orphan()]
    if order == "shuffled":
        random.Random(3).shuffle(jobs)
    connection = ListingConnection(jobs, page_size=10)
    assert _find(connection) == "orphan"


def test_a_newest_first_listing_stops_at_the_first_page_older_than_the_create(monkeypatch):
    monkeypatch.setattr(_lost_create, "ORPHAN_SEARCH_LIMIT", 10)
    connection = ListingConnection([_orphan(), *reversed(_history(95))], page_size=10)
    assert _find(connection) == "orphan" and connection.pages_read == 1


def test_the_search_is_bounded(monkeypatch):
    monkeypatch.setattr(_lost_create, "ORPHAN_SEARCH_LIMIT", 10)
    monkeypatch.setattr(_lost_create, "ORPHAN_SEARCH_PAGES", 3)
    connection = ListingConnection([*_history(200), _orphan()], page_size=10)
    assert _find(connection) is None and connection.pages_read == 3


def test_reaches_back_before_only_concludes_from_a_newest_first_page():
    newest_first = [{"created": "2027-01-15T08:00:00Z"}, {"created": "2027-01-14T00:00:00Z"}]
    assert reaches_back_before(newest_first, since=ASKED_AT - 60)
    assert not reaches_back_before(list(reversed(newest_first)), since=ASKED_AT - 60)
    assert not reaches_back_before(newest_first[:1], since=ASKED_AT - 60)  # still newer than the create
    assert not reaches_back_before([], since=ASKED_AT)
