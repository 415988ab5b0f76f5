"""OpenEOJobTrigger keeping a real job-db row (SQLite and PostgreSQL) up to date for a real local-backend job."""

from __future__ import annotations

import asyncio
import json
import time

import openeo
import pandas as pd
import pytest
from openeo.util import rfc3339

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.hooks.openeo import OpenEOHook
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.triggers.openeo import OpenEOJobEvent, OpenEOJobEventStatus, OpenEOJobTrigger
from tests.fixtures.local_backend import backend_connection

CONN_ID = "openeo_trigger_row_test"
ADD = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}


@pytest.fixture
def connection(openeo_backend, monkeypatch) -> openeo.Connection:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(backend_connection(openeo_backend)))
    return OpenEOHook(CONN_ID).get_conn()


def row_with_job(job_db: OpenEOJobDbHook, connection: openeo.Connection, *, run: float) -> tuple[JobRowRef, str]:
    """Row 0 holding a started job, as OpenEOStartJobOperator leaves it."""
    job_db.initialize_from_df(pd.DataFrame({"title": ["field 1"]}))
    options = {"local_backend": {"queue_seconds": 0.2, "run_seconds": run}}
    job = connection.create_job(ADD, title="row test", job_options=options)
    job.start()
    job_db.update_row(0, {"id": job.job_id, "status": "queued", "backend_name": "local"})
    sqlite_path = str(job_db.sqlite_path) if job_db.sqlite_path is not None else None
    return JobRowRef(job_db.table, 0, job_db.job_db_conn_id, sqlite_path), job.job_id


async def wait(trigger: OpenEOJobTrigger) -> OpenEOJobEvent:
    return OpenEOJobEvent.from_dict((await asyncio.wait_for(anext(trigger.run()), 60)).payload)


def test_status_changes_reach_the_row_at_once(job_db, connection):
    row, job_id = row_with_job(job_db, connection, run=0.6)
    event = asyncio.run(wait(OpenEOJobTrigger(CONN_ID, job_id, poll_interval=0.2, row=row.to_dict())))
    assert event.status is OpenEOJobEventStatus.FINISHED and event.row == row.to_dict()
    values = job_db.get_row(0)
    assert values["backend_status"] == "finished"
    assert values["status"] == "running"  # the final status is written by the job handler, with results
    started = rfc3339.parse_datetime(values["running_start_time"], with_timezone=True).timestamp()
    assert started == pytest.approx(event.running_since, abs=1)


def test_restart_keeps_counting_from_the_rows_running_start_time(job_db, connection, openeo_backend):
    row, job_id = row_with_job(job_db, connection, run=60)
    # the limit leaves the first triggerer seconds to spare on a loaded machine: it must be stopped before it
    limit = 6.0
    kwargs = {"poll_interval": 0.2, "cancel_running_job_after": limit, "row": row.to_dict()}

    async def first_triggerer() -> None:
        trigger = OpenEOJobTrigger(CONN_ID, job_id, **kwargs)
        task = asyncio.ensure_future(anext(trigger.run()))
        deadline = time.time() + 10
        while job_db.get_row(0)["running_start_time"] is None and time.time() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert not task.done(), "the first triggerer ended before it was stopped"
        task.cancel()  # the triggerer stops ...
        with pytest.raises(asyncio.CancelledError):
            await task
        await trigger.cleanup()  # ... and never cancels the job on its way out

    asyncio.run(first_triggerer())
    assert connection.job(job_id).status() == "running"
    since = rfc3339.parse_datetime(job_db.get_row(0)["running_start_time"], with_timezone=True).timestamp()
    time.sleep(max(0.0, since + limit + 0.2 - time.time()))  # the limit passes while no triggerer runs

    resumed_at = time.time()
    event = asyncio.run(wait(OpenEOJobTrigger(CONN_ID, job_id, **kwargs)))  # the next triggerer
    assert event.status is OpenEOJobEventStatus.CANCELED and event.cancel_requested
    assert event.running_since == pytest.approx(since)
    assert time.time() - resumed_at < 1.5  # at once: it did not start counting again from the restart
    assert connection.job(job_id).status() == "canceled"
    assert openeo_backend.stats()["DELETE /jobs/{job_id}/results"] == 1
