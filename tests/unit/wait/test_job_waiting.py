"""Unit tests of the waiting logic shared by the sensor and the batch operator (fake handler and job table)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_openeo.hooks.openeo import OpenEOHook
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.triggers.openeo import OpenEOJobEvent, OpenEOJobEventStatus, OpenEOJobTrigger
from airflow_provider_openeo.wait.job_waiting import (
    JOB_URL_XCOM_KEY,
    OpenEOJobWaitMixin,
    compute_deadline,
    validate_event,
)
from tests.unit.triggers._fakes import FakeJobTable

ROW = JobRowRef(table="jobs", row_id=3)


class RecordingHandler:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any, dict]] = []

    def _record(self, name, context, job, row, metadata):
        self.calls.append((name, job, row, metadata))
        return {"handled": name, "job_id": job}

    def on_job_done(self, context, job, row, metadata):
        return self._record("on_job_done", context, job, row, metadata)

    def on_job_error(self, context, job, row, metadata):
        return self._record("on_job_error", context, job, row, metadata)

    def on_job_cancel(self, context, job, row, metadata):
        return self._record("on_job_cancel", context, job, row, metadata)


class Waiter(OpenEOJobWaitMixin, BaseOperator):
    def __init__(self, *, handler=None, **kwargs):
        super().__init__(**kwargs)
        self.openeo_conn_id = "openeo_unit"
        self.poll_interval = 5.0
        self.cancel_running_job_after = 600.0
        self.handler = handler

    def _batch_job(self, job_id: str):  # the real one opens an openEO connection; tested end to end elsewhere
        return f"BatchJob({job_id})"


class FakeTI:
    def __init__(self, start_date: dt.datetime | None = None) -> None:
        self.start_date = start_date
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def event(status: str, **kwargs) -> dict[str, Any]:
    payload = {"status": status, "job_id": "j-9", "openeo_conn_id": "openeo_unit", "message": f"job {status}"}
    payload["job"] = {"id": "j-9", "status": kwargs.pop("backend_status", status)}
    payload.update(kwargs)
    return payload


@pytest.mark.parametrize("payload", [None, {}, {"status": "weird", "job_id": "j", "openeo_conn_id": "c"}, "x"])
def test_validate_event_rejects_missing_or_unknown(payload):
    with pytest.raises(AirflowException, match="openEO job event"):
        validate_event(payload)


def test_validate_event_accepts_a_trigger_payload():
    assert validate_event(event("finished")).status is OpenEOJobEventStatus.FINISHED


def test_deadline_counts_from_the_start_of_the_try():
    start = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    context = {"ti": FakeTI(start)}
    timeouts = [dt.timedelta(hours=2), None, dt.timedelta(minutes=30)]
    assert compute_deadline(context, timeouts) == start.timestamp() + 1800
    assert compute_deadline(context, [None]) is None
    assert compute_deadline({"ti": FakeTI()}, [dt.timedelta(seconds=10)], now=100.0) == 110.0


def test_defer_pushes_the_job_url_first_and_carries_the_deadline(monkeypatch):
    monkeypatch.setattr(OpenEOHook, "job_url", lambda self, job_id: f"https://user:secret@backend.test/jobs/{job_id}")
    start = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    ti = FakeTI(start)
    waiter = Waiter(task_id="w", execution_timeout=dt.timedelta(hours=1))
    with pytest.raises(TaskDeferred) as deferred:
        waiter.defer_until_terminal({"ti": ti}, job_id="j-9", row=ROW)
    assert ti.xcom == {JOB_URL_XCOM_KEY: "https://backend.test/jobs/j-9"}  # credentials in a URL never travel
    trigger = deferred.value.trigger
    assert isinstance(trigger, OpenEOJobTrigger)
    assert deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["deadline"] == start.timestamp() + 3600
    assert kwargs["row"] == ROW.to_dict() and kwargs["job_id"] == "j-9"
    assert kwargs["poll_interval"] == 5.0 and kwargs["cancel_running_job_after"] == 600.0


def test_finished_runs_on_job_done_and_returns_its_result():
    handler = RecordingHandler()
    result = Waiter(task_id="w", handler=handler).execute_complete({}, event("finished", row=ROW.to_dict()))
    assert result == {"handled": "on_job_done", "job_id": "BatchJob(j-9)"}
    ((_, _, row, metadata),) = handler.calls
    assert row == ROW and metadata == {"id": "j-9", "status": "finished"}


def test_without_a_handler_finished_returns_the_job_metadata():
    assert Waiter(task_id="w").execute_complete({}, event("finished")) == {"id": "j-9", "status": "finished"}


@pytest.mark.parametrize(
    ("status", "extra", "handled"),
    [
        ("error", {}, "on_job_error"),
        ("canceled", {}, "on_job_cancel"),
        ("timeout", {"cancel_requested": True, "backend_status": "running"}, "on_job_cancel"),
        ("timeout", {"cancel_requested": False, "backend_status": "running"}, None),
    ],
)
def test_bad_endings_run_the_handler_then_fail_without_retry(status, extra, handled):
    handler = RecordingHandler()
    waiter = Waiter(task_id="w", handler=handler)
    with pytest.raises(AirflowFailException, match=r"'j-9'.*row 3 of job table 'jobs'"):
        waiter.execute_complete({}, event(status, row=ROW.to_dict(), **extra))
    assert [c[0] for c in handler.calls] == ([handled] if handled else [])


def test_not_found_marks_the_row_and_fails_without_retry(monkeypatch):
    table = FakeJobTable()
    table.rows[3] = {"id": "j-9", "status": "running", "backend_status": "running", "error_message": None}
    monkeypatch.setattr(JobRowRef, "hook", lambda self: table)
    with pytest.raises(AirflowFailException, match="j-9"):
        Waiter(task_id="w").execute_complete({}, event("not_found", row=ROW.to_dict(), job=None))
    assert table.rows[3]["status"] == "error"
    assert "'id'" in table.rows[3]["error_message"] and "j-9" in table.rows[3]["error_message"]


def test_not_found_leaves_a_row_of_another_job_alone(monkeypatch):
    table = FakeJobTable()
    table.rows[3] = {"id": "j-NEW", "status": "running"}
    monkeypatch.setattr(JobRowRef, "hook", lambda self: table)
    with pytest.raises(AirflowFailException):
        Waiter(task_id="w").execute_complete({}, event("not_found", row=ROW.to_dict()))
    assert table.rows[3] == {"id": "j-NEW", "status": "running"}


def test_a_failed_wait_may_be_retried():
    handler = RecordingHandler()
    with pytest.raises(AirflowException) as raised:
        Waiter(task_id="w", handler=handler).execute_complete({}, event("failed"))
    assert not isinstance(raised.value, AirflowFailException)
    assert handler.calls == []


def test_event_payload_of_the_sensor_and_trigger_is_one_schema():
    payload = event("finished", running_since=1.5, row=None)
    assert OpenEOJobEvent.from_dict(payload).to_dict() == {**payload, "backend_status": None, "cancel_requested": False}


def test_an_unknown_job_url_does_not_stop_the_wait(monkeypatch):
    def unreachable(self, job_id):
        raise ConnectionError("backend down")

    monkeypatch.setattr(OpenEOHook, "job_url", unreachable)
    ti = FakeTI()
    with pytest.raises(TaskDeferred):
        Waiter(task_id="w").defer_until_terminal({"ti": ti}, job_id="j-9")
    assert ti.xcom == {}
