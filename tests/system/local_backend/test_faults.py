"""Fault injection, the request counter and job limits, each observed by a real client."""

from __future__ import annotations

import time
import uuid

import openeo
import pytest
import requests
from openeo.rest import OpenEoApiError

from local_backend.launcher import LocalBackend, LocalBackendError, SettingsError, job_path
from tests.system.local_backend.conftest import connect, create_job, simple_cube, statuses_until_done


def _status_url(conn: openeo.Connection, job_id: str) -> str:
    return conn.build_url(f"/jobs/{job_id}")


def test_server_errors_only_where_selected(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    job = create_job(conn)
    openeo_backend.configure(error_rate=1.0, endpoints=["GET /jobs/{job_id}"])
    with pytest.raises(OpenEoApiError) as err:
        job.status()
    assert (err.value.http_status_code, err.value.code) == (500, "Internal")
    assert job.job_id in {j["id"] for j in conn.list_jobs(limit=None)}  # the listing is not faulted
    assert openeo_backend.fault_stats() == {"error": 1}


def test_transient_503_is_absorbed_by_the_clients_own_retry(
    conn: openeo.Connection, openeo_backend: LocalBackend
) -> None:
    """openeo 0.53 retries GETs on 429/502/503/504 (first retry without sleep)."""
    job = create_job(conn)
    openeo_backend.configure(error_rate=1.0, error_status=503, endpoints=["GET /jobs/{job_id}"], times=1)
    assert job.status() == "created"
    assert openeo_backend.stats()["GET /jobs/{job_id}"] == 2
    assert openeo_backend.fault_stats() == {"error": 1}


def test_a_fault_rule_can_target_one_job(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    """Per-job 5xx: one job's reads fail while its neighbours and the listing answer."""
    sick, healthy = create_job(conn), create_job(conn)
    openeo_backend.configure(faults=[{"path": job_path(sick.job_id), "error_rate": 1.0, "error_status": 500}])
    with pytest.raises(OpenEoApiError) as err:
        sick.status()
    assert err.value.http_status_code == 500
    assert requests.get(conn.build_url(f"/jobs/{sick.job_id}/logs"), auth=conn.auth, timeout=10).status_code == 500
    assert healthy.status() == "created"
    assert {sick.job_id, healthy.job_id} <= {j["id"] for j in conn.list_jobs(limit=None)}
    # Without subpaths only the job's own document fails.
    openeo_backend.configure(faults=[{"path": job_path(sick.job_id, subpaths=False), "error_rate": 1.0}])
    assert requests.get(conn.build_url(f"/jobs/{sick.job_id}/logs"), auth=conn.auth, timeout=10).status_code == 200
    with pytest.raises(OpenEoApiError):
        sick.status()
    assert openeo_backend.fault_stats() == {"error": 3}


def test_method_and_path_selectors(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    job = create_job(conn)
    openeo_backend.configure(error_rate=1.0, methods=["POST"], path=r"^/jobs/[^/]+/results$")
    with pytest.raises(OpenEoApiError):
        job.start()
    assert job.status() == "created"
    openeo_backend.configure(methods=["DELETE"])
    job.start()
    assert job.status() in {"queued", "running"}
    with pytest.raises(OpenEoApiError):
        job.stop()


def test_rate_limit_answers_429_with_retry_after(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    job = create_job(conn)
    openeo_backend.configure(rate_limit_rate=1.0, retry_after=7, endpoints=["GET /jobs/{job_id}"])
    response = requests.get(_status_url(conn, job.job_id), auth=conn.auth, timeout=10)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["code"] == "TooManyRequests"


def test_dropped_connection_gets_no_answer(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    job = create_job(conn)
    openeo_backend.configure(drop_rate=1.0, endpoints=["GET /jobs/{job_id}"])
    with pytest.raises(requests.ConnectionError):
        requests.get(_status_url(conn, job.job_id), auth=conn.auth, timeout=10)
    openeo_backend.configure(drop_rate=0.0)
    assert job.status() == "created"  # the server itself is fine
    assert openeo_backend.fault_stats() == {"drop": 1}


def test_latency_is_added(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    job = create_job(conn)
    openeo_backend.configure(latency=0.4, endpoints=["GET /jobs/{job_id}"])
    started = time.monotonic()
    job.status()
    assert time.monotonic() - started >= 0.4
    assert openeo_backend.fault_stats() == {"latency": 1}


def test_times_limits_how_often_a_rule_fires(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    job = create_job(conn)
    openeo_backend.configure(faults=[{"error_rate": 1.0, "endpoints": ["GET /jobs/{job_id}"], "times": 2}])
    for _ in range(2):
        with pytest.raises(OpenEoApiError):
            job.status()
    assert job.status() == "created"
    assert openeo_backend.stats()["GET /jobs/{job_id}"] == 3


def test_fault_after_handling_creates_the_job_but_loses_the_answer(
    conn: openeo.Connection, openeo_backend: LocalBackend
) -> None:
    """The case that makes a blind retry of POST /jobs create a duplicate job."""
    before = {j["id"] for j in openeo_backend.jobs()}
    openeo_backend.configure(error_rate=1.0, endpoints=["POST /jobs"], after=True, times=1)
    with pytest.raises(OpenEoApiError) as err:
        create_job(conn, title="lost answer")
    assert err.value.http_status_code == 500
    created = [j for j in openeo_backend.jobs() if j["id"] not in before]
    assert [j["title"] for j in created] == ["lost answer"]


def test_rejected_process_graph(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    openeo_backend.configure(reject_process_graphs=True)
    with pytest.raises(OpenEoApiError) as err:
        create_job(conn)
    assert (err.value.http_status_code, err.value.code) == (400, "ProcessGraphInvalid")
    # A regex rejects only matching graphs.
    openeo_backend.configure(reject_process_graphs='"S2_FOOBAR"')
    with pytest.raises(OpenEoApiError):
        create_job(conn)
    conn.load_collection("S2_FAPAR_CLOUDCOVER").create_job()


def test_fail_title_regex_fails_matching_jobs(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    openeo_backend.configure(fail_title_regex="^doomed", queue_seconds=0, run_seconds=0.1)
    doomed = simple_cube(conn).create_job(title="doomed 1")
    fine = simple_cube(conn).create_job(title="fine 1")
    doomed.start()
    fine.start()
    assert statuses_until_done(doomed)[-1] == "error"
    assert statuses_until_done(fine)[-1] == "finished"


def test_request_counter_by_method_and_template(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    graph = {"sum": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}
    openeo_backend.reset_stats()
    job = conn.create_job(graph, validate=False)
    job.status()
    job.status()
    conn.list_jobs()
    requests.get(f"{openeo_backend.url}/no/such/path", timeout=10)
    counts = openeo_backend.stats()
    assert counts == {"POST /jobs": 1, "GET /jobs/{job_id}": 2, "GET /jobs": 1, "GET /no/such/path": 1}
    openeo_backend.reset_stats()
    assert openeo_backend.stats() == {}


def test_concurrent_job_limit(openeo_backend: LocalBackend) -> None:
    # A user of its own (a vowel-initial name takes <name>123): the limit counts the user's jobs, and other tests'
    # jobs on the session backend may still run.
    user = f"u{uuid.uuid4().hex[:10]}"
    conn = connect(openeo_backend, user, f"{user}123")
    openeo_backend.configure(max_concurrent_jobs=2)
    jobs = [create_job(conn, queue_seconds=0, run_seconds=30) for _ in range(3)]
    jobs[0].start()
    jobs[1].start()
    with pytest.raises(OpenEoApiError) as err:
        jobs[2].start()
    assert (err.value.http_status_code, err.value.code) == (400, "ConcurrentJobLimit")
    assert jobs[2].status() == "created"

    openeo_backend.configure(concurrent_limit_status=429)
    with pytest.raises(OpenEoApiError) as err:
        jobs[2].start()
    assert (err.value.http_status_code, err.value.code) == (429, "ConcurrentJobLimit")

    jobs[0].stop()  # frees a slot
    jobs[2].start()
    assert jobs[2].status() == "running"
    for job in jobs[1:]:
        job.stop()


def test_bad_settings_are_refused_with_the_key_named(openeo_backend: LocalBackend) -> None:
    with pytest.raises(SettingsError, match="error_rat"):
        openeo_backend.configure(error_rat=0.5)
    with pytest.raises(SettingsError, match="drop_rate"):
        openeo_backend.configure(drop_rate=2)
    with pytest.raises(SettingsError, match=r"faults\[0\]"):
        openeo_backend.configure(faults=[{"error_rate": 1.0, "endpoint": "GET /jobs"}])
    # The server validates too (for callers that bypass the launcher).
    response = requests.post(f"{openeo_backend.url}/_control/config", json={"latency": -1}, timeout=10)
    assert response.status_code == 400
    assert "latency" in response.json()["message"]
    assert openeo_backend.config()["latency"] == 0.0


def test_control_errors_surface_as_local_backend_error(openeo_backend: LocalBackend) -> None:
    with pytest.raises(LocalBackendError, match="must match"):
        openeo_backend.add_process_definition("bad name!", {"id": "x"})
