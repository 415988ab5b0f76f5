"""``RowJobStarter`` against the real local backend and real job databases: create/start decisions and failures.

Every test counts the row's jobs on the backend itself (by the row's unique title): no duplicates, ever.
"""

from __future__ import annotations

import threading
from typing import Any

import openeo
import pandas as pd
import pytest
import requests

from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.start._lost_create import lost_create_answer
from airflow_provider_openeo.start.job_starting import (
    RowJobStarter,
    RowSkipped,
    RowStartError,
    TransientStartError,
)
from local_backend.launcher import BASIC_PASSWORD
from tests.system.operators.conftest import ADD_GRAPH, BACKEND_NAME, RowOps, add_job_start, fast_options, make_row_ops


@pytest.fixture
def row_ops(openeo_backend, sqlite_job_db, tmp_path, monkeypatch) -> RowOps:
    return make_row_ops(openeo_backend, sqlite_job_db, tmp_path, monkeypatch)


@pytest.fixture
def row_ops_any_db(openeo_backend, job_db, tmp_path, monkeypatch) -> RowOps:
    """SQLite and PostgreSQL."""
    return make_row_ops(openeo_backend, job_db, tmp_path, monkeypatch)


def starter(row_ops: RowOps, start_job: Any = add_job_start, *, owner: str = "dag/run/task/0", **kwargs: Any):
    sqlite_path = str(row_ops.db.sqlite_path) if row_ops.db.sqlite_path is not None else None
    row = JobRowRef(row_ops.db.table, 0, row_ops.db.job_db_conn_id, sqlite_path)
    connection = row_ops.connection()
    return RowJobStarter(
        row,
        backend_name=BACKEND_NAME,
        connection=connection,
        start_job=start_job,
        connection_provider=lambda name: connection,
        owner=owner,
        start_backoff=0,
        **kwargs,
    )


# -- POST /jobs whose answer is lost ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [{"error_rate": 1.0}, {"drop_rate": 1.0}], ids=["answered-500", "dropped"])
def test_lost_create_answer_adopts_the_job_the_backend_created(row_ops: RowOps, fault):
    [title] = row_ops.table()
    row_ops.backend.configure(faults=[{"endpoints": ["POST /jobs"], "times": 1, "after": True, **fault}])

    outcome = starter(row_ops).start()

    [job] = row_ops.jobs(title)  # the job the lost request created, and no other
    assert outcome.job_id == job["id"]
    assert row_ops.backend.stats()["POST /jobs"] == 1, "POST /jobs is never sent twice"
    row = row_ops.row()
    assert (row["id"], row["status"]) == (job["id"], outcome.backend_status)
    assert row["status"] in ("queued", "running")


def test_lost_create_answer_without_a_certain_match_fails_the_row_without_retry(row_ops: RowOps):
    [title] = row_ops.table()
    # A look-alike job (same title and graph, never started) makes the orphan ambiguous: adopt nothing.
    row_ops.connection().create_job(ADD_GRAPH, title=title, job_options=fast_options())
    row_ops.backend.reset_stats()
    row_ops.backend.configure(faults=[{"endpoints": ["POST /jobs"], "times": 1, "after": True, "error_rate": 1.0}])

    with pytest.raises(RowStartError) as failure:
        starter(row_ops).start()

    row = row_ops.row()
    assert row["status"] == "start_failed" and row["id"] is None and row["claimed_by"] is None
    message = row["error_message"]
    assert message == str(failure.value)
    assert "row 0 of job table" in message and "field 'id'" in message and "HTTP 500" in message
    assert "not retrying" in message and BASIC_PASSWORD not in message
    assert len(row_ops.jobs(title)) == 2  # the look-alike and the orphan; the starter made no third
    assert row_ops.backend.stats()["POST /jobs"] == 1

    # What the message tells the user to do: adopt one by writing its id into field 'id', then re-run.
    orphan = row_ops.jobs(title)[-1]["id"]
    row_ops.db.update_row(0, {"id": orphan})
    outcome = starter(row_ops).start()
    assert outcome.job_id == orphan and outcome.reattached
    assert row_ops.backend.stats()["POST /jobs"] == 1 and len(row_ops.jobs(title)) == 2


def test_a_refused_connection_is_safe_to_retry(row_ops: RowOps):
    """Nothing was sent, so nothing was created: the one create failure an Airflow retry may repeat."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    create = requests.Request("POST", "http://127.0.0.1:9/openeo/1.2/jobs").prepare()
    broken = requests.ConnectionError("Connection aborted: RemoteDisconnected", request=create)
    never_sent = requests.ConnectionError(MaxRetryError(None, "/jobs", NewConnectionError(None, "refused")))
    never_sent.request = create
    assert lost_create_answer(broken) is not None  # the request went out; its answer did not come back
    assert lost_create_answer(never_sent) is None

    [title] = row_ops.table()

    def start_job(row: pd.Series, connection: openeo.Connection, **kwargs: Any):
        raise never_sent

    with pytest.raises(TransientStartError):
        starter(row_ops, start_job).start()
    assert row_ops.row()["status"] == "not_started"
    assert row_ops.jobs(title) == []


def test_rate_limited_create_is_left_for_a_retry(row_ops: RowOps):
    """429 means the backend did not take the request: the row goes back to not_started and a retry creates."""
    [title] = row_ops.table()
    row_ops.backend.configure(faults=[{"endpoints": ["POST /jobs"], "times": 1, "rate_limit_rate": 1.0}])
    with pytest.raises(TransientStartError, match="429"):
        starter(row_ops).start()
    row = row_ops.row()
    assert (row["status"], row["id"]) == ("not_started", None) and "row 0 of job table" in row["error_message"]
    assert row_ops.jobs(title) == []

    outcome = starter(row_ops).start()
    assert [job["id"] for job in row_ops.jobs(title)] == [outcome.job_id]


# -- concurrency --------------------------------------------------------------------------------------------------


def test_concurrent_starters_on_one_row_create_exactly_one_job(row_ops_any_db: RowOps):
    ops = row_ops_any_db
    [title] = ops.table()
    starters = [starter(ops, owner=f"dag/run_{i}/task/0") for i in range(4)]
    barrier = threading.Barrier(len(starters))
    outcomes: list[Any] = []

    def race(one: RowJobStarter) -> None:
        barrier.wait()
        try:
            outcomes.append(one.start())
        except TransientStartError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=race, args=(one,)) for one in starters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    started = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(outcomes) == 4 and len(started) >= 1
    assert len({o.job_id for o in started}) == 1
    [job] = ops.jobs(title)
    assert ops.row()["id"] == job["id"]


# -- claims: a crash between claiming the row and POST /jobs ---------------------------------------------------------


def test_row_left_queued_for_start_by_its_own_task_is_started_by_the_retry(row_ops: RowOps):
    """MBJM never starts rows left in ``queued_for_start``; the same task instance's retry takes its claim back."""
    [title] = row_ops.table()
    owner = "dag/run/task/0"
    row_ops.db.update_row(
        0, {"status": "queued_for_start", "claimed_by": owner, "claimed_at": pd.Timestamp.now(tz="UTC").isoformat()}
    )
    outcome = starter(row_ops, owner=owner).start()
    assert [job["id"] for job in row_ops.jobs(title)] == [outcome.job_id]
    assert row_ops.row()["claimed_by"] is None


def test_a_fresh_claim_of_another_task_is_respected_and_a_stale_one_taken_over(row_ops: RowOps):
    [title] = row_ops.table()
    fresh = pd.Timestamp.now(tz="UTC")
    row_ops.db.update_row(
        0, {"status": "queued_for_start", "claimed_by": "other/task", "claimed_at": fresh.isoformat()}
    )
    with pytest.raises(TransientStartError, match="being started by other/task"):
        starter(row_ops).start()
    assert row_ops.jobs(title) == []

    stale = fresh - pd.Timedelta(hours=1)
    row_ops.db.update_row(0, {"claimed_at": stale.isoformat()})
    outcome = starter(row_ops).start()
    assert [job["id"] for job in row_ops.jobs(title)] == [outcome.job_id]


# -- start_job misbehaving ----------------------------------------------------------------------------------------


def test_start_job_raising_marks_the_row_with_a_scrubbed_message(row_ops: RowOps):
    [title] = row_ops.table()

    def start_job(row: pd.Series, connection: openeo.Connection, **kwargs: Any):
        raise ValueError(f"field 'year' is not a number (and here is a secret: {BASIC_PASSWORD})")

    with pytest.raises(RowStartError) as failure:
        starter(row_ops, start_job).start()
    row = row_ops.row()
    assert row["status"] == "start_failed" and row["claimed_by"] is None
    assert row["error_message"].startswith("row 0 of job table")
    assert "ValueError: field 'year' is not a number" in row["error_message"]
    assert BASIC_PASSWORD not in row["error_message"] and BASIC_PASSWORD not in str(failure.value)
    assert row_ops.jobs(title) == []


def test_start_job_returning_a_non_job_marks_the_row(row_ops: RowOps):
    row_ops.table()
    with pytest.raises(RowStartError, match="start_job returned dict, expected an openeo BatchJob or None"):
        starter(row_ops, lambda row, connection, **kw: {"id": "j-1"}).start()
    row = row_ops.row()
    assert row["status"] == "start_failed" and "row 0 of job table" in row["error_message"]


def test_start_job_returning_none_skips_the_row(row_ops: RowOps):
    [title] = row_ops.table()
    with pytest.raises(RowSkipped):
        starter(row_ops, lambda row, connection, **kw: None).start()
    assert row_ops.row()["status"] == "skipped" and row_ops.jobs(title) == []


def test_backend_refusing_the_process_graph_marks_the_row(row_ops: RowOps):
    [title] = row_ops.table()
    row_ops.backend.configure(reject_process_graphs=True)
    with pytest.raises(RowStartError, match="ProcessGraphInvalid"):
        starter(row_ops).start()
    row = row_ops.row()
    assert row["status"] == "start_failed" and "row 0 of job table" in row["error_message"]
    assert row_ops.jobs(title) == []


# -- starting --------------------------------------------------------------------------------------------------


def test_transient_start_failures_are_retried_on_the_same_job(row_ops: RowOps):
    [title] = row_ops.table()
    row_ops.backend.configure(faults=[{"endpoints": ["POST /jobs/{job_id}/results"], "times": 2, "error_rate": 1.0}])
    outcome = starter(row_ops).start()
    [job] = row_ops.jobs(title)
    assert outcome.job_id == job["id"] and row_ops.row()["status"] in ("queued", "running")


def test_concurrent_job_limit_keeps_the_created_job_for_the_retry(row_ops: RowOps):
    """MBJM crashes on ConcurrentJobLimit; here the row keeps its created job and a later try starts it."""
    [title] = row_ops.table()
    row_ops.backend.configure(max_concurrent_jobs=0)
    with pytest.raises(TransientStartError, match="ConcurrentJobLimit"):
        starter(row_ops, start_attempts=2).start()
    [job] = row_ops.jobs(title)
    row = row_ops.row()
    assert (row["id"], row["status"]) == (job["id"], "created")

    row_ops.backend.configure(max_concurrent_jobs=None)
    outcome = starter(row_ops).start()
    assert outcome.job_id == job["id"] and outcome.reattached
    assert [j["id"] for j in row_ops.jobs(title)] == [job["id"]]


def _started_by_start_job(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
    job = add_job_start(row, connection)
    job.start()
    return job


@pytest.mark.parametrize("start_job", [add_job_start, _started_by_start_job], ids=["created-only", "started"])
def test_the_status_after_start_job_is_known_without_asking_the_backend(row_ops: RowOps, start_job):
    """The HTTP session saw the create (and any start): no GET /jobs/{id} per job to learn what it already knows."""
    [title] = row_ops.table()
    row_ops.backend.reset_stats()
    outcome = starter(row_ops, start_job).start()
    stats = row_ops.backend.stats()
    assert stats.get("GET /jobs/{job_id}", 0) == 0, stats
    assert stats["POST /jobs/{job_id}/results"] == 1, "started exactly once, by start_job or by us"
    [job] = row_ops.jobs(title)
    assert outcome.job_id == job["id"] and job["status"] != "created"
    assert row_ops.row()["backend_status"] in ("queued", "running", "finished")


def test_a_job_start_job_got_through_another_connection_is_read_back(row_ops: RowOps):
    [title] = row_ops.table()
    other = row_ops.connection()  # not the session the starter listens on
    row_ops.backend.reset_stats()
    outcome = starter(row_ops, lambda row, connection, **kwargs: add_job_start(row, other)).start()
    stats = row_ops.backend.stats()
    assert stats["GET /jobs/{job_id}"] == 1 and stats["POST /jobs/{job_id}/results"] == 1, stats
    assert [j["id"] for j in row_ops.jobs(title)] == [outcome.job_id]


def test_a_row_pinned_to_another_backend_is_refused(row_ops: RowOps):
    row_ops.table()
    row_ops.db.update_row(0, {"backend_name": "elsewhere"})
    with pytest.raises(RowStartError, match="field 'backend_name' is 'elsewhere'"):
        starter(row_ops).start()
