"""Re-attach, never duplicate: what a retried, re-run or cleared ``OpenEOBatchJobOperator`` does with its row's job.

Each test ends with the backend's own job list for the row (by its unique title): the count is the evidence.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import openeo
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_openeo.batch.planning import rows_to_run
from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from tests.system.operators.conftest import ADD_GRAPH, BACKEND_NAME, RowOps, deferred_job_id, fast_options, run_row


def start_with(row: pd.Series, connection: openeo.Connection, *, options: dict[str, Any], **kwargs: Any):
    return connection.create_job(ADD_GRAPH, title=str(row["title"]), job_options={"local_backend": options})


def wait_for_status(connection: openeo.Connection, job_id: str, wanted: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while connection.job(job_id).status() != wanted:
        assert time.monotonic() < deadline, f"job {job_id} never became {wanted}"
        time.sleep(0.1)


def assert_finished_once(row_ops: RowOps, title: str, job_id: str) -> None:
    row = row_ops.row()
    assert (row["status"], row["results_state"], row["id"]) == ("finished", "downloaded", job_id)
    assert [job["id"] for job in row_ops.jobs(title)] == [job_id], "exactly one job for the row on the backend"
    assert (row_ops.root_dir / f"job_{job_id}" / "result.tif").stat().st_size == 2048


@pytest.mark.parametrize(
    ("live_status", "options"),
    [("queued", {"queue_seconds": 1.5, "run_seconds": 0.3}), ("running", {"queue_seconds": 0, "run_seconds": 1.5})],
)
def test_retry_of_a_row_holding_a_live_job_defers_to_that_job(row_ops: RowOps, live_status, options):
    [title] = row_ops.table()
    start = partial(start_with, options=options)
    first = deferred_job_id(row_ops.operator(start_job=start))  # the try that started the job, then died
    wait_for_status(row_ops.connection(), first, live_status)

    retried = deferred_job_id(row_ops.operator(start_job=start))  # a retry: defers to the same job
    assert retried == first
    assert row_ops.row()["status"] == live_status

    result = run_row(row_ops.operator(start_job=start))
    assert result["job_id"] == first
    assert_finished_once(row_ops, title, first)


def test_row_whose_job_is_created_gets_it_started_not_recreated(row_ops: RowOps):
    [title] = row_ops.table()
    job = row_ops.connection().create_job(ADD_GRAPH, title=title, job_options=fast_options())
    row_ops.db.update_row(0, {"id": job.job_id, "status": "created", "backend_name": BACKEND_NAME})
    row_ops.backend.reset_stats()

    result = run_row(row_ops.operator())

    assert result["job_id"] == job.job_id
    assert_finished_once(row_ops, title, job.job_id)
    assert row_ops.backend.stats().get("POST /jobs", 0) == 0


@pytest.mark.parametrize("results_state", ["downloading", "failed", None])
def test_finished_row_without_complete_download_is_downloaded_without_a_new_job(row_ops: RowOps, results_state):
    [title] = row_ops.table()
    job_id = run_row(row_ops.operator())["job_id"]
    job_dir = row_ops.root_dir / f"job_{job_id}"
    for path in job_dir.iterdir():  # as if the first download never got that far
        path.unlink()
    row_ops.db.update_row(0, {"results_state": results_state})
    row_ops.backend.reset_stats()

    result = run_row(row_ops.operator())

    assert result["job_id"] == job_id
    assert_finished_once(row_ops, title, job_id)
    stats = row_ops.backend.stats()
    assert stats.get("POST /jobs", 0) == 0 and stats.get("POST /jobs/{job_id}/results", 0) == 0


def _fail_then_succeed(first_fails: dict[str, bool]):
    def start_job(row: pd.Series, connection: openeo.Connection, **kwargs: Any):
        fail = first_fails.pop("fail", False)
        return connection.create_job(ADD_GRAPH, title=str(row["title"]), job_options=fast_options(fail=fail))

    return start_job


def test_rerun_of_an_errored_row_creates_a_new_job_and_keeps_the_old_one_in_history(row_ops_any_db: RowOps):
    row_ops = row_ops_any_db
    [title] = row_ops.table()
    start = _fail_then_succeed({"fail": True})
    with pytest.raises(AirflowFailException, match="did not finish"):
        run_row(row_ops.operator(start_job=start))
    failed = row_ops.row()
    assert failed["status"] == "error" and failed["error_message"]
    old_id = failed["id"]

    result = run_row(row_ops.operator(start_job=start))  # the user clears the task: a deliberate re-run

    assert result["job_id"] != old_id
    row = row_ops.row()
    assert [(h["id"], h["status"]) for h in row["job_history"]] == [(old_id, "error")]
    assert row["attempt"] == 1 and row["error_message"] is None
    assert sorted(job["id"] for job in row_ops.jobs(title)) == sorted([old_id, result["job_id"]])
    assert_finished_once_among(row_ops, title, result["job_id"], expected_jobs=2)

    # A stale handler of the old job (MBJM's double on_job_done) must not touch the row of the new one.
    row_ref = row_ops.operator().row
    stale = OpenEOJobHandler(root_dir=row_ops.root_dir).on_job_error(
        None, row_ops.connection().job(old_id), row_ref, {}
    )
    assert stale["row_updated"] is False
    assert_finished_once_among(row_ops, title, result["job_id"], expected_jobs=2)


def assert_finished_once_among(row_ops: RowOps, title: str, job_id: str, *, expected_jobs: int) -> None:
    row = row_ops.row()
    assert (row["status"], row["results_state"], row["id"]) == ("finished", "downloaded", job_id)
    assert len(row_ops.jobs(title)) == expected_jobs


def test_retry_finishes_a_job_canceled_meanwhile_and_only_a_rerun_creates_a_new_job(row_ops: RowOps):
    [title] = row_ops.table()
    start = partial(start_with, options={"queue_seconds": 0, "run_seconds": 30})
    operator = row_ops.operator(start_job=start)
    old_id = deferred_job_id(operator)
    row_ops.connection().job(old_id).stop()  # someone cancels it on the backend
    with pytest.raises(AirflowFailException, match="did not finish"):
        run_row(row_ops.operator(start_job=start))  # a retry: finishes the canceled job, creates nothing
    assert row_ops.row()["status"] == "canceled"
    assert [job["id"] for job in row_ops.jobs(title)] == [old_id]

    result = run_row(row_ops.operator())

    history = row_ops.row()["job_history"]
    assert [(h["id"], h["status"]) for h in history] == [(old_id, "canceled")]
    assert_finished_once_among(row_ops, title, result["job_id"], expected_jobs=2)


def test_job_deleted_on_the_backend_is_recorded_in_history_and_replaced(row_ops_any_db: RowOps):
    row_ops = row_ops_any_db
    [title] = row_ops.table()
    old_id = deferred_job_id(row_ops.operator())
    row_ops.connection().create_job(ADD_GRAPH, title=f"{title}-other")  # the listing shows another job
    row_ops.connection().job(old_id).delete()  # confirmed gone: absent from a complete listing showing others

    result = run_row(row_ops.operator())

    assert result["job_id"] != old_id
    history = row_ops.row()["job_history"]
    assert [(h["id"], h["status"], h["backend_name"]) for h in history] == [(old_id, "deleted", BACKEND_NAME)]
    assert_finished_once(row_ops, title, result["job_id"])  # the deleted one is gone server-side


def test_plan_picks_up_a_finished_row_whose_download_failed(row_ops: RowOps):
    row_ops.table(2)
    row_ops.db.update_row(0, {"status": "finished", "id": "j-1", "results_state": "failed"})
    row_ops.db.update_row(1, {"status": "finished", "id": "j-2", "results_state": "downloaded"})
    assert list(rows_to_run(row_ops.db.read()).index) == [0]
