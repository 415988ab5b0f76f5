"""Fast in-process checks of the standard-library parts (settings, lifecycle clock, fault rules, tokens)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from local_backend.faults import FaultMiddleware, RequestStats, api_relative_path
from local_backend.oidc_tokens import InvalidToken, TokenSigner
from local_backend.settings import DEFAULT_SETTINGS, SettingsError, fault_rules, validate_settings
from local_backend.store import JobRecord, JobStore


def test_settings_merge_and_reject_bad_values() -> None:
    merged = validate_settings({"run_seconds": 5, "methods": "get"})
    assert merged["run_seconds"] == 5
    assert merged["methods"] == ["GET"]
    assert DEFAULT_SETTINGS["run_seconds"] == 2.0  # defaults untouched
    for bad, key in [
        ({"queue_seconds": -1}, "queue_seconds"),
        ({"error_rate": 0.6, "drop_rate": 0.6}, "<= 1"),
        ({"error_status": 403}, "error_status"),
        ({"path": "("}, "path"),
        ({"max_concurrent_jobs": True}, "max_concurrent_jobs"),
        ({"nme": "x"}, "nme"),
    ]:
        with pytest.raises(SettingsError, match=key):
            validate_settings(bad)
    assert len(fault_rules(validate_settings({"faults": [{"latency": 1}]}))) == 2


def test_status_follows_the_clock() -> None:
    record = JobRecord(id="j-1", user_id="u", created=100.0, process={})
    assert record.status(now=150.0) == "created"
    started = JobRecord(**{**record.to_dict(), "started_at": 200.0, "queue_seconds": 10, "run_seconds": 20})
    assert [started.status(now=t) for t in (205, 215, 230, 500)] == ["queued", "running", "finished", "finished"]
    assert started.run_time(now=215) == 5
    failing = JobRecord(**{**started.to_dict(), "fail": True})
    assert failing.status(now=230) == "error"
    canceled = JobRecord(**{**started.to_dict(), "canceled_at": 215.0})
    assert canceled.status(now=500) == "canceled"
    assert canceled.timeline(now=500) == {
        "created": 100.0,
        "queued": 200.0,
        "running": 210.0,
        "finished": None,
        "error": None,
        "canceled": 215.0,
    }


def test_journal_survives_a_restart_and_a_torn_line(tmp_path: Path) -> None:
    journal = tmp_path / "jobs.jsonl"
    store = JobStore(journal)
    store.put(JobRecord(id="a", user_id="u", created=1.0, process={}))
    store.put(JobRecord(id="b", user_id="u", created=2.0, process={}))
    store.update("a", title="kept")
    store.delete("b")
    with journal.open("a") as f:
        f.write('{"id": "c", "user_')  # a hard kill in the middle of a write
    reloaded = JobStore(journal)
    assert [(r.id, r.title) for r in reloaded.all()] == [("a", "kept")]


def _call(app: FaultMiddleware, method: str, path: str) -> tuple[str, dict[str, str], bytes]:
    captured: dict[str, object] = {}

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO()}
    body = b"".join(app(environ, start_response))
    return str(captured["status"]), captured["headers"], body  # type: ignore[return-value]


def _ok_app(environ: dict, start_response: object) -> list[bytes]:
    start_response("200 OK", [])  # type: ignore[operator]
    return [b"ok"]


def test_fault_rules_select_count_and_run_out() -> None:
    stats = RequestStats()
    app = FaultMiddleware(_ok_app, stats=stats)
    rules = validate_settings(
        {"faults": [{"rate_limit_rate": 1.0, "retry_after": 3, "methods": ["GET"], "path": "^/jobs/", "times": 1}]}
    )
    app.set_rules(fault_rules(rules))
    status, headers, _ = _call(app, "GET", "/openeo/1.2/jobs/j-1")
    assert (status, headers["Retry-After"]) == ("429 Too Many Requests", "3")
    assert _call(app, "GET", "/openeo/1.2/jobs/j-1")[0] == "200 OK"  # spent
    assert _call(app, "POST", "/openeo/1.2/jobs/j-1")[0] == "200 OK"
    assert _call(app, "GET", "/_control/stats")[0] == "200 OK"  # never counted, never faulted
    assert stats.snapshot() == {
        "requests": {"GET /jobs/j-1": 2, "POST /jobs/j-1": 1},
        "faults": {"rate_limit": 1},
        "total": 3,
        "bytes_sent": {"GET /jobs/j-1": 2, "POST /jobs/j-1": 2},
    }
    assert api_relative_path("/openeo/1.2") == "/"


def test_bodies_are_counted_cut_and_paced() -> None:
    from local_backend.transfer import shaped_body

    counted: list[int] = []
    cuts: list[bool] = []
    body = shaped_body(
        [b"a" * 10, b"b" * 10], {}, count=counted.append, truncate_after=15, claim_truncate=lambda: not cuts.append(1)
    )
    assert b"".join(body) == b"a" * 10 + b"b" * 5
    assert (sum(counted), cuts) == (15, [1])
    spent = shaped_body([b"a" * 10, b"b" * 10], {}, count=counted.append, truncate_after=15, claim_truncate=bool)
    assert b"".join(spent) == b"a" * 10 + b"b" * 10
    started = time.monotonic()
    paced = shaped_body([b"x" * 300_000], {}, count=counted.append, bytes_per_second=1_000_000)
    assert b"".join(paced) == b"x" * 300_000
    assert time.monotonic() - started >= 0.25


def test_dropping_needs_a_socket() -> None:
    app = FaultMiddleware(_ok_app, stats=RequestStats())
    app.set_rules(fault_rules(validate_settings({"drop_rate": 1.0})))
    with pytest.raises(ConnectionAbortedError):
        _call(app, "GET", "/jobs")


def test_tokens_expire_and_cannot_be_forged() -> None:
    signer = TokenSigner(b"k" * 32, "http://issuer")
    token = signer.mint("access", "sub-1", "client", lifetime=0.2)
    assert signer.verify(token, "access")["sub"] == "sub-1"
    with pytest.raises(InvalidToken, match="not a refresh"):
        signer.verify(token, "refresh")
    with pytest.raises(InvalidToken, match="signature"):
        TokenSigner(b"x" * 32, "http://issuer").verify(token, "access")
    with pytest.raises(InvalidToken, match="malformed"):
        signer.verify("not-a-token", "access")
    time.sleep(0.25)
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token, "access")
