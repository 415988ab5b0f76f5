"""The job a lost ``POST /jobs`` created, found on the real local backend behind a production account's history.

Each test logs in as a user of its own with 2,000 old jobs (``seed_history``), has the backend create a job and
drop the connection before answering, and looks for the orphan as the start of a row does
(``_lost_create.find_orphan``), counting the listing pages the backend served.
"""

from __future__ import annotations

import json
import time
import uuid

import openeo
import pytest

from airflow_provider_openeo.hooks._openeo.listing_pages import MAX_SEARCH_PAGES
from airflow_provider_openeo.start._lost_create import ORPHAN_SEARCH_PAGES, find_orphan, lost_create_answer
from local_backend.launcher import LocalBackend

HISTORY = 2_000
ADD = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}


@pytest.mark.parametrize(
    ("settings", "found_it", "most_pages"),
    [
        # newest first (openeo-driver's cursor paging; the aggregator's, without next links): the first page reaches
        # back before the create
        ({}, True, 1),
        ({"profile": "aggregator"}, True, 1),
        # geopyspark: oldest first, pages numbered: page 0, the search for the last page, then back from it
        ({"profile": "geopyspark"}, True, 1 + MAX_SEARCH_PAGES + 2),
        # openeo-fastapi: limit ignored, every job on one page
        ({"profile": "fastapi"}, True, 1),
        # no order at all: the new job may be on any of the 21 pages; the search stops at its bound, and adopts only
        # a job it saw (None: it was on a page not read)
        ({"profile": "geopyspark", "listing_order": "unordered", "seed": 7}, None, ORPHAN_SEARCH_PAGES),
    ],
    ids=["newest-first", "aggregator", "geopyspark", "fastapi", "unordered"],
)
def test_the_orphan_of_a_lost_create_is_found_behind_a_long_history_where_the_order_allows(
    openeo_backend: LocalBackend, settings: dict, found_it: bool | None, most_pages: int
) -> None:
    if settings:
        openeo_backend.configure(**settings)
    user = f"u{uuid.uuid4().hex[:10]}"
    openeo_backend.seed_history(HISTORY, user=user, seed=1)
    connection = openeo.connect(openeo_backend.url).authenticate_basic(user, f"{user}123")
    title = f"lost create {uuid.uuid4().hex[:6]}"
    openeo_backend.configure(faults=[{"drop_rate": 1.0, "endpoints": ["POST /jobs"], "after": True, "times": 1}])
    asked_at = time.time()
    with pytest.raises(Exception) as raised:
        connection.create_job(ADD, title=title)
    lost = lost_create_answer(raised.value)
    assert lost is not None and json.loads(lost.body)["title"] == title, "the create reached the backend"
    openeo_backend.reset_stats()

    found = find_orphan(connection, lost, asked_at, held_ids=set, label="row 0")

    (created,) = [job for job in openeo_backend.jobs() if job["title"] == title]
    if found_it is None:
        assert found in (created["id"], None), "adopted only when seen; never a wrong job"
    else:
        assert found == created["id"]
    pages = openeo_backend.stats().get("GET /jobs", 0)
    assert pages <= most_pages, f"{pages} listing pages"
    assert HISTORY / 100 > ORPHAN_SEARCH_PAGES, "the history is longer than the pages read from the first one"
