"""Unit tests of OpenEOAsyncHook over real HTTP (scripted loopback server): batching, fallback, backoff, auth."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import aiohttp
import pytest
from airflow.sdk import BaseHook

from airflow_provider_openeo.exceptions import (
    OpenEOAuthError,
    OpenEOJobNotFoundError,
    OpenEOTransientError,
)
from airflow_provider_openeo.hooks._openeo.read_strategy import ReadStrategy
from airflow_provider_openeo.hooks.openeo import OpenEOAsyncHook
from tests.system.hooks._openeo_scripted import Reply, ScriptedServer, Seen

JOBS = "/openeo/1.2/jobs"


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    server = ScriptedServer().serve_openeo().start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_OE_ASYNC",
        json.dumps({"conn_type": "openeo", "host": server.url, "login": "alice", "password": "alice123"}),
    )

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the async hook must use aget_connection, never the blocking get_connection")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(forbidden))
    yield server
    server.stop()


def _hook(**kwargs: object) -> OpenEOAsyncHook:
    return OpenEOAsyncHook("oe_async", backoff=0.01, backoff_max=0.02, **kwargs)  # type: ignore[arg-type]


def _job(job_id: str, status: str | None = "running") -> dict:
    return {"id": job_id, "status": status, "created": "2026-01-01T00:00:00Z"} if status else {"id": job_id}


async def test_get_job_sends_the_bearer_token(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", f"{JOBS}/j-1")] = Reply(body={**_job("j-1"), "costs": 1.5})
    async with _hook() as hook:
        job = await hook.get_job("j-1")
    assert job["costs"] == 1.5
    assert scripted.auth_headers("GET", f"{JOBS}/j-1") == ["Bearer basic//tok-basic"]


async def test_get_job_404_is_job_not_found(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", f"{JOBS}/gone")] = Reply(404, {"code": "JobNotFound", "message": "no such job"})
    async with _hook() as hook:
        with pytest.raises(OpenEOJobNotFoundError) as info:
            await hook.get_job("gone")
    assert (info.value.job_id, info.value.code, info.value.http_status) == ("gone", "JobNotFound", 404)
    assert "[404] JobNotFound: no such job" in str(info.value)


async def test_get_jobs_reads_the_paginated_listing_once_per_page(scripted: ScriptedServer) -> None:
    def listing(seen: Seen) -> Reply:
        if "page" not in seen.query:
            assert seen.query["limit"] == ["2"]
            return Reply(body={"jobs": [_job("a"), _job("b")], "links": [{"rel": "next", "href": f"{JOBS}?page=2"}]})
        return Reply(body={"jobs": [_job("c", "finished"), _job("d")], "links": []})

    scripted.routes[("GET", JOBS)] = listing
    async with _hook(page_limit=2) as hook:
        jobs = await hook.get_jobs(["c", "a", "a"])
    assert list(jobs) == ["c", "a"]
    assert jobs["c"]["status"] == "finished"
    assert scripted.count("GET", JOBS) == 2
    assert not [s for s in scripted.seen if s.path.startswith(f"{JOBS}/")]


async def test_get_jobs_stops_paging_once_all_are_found(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = Reply(
        body={"jobs": [_job("a"), _job("b")], "links": [{"rel": "next", "href": f"{JOBS}?page=2"}]}
    )
    async with _hook() as hook:
        assert set(await hook.get_jobs(["a", "b"])) == {"a", "b"}
    assert scripted.count("GET", JOBS) == 1


async def test_get_jobs_falls_back_to_per_job_reads(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = Reply(body={"jobs": [_job("a"), _job("b", status=None)], "links": []})
    scripted.routes[("GET", f"{JOBS}/b")] = Reply(body=_job("b", "queued"))
    scripted.routes[("GET", f"{JOBS}/c")] = Reply(body=_job("c", "error"))
    scripted.routes[("GET", f"{JOBS}/gone")] = Reply(404, {"code": "JobNotFound", "message": "deleted"})
    async with _hook() as hook:
        jobs = await hook.get_jobs(["a", "b", "c", "gone"])
    assert {k: v["status"] for k, v in jobs.items()} == {"a": "running", "b": "queued", "c": "error"}
    assert scripted.count("GET", f"{JOBS}/a") == 0
    assert scripted.count("GET", f"{JOBS}/gone") == 1


async def test_get_jobs_without_a_listing_endpoint(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = Reply(501, {"code": "FeatureUnsupported", "message": "no listing"})
    for job_id in ("a", "b"):
        scripted.routes[("GET", f"{JOBS}/{job_id}")] = Reply(body=_job(job_id))
    async with _hook() as hook:
        assert set(await hook.get_jobs(["a", "b"])) == {"a", "b"}
    assert scripted.count("GET", JOBS) == 1


async def test_a_single_job_is_read_directly(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", f"{JOBS}/a")] = Reply(body=_job("a"))
    async with _hook() as hook:
        assert set(await hook.get_jobs(["a"])) == {"a"}
        assert await hook.get_jobs([]) == {}
    assert scripted.count("GET", JOBS) == 0


async def test_next_link_to_another_host_is_not_followed(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = Reply(
        body={"jobs": [_job("a")], "links": [{"rel": "next", "href": "http://203.0.113.9/steal?page=2"}]}
    )
    scripted.routes[("GET", f"{JOBS}/b")] = Reply(body=_job("b"))
    async with _hook() as hook:
        assert set(await hook.get_jobs(["a", "b"])) == {"a", "b"}


async def test_transient_errors_back_off_then_succeed(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", f"{JOBS}/a")] = [
        Reply(503),
        Reply(429, headers={"Retry-After": "0"}),
        Reply(body=_job("a")),
    ]
    async with _hook() as hook:
        assert (await hook.get_job("a"))["status"] == "running"
    assert scripted.count("GET", f"{JOBS}/a") == 3


async def test_transient_errors_give_up_after_max_attempts(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", f"{JOBS}/a")] = Reply(502, {"code": "Upstream", "message": "bad gateway"})
    async with _hook(max_attempts=3) as hook:
        with pytest.raises(OpenEOTransientError, match=r"\[502\] Upstream"):
            await hook.get_job("a")
    assert scripted.count("GET", f"{JOBS}/a") == 3


async def test_long_retry_after_is_handed_to_the_caller(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", f"{JOBS}/a")] = Reply(
        429, {"code": "TooMany", "message": "slow down"}, {"Retry-After": "300"}
    )
    started = time.monotonic()
    async with _hook(retry_after_max=5) as hook:
        with pytest.raises(OpenEOTransientError) as info:
            await hook.get_job("a")
    assert info.value.retry_after == 300 and time.monotonic() - started < 5
    assert scripted.count("GET", f"{JOBS}/a") == 1


async def test_dropped_connections_are_transient(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", f"{JOBS}/a")] = [Reply(drop=True), Reply(body=_job("a"))]
    async with _hook() as hook:
        assert (await hook.get_job("a"))["id"] == "a"
    scripted.routes[("GET", f"{JOBS}/b")] = Reply(drop=True)
    async with _hook(max_attempts=2) as hook:
        with pytest.raises(OpenEOTransientError, match="GET /jobs/b failed"):
            await hook.get_job("b")


async def test_unreachable_backend_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OE_DOWN", json.dumps({"conn_type": "openeo", "host": "http://127.0.0.1:9"}))
    async with OpenEOAsyncHook("oe_down") as hook:
        with pytest.raises(OpenEOTransientError):
            await hook.get_job("a")


async def test_cancel_job(scripted: ScriptedServer) -> None:
    scripted.routes[("DELETE", f"{JOBS}/a/results")] = [Reply(503), Reply(204)]
    scripted.routes[("DELETE", f"{JOBS}/gone/results")] = Reply(404, {"code": "JobNotFound", "message": "x"})
    async with _hook() as hook:
        await hook.cancel_job("a")
        with pytest.raises(OpenEOJobNotFoundError):
            await hook.cancel_job("gone")
    assert scripted.count("DELETE", f"{JOBS}/a/results") == 2


async def test_token_invalid_renews_once(scripted: ScriptedServer) -> None:
    logins = iter(["t1", "t2", "t3"])
    scripted.routes[("GET", "/openeo/1.2/credentials/basic")] = lambda seen: Reply(body={"access_token": next(logins)})
    scripted.routes[("GET", f"{JOBS}/a")] = lambda seen: (
        Reply(body=_job("a"))
        if seen.headers.get("Authorization") == "Bearer basic//t2"
        else Reply(403, {"code": "TokenInvalid", "message": "expired"})
    )
    async with _hook() as hook:
        assert (await hook.get_job("a"))["id"] == "a"
    scripted.routes[("GET", f"{JOBS}/b")] = Reply(403, {"code": "TokenInvalid", "message": "still bad"})
    async with _hook() as hook:
        with pytest.raises(OpenEOAuthError, match="TokenInvalid"):
            await hook.get_job("b")


async def test_oidc_token_is_renewed_ahead_of_expiry(scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    issued: list[str] = []

    def token(seen: Seen) -> Reply:
        issued.append(f"oidc-at-{len(issued)}")
        return Reply(body={"access_token": issued[-1], "token_type": "Bearer", "expires_in": 1})

    scripted.routes[("POST", "/idp/token")] = token
    scripted.routes[("GET", f"{JOBS}/a")] = Reply(body=_job("a"))
    extra = {"auth_method": "oidc_client_credentials", "client_id": "cid", "client_secret": "csecret-123"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_OE_OIDC", json.dumps({"conn_type": "openeo", "host": scripted.url, "extra": extra})
    )
    async with OpenEOAsyncHook("oe_oidc") as hook:
        await hook.get_job("a")
        await asyncio.sleep(0.85)
        await hook.get_job("a")
    assert scripted.auth_headers("GET", f"{JOBS}/a") == ["Bearer oidc/idp/oidc-at-0", "Bearer oidc/idp/oidc-at-1"]


async def test_external_session_is_left_open(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", f"{JOBS}/a")] = Reply(body=_job("a"))
    async with aiohttp.ClientSession() as session:
        hook = _hook(session=session)
        await hook.get_job("a")
        await hook.close()
        assert not session.closed


async def test_no_secret_in_logs_or_errors(scripted: ScriptedServer, caplog: pytest.LogCaptureFixture) -> None:
    scripted.routes[("GET", "/openeo/1.2/credentials/basic")] = Reply(body={"access_token": "SECRET-TOKEN-XYZ"})
    scripted.routes[("GET", f"{JOBS}/a")] = Reply(400, {"code": "Odd", "message": "saw SECRET-TOKEN-XYZ, alice123"})
    with caplog.at_level(logging.DEBUG):
        async with _hook() as hook:
            with pytest.raises(Exception) as info:
                await hook.get_job("a")
            assert "alice123" not in repr(hook)
    for text in (str(info.value), repr(info.value), caplog.text):
        assert "SECRET-TOKEN-XYZ" not in text and "alice123" not in text


# -- read_jobs: each job's outcome on its own ---------------------------------------------------------------------


async def test_read_jobs_keeps_each_jobs_failure_to_that_job(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", f"{JOBS}/ok")] = Reply(body=_job("ok", "finished"))
    scripted.routes[("GET", f"{JOBS}/down")] = Reply(503, {"code": "ServiceUnavailable", "message": "busy"})
    scripted.routes[("GET", f"{JOBS}/gone")] = Reply(404, {"code": "JobNotFound", "message": "no such job"})
    async with _hook(listing_min_jobs=100) as hook:
        reads = await hook.read_jobs(["ok", "down", "gone"], each_attempts=1)
    assert reads.jobs == {"ok": _job("ok", "finished")} and reads.not_found == {"gone"}
    assert isinstance(reads.errors["down"], OpenEOTransientError) and reads.listing is None
    assert scripted.count("GET", f"{JOBS}/down") == 1, "one try: the poller retries the job on its own schedule"


async def test_read_jobs_abandons_reads_that_outlast_the_budget(scripted: ScriptedServer) -> None:
    def slow(seen: Seen) -> Reply:
        time.sleep(1.0)
        return Reply(body=_job("slow"))

    scripted.routes[("GET", f"{JOBS}/slow")] = slow
    scripted.routes[("GET", f"{JOBS}/fast")] = Reply(body=_job("fast"))
    async with _hook(listing_min_jobs=100) as hook:
        began = time.monotonic()
        reads = await hook.read_jobs(["slow", "fast"], each_attempts=1, budget=0.3)
    assert time.monotonic() - began < 0.9
    assert set(reads.jobs) == {"fast"} and "no answer within" in str(reads.errors["slow"])


async def test_read_jobs_lists_for_a_job_to_confirm_and_reports_federation_missing(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = Reply(body={"jobs": [_job("vito-1")], "links": [], "federation:missing": ["eodc"]})
    scripted.routes[("GET", f"{JOBS}/eodc-1")] = Reply(404, {"code": "JobNotFound", "message": "no such job"})
    async with _hook() as hook:
        reads = await hook.read_jobs(["eodc-1"], confirm=["eodc-1"])
    assert reads.not_found == {"eodc-1"} and reads.listing is not None
    assert reads.listing.ids == {"vito-1"} and reads.listing.complete and reads.listing.missing_upstreams == ("eodc",)


async def test_a_listing_cut_at_limit_without_a_next_link_is_not_complete(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = Reply(body={"jobs": [_job("a"), _job("b")], "links": []})
    scripted.routes[("GET", f"{JOBS}/c")] = Reply(404, {"code": "JobNotFound", "message": "no such job"})
    async with _hook(page_limit=2) as hook:
        reads = await hook.read_jobs(["a", "c"])
    assert reads.listing is not None and not reads.listing.complete and reads.not_found == {"c"}


async def test_a_failing_listing_sent_only_as_evidence_does_not_hold_up_the_read(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = Reply(503, {"code": "ServiceUnavailable", "message": "busy"})
    scripted.routes[("GET", f"{JOBS}/eodc-1")] = Reply(404, {"code": "JobNotFound", "message": "no such job"})
    async with _hook(max_attempts=1) as hook:
        reads = await hook.read_jobs(["eodc-1"], confirm=["eodc-1"])
    assert reads.not_found == {"eodc-1"} and reads.listing is None


# -- read_jobs: the read strategy ----------------------------------------------------------------------------------


async def test_a_listing_without_the_watched_jobs_gives_way_to_per_job_reads(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = Reply(
        body={"jobs": [_job(f"old-{i}", "finished") for i in range(100)], "links": [{"rel": "next", "href": "?p=1"}]}
    )
    for job_id in ("a", "b", "c"):
        scripted.routes[("GET", f"{JOBS}/{job_id}")] = Reply(body=_job(job_id))
    async with _hook() as hook:
        for _ in range(3):
            reads = await hook.read_jobs(["a", "b", "c"])
            assert set(reads.jobs) == {"a", "b", "c"}
    assert scripted.count("GET", JOBS) == 1, "one look at the first page, never page two"
    assert scripted.count("GET", f"{JOBS}/a") == 3


async def test_a_refused_listing_is_not_asked_again_every_poll(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = Reply(501, {"code": "FeatureUnsupported", "message": "no listing"})
    for job_id in ("a", "b"):
        scripted.routes[("GET", f"{JOBS}/{job_id}")] = Reply(body=_job(job_id))
    async with _hook() as hook:
        for _ in range(4):
            assert set((await hook.read_jobs(["a", "b"])).jobs) == {"a", "b"}
    assert scripted.count("GET", JOBS) == 1


async def test_a_look_again_that_fails_does_not_hold_up_the_reads(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = [
        Reply(body={"jobs": [_job("x")], "links": []}),
        Reply(503, {"code": "ServiceUnavailable", "message": "busy"}),
    ]
    for job_id in ("a", "b"):
        scripted.routes[("GET", f"{JOBS}/{job_id}")] = Reply(body=_job(job_id))
    strategy = ReadStrategy(min_probe_gap=1, max_probe_gap=1)
    async with _hook(max_attempts=1, read_strategy=strategy) as hook:
        for _ in range(3):  # the first look, a poll job by job, then a look again that answers 503
            assert set((await hook.read_jobs(["a", "b"], each_attempts=1)).jobs) == {"a", "b"}
    assert scripted.count("GET", JOBS) == 2


async def test_a_job_to_confirm_brings_a_listing_even_while_reading_job_by_job(scripted: ScriptedServer) -> None:
    scripted.routes[("GET", JOBS)] = Reply(body={"jobs": [_job("x")], "links": [], "federation:missing": ["eodc"]})
    scripted.routes[("GET", f"{JOBS}/vito-1")] = Reply(body=_job("vito-1"))
    scripted.routes[("GET", f"{JOBS}/eodc-1")] = Reply(404, {"code": "JobNotFound", "message": "no such job"})
    async with _hook() as hook:
        await hook.read_jobs(["vito-1", "eodc-1"])  # the first look: neither listed, so job by job from now on
        assert not hook.read_strategy.plan(2).listing
        reads = await hook.read_jobs(["vito-1", "eodc-1"], confirm=["eodc-1"])
    assert reads.listing is not None and reads.listing.missing_upstreams == ("eodc",)
    assert reads.not_found == {"eodc-1"} and set(reads.jobs) == {"vito-1"}
    assert scripted.count("GET", JOBS) == 2
