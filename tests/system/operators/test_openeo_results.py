"""A batch row in two tasks: the job task ends when its job finishes, the results task stores what it made.

Against the real local backend and a real job table (``row_ops``), one try at a time (``run_row``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.operators.openeo import ROW_LABEL_KEY, OpenEOJobResultsOperator
from tests.system.operators.conftest import CONN_ID, RowOps, make_context, rendered_context, run_row


def results_operator(row_ops: RowOps, row_id: Any = 0) -> OpenEOJobResultsOperator:
    return OpenEOJobResultsOperator(
        task_id="results",
        row_id=row_id,
        openeo_conn_id=CONN_ID,
        job_table=row_ops.db.table,
        job_db_conn_id=row_ops.db.job_db_conn_id,
        sqlite_path=str(row_ops.db.sqlite_path) if row_ops.db.sqlite_path is not None else None,
        handler=OpenEOJobHandler(root_dir=row_ops.root_dir),
    )


def test_the_job_task_ends_at_the_finish_and_the_results_task_stores_the_results(row_ops: RowOps):
    [title] = row_ops.table()
    job_task = row_ops.operator(handle_results=False)
    with pytest.raises(TaskDeferred) as deferred:
        job_task.execute(make_context())
    assert deferred.value.trigger.end_task_on_finish is True

    assert run_row(row_ops.operator(handle_results=False)) is None, "ended by the triggerer: nothing to return"
    [job] = row_ops.jobs(title)
    row = row_ops.row()
    assert (row["id"], row["backend_status"], row["results_state"]) == (job["id"], "finished", None)
    assert not (row_ops.root_dir / f"job_{job['id']}").exists(), "no download while the backend's slot is held"

    operator = results_operator(row_ops)
    context = rendered_context(operator)
    stored = operator.execute(context)
    assert stored["job_id"] == job["id"] and stored["results_state"] == "downloaded"
    assert context[ROW_LABEL_KEY] == f"0: {title}"
    row = row_ops.row()
    assert (row["status"], row["results_state"]) == ("finished", "downloaded")
    assert (row_ops.root_dir / f"job_{job['id']}" / "result.tif").stat().st_size == 2048
    assert [j["id"] for j in row_ops.jobs(title)] == [job["id"]], "one job for the row"


def test_a_job_found_finished_on_re_attach_is_left_to_the_results_task(row_ops: RowOps):
    [title] = row_ops.table()
    run_row(row_ops.operator(handle_results=False))
    # A re-run (e.g. after the results task's retries ran out): the job task re-attaches and ends at once.
    assert row_ops.operator(handle_results=False).execute(make_context()) is None
    assert results_operator(row_ops).execute(make_context())["results_state"] == "downloaded"
    assert len(row_ops.jobs(title)) == 1


def test_dag_test_resumes_a_task_the_triggerer_would_have_ended(row_ops: RowOps):
    """``dag.test()`` resumes with the ``TaskSuccessEvent``'s payload; the task ends as a live triggerer ends it."""
    row_ops.table()
    operator = row_ops.operator(handle_results=False)
    assert operator.execute_complete(make_context(), event="success") is None


def test_a_stale_row_is_checked_with_the_backend(row_ops: RowOps):
    """The trigger's last row write may have failed: the backend's word decides."""
    row_ops.table()
    run_row(row_ops.operator(handle_results=False))
    row_ops.db.update_row(0, {"backend_status": "running"})
    assert results_operator(row_ops).execute(make_context())["results_state"] == "downloaded"


def test_no_job_or_an_unfinished_job_fails_naming_the_row_and_field(row_ops: RowOps):
    row_ops.table(2)
    with pytest.raises(AirflowFailException, match=r"row 0 .*field 'id' is empty"):
        results_operator(row_ops, 0).execute(make_context())

    # A user marked the job task successful in the UI while its job still ran: nothing to store, and saying so.
    job_task = row_ops.operator(1, handle_results=False, start_job=slow_job_start)
    with pytest.raises(TaskDeferred):
        job_task.execute(make_context())
    with pytest.raises(
        AirflowFailException, match=r"row 1 .*field 'backend_status'.* is (queued|running), not finished"
    ):
        results_operator(row_ops, 1).execute(make_context())
    assert row_ops.row(1)["status"] != "finished"


def slow_job_start(row: Any, connection: Any, **kwargs: Any) -> Any:
    graph = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}
    options = {"local_backend": {"queue_seconds": 0.2, "run_seconds": 60}}
    return connection.create_job(graph, title=str(row["title"]), job_options=json.loads(json.dumps(options)))


def test_a_retried_results_task_continues_the_assets_the_failed_try_left(row_ops: RowOps):
    """The first try loses a stream mid-asset and fails (row ``failed``); the retry keeps what is complete,
    continues the cut asset with Range, and the row ends ``downloaded``: each byte moved about once."""
    row_ops.backend.configure(
        result_assets=2,
        result_size=3_000_000,
        asset_checksums=True,
        faults=[{"path": r"result_2\.tif", "truncate_after": 2_000_000, "times": 1}],
    )
    row_ops.table()
    run_row(row_ops.operator(handle_results=False))
    row_ops.backend.reset_stats()
    first = results_operator(row_ops)
    first.handler = OpenEOJobHandler(root_dir=row_ops.root_dir, resume_attempts=0)

    with pytest.raises(Exception, match="downloading results of openEO job"):
        first.execute(make_context())
    assert (row_ops.row()["results_state"], row_ops.row()["status"]) == ("failed", "finished")
    assert results_operator(row_ops).execute(make_context())["results_state"] == "downloaded"

    row = row_ops.row()
    assert (row["results_state"], row["error_message"]) == ("downloaded", None)
    moved = sum(n for key, n in row_ops.backend.bytes_sent().items() if "/results/assets/" in key)
    assets = row_ops.connection().job(row["id"]).get_results().get_metadata()["assets"]
    size = sum(asset["file:size"] for asset in assets.values())
    assert size <= moved <= 1.1 * size
    job_dir = row_ops.root_dir / f"job_{row['id']}"
    assert sorted(p.name for p in job_dir.iterdir()) == sorted(["job-results.json", f"job_{row['id']}.json", *assets])
