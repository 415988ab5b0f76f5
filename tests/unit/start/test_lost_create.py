"""What ``recording_created_jobs`` learns from the answers its connection's HTTP session receives."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
import requests
from requests.hooks import dispatch_hook

from airflow_provider_openeo.hooks._openeo.listing_pages import MAX_SEARCH_PAGES
from airflow_provider_openeo.start import _lost_create
from airflow_provider_openeo.start._lost_create import (
    LostCreate,
    find_orphan,
    reaches_back_before,
    recording_created_jobs,
)

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
    """The part of ``openeo.Connection`` the orphan search uses, over pages of ``page_size`` jobs linked by ``next``:
    numbered from 0 (``?page=``, geopyspark's) or, with ``cursor``, by an opaque cursor (openeo-driver's)."""

    root_url = URL

    def __init__(self, jobs: list[dict], page_size: int, *, cursor: bool = False) -> None:
        self.pages = [jobs[i : i + page_size] for i in range(0, len(jobs), page_size)] or [[]]
        self.graphs = {job["id"]: job.pop("graph", None) for job in jobs}
        self.key = "after=c" if cursor else "page="
        self.pages_read = 0

    def get(self, path: str, params: dict | None = None, expected_status: int = 200) -> SimpleNamespace:
        index = int(path.rsplit(self.key, 1)[1]) if self.key in path else 0
        self.pages_read += 1
        body: dict = {"jobs": self.pages[index] if index < len(self.pages) else [], "links": []}
        if index + 1 < len(self.pages):
            body["links"] = [{"rel": "next", "href": f"{URL}/jobs?limit={len(self.pages[0])}&{self.key}{index + 1}"}]
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


def test_an_oldest_first_listing_numbered_by_page_is_read_from_its_last_page(monkeypatch):
    """200 old jobs, 21 pages of 10, the orphan alone on page 20, 3 pages allowed: page 0, the search for the last page
    (4, 16, 64 empty, 40 empty, 28 empty, 22 empty, 19, 20 last), then pages 20 and 19 back (19 is older)."""
    monkeypatch.setattr(_lost_create, "ORPHAN_SEARCH_LIMIT", 10)
    monkeypatch.setattr(_lost_create, "ORPHAN_SEARCH_PAGES", 3)
    connection = ListingConnection([*_history(200), _orphan()], page_size=10)
    assert _find(connection) == "orphan"
    assert connection.pages_read == 1 + 8 + 2 <= 1 + MAX_SEARCH_PAGES + 3


@pytest.mark.parametrize("listing", ["cursor", "shuffled"])
def test_where_no_order_leads_to_the_end_the_search_is_bounded(monkeypatch, listing):
    """Behind a cursor the last page is reached only through every page, and in no order a new job may be
    anywhere: the search reads at most its pages and adopts nothing it did not see."""
    monkeypatch.setattr(_lost_create, "ORPHAN_SEARCH_LIMIT", 10)
    monkeypatch.setattr(_lost_create, "ORPHAN_SEARCH_PAGES", 3)
    jobs = [*_history(200), _orphan()]
    if listing == "shuffled":
        random.Random(5).shuffle(jobs)
        jobs.remove(next(job for job in jobs if job["id"] == "orphan"))
        jobs.append(_orphan())  # last, past the pages the search may read
    connection = ListingConnection(jobs, page_size=10, cursor=listing == "cursor")
    assert _find(connection) is None and connection.pages_read == 3


def test_reaches_back_before_only_concludes_from_a_newest_first_page():
    newest_first = [{"created": "2027-01-15T08:00:00Z"}, {"created": "2027-01-14T00:00:00Z"}]
    assert reaches_back_before(newest_first, since=ASKED_AT - 60)
    assert not reaches_back_before(list(reversed(newest_first)), since=ASKED_AT - 60)
    assert not reaches_back_before(newest_first[:1], since=ASKED_AT - 60)  # still newer than the create
    assert not reaches_back_before([], since=ASKED_AT)
