"""OpenEOJobTrigger against the real local openEO backend (HTTP server, real async hook, real job lifecycles)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import openeo
import pytest

from airflow_provider_openeo.hooks.openeo import OpenEOAsyncHook, OpenEOHook
from airflow_provider_openeo.triggers import _end_forecast, _status_poller
from airflow_provider_openeo.triggers.openeo import OpenEOJobEvent, OpenEOJobEventStatus, OpenEOJobTrigger
from local_backend.launcher import OTHER_BASIC_PASSWORD, OTHER_BASIC_USER
from tests.fixtures.local_backend import backend_connection

CONN_ID = "openeo_trigger_test"
ADD = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}


@pytest.fixture
def connection(openeo_backend, monkeypatch) -> openeo.Connection:
    """A user of its own, so the listing holds only this module's jobs whatever other tests created."""
    conn = backend_connection(openeo_backend, "basic")
    conn.update(login=OTHER_BASIC_USER, password=OTHER_BASIC_PASSWORD)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return OpenEOHook(CONN_ID).get_conn()


def start_job(connection: openeo.Connection, *, queue: float = 0.2, run: float = 0.6, fail: bool = False) -> str:
    options = {"local_backend": {"queue_seconds": queue, "run_seconds": run, "fail": fail}}
    job = connection.create_job(ADD, title="trigger test", job_options=options)
    job.start()
    return job.job_id


async def wait(trigger: OpenEOJobTrigger) -> OpenEOJobEvent:
    event = await asyncio.wait_for(anext(trigger.run()), 60)
    return OpenEOJobEvent.from_dict(event.payload)


def test_real_jobs_reach_finished_and_error(connection, openeo_backend):
    ok, bad = start_job(connection), start_job(connection, fail=True)

    async def both() -> list[OpenEOJobEvent]:
        return await asyncio.gather(*(wait(OpenEOJobTrigger(CONN_ID, j, poll_interval=0.2)) for j in (ok, bad)))

    finished, failed = asyncio.run(both())
    assert finished.status is OpenEOJobEventStatus.FINISHED and finished.job["id"] == ok
    assert finished.running_since is not None
    assert failed.status is OpenEOJobEventStatus.ERROR and failed.backend_status == "error"
    assert openeo_backend.stats().get("DELETE /jobs/{job_id}/results", 0) == 0  # nothing was canceled
    for event in (finished, failed):  # events are stored in Airflow's database: never a credential
        assert OTHER_BASIC_PASSWORD not in json.dumps(event.to_dict())


def test_many_triggers_share_get_jobs_listings(connection, openeo_backend):
    n = 25
    job_ids = [start_job(connection, queue=0.3, run=1.0) for _ in range(n)]
    openeo_backend.reset_stats()

    async def all_of_them() -> tuple[list[OpenEOJobEvent], int]:
        events = await asyncio.gather(*(wait(OpenEOJobTrigger(CONN_ID, j, poll_interval=0.5)) for j in job_ids))
        return events, len(_status_poller.active_pollers())

    events, pollers_left = asyncio.run(all_of_them())
    assert [e.status for e in events] == [OpenEOJobEventStatus.FINISHED] * n
    assert pollers_left == 0
    stats = openeo_backend.stats()
    # Jobs finish ~1.3-2.3 s after start (they were started one after the other): a handful of listings.
    assert 1 <= stats["GET /jobs"] <= 8, stats
    assert stats.get("GET /jobs/{job_id}", 0) == 0, stats  # never one request per job
    print(f"\n{n} jobs: {stats['GET /jobs']} GET /jobs listings, 0 per-job GETs")


def test_reported_progress_brings_the_listing_forward_to_the_end_of_the_job(connection, openeo_backend):
    # Regular listings at ~0, 4, 8 and 12 s; the job ends ~9.2 s in. The backend's progress at 4 and 8 s forecasts
    # that end, so one listing goes out right after it instead of at 12 s.
    job_id = start_job(connection, queue=0.2, run=9.0)
    openeo_backend.reset_stats()
    began = time.monotonic()
    event = asyncio.run(wait(OpenEOJobTrigger(CONN_ID, job_id, poll_interval=4.0)))
    noticed_after = time.monotonic() - began
    assert event.status is OpenEOJobEventStatus.FINISHED
    assert noticed_after < 11.0, f"the end was noticed {noticed_after:.1f} s in, at the regular listing"
    stats = openeo_backend.stats()  # one job: the hook reads it by id rather than listing all jobs
    assert stats.get("GET /jobs", 0) + stats.get("GET /jobs/{job_id}", 0) <= 4, stats  # as many as regular ones


def test_without_progress_finished_jobs_run_times_bring_the_listing_forward(connection, openeo_backend):
    # A geopyspark-like backend reports no progress. Two jobs of 6 s finish first; the third, started while the
    # poller still holds a job (so the same poller times it), is then due ~6 s after it went running: one listing
    # right after that, not the regular one at 12 s.
    openeo_backend.configure(profile="geopyspark")
    first = [start_job(connection, queue=0.2, run=6.0) for _ in range(2)]

    async def batch() -> tuple[list[OpenEOJobEvent], float]:
        waits = [asyncio.ensure_future(wait(OpenEOJobTrigger(CONN_ID, j, poll_interval=6.0))) for j in first]
        done = await asyncio.gather(*waits)
        job_id = start_job(connection, queue=0.2, run=6.0)
        began = time.monotonic()
        event = await wait(OpenEOJobTrigger(CONN_ID, job_id, poll_interval=6.0))
        return [*done, event], time.monotonic() - began

    events, noticed_after = asyncio.run(batch())
    assert [e.status for e in events] == [OpenEOJobEventStatus.FINISHED] * 3
    assert "progress" not in events[-1].job or events[-1].job["progress"] in (None, 100)
    assert _end_forecast.run_times_of(CONN_ID).typical() is not None
    assert noticed_after < 9.0, f"the end was noticed {noticed_after:.1f} s in, at a regular listing"


def test_5xx_and_429_during_polling_do_not_end_the_wait(connection, openeo_backend, monkeypatch):
    # The real hook, with short internal retries so failures reach the poller's own backoff quickly.
    monkeypatch.setattr(
        OpenEOJobTrigger, "hook_factory", lambda conn_id: OpenEOAsyncHook(conn_id, max_attempts=2, backoff=0.05)
    )
    job_ids = [start_job(connection, queue=0.2, run=0.5) for _ in range(2)]
    openeo_backend.configure(
        faults=[
            {"endpoints": ["GET /jobs"], "error_rate": 1.0, "error_status": 503, "times": 3},
            {"endpoints": ["GET /jobs"], "rate_limit_rate": 1.0, "retry_after": 1, "times": 2},
        ]
    )

    async def both() -> list[OpenEOJobEvent]:
        return await asyncio.gather(*(wait(OpenEOJobTrigger(CONN_ID, j, poll_interval=0.2)) for j in job_ids))

    events = asyncio.run(both())
    assert [e.status for e in events] == [OpenEOJobEventStatus.FINISHED] * 2
    faults = openeo_backend.fault_stats()
    assert faults.get("error") == 3 and faults.get("rate_limit") == 2, faults


def test_deleted_job_ends_with_not_found(connection):
    """Confirmed at the second poll: a complete listing without the job shows the user's other job."""
    start_job(connection, queue=30)
    job_id = start_job(connection, queue=30)
    connection.job(job_id).delete()
    event = asyncio.run(wait(OpenEOJobTrigger(CONN_ID, job_id, poll_interval=0.2)))
    assert event.status is OpenEOJobEventStatus.NOT_FOUND and job_id in event.message


def test_on_kill_cancels_the_real_job(connection, openeo_backend):
    job_id = start_job(connection, queue=0.1, run=30)

    async def kill_while_running() -> None:
        trigger = OpenEOJobTrigger(CONN_ID, job_id, poll_interval=0.2)
        task = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.sleep(0.6)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await trigger.cleanup()
        assert connection.job(job_id).status() == "running"  # cleanup never cancels
        await trigger.on_kill()

    asyncio.run(kill_while_running())
    assert connection.job(job_id).status() == "canceled"
    assert openeo_backend.stats()["DELETE /jobs/{job_id}/results"] == 1


def test_a_job_answering_503_delays_no_other_jobs_event(connection, openeo_backend, monkeypatch):
    """Two jobs' reads answer 503 throughout; the two healthy jobs' ends still arrive within one poll interval.

    Reads one by one (as when the watched jobs lie beyond the listing's pages); the hook's default retries stay on.
    """
    one_by_one = lambda conn_id: OpenEOAsyncHook(conn_id, listing_min_jobs=10**6)  # noqa: E731
    monkeypatch.setattr(OpenEOJobTrigger, "hook_factory", one_by_one)
    interval = 1.0
    healthy = [start_job(connection, queue=0.2, run=2.5) for _ in range(2)]
    failing = [start_job(connection, queue=0.2, run=30) for _ in range(2)]
    pattern = "^/jobs/(" + "|".join(re.escape(j) for j in failing) + ")$"
    openeo_backend.configure(faults=[{"methods": ["GET"], "path": pattern, "error_rate": 1.0, "error_status": 503}])

    async def watch() -> tuple[dict[str, float], list[OpenEOJobTrigger]]:
        arrived: dict[str, float] = {}

        async def one(job_id: str) -> None:
            event = await wait(OpenEOJobTrigger(CONN_ID, job_id, poll_interval=interval))
            assert event.status is OpenEOJobEventStatus.FINISHED, event.message
            arrived[job_id] = time.time()

        stuck = [OpenEOJobTrigger(CONN_ID, j, poll_interval=interval) for j in failing]
        waits = [asyncio.ensure_future(anext(t.run())) for t in stuck]
        await asyncio.gather(*(one(j) for j in healthy))
        assert not any(w.done() for w in waits), "a 503 never ends a wait"
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        for trigger in stuck:
            await trigger.cleanup()
        return arrived, stuck

    arrived, _ = asyncio.run(watch())
    ends = {job["id"]: job["times"]["finished"] for job in openeo_backend.jobs() if job["id"] in healthy}
    delays = {job_id: arrived[job_id] - ends[job_id] for job_id in healthy}
    # Within one interval of the end (plus scheduling slack on a busy machine); before, the failing reads' retries
    # and the whole read's backoff held every event back by several intervals.
    assert all(delay <= interval + 0.75 for delay in delays.values()), delays
    print(f"\nhealthy jobs' events, seconds after their end, beside two jobs answering 503: {sorted(delays.values())}")
    assert openeo_backend.fault_stats().get("error", 0) >= 4
    openeo_backend.reset_config()
    assert connection.job(failing[0]).status() == "running"  # nothing was canceled
