"""404s on a live job against the real local backend: the row keeps its job, and no second job is ever created.

The aggregator behind openEO Platform answers 404 ``JobNotFound`` for every job of an upstream it cannot reach.
The local backend's fault rules reproduce the 404s on one job's ``GET /jobs/{id}``; whether the listing shows the
job is chosen per test (``federation:missing`` itself is covered by the in-process fakes of the poller tests).
"""

from __future__ import annotations

import re
import time
from functools import partial
from typing import Any

import pandas as pd

from airflow_provider_openeo.hooks.openeo import OpenEOAsyncHook
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.start.job_starting import UNCONFIRMED, RowJobStarter
from airflow_provider_openeo.triggers.openeo import OpenEOJobTrigger
from tests.fixtures.local_backend import backend_conn_env
from tests.system.operators.conftest import ADD_GRAPH, BACKEND_NAME, CONN_ID, RowOps, deferred_job_id, run_row


def start_with(row: pd.Series, connection: Any, *, run: float, **kwargs: Any) -> Any:
    options = {"local_backend": {"queue_seconds": 0, "run_seconds": run}}
    return connection.create_job(ADD_GRAPH, title=str(row["title"]), job_options=options)


def not_found_on_get(job_id: str, times: int) -> dict[str, Any]:
    """``times`` answers 404 ``JobNotFound``-like to ``GET /jobs/{job_id}`` (the listing is left alone)."""
    return {
        "methods": ["GET"],
        "path": f"^/jobs/{re.escape(job_id)}$",
        "error_rate": 1.0,
        "error_status": 404,
        "times": times,
    }


def test_404s_on_a_listed_job_never_end_its_row_even_with_an_eager_policy(row_ops: RowOps, monkeypatch):
    """The job's GET answers 404 for ~3 s while the listing still shows it: it lives, and the row finishes."""
    backend_conn_env(monkeypatch, CONN_ID, row_ops.backend, job_gone_polls=1, job_gone_seconds=0)
    [title] = row_ops.table()
    start = partial(start_with, run=5.0)
    job_id = deferred_job_id(row_ops.operator(start_job=start))
    row_ops.backend.configure(faults=[not_found_on_get(job_id, times=10)])

    run_row(row_ops.operator(start_job=start))  # a retry: re-attaches (unconfirmed), then the trigger waits

    row = row_ops.row()
    assert (row["id"], row["status"], row["results_state"]) == (job_id, "finished", "downloaded")
    assert [job["id"] for job in row_ops.jobs(title)] == [job_id], "no second job"
    assert row_ops.backend.fault_stats()["error"] == 10


def test_a_window_of_404s_shorter_than_the_policy_does_not_end_the_row(row_ops: RowOps, monkeypatch):
    """The listing cannot show the job (one page of one job, a newer one): only the window rule could confirm, and
    a few seconds of 404s are far short of its default (several polls over minutes)."""
    monkeypatch.setattr(
        OpenEOJobTrigger,
        "hook_factory",
        lambda conn_id: OpenEOAsyncHook(conn_id, page_limit=1, max_listing_pages=1, listing_min_jobs=1),
    )
    [title] = row_ops.table()
    start = partial(start_with, run=4.0)
    operator = row_ops.operator(start_job=start)
    job_id = deferred_job_id(operator)
    row_ops.connection().create_job(ADD_GRAPH, title=f"{title}-newer")  # first in the newest-first listing
    row_ops.backend.configure(faults=[not_found_on_get(job_id, times=8)])
    began = time.monotonic()

    run_row(row_ops.operator(start_job=start))

    row = row_ops.row()
    assert (row["id"], row["status"], row["results_state"]) == (job_id, "finished", "downloaded")
    assert [job["id"] for job in row_ops.jobs(title)] == [job_id], "no second job"
    assert row_ops.backend.fault_stats()["error"] == 8
    assert time.monotonic() - began < 30


def test_a_re_run_of_a_row_whose_job_answers_404_re_attaches_unless_a_listing_confirms(row_ops: RowOps):
    [title] = row_ops.table()
    job_id = deferred_job_id(row_ops.operator(start_job=partial(start_with, run=30.0)))
    row_ops.backend.configure(faults=[not_found_on_get(job_id, times=1)])
    starter = _starter(row_ops)

    outcome = starter.start()

    assert (outcome.job_id, outcome.backend_status, outcome.reattached) == (job_id, UNCONFIRMED, True)
    assert row_ops.row()["id"] == job_id and row_ops.row()["job_history"] in (None, [])
    assert [job["id"] for job in row_ops.jobs(title)] == [job_id]

    row_ops.connection().create_job(ADD_GRAPH, title=f"{title}-other")  # the listing shows the user's other jobs
    row_ops.connection().job(job_id).delete()  # really gone now: absent from a complete listing
    outcome = _starter(row_ops).start()
    assert outcome.job_id != job_id and not outcome.reattached
    assert [(h["id"], h["status"]) for h in row_ops.row()["job_history"]] == [(job_id, "deleted")]


def _starter(row_ops: RowOps) -> RowJobStarter:
    sqlite_path = str(row_ops.db.sqlite_path) if row_ops.db.sqlite_path is not None else None
    connection = row_ops.connection()
    return RowJobStarter(
        JobRowRef(row_ops.db.table, 0, row_ops.db.job_db_conn_id, sqlite_path),
        backend_name=BACKEND_NAME,
        connection=connection,
        start_job=partial(start_with, run=0.5),
        connection_provider=lambda name: connection,
        owner="dag/run/task/0",
        start_backoff=0,
    )
