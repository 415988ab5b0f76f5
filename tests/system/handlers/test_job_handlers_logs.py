"""``on_job_error`` reads error logs across ``next`` pages, bounded, against a real local backend."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import openeo
import pandas as pd
import pytest

from airflow_provider_openeo.batch.error_categories import ErrorCategory
from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.hooks._openeo.http import no_retry
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.hooks.openeo import OpenEOHook
from airflow_provider_openeo.job_table.job_row import JobRowRef
from local_backend.launcher import LocalBackend
from tests.fixtures.local_backend import backend_conn_env
from tests.system.handlers.test_job_handlers_backend import _run_job

CONN_ID = "openeo_logs"


@pytest.fixture
def conn(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> openeo.Connection:
    backend_conn_env(monkeypatch, CONN_ID, openeo_backend)
    return OpenEOHook(CONN_ID, retry=no_retry()).get_conn()


def _errors_file(tmp_path: Path, job: openeo.BatchJob) -> list[dict]:
    return json.loads((tmp_path / f"job_{job.job_id}" / f"job_{job.job_id}_errors.json").read_text())


def test_error_logs_are_read_across_pages(
    conn: openeo.Connection, openeo_backend: LocalBackend, tmp_path: Path
) -> None:
    openeo_backend.configure(error_log_entries=7)
    job = _run_job(conn, fail=True, fail_message="Out of memory in tile 7")
    everything = [dict(e) for e in job.logs(level="error")]
    assert len(everything) == 7
    openeo_backend.configure(logs_page_size=2)
    openeo_backend.reset_stats()

    result = OpenEOJobHandler(tmp_path).on_job_error({}, job, None, {"status": "error"})

    assert _errors_file(tmp_path, job) == everything
    assert openeo_backend.stats()["GET /jobs/{job_id}/logs"] == 4
    assert result["error_message"] == "Out of memory in tile 7"


def test_the_walk_is_bounded_and_says_so(
    conn: openeo.Connection, openeo_backend: LocalBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    openeo_backend.configure(error_log_entries=7, logs_page_size=2)
    job = _run_job(conn, fail=True)
    caplog.set_level(logging.WARNING)

    OpenEOJobHandler(tmp_path, max_log_pages=2).on_job_error({}, job, None, {"status": "error"})

    assert len(_errors_file(tmp_path, job)) == 4
    assert "more error log pages than the 2 read (4 entries kept)" in caplog.text


def test_on_job_error_records_the_category_of_each_kind_of_failure_the_local_backend_serves(
    conn: openeo.Connection, openeo_backend: LocalBackend, tmp_path: Path
) -> None:
    """One job per category (``fail_category``), and one that runs out of memory because its ``executor-memory``
    is below what it needs (``min_executor_memory``), while the same job given enough memory finishes."""
    db = OpenEOJobDbHook(table="categories", sqlite_path=str(tmp_path / "jobs.db"))
    kinds = [{"fail_category": c.value} for c in ErrorCategory] + [{"min_executor_memory": "3g"}]
    db.persist(pd.DataFrame({"title": [f"row {i}" for i in range(len(kinds))]}))
    jobs = []
    for local in kinds:
        job = conn.load_collection("S2_FOOBAR", bands=["B02"]).create_job(
            title="category test", job_options={"local_backend": {"queue_seconds": 0, "run_seconds": 0.2, **local}}
        )
        job.start()
        jobs.append(job)
    enough = conn.load_collection("S2_FOOBAR", bands=["B02"]).create_job(
        title="enough memory",
        job_options={"executor-memory": "3g", "local_backend": {"run_seconds": 0.2, "min_executor_memory": "3g"}},
    )
    enough.start()
    handler = OpenEOJobHandler(tmp_path)
    categories = []
    for row_id, job in enumerate(jobs):
        deadline = time.monotonic() + 30
        while job.status() != "error":
            assert time.monotonic() < deadline, f"job {job.job_id} did not fail"
            time.sleep(0.05)
        db.update_row(row_id, {"id": job.job_id, "status": "running"})
        row = JobRowRef(table="categories", row_id=row_id, sqlite_path=str(tmp_path / "jobs.db"))
        result = handler.on_job_error({}, job, row, {"status": "error"})
        assert result["error_category"] == db.get_row(row_id)["error_category"]
        categories.append(result["error_category"])
    assert categories == [c.value for c in ErrorCategory] + ["out_of_memory"]
    deadline = time.monotonic() + 30
    while enough.status() not in ("finished", "error"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert enough.status() == "finished", "given the memory it needs, the job does not fail"
