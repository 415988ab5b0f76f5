"""OpenEOHook and OpenEOAsyncHook against the real local openEO backend (openeo-driver over HTTP).

Every auth method, token renewal across a short token lifetime, test_connection, retries under injected faults
with the backend's own job count proving no duplicate job, batched async status reads counted server-side, and
that no credential leaks into logs or error texts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from airflow_provider_openeo.exceptions import (
    OpenEOAuthError,
    OpenEOJobNotFoundError,
    OpenEOProviderError,
    OpenEOTransientError,
)
from airflow_provider_openeo.hooks._openeo.http import safe_retry
from airflow_provider_openeo.hooks.openeo import OpenEOAsyncHook, OpenEOHook
from local_backend.launcher import BASIC_PASSWORD, OIDC_CLIENT_SECRET, LocalBackend
from tests.fixtures.local_backend import AUTH_METHODS, backend_conn_env, backend_connection

PROCESS_GRAPH = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}
FAST_RETRY = safe_retry(total=4, backoff_factor=0.05, backoff_max=0.2)


def _hook(conn_id: str) -> OpenEOHook:
    return OpenEOHook(conn_id, retry=FAST_RETRY, auto_validate=False)


def _async_hook(conn_id: str, **kwargs: object) -> OpenEOAsyncHook:
    return OpenEOAsyncHook(conn_id, backoff=0.05, backoff_max=0.2, **kwargs)  # type: ignore[arg-type]


def _jobs_titled(backend: LocalBackend, title: str) -> list[dict]:
    return [job for job in backend.jobs() if job["title"] == title]


@pytest.mark.parametrize("auth_method", AUTH_METHODS)
def test_each_auth_method(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch, auth_method: str) -> None:
    backend_conn_env(monkeypatch, "oe_local", openeo_backend, auth_method)
    hook = _hook("oe_local")
    ok, message = hook.test_connection()
    assert ok, message
    connection = hook.get_conn()
    if auth_method == "none":
        assert "anonymous access" in message
        assert connection.list_collection_ids()  # public endpoints work without a token
        assert openeo_backend.stats().get("GET /credentials/basic", 0) == 0
        return
    expected_user = {
        "basic": "alice",
        "oidc_client_credentials": "service-account-local-client",
        "oidc_refresh_token": "oidc-user",
        "access_token": "oidc-user",
    }[auth_method]
    assert connection.describe_account()["user_id"] == expected_user
    assert f"authenticated as {expected_user} ({auth_method})" in message
    job = connection.create_job(PROCESS_GRAPH, title=f"auth-{auth_method}")
    assert job.status() == "created"


@pytest.mark.parametrize("auth_method", ["oidc_client_credentials", "oidc_refresh_token"])
def test_oidc_token_is_renewed_before_it_expires(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch, auth_method: str
) -> None:
    """With 3 s tokens, 6.5 s of work must renew ahead of expiry and never meet a refused token."""
    openeo_backend.configure(access_token_lifetime=3.0)
    backend_conn_env(monkeypatch, "oe_short", openeo_backend, auth_method)
    connection = _hook("oe_short").get_conn()

    def refused(*, reason: str | None = None) -> bool:
        raise AssertionError(f"a request met a refused token ({reason}): renewal came too late")

    monkeypatch.setattr(connection, "try_access_token_refresh", refused)
    deadline = time.monotonic() + 6.5
    while time.monotonic() < deadline:
        assert connection.describe_account()["user_id"]
        time.sleep(0.25)
    assert connection.renewals >= 3  # login + at least two renewals in 6.5 s of 3 s tokens
    assert openeo_backend.stats()["POST /oidc/token"] == connection.renewals


def test_expired_token_is_renewed_on_token_invalid(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token whose expiry we could not know (or a clock skew) is renewed when the backend refuses it."""
    openeo_backend.configure(access_token_lifetime=0.5)
    backend_conn_env(monkeypatch, "oe_reactive", openeo_backend, "oidc_client_credentials")
    connection = _hook("oe_reactive").get_conn()
    # A 0.5 s token announced in whole seconds can read as already due, and be renewed ahead of expiry during the
    # login itself (seen on a loaded machine): count from here.
    before = connection.renewals
    connection._token = type(connection._token)(bearer=connection._token.bearer, expires_at=None)
    time.sleep(0.7)
    # The renewed token must outlive the retried request even on a loaded machine.
    openeo_backend.configure(access_token_lifetime=300)
    assert connection.describe_account()["user_id"] == "service-account-local-client"
    assert connection.renewals == before + 1, "renewed once, when the backend refused the expired token"


def test_test_connection_with_a_bad_password(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend_conn_env(monkeypatch, "oe_badpw", openeo_backend)
    monkeypatch.setenv(
        "AIRFLOW_CONN_OE_BADPW",
        f'{{"conn_type": "openeo", "host": "{openeo_backend.url}", "login": "alice", "password": "Wr0ng-pass"}}',
    )
    ok, message = _hook("oe_badpw").test_connection()
    assert not ok
    assert "authentication (basic) failed" in message and "Wr0ng-pass" not in message


def test_test_connection_with_a_bad_client_secret(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_conn_env(monkeypatch, "oe_badcs", openeo_backend, "oidc_client_credentials", client_secret="nope-123")
    ok, message = _hook("oe_badcs").test_connection()
    assert not ok
    assert "invalid_client" in message and "nope-123" not in message


def test_test_connection_with_a_refused_access_token(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_conn_env(monkeypatch, "oe_badat", openeo_backend, "access_token", access_token="oidc/local/forged.jwt.x")
    ok, message = _hook("oe_badat").test_connection()
    assert not ok
    assert "refused the access_token token" in message and "forged" not in message


@pytest.mark.parametrize(
    "fault",
    [
        {"error_rate": 1.0, "error_status": 500},
        {"error_rate": 1.0, "error_status": 503},
        {"drop_rate": 1.0},
    ],
    ids=["500", "503", "dropped"],
)
def test_create_whose_answer_is_lost_creates_one_job(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch, fault: dict
) -> None:
    """The backend creates the job, then the answer is replaced by a fault: we must not send POST /jobs again."""
    backend_conn_env(monkeypatch, "oe_dup", openeo_backend)
    hook = _hook("oe_dup")
    connection = hook.get_conn()
    title = f"dup-{next(iter(fault.values()))}-{time.time_ns()}"
    openeo_backend.configure(faults=[{**fault, "endpoints": ["POST /jobs"], "after": True, "times": 1}])
    with pytest.raises(OpenEOTransientError), hook.translated_errors("create job"):
        connection.create_job(PROCESS_GRAPH, title=title)
    assert openeo_backend.stats()["POST /jobs"] == 1
    assert len(_jobs_titled(openeo_backend, title)) == 1


def test_reads_and_cancel_retry_through_5xx_and_429(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_conn_env(monkeypatch, "oe_retry", openeo_backend)
    connection = _hook("oe_retry").get_conn()
    job = connection.create_job(PROCESS_GRAPH, title="retry-reads")
    job.start()
    openeo_backend.reset_stats()
    openeo_backend.configure(
        faults=[
            {"error_rate": 1.0, "error_status": 502, "endpoints": ["GET /jobs/{job_id}"], "times": 2},
            {"rate_limit_rate": 1.0, "retry_after": 0, "endpoints": ["DELETE /jobs/{job_id}/results"], "times": 1},
        ]
    )
    assert job.status() in {"queued", "running"}
    job.stop()
    stats = openeo_backend.stats()
    assert stats["GET /jobs/{job_id}"] == 3
    assert stats["DELETE /jobs/{job_id}/results"] == 2
    assert job.status() == "canceled"


def test_start_is_not_resent_on_429(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend_conn_env(monkeypatch, "oe_start", openeo_backend)
    hook = _hook("oe_start")
    job = hook.get_conn().create_job(PROCESS_GRAPH, title="start-429")
    openeo_backend.configure(rate_limit_rate=1.0, retry_after=0, endpoints=["POST /jobs/{job_id}/results"])
    with pytest.raises(OpenEOTransientError, match=r"\[429\]"), hook.translated_errors("start job", job_id=job.job_id):
        job.start()
    assert openeo_backend.stats()["POST /jobs/{job_id}/results"] == 1


# -- async hook ----------------------------------------------------------------------------------------------


def _create_jobs(hook: OpenEOHook, count: int, title: str) -> list[str]:
    connection = hook.get_conn()
    return [connection.create_job(PROCESS_GRAPH, title=f"{title}-{i}").job_id for i in range(count)]


async def test_async_batched_status_is_one_listing_request(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_conn_env(monkeypatch, "oe_batch", openeo_backend)
    job_ids = await asyncio.to_thread(_create_jobs, _hook("oe_batch"), 6, "batch")
    async with _async_hook("oe_batch") as hook:
        await hook.get_jobs(job_ids[:1])  # log in first, so the counters below see only status reads
        openeo_backend.reset_stats()
        jobs = await hook.get_jobs(job_ids)
    assert set(jobs) == set(job_ids)
    assert {job["status"] for job in jobs.values()} == {"created"}
    stats = openeo_backend.stats()
    assert stats.get("GET /jobs") == 1
    assert stats.get("GET /jobs/{job_id}", 0) == 0


async def test_async_batch_follows_the_listing_pages(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend lists newest first, two per page: four of five jobs are watched, the oldest on page three. Each
    page so far found more than one watched job, so each next one is expected to pay for itself (rule 2 of the read
    strategy); pages that found too few per page would end the scan and the rest be read one by one."""
    backend_conn_env(monkeypatch, "oe_pages", openeo_backend)
    job_ids = await asyncio.to_thread(_create_jobs, _hook("oe_pages"), 5, "pages")
    watched = [job_ids[0], *job_ids[2:]]
    async with _async_hook("oe_pages", page_limit=2) as hook:
        await hook.get_job(job_ids[0])
        openeo_backend.reset_stats()
        jobs = await hook.get_jobs(watched)
    assert set(jobs) == set(watched)
    stats = openeo_backend.stats()
    assert (stats.get("GET /jobs"), stats.get("GET /jobs/{job_id}", 0)) == (3, 0)


async def test_async_batch_falls_back_to_per_job_reads(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids the listing does not show are read one by one; a deleted job is simply absent."""
    backend_conn_env(monkeypatch, "oe_fallback", openeo_backend)
    job_ids = await asyncio.to_thread(_create_jobs, _hook("oe_fallback"), 2, "fallback")
    async with _async_hook("oe_fallback") as hook:
        await hook.get_job(job_ids[0])
        openeo_backend.reset_stats()
        jobs = await hook.get_jobs([*job_ids, "j-does-not-exist"])
    assert set(jobs) == set(job_ids)
    stats = openeo_backend.stats()
    assert (stats.get("GET /jobs"), stats.get("GET /jobs/{job_id}")) == (1, 1)


async def test_async_listing_failure_is_transient_then_recovers(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_conn_env(monkeypatch, "oe_flaky", openeo_backend, "oidc_client_credentials")
    job_ids = await asyncio.to_thread(_create_jobs, _hook("oe_flaky"), 3, "flaky")
    async with _async_hook("oe_flaky", max_attempts=3) as hook:
        await hook.get_job(job_ids[0])
        openeo_backend.configure(error_rate=1.0, error_status=503, endpoints=["GET /jobs"], times=2)
        assert set(await hook.get_jobs(job_ids)) == set(job_ids)  # two 503s, third try answers
        openeo_backend.configure(error_rate=1.0, error_status=503, endpoints=["GET /jobs"], times=None)
        with pytest.raises(OpenEOTransientError, match=r"\[503\]"):
            await hook.get_jobs(job_ids)
        openeo_backend.configure(
            error_rate=0.0, rate_limit_rate=1.0, retry_after=120, endpoints=["GET /jobs/{job_id}"], times=None
        )
        with pytest.raises(OpenEOTransientError) as info:
            await hook.get_job(job_ids[0])
        assert info.value.retry_after == 120


async def test_async_404_and_cancel(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend_conn_env(monkeypatch, "oe_cancel", openeo_backend, "oidc_refresh_token")
    hook_sync = _hook("oe_cancel")
    job = await asyncio.to_thread(hook_sync.get_conn().create_job, PROCESS_GRAPH, title="cancel-me")
    await asyncio.to_thread(job.start)
    async with _async_hook("oe_cancel") as hook:
        with pytest.raises(OpenEOJobNotFoundError) as info:
            await hook.get_job("j-unknown")
        assert info.value.code == "JobNotFound" and info.value.http_status == 404
        await hook.cancel_job(job.job_id)
        assert (await hook.get_job(job.job_id))["status"] == "canceled"


async def test_async_renews_short_tokens(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    openeo_backend.configure(access_token_lifetime=1.5)
    backend_conn_env(monkeypatch, "oe_async_short", openeo_backend, "oidc_client_credentials")
    job_ids = await asyncio.to_thread(_create_jobs, _hook("oe_async_short"), 1, "async-short")
    async with _async_hook("oe_async_short") as hook:
        for _ in range(8):
            assert (await hook.get_job(job_ids[0]))["id"] == job_ids[0]
            await asyncio.sleep(0.4)
        assert hook._connection is not None and hook._connection.renewals >= 3


async def test_no_credential_in_logs_or_errors(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend_conn_env(monkeypatch, "oe_secret", openeo_backend, "oidc_refresh_token")
    openeo_backend.configure(access_token_lifetime=1.0)
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        hook = _hook("oe_secret")
        connection = await asyncio.to_thread(hook.get_conn)
        job = await asyncio.to_thread(connection.create_job, PROCESS_GRAPH, title="secret")
        openeo_backend.configure(error_rate=1.0, error_status=500, endpoints=["GET /jobs/{job_id}"])
        try:
            await asyncio.to_thread(job.status)
        except Exception as exc:
            errors.append(hook.translate_error(exc, action="status"))
        async with _async_hook("oe_secret", max_attempts=2) as async_hook:
            try:
                await async_hook.get_job(job.job_id)
            except OpenEOProviderError as exc:
                errors.append(exc)
            await asyncio.sleep(1.0)
            openeo_backend.configure(error_rate=0.0)
            await async_hook.get_job(job.job_id)  # renewed token
            secrets = {*connection.secrets(), *async_hook._secrets(), BASIC_PASSWORD, OIDC_CLIENT_SECRET}
    assert len(errors) == 2
    texts = [caplog.text, *(str(e) for e in errors), *(repr(e) for e in errors), repr(hook), repr(connection)]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_unreachable_backend_through_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_OE_NOWHERE",
        '{"conn_type": "openeo", "host": "http://127.0.0.1:9", "login": "alice", "password": "alice123"}',
    )
    with pytest.raises(OpenEOTransientError, match="refused"):
        _hook("oe_nowhere").get_conn()


def test_access_token_refused_is_an_auth_error(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend_conn_env(monkeypatch, "oe_forged", openeo_backend, "access_token", access_token="oidc/local/forged")
    hook = _hook("oe_forged")
    with pytest.raises(OpenEOAuthError), hook.translated_errors("who am I"):
        hook.get_conn().describe_account()


# -- version discovery -----------------------------------------------------------------------------------------


def test_a_failing_well_known_document_never_sends_the_connection_to_the_wrong_root(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """openeo falls back to the bare URL when ``/.well-known/openeo`` fails; every later request then 404s there.

    A passing 503 must cost a retry, and a lasting one a transient error: never a connection to the wrong root.
    """
    backend_conn_env(monkeypatch, "oe_discovery", openeo_backend)
    openeo_backend.configure(
        faults=[{"error_rate": 1.0, "error_status": 503, "endpoints": ["GET /.well-known/openeo"], "times": 1}]
    )
    connection = _hook("oe_discovery").get_conn()
    assert connection.root_url.rstrip("/").endswith("/openeo/1.2"), connection.root_url
    assert openeo_backend.stats()["GET /.well-known/openeo"] == 2

    openeo_backend.configure(error_rate=1.0, error_status=503, endpoints=["GET /.well-known/openeo"])
    with pytest.raises(OpenEOTransientError, match=r"\[503\]"):
        OpenEOHook("oe_discovery", retry=safe_retry(total=1, backoff_factor=0.05), auto_validate=False).get_conn()


def test_a_url_that_is_already_the_api_root_connects_without_a_well_known_document(
    openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``{api root}/.well-known/openeo`` answers 404: the URL given is the root itself, as openeo assumes too."""
    conn = backend_connection(openeo_backend)
    conn["host"] = openeo_backend.url.rstrip("/") + "/openeo/1.2"
    monkeypatch.setenv("AIRFLOW_CONN_OE_API_ROOT", json.dumps(conn))
    connection = _hook("oe_api_root").get_conn()
    assert connection.root_url.rstrip("/") == conn["host"]
    assert connection.describe_account()["user_id"]
