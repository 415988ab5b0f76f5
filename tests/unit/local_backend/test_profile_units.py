"""In-process checks of the profiles' standard-library parts: listing order and paging, upstreams, history."""

from __future__ import annotations

import re
import time

import pytest

from local_backend.federation import Federation, UpstreamUnavailable
from local_backend.history import HistoryError, history_records
from local_backend.profiles import (
    IGNORE,
    NEWEST_FIRST,
    OLDEST_FIRST,
    PAGES,
    TRUNCATE,
    UNORDERED,
    ListingError,
    order_jobs,
    page_of,
)
from local_backend.settings import job_path, validate_settings
from local_backend.store import DONE

JOBS = [(float(i), f"j-{i}") for i in range(10)]


def _key(job: tuple[float, str]) -> tuple[float, str]:
    return job


def test_orders() -> None:
    assert order_jobs(JOBS, OLDEST_FIRST, _key, None) == JOBS
    assert order_jobs(JOBS, NEWEST_FIRST, _key, None) == JOBS[::-1]
    shuffled = order_jobs(JOBS, UNORDERED, _key, 1)
    assert shuffled == order_jobs(list(reversed(JOBS)), UNORDERED, _key, 1)  # stable, input order irrelevant
    assert sorted(shuffled) == JOBS and shuffled not in (JOBS, JOBS[::-1])
    assert order_jobs(JOBS, UNORDERED, _key, 2) != shuffled  # the seed picks the order


def test_paging_styles() -> None:
    assert page_of(JOBS, PAGES, 4, {}) == (JOBS[:4], {"limit": 4, "page": 1})
    assert page_of(JOBS, PAGES, 4, {"page": "2"}) == (JOBS[8:], None)
    assert page_of(JOBS, PAGES, None, {"page": "2"}) == (JOBS, None)
    assert page_of(JOBS, PAGES, 5, {"page": "1"}) == (JOBS[5:], None)  # exactly full: no empty last page
    assert page_of(JOBS, TRUNCATE, 3, {}) == (JOBS[:3], None)
    assert page_of(JOBS, IGNORE, 3, {}) == (JOBS, None)
    for bad in ("x", "-1"):
        with pytest.raises(ListingError, match="page"):
            page_of(JOBS, PAGES, 3, {"page": bad})


def test_round_robin_skips_upstreams_in_an_outage() -> None:
    settings = validate_settings({"profile": "aggregator", "upstreams": ["a", "b", "c"]})
    federation = Federation()
    assert [federation.job_id("j-1", settings)[0] for _ in range(4)] == ["a", "b", "c", "a"]
    now = time.time()
    federation.start_outage("b", 10, now=now)
    assert federation.missing(settings, now + 1) == ["b"]
    assert [federation.job_id("j-1", settings, now + 1)[0] for _ in range(3)] == ["c", "a", "c"]
    assert federation.hides("b-j-1", settings, now + 1) and not federation.hides("a-j-1", settings, now + 1)
    assert federation.missing(settings, now + 11) == []  # the window ended by itself
    pinned = validate_settings({"upstream_assignment": "b"}, base=settings)
    with pytest.raises(UpstreamUnavailable):
        federation.job_id("j-1", pinned, now + 1)
    # Outside the aggregator profile ids and listings are untouched.
    assert federation.job_id("j-1", validate_settings({})) == "j-1"
    assert federation.missing(validate_settings({}), now + 1) == []


def test_history_records_have_ended_long_ago() -> None:
    now = time.time()
    records = history_records({"count": 500, "max_age_days": 30, "seed": 3}, default_user="alice", job_id=str, now=now)
    assert len({r.id for r in records}) == 500
    assert {r.user_id for r in records} == {"alice"}
    assert all(now - 30 * 86400 <= r.created <= now - 7200 for r in records)
    statuses = [r.status(now) for r in records]
    assert set(statuses) <= DONE and statuses.count("finished") > 400
    for bad, field in [({"count": 0}, "count"), ({"count": 1, "max_age_days": 0}, "max_age_days"), ({"n": 1}, "n")]:
        with pytest.raises(HistoryError, match=field):
            history_records(bad, default_user="alice", job_id=str)


def test_job_path_selects_one_job() -> None:
    rule = re.compile(job_path("j-1.2"))
    assert rule.search("/jobs/j-1.2") and rule.search("/jobs/j-1.2/results/assets/x")
    assert not rule.search("/jobs/j-1x2") and not rule.search("/jobs/j-1.23")
    assert not re.search(job_path("j-1", subpaths=False), "/jobs/j-1/logs")
