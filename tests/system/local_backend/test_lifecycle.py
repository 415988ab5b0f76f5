"""Job lifecycle of the local backend, driven through the real openeo client (0.53) over HTTP."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import openeo
import pytest
import requests
from openeo.rest import OpenEoApiError

from local_backend.launcher import OTHER_BASIC_PASSWORD, OTHER_BASIC_USER, LocalBackend
from tests.system.local_backend.conftest import connect, create_job, simple_cube, statuses_until_done


def test_version_discovery_and_capabilities(openeo_backend: LocalBackend) -> None:
    conn = openeo.connect(openeo_backend.url)
    assert conn.capabilities().api_version() == "1.2.0"
    assert conn.capabilities().get("title") == "Local openEO backend local"
    assert openeo_backend.stats()["GET /.well-known/openeo"] == 1


def test_job_goes_created_queued_running_finished(conn: openeo.Connection) -> None:
    job = create_job(conn, queue_seconds=0.3, run_seconds=0.4)
    assert job.status() == "created"
    job.start()
    assert statuses_until_done(job) == ["queued", "running", "finished"]


def test_finished_job_results_are_real_downloadable_files(conn: openeo.Connection, tmp_path: Path) -> None:
    job = create_job(conn, queue_seconds=0, run_seconds=0.1)
    job.start()
    assert statuses_until_done(job)[-1] == "finished"

    results = job.get_results()
    assert sorted(results.get_metadata()["assets"]) == ["result.json", "result.tif"]
    paths = results.download_files(tmp_path / "first")
    names = sorted(p.name for p in paths)
    assert names == ["job-results.json", "result.json", "result.tif"]
    raster = (tmp_path / "first" / "result.tif").read_bytes()
    assert raster[:4] == b"II*\x00"
    assert len(raster) == 2048
    meta = json.loads((tmp_path / "first" / "result.json").read_text())
    assert meta["job_id"] == job.job_id
    assert meta["raster_sha256"] == hashlib.sha256(raster).hexdigest()

    # Deterministic per job: a second download yields the same bytes.
    results.download_files(tmp_path / "second")
    assert (tmp_path / "second" / "result.tif").read_bytes() == raster


def test_results_of_unfinished_job_are_refused(conn: openeo.Connection) -> None:
    job = create_job(conn, queue_seconds=5)
    job.start()
    with pytest.raises(OpenEoApiError) as err:
        job.get_results().get_metadata()
    assert err.value.code == "JobNotFinished"
    job.stop()


def test_failed_job_reports_error_logs(conn: openeo.Connection) -> None:
    job = create_job(conn, queue_seconds=0, run_seconds=0.1, fail=True, fail_message="Out of memory in tile 7")
    job.start()
    assert statuses_until_done(job)[-1] == "error"

    errors = job.logs(level="error")
    assert [e["message"] for e in errors] == ["Out of memory in tile 7"]
    assert errors[0]["code"] == "LocalBackendFailure"
    levels = {e["level"] for e in job.logs(level="debug")}
    assert levels == {"info", "warning", "error"}
    assert {e["level"] for e in job.logs(level="warning")} == {"warning", "error"}


def test_usage_and_costs_in_job_metadata(conn: openeo.Connection) -> None:
    job = create_job(conn, queue_seconds=0, run_seconds=0.5)
    job.start()
    statuses_until_done(job)
    info = job.describe()
    assert set(info["usage"]) == {"cpu", "memory", "duration", "input_pixel", "sentinelhub"}
    assert info["usage"]["cpu"]["unit"] == "cpu-seconds"
    assert info["usage"]["input_pixel"] == {"value": pytest.approx(0.125, abs=0.01), "unit": "mega-pixel"}
    assert info["usage"]["sentinelhub"]["unit"] == "sentinelhub_processing_unit"
    assert info["usage"]["cpu"]["value"] == pytest.approx(1.0, abs=0.01)
    assert info["usage"]["memory"] == {"value": pytest.approx(1024.0, abs=1), "unit": "mb-seconds"}
    assert info["costs"] == pytest.approx(0.25, abs=0.01)
    assert info["progress"] == 100


def test_usage_keys_setting_chooses_what_usage_reports(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    openeo_backend.configure(usage_keys=["duration", "network_received"])
    job = create_job(conn, queue_seconds=0, run_seconds=0.2)
    job.start()
    statuses_until_done(job)
    assert set(job.describe()["usage"]) == {"duration", "network_received"}
    with pytest.raises(Exception, match="usage_keys"):
        openeo_backend.configure(usage_keys=["cpu", "gpu"])


def test_cancel_really_cancels(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    job = create_job(conn, queue_seconds=0, run_seconds=30)
    job.start()
    assert job.status() == "running"
    job.stop()
    assert job.status() == "canceled"
    time.sleep(0.2)
    assert job.status() == "canceled"
    server_side = {j["id"]: j for j in openeo_backend.jobs()}[job.job_id]
    assert server_side["times"]["canceled"] is not None
    assert server_side["times"]["finished"] is None


def test_delete_removes_the_job(conn: openeo.Connection) -> None:
    job = create_job(conn)
    job.delete()
    with pytest.raises(OpenEoApiError) as err:
        job.status()
    assert (err.value.http_status_code, err.value.code) == (404, "JobNotFound")
    assert job.job_id not in {j["id"] for j in conn.list_jobs(limit=None)}


def test_restart_of_finished_and_canceled_jobs(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    job = create_job(conn, queue_seconds=0, run_seconds=0.1)
    job.start()
    assert statuses_until_done(job)[-1] == "finished"
    job.start()  # openEO: starting a finished job runs it again
    assert statuses_until_done(job)[-1] == "finished"

    running = create_job(conn, queue_seconds=0, run_seconds=30)
    running.start()
    running.start()  # a no-op on an active job
    running.stop()
    running.start()
    assert running.status() == "running"
    running.stop()
    starts = {j["id"]: j["start_count"] for j in openeo_backend.jobs()}
    assert starts[job.job_id] == 2
    assert starts[running.job_id] == 2


def test_listing_shows_live_status_and_paginates(conn: openeo.Connection) -> None:
    jobs = [create_job(conn, title=f"page {i}", queue_seconds=0, run_seconds=30) for i in range(5)]
    jobs[0].start()
    listed = {j["id"]: j["status"] for j in conn.list_jobs(limit=None)}
    assert listed[jobs[0].job_id] == "running"
    assert listed[jobs[1].job_id] == "created"
    jobs[0].stop()

    # Follow the "next" links of a limit=2 listing: every job exactly once, newest first.
    seen: list[str] = []
    url = conn.build_url("/jobs?limit=2")
    pages = 0
    while url:
        page = requests.get(url, auth=conn.auth, timeout=10).json()
        assert len(page["jobs"]) <= 2
        seen.extend(j["id"] for j in page["jobs"])
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        pages += 1
    assert len(seen) == len(set(seen))
    mine = [j.job_id for j in reversed(jobs)]
    assert [i for i in seen if i in mine] == mine
    assert pages >= 3


def test_jobs_are_private_to_their_user(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    job = create_job(conn)
    other = connect(openeo_backend, OTHER_BASIC_USER, OTHER_BASIC_PASSWORD)
    with pytest.raises(OpenEoApiError) as err:
        other.job(job.job_id).status()
    assert err.value.code == "JobNotFound"
    assert job.job_id not in {j["id"] for j in other.list_jobs(limit=None)}
    owners = {j["id"]: j["user_id"] for j in openeo_backend.jobs()}
    assert owners[job.job_id] == "alice"


def test_bad_job_options_are_refused_at_creation(conn: openeo.Connection) -> None:
    with pytest.raises(OpenEoApiError) as err:
        simple_cube(conn).create_job(job_options={"local_backend": {"run_secs": 1}})
    assert err.value.http_status_code == 400
    assert "run_secs" in err.value.message


def test_server_side_job_list_has_timeline(conn: openeo.Connection, openeo_backend: LocalBackend) -> None:
    job = create_job(conn, title="timeline", queue_seconds=0.1, run_seconds=0.1)
    job.start()
    statuses_until_done(job)
    record = {j["id"]: j for j in openeo_backend.jobs()}[job.job_id]
    times = record["times"]
    assert record["title"] == "timeline"
    assert record["job_options"] == {"local_backend": {"queue_seconds": 0.1, "run_seconds": 0.1}}
    assert times["created"] <= times["queued"] < times["running"] < times["finished"]
    assert times["running"] - times["queued"] == pytest.approx(0.1)


def test_patch_and_estimate(conn: openeo.Connection) -> None:
    job = create_job(conn, queue_seconds=1, run_seconds=2)
    response = requests.patch(
        conn.build_url(f"/jobs/{job.job_id}"), json={"title": "renamed"}, auth=conn.auth, timeout=10
    )
    assert response.status_code == 204
    assert job.describe()["title"] == "renamed"
    estimate = requests.get(conn.build_url(f"/jobs/{job.job_id}/estimate"), auth=conn.auth, timeout=10).json()
    assert estimate["duration"] == "PT3S"
    job.start()
    response = requests.patch(conn.build_url(f"/jobs/{job.job_id}"), json={"title": "late"}, auth=conn.auth, timeout=10)
    assert (response.status_code, response.json()["code"]) == (400, "JobLocked")
    job.stop()
