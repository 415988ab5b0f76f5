"""The shared status poller: one job's failing read or 404 stays that job's affair (in-process fakes, fast)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from airflow_provider_openeo.exceptions import OpenEOApiRequestError, OpenEOTransientError
from airflow_provider_openeo.triggers import _status_poller
from airflow_provider_openeo.triggers.openeo import OpenEOJobEvent, OpenEOJobEventStatus, OpenEOJobTrigger
from airflow_provider_openeo.wait._job_gone import GonePolicy
from tests.unit.triggers._fakes import FakeBackend

FAST = 0.01


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    fake = FakeBackend()
    monkeypatch.setattr(OpenEOJobTrigger, "hook_factory", fake.hook)
    return fake


async def timed_event(trigger: OpenEOJobTrigger, began: float) -> tuple[OpenEOJobEvent, float]:
    event = await asyncio.wait_for(anext(trigger.run()), 10)
    json.dumps(event.payload)
    return OpenEOJobEvent.from_dict(event.payload), time.monotonic() - began


def make(job_id: str, **kwargs) -> OpenEOJobTrigger:
    kwargs.setdefault("poll_interval", FAST)
    return OpenEOJobTrigger("openeo_test", job_id, **kwargs)


def transient(status: int = 503, retry_after: float | None = None) -> OpenEOTransientError:
    return OpenEOTransientError(f"GET /jobs/x failed: [{status}]", http_status=status, retry_after=retry_after)


# -- one job's failing read ----------------------------------------------------------------------------------------


async def test_a_job_whose_reads_fail_backs_off_alone_while_the_others_arrive_every_interval(backend):
    interval = 0.05
    backend.add_job("ok", "running", "running", "finished")
    backend.add_job("flaky", "running", "finished")
    backend.job_errors["flaky"] = [transient() for _ in range(4)]
    began = time.monotonic()
    (ok, ok_at), (flaky, flaky_at) = await asyncio.gather(
        *(timed_event(make(job_id, poll_interval=interval), began) for job_id in ("ok", "flaky"))
    )
    assert ok.status is flaky.status is OpenEOJobEventStatus.FINISHED
    # Three reads of "ok", one interval apart: the flaky job's four failures did not hold them up (backing the
    # whole read off for them would have taken 1 + 2 + 4 + 8 intervals before its third read).
    assert ok_at < 8 * interval, ok_at
    # Backoff of the flaky job alone: 1x, 2x, 4x, 8x the interval after its failures, then two good reads.
    assert flaky_at >= (1 + 2 + 4 + 8) * interval
    reads_with_flaky = sum("flaky" in ids for ids in backend.listed_ids)
    assert reads_with_flaky == 6, backend.listed_ids  # 4 failures + running + finished: never read while backing off


async def test_a_job_read_refused_fails_only_that_wait(backend):
    backend.add_job("ok", "running", "finished")
    backend.add_job("refused", "running")
    backend.job_errors["refused"] = [OpenEOApiRequestError("GET /jobs/refused failed: [400] BadRequest")]
    began = time.monotonic()
    (ok, _), (refused, _) = await asyncio.gather(timed_event(make("ok"), began), timed_event(make("refused"), began))
    assert ok.status is OpenEOJobEventStatus.FINISHED
    assert refused.status is OpenEOJobEventStatus.FAILED and "400" in refused.message


async def test_a_per_job_retry_after_is_honoured_for_that_job(backend):
    backend.add_job("slow", "running", "finished")
    backend.job_errors["slow"] = [transient(429, retry_after=0.3)]
    began = time.monotonic()
    event, at = await timed_event(make("slow"), began)
    assert event.status is OpenEOJobEventStatus.FINISHED and at >= 0.3


def test_backoff_state_is_forgotten_with_the_last_subscriber(backend):
    async def run() -> None:
        backend.add_job("flaky", "running")
        backend.job_errors["flaky"] = [transient() for _ in range(100)]
        trigger = make("flaky")
        task = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.sleep(0.1)
        [poller] = _status_poller.active_pollers()
        assert "flaky" in poller._backoff
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await trigger.cleanup()
        assert poller._backoff == {} and _status_poller.active_pollers() == []

    asyncio.run(run())


# -- 404s ----------------------------------------------------------------------------------------------------------


async def test_a_404_outage_does_not_end_the_wait_and_is_logged_once(backend, capsys):
    """The job's GET answers 404 for a while, yet the listing shows it: it lives, and the wait goes on."""
    backend.add_job("other", "running")
    backend.add_job("j-1", "running", "running", "finished")
    backend.outage.add("j-1")

    async def outage_ends() -> None:
        await asyncio.sleep(0.2)
        backend.outage.clear()

    backend.policy = GonePolicy(polls=3, seconds=0.05)  # a window the outage outlasts: the listing keeps it alive
    began = time.monotonic()
    (event, _), _ = await asyncio.gather(timed_event(make("j-1"), began), outage_ends())
    assert event.status is OpenEOJobEventStatus.FINISHED
    assert backend.confirm_requests and all(ids == ["j-1"] for ids in backend.confirm_requests)
    logged = capsys.readouterr().out  # the trigger's logger writes there under pytest
    assert logged.count("not yet confirmed gone") == 1, logged
    assert "answers again" in logged


async def test_never_gone_while_federation_missing_names_the_jobs_upstream(backend):
    backend.policy = GonePolicy(polls=1, seconds=0)  # the window alone would confirm at the second poll
    backend.add_job("vito-2", "running")
    backend.add_job("eodc-1", "running")
    backend.outage.add("eodc-1")
    backend.unlisted.add("eodc-1")
    backend.federation_missing = ["eodc"]
    event, _ = await timed_event(make("eodc-1", deadline=time.time() + 0.3, cancel_on_kill=False), time.monotonic())
    assert event.status is OpenEOJobEventStatus.TIMEOUT, event.message
    assert len(backend.confirm_requests) >= 5


async def test_a_deleted_job_is_confirmed_by_a_complete_listing_at_the_next_poll(backend):
    backend.policy = GonePolicy(polls=1000, seconds=3600)
    backend.add_job("other", "running")
    event, _ = await timed_event(make("ghost"), time.monotonic())
    assert event.status is OpenEOJobEventStatus.NOT_FOUND
    assert "absent from the complete job listing" in event.message and "404" in event.message
    assert backend.calls["get_jobs:openeo_test"] == 2  # the 404, then the listing that confirms it


async def test_a_deleted_job_alone_on_its_backend_is_confirmed_by_the_window(backend):
    backend.policy = GonePolicy(polls=3, seconds=0.05)
    began = time.monotonic()
    event, at = await timed_event(make("ghost"), began)
    assert event.status is OpenEOJobEventStatus.NOT_FOUND and "times over" in event.message
    assert at >= 0.05 and backend.calls["get_jobs:openeo_test"] >= 4  # 1 of unknown health, then 3 with listings


# -- a federation's partial outage, over HTTP with the real hook ----------------------------------------------------


def test_an_upstream_outage_of_a_federation_never_ends_the_wait(monkeypatch):
    """The aggregator's way: 404 ``JobNotFound`` for the jobs of an unreachable upstream, which its listing names
    under ``federation:missing``. Even the eagerest policy (one healthy 404) waits until the upstream is back."""
    from airflow_provider_openeo.hooks.openeo import OpenEOAsyncHook
    from tests.system.hooks._openeo_scripted import Reply, ScriptedServer

    server = ScriptedServer().serve_openeo().start()
    jobs = "/openeo/1.2/jobs"
    outage_until = time.time() + 0.6

    def listing(seen) -> Reply:
        if time.time() < outage_until:
            return Reply(body={"jobs": [{"id": "vito-1", "status": "running"}], "federation:missing": ["eodc"]})
        return Reply(body={"jobs": [{"id": "vito-1", "status": "running"}, {"id": "eodc-1", "status": "finished"}]})

    def job(seen) -> Reply:
        if time.time() < outage_until:
            return Reply(404, {"code": "JobNotFound", "message": "Job 'eodc-1' does not exist"})
        return Reply(body={"id": "eodc-1", "status": "finished"})

    server.routes[("GET", jobs)] = listing
    server.routes[("GET", f"{jobs}/eodc-1")] = job
    conn = {"host": server.url, "login": "alice", "password": "alice123"}
    extra = {"job_gone_polls": 1, "job_gone_seconds": 0}
    monkeypatch.setenv("AIRFLOW_CONN_OE_FED", json.dumps({"conn_type": "openeo", **conn, "extra": extra}))
    monkeypatch.setattr(OpenEOJobTrigger, "hook_factory", lambda conn_id: OpenEOAsyncHook(conn_id, max_attempts=1))
    try:
        trigger = OpenEOJobTrigger("oe_fed", "eodc-1", poll_interval=0.05)
        event = asyncio.run(asyncio.wait_for(anext(trigger.run()), 10))
    finally:
        server.stop()
    payload = OpenEOJobEvent.from_dict(event.payload)
    assert payload.status is OpenEOJobEventStatus.FINISHED, payload.message
    assert server.count("GET", jobs) >= 3, "each poll of the unconfirmed job brought a listing as evidence"


# -- early reads for forecast ends -----------------------------------------------------------------------------------


async def test_an_early_read_asks_only_the_jobs_due_and_replaces_the_regular_one_only_when_all_were_read():
    backend = FakeBackend()
    for job_id in ("due", "other"):
        backend.add_job(job_id, *["running"] * 5)
    poller = _status_poller.StatusPoller("openeo_test", backend.hook, loop=asyncio.get_running_loop())
    for job_id in ("due", "other"):
        poller._subscribers[job_id] = {_status_poller.Subscription(poller, job_id, 5.0)}
    hook = backend.hook("openeo_test")

    poller._due_early = {"due"}
    assert await poller._poll_once(hook, time.time(), full=False) is False, "'other' was not read: regular stays"
    assert (backend.listed_ids[-1], backend.optional_ids[-1]) == (["due"], ["other"])

    backend.lists_optional = True  # the hook read a listing page that showed both
    poller._due_early = {"due"}
    assert await poller._poll_once(hook, time.time(), full=False) is True

    poller._due_early = set()  # the job due ended meanwhile: no early read at all
    reads = len(backend.listed_ids)
    assert await poller._poll_once(hook, time.time(), full=False) is False and len(backend.listed_ids) == reads

    assert await poller._poll_once(hook, time.time(), full=True) is True
    assert (backend.listed_ids[-1], backend.optional_ids[-1]) == (["due", "other"], [])
