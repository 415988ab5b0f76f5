"""What one status poll of 5 watched jobs costs per production profile, measured on the real local backend.

Each test logs in as a user of its own with 2,000 old jobs in its history (``seed_history``), starts 5 long jobs and
polls them through one ``OpenEOAsyncHook`` (as the triggerer's status poller does: one hook per connection, kept
across polls), counting the status requests (``GET /jobs`` pages, ``GET /jobs/{id}``) and their body bytes per poll
on the server. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from dataclasses import dataclass

import openeo
import pytest

from airflow_provider_openeo.hooks._openeo.listing_pages import MAX_SEARCH_PAGES
from airflow_provider_openeo.hooks._openeo.read_strategy import MIN_PROBE_GAP
from airflow_provider_openeo.hooks.openeo import OpenEOAsyncHook
from local_backend.launcher import LocalBackend
from tests.fixtures.local_backend import backend_connection

CONN_ID = "openeo_read_strategy"
WATCHED = 5
HISTORY = 2_000
LISTING, JOB = "GET /jobs", "GET /jobs/{job_id}"
ADD = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}


@dataclass(frozen=True)
class Poll:
    pages: int
    job_reads: int
    bytes: int

    @property
    def requests(self) -> int:
        return self.pages + self.job_reads

    def __str__(self) -> str:
        return f"{self.requests}r/{self.bytes / 1000:.1f}KB"


@pytest.fixture
def user(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user of its own (any vowel-initial name takes ``<name>123``), its connection, and its old jobs."""
    name = f"u{uuid.uuid4().hex[:10]}"
    conn = backend_connection(openeo_backend, "basic")
    conn.update(login=name, password=f"{name}123")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return name


def _watched_jobs(backend: LocalBackend, user: str) -> list[str]:
    backend.seed_history(HISTORY, user=user, seed=1)
    connection = openeo.connect(backend.url).authenticate_basic(user, f"{user}123")
    options = {"local_backend": {"queue_seconds": 0, "run_seconds": 600}}
    jobs = [connection.create_job(ADD, title=f"watched {i}", job_options=options) for i in range(WATCHED)]
    for job in jobs:
        job.start()
    return [job.job_id for job in jobs]


async def _polls(hook: OpenEOAsyncHook, backend: LocalBackend, job_ids: list[str], count: int) -> list[Poll]:
    polls = []
    for _ in range(count):
        backend.reset_stats()
        reads = await hook.read_jobs(job_ids, each_attempts=1)
        assert set(reads.jobs) == set(job_ids) and not reads.errors and not reads.not_found
        assert {job["status"] for job in reads.jobs.values()} == {"running"}
        stats, sent = backend.stats(), backend.bytes_sent()
        polls.append(Poll(stats.get(LISTING, 0), stats.get(JOB, 0), sum(sent.get(key, 0) for key in (LISTING, JOB))))
    return polls


def _measure(backend: LocalBackend, job_ids: list[str], count: int) -> list[Poll]:
    async def run() -> list[Poll]:
        async with OpenEOAsyncHook(CONN_ID) as hook:
            return await _polls(hook, backend, job_ids, count)

    return asyncio.run(run())


def _report(label: str, polls: list[Poll]) -> None:
    later = polls[1:]
    mean_requests = sum(p.requests for p in later) / len(later)
    mean_bytes = sum(p.bytes for p in later) / len(later)
    print(
        f"\n{label}: {WATCHED} watched jobs, {HISTORY} old jobs; per poll: {' '.join(map(str, polls))}; "
        f"after the first poll: {mean_requests:.2f} requests, {mean_bytes / 1000:.1f} KB on average"
    )


def test_newest_first_reads_every_watched_job_in_one_listing_page(openeo_backend: LocalBackend, user: str) -> None:
    job_ids = _watched_jobs(openeo_backend, user)
    polls = _measure(openeo_backend, job_ids, 6)
    _report("default (newest first)", polls)
    assert all((p.pages, p.job_reads) == (1, 0) for p in polls), polls


def test_oldest_first_behind_a_long_history_finds_the_watched_page_once_then_reads_only_it(
    openeo_backend: LocalBackend, user: str
) -> None:
    """2,000 old jobs in pages of 100, numbered from 0: the watched jobs are on page 20. The first poll searches for
    the last page (4, 16, 64 empty, 40 empty, 28 empty, 22 empty, 19, 20 last: 8 pages after page 0); every later
    poll reads page 20 alone, a few hundred bytes, instead of 5 job reads."""
    openeo_backend.configure(profile="geopyspark")
    job_ids = _watched_jobs(openeo_backend, user)
    polls = _measure(openeo_backend, job_ids, 2 * MIN_PROBE_GAP + 2)
    _report("geopyspark (oldest first, ?page paging)", polls)
    first, later = polls[0], polls[1:]
    assert (first.pages, first.job_reads) == (9, 0), "page 0, then the search for the last page"
    assert all((p.pages, p.job_reads) == (1, 0) for p in later), later
    assert max(p.bytes for p in later) < 2_000


def test_an_unordered_listing_costs_no_more_than_a_read_per_job(openeo_backend: LocalBackend, user: str) -> None:
    """geopyspark's order is not defined: watched jobs land anywhere among the 2,000 (a seeded hash order)."""
    openeo_backend.configure(profile="geopyspark", listing_order="unordered", seed=7)
    job_ids = _watched_jobs(openeo_backend, user)
    polls = _measure(openeo_backend, job_ids, MIN_PROBE_GAP + 2)
    _report("geopyspark (unordered)", polls)
    first, later = polls[0], polls[1:]
    assert first.pages <= 1 + MAX_SEARCH_PAGES, "one bounded search for the last page, on the first poll only"
    assert all(p.requests <= WATCHED + 1 for p in later), polls
    assert sum(p.requests for p in polls[1:]) / len(polls[1:]) <= WATCHED * 1.1


def test_a_listing_that_ignores_limit_is_given_up_for_job_reads(openeo_backend: LocalBackend, user: str) -> None:
    openeo_backend.configure(profile="fastapi")
    job_ids = _watched_jobs(openeo_backend, user)
    polls = _measure(openeo_backend, job_ids, 8)
    _report("fastapi (limit ignored, graphs listed)", polls)
    whole_history = polls[0].bytes
    assert polls[0].pages == 1 and whole_history > 500_000, "the first look reads the whole history once"
    assert all(p.pages == 0 and p.job_reads == WATCHED for p in polls[1:]), polls
    assert max(p.bytes for p in polls[1:]) < whole_history / 100


def test_a_listing_without_next_links_follows_its_order_both_ways(openeo_backend: LocalBackend, user: str) -> None:
    """The aggregator cuts at ``limit`` without a next link: newest first it finds the watched jobs on its only
    page; oldest first (as if the order changed) it cannot, and the hook goes job by job until a look again finds
    them on the first page."""
    openeo_backend.configure(profile="aggregator")
    job_ids = _watched_jobs(openeo_backend, user)

    async def run() -> tuple[list[Poll], list[Poll], list[Poll]]:
        async with OpenEOAsyncHook(CONN_ID) as hook:
            newest = await _polls(hook, openeo_backend, job_ids, 4)
            openeo_backend.configure(listing_order="oldest_first")
            oldest = await _polls(hook, openeo_backend, job_ids, 4)
            openeo_backend.configure(listing_order="newest_first")
            back = await _polls(hook, openeo_backend, job_ids, MIN_PROBE_GAP + 3)
            return newest, oldest, back

    newest, oldest, back = asyncio.run(run())
    for label, polls in (("newest first", newest), ("then oldest first", oldest), ("then newest first", back)):
        _report(f"aggregator ({label}, no next links)", polls)
    assert all((p.pages, p.job_reads) == (1, 0) for p in newest), newest
    assert (oldest[0].pages, oldest[0].job_reads) == (1, WATCHED), "the cut page no longer shows them"
    assert all((p.pages, p.job_reads) == (0, WATCHED) for p in oldest[1:]), oldest
    switched = next(i for i, p in enumerate(back) if p.pages)
    assert switched <= MIN_PROBE_GAP, "a look again within the gap"
    assert all((p.pages, p.job_reads) == (1, 0) for p in back[switched:]), back


def test_the_triggerer_remembers_a_backends_lesson_across_pollers(openeo_backend: LocalBackend, user: str) -> None:
    """Two waves of triggers on one connection, each in its own poller (the first stops when its jobs end): the
    first searches for the page its jobs are on (oldest first, behind 2,000 old jobs: page 20), the second reads
    that page at once, without a search, and no job one by one."""
    from airflow_provider_openeo.hooks._openeo import read_strategy as _read_strategy
    from airflow_provider_openeo.triggers.openeo import OpenEOJobEvent, OpenEOJobEventStatus, OpenEOJobTrigger

    openeo_backend.configure(profile="geopyspark")
    openeo_backend.seed_history(HISTORY, user=user, seed=1)
    connection = openeo.connect(openeo_backend.url).authenticate_basic(user, f"{user}123")
    # No look again within this test, so the count below is the lesson alone.
    strategy = _read_strategy._STRATEGIES[CONN_ID] = _read_strategy.ReadStrategy(min_probe_gap=1000)

    poll_interval = 0.3
    seconds: list[float] = []

    def wave() -> dict[str, int]:
        options = {"local_backend": {"queue_seconds": 0, "run_seconds": 1.0}}
        jobs = [connection.create_job(ADD, title="wave", job_options=options) for _ in range(2)]
        for job in jobs:
            job.start()
        openeo_backend.reset_stats()
        started = time.monotonic()

        async def wait_all() -> list[OpenEOJobEvent]:
            triggers = [OpenEOJobTrigger(CONN_ID, job.job_id, poll_interval=poll_interval) for job in jobs]
            events = await asyncio.gather(*(asyncio.wait_for(anext(t.run()), 60) for t in triggers))
            return [OpenEOJobEvent.from_dict(event.payload) for event in events]

        assert {e.status for e in asyncio.run(wait_all())} == {OpenEOJobEventStatus.FINISHED}
        seconds.append(time.monotonic() - started)
        return openeo_backend.stats()

    first, second = wave(), wave()
    print(f"\ngeopyspark, two waves of 2 triggers: first {first}, second {second}, seconds {seconds}")
    search = 9  # page 0, then 4, 16, 64, 40, 28, 22 (empty), 19, 20 (the last)
    assert first.get(LISTING, 0) >= search and first.get(JOB, 0) == 0, "the first wave's poller searches once"
    # The second wave polls as often as its own duration allows (a loaded machine stretches it), plus the one early
    # read the end forecast may add (the first wave's run times): one page each. A search would cost 9 pages more.
    polls = math.floor(seconds[1] / poll_interval) + 2
    assert 1 <= second.get(LISTING, 0) <= polls and second.get(JOB, 0) == 0, (
        f"the second starts from the lesson: one page per poll ({polls} polls at most in {seconds[1]:.1f} s)"
    )
    assert second.get(LISTING, 0) < first[LISTING], "and searches no more"
    assert strategy.resume_url is not None and strategy.resume_url.endswith("page=20")
    assert strategy.first_page is not None and strategy.first_page.found == 2
