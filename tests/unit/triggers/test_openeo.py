"""Unit tests of OpenEOJobTrigger against an in-process fake hook and job table (fast; no network)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import pytest
from airflow.sdk._shared.module_loading import import_string
from airflow.triggers.base import TaskSuccessEvent
from openeo.util import rfc3339

from airflow_provider_openeo.exceptions import OpenEOApiRequestError, OpenEOTransientError
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.triggers import _status_poller
from airflow_provider_openeo.triggers.openeo import (
    JobWaitSettings,
    OpenEOJobEvent,
    OpenEOJobEventStatus,
    OpenEOJobTrigger,
)
from tests.unit.triggers._fakes import FakeBackend, FakeJobTable, auth_error

FAST = 0.01
ROW = JobRowRef(table="jobs", row_id=7, sqlite_path="/nowhere.db")


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    fake = FakeBackend()
    monkeypatch.setattr(OpenEOJobTrigger, "hook_factory", fake.hook)
    return fake


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> FakeJobTable:
    fake = FakeJobTable()
    monkeypatch.setattr(JobRowRef, "hook", lambda self: fake)
    return fake


async def first_event(trigger: OpenEOJobTrigger, timeout: float = 10) -> OpenEOJobEvent:
    event = await asyncio.wait_for(anext(trigger.run()), timeout)
    json.dumps(event.payload)  # events are stored as JSON
    return OpenEOJobEvent.from_dict(event.payload)


def make(job_id: str = "j-1", **kwargs) -> OpenEOJobTrigger:
    kwargs.setdefault("poll_interval", FAST)
    return OpenEOJobTrigger("openeo_test", job_id, **kwargs)


# -- serialisation -----------------------------------------------------------------------------------------------


def test_serialize_round_trip_gives_an_identical_trigger():
    trigger = OpenEOJobTrigger(
        "openeo_foo",
        "j-42",
        poll_interval=12.5,
        deadline=1_900_000_000.0,
        cancel_running_job_after=3600,
        running_since=1_800_000_000.0,
        cancel_on_kill=False,
        row=ROW.to_dict(),
        end_task_on_finish=True,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_openeo.triggers.openeo.OpenEOJobTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    rebuilt = import_string(classpath)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["row"] == ROW.to_dict() and kwargs["cancel_on_kill"] is False
    assert kwargs["end_task_on_finish"] is True


#: Kwargs of triggers stored by earlier versions, as a running deployment's database holds them: the wait's
#: settings flat (before ``JobWaitSettings``), and before ``end_task_on_finish`` existed.
STORED_TRIGGER_KWARGS = [
    {
        "openeo_conn_id": "openeo_foo",
        "job_id": "j-42",
        "poll_interval": 30.0,
        "deadline": 1_900_000_000.0,
        "cancel_running_job_after": 3600.0,
        "running_since": 1_800_000_000.0,
        "cancel_on_kill": False,
        "row": ROW.to_dict(),
        "end_task_on_finish": True,
    },
    {
        "openeo_conn_id": "openeo_foo",
        "job_id": "j-7",
        "poll_interval": 60.0,
        "deadline": None,
        "cancel_running_job_after": None,
        "running_since": None,
        "cancel_on_kill": True,
        "row": None,
    },
]


@pytest.mark.parametrize("stored", STORED_TRIGGER_KWARGS)
def test_a_trigger_stored_by_an_earlier_version_deserializes_unchanged(stored):
    """Through Airflow's own trigger row (kwargs encoded and read back), as the triggerer builds it."""
    from airflow.models.trigger import Trigger

    classpath = "airflow_provider_openeo.triggers.openeo.OpenEOJobTrigger"
    row = Trigger(classpath=classpath, kwargs=stored)
    trigger = import_string(row.classpath)(**row.kwargs)
    assert isinstance(trigger, OpenEOJobTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs == {"end_task_on_finish": False, **stored}
    assert (trigger.poll_interval, trigger.cancel_running_job_after, trigger.cancel_on_kill) == (
        stored["poll_interval"],
        stored["cancel_running_job_after"],
        stored["cancel_on_kill"],
    )


def test_wait_settings_become_the_trigger_kwargs():
    settings = JobWaitSettings(poll_interval=dt.timedelta(seconds=5), cancel_running_job_after=600)
    trigger = OpenEOJobTrigger("c", "j", **settings.trigger_kwargs())
    _, kwargs = trigger.serialize()
    assert (kwargs["poll_interval"], kwargs["cancel_running_job_after"], kwargs["cancel_on_kill"]) == (5.0, 600.0, True)


def test_every_entry_point_has_the_one_default_of_each_wait_setting():
    """The task group had 60 s and the operator, sensor and trigger 30 s: now each setting has one default."""
    import inspect

    from airflow_provider_openeo.batch.task_groups import openeo_job_batch
    from airflow_provider_openeo.operators.openeo import OpenEOBatchJobOperator
    from airflow_provider_openeo.sensors.openeo import OpenEOJobSensor

    expected = JobWaitSettings().trigger_kwargs()
    assert expected["poll_interval"] == 60.0  # MultiBackendJobManager's poll_sleep, as the README says
    for entry in (openeo_job_batch, OpenEOBatchJobOperator.__init__, OpenEOJobSensor.__init__, OpenEOJobTrigger):
        parameters = inspect.signature(entry).parameters
        defaults = {name: parameters[name].default for name in expected if name in parameters}
        assert defaults == {name: expected[name] for name in defaults}, entry
        assert "poll_interval" in defaults, entry


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [({"poll_interval": 0}, "poll_interval"), ({"cancel_running_job_after": -1}, "cancel_running_job_after")],
)
def test_bad_arguments_name_the_argument(kwargs, text):
    with pytest.raises(ValueError, match=text):
        OpenEOJobTrigger("c", "j", **kwargs)


@pytest.mark.parametrize("payload", [None, "finished", {"status": "done", "job_id": "j", "openeo_conn_id": "c"}])
def test_event_schema_rejects_missing_or_unknown_events(payload):
    with pytest.raises(ValueError):
        OpenEOJobEvent.from_dict(payload)


def test_event_schema_round_trip():
    event = OpenEOJobEvent(OpenEOJobEventStatus.TIMEOUT, "j", "c", "m", "running", {"id": "j"}, 1.0, True, None)
    assert OpenEOJobEvent.from_dict(event.to_dict()) == event
    assert event.to_dict()["status"] == "timeout"


# -- outcomes ----------------------------------------------------------------------------------------------------


async def test_finished_job_yields_one_event_with_metadata(backend):
    backend.add_job("j-1", "queued", "running", "running", "finished")
    event = await first_event(make())
    assert event.status is OpenEOJobEventStatus.FINISHED
    assert event.backend_status == "finished" and event.job["title"] == "job j-1"
    assert "process" not in event.job  # large process graphs stay out of the trigger event
    assert event.running_since is not None and not event.cancel_requested
    assert backend.canceled == []
    assert _status_poller.active_pollers() == []
    assert backend.hooks_closed == backend.hooks_opened


async def test_error_and_canceled_jobs(backend):
    backend.add_job("bad", "running", "error")
    backend.add_job("stopped", "canceled")
    assert (await first_event(make("bad"))).status is OpenEOJobEventStatus.ERROR
    assert (await first_event(make("stopped"))).status is OpenEOJobEventStatus.CANCELED


async def test_deleted_job_is_not_found(backend):
    event = await first_event(make("ghost"))
    assert event.status is OpenEOJobEventStatus.NOT_FOUND
    assert "ghost" in event.message and "404" in event.message


async def test_auth_error_ends_the_wait_with_a_clear_message(backend):
    backend.add_job("j-1", "running")
    backend.errors = [auth_error()]
    event = await first_event(make())
    assert event.status is OpenEOJobEventStatus.FAILED
    assert "authentication failed" in event.message and "openeo_test" in event.message


async def test_refused_listing_ends_the_wait(backend):
    backend.add_job("j-1", "running")
    backend.errors = [OpenEOApiRequestError("GET /jobs failed: [400] BadRequest")]
    event = await first_event(make())
    assert event.status is OpenEOJobEventStatus.FAILED and "400" in event.message


# -- transient errors --------------------------------------------------------------------------------------------


async def test_transient_errors_back_off_and_never_end_the_wait(backend):
    backend.add_job("j-1", "running", "finished")
    backend.errors = [
        OpenEOTransientError("GET /jobs failed: [503]", http_status=503),
        OpenEOTransientError("GET /jobs failed: [429]", http_status=429, retry_after=0.05),
        OpenEOTransientError("GET /jobs failed: ConnectionError"),
    ]
    started = time.monotonic()
    event = await first_event(make())
    assert event.status is OpenEOJobEventStatus.FINISHED
    # 1x, 2x interval, then at least the 0.05 s Retry-After, then 4x: the waits add up.
    assert time.monotonic() - started >= 0.01 + 0.02 + 0.05
    assert backend.calls["get_jobs:openeo_test"] == 5


@pytest.mark.parametrize(
    ("failures", "retry_after", "expected"),
    [(1, None, 10), (2, None, 20), (3, None, 40), (10, None, 300), (1, 120, 120), (2, 5, 20), (1, 10**6, 3600)],
)
def test_backoff_is_exponential_capped_and_honours_retry_after(failures, retry_after, expected):
    delay = _status_poller.backoff_delay(failures, interval=10, cap=300, retry_after=retry_after)
    assert delay == expected


# -- deadline and running-time limit -------------------------------------------------------------------------------


async def test_deadline_cancels_the_job_and_reports_timeout(backend):
    backend.add_job("j-1", "running")
    event = await first_event(make(deadline=time.time() + 0.1))
    assert event.status is OpenEOJobEventStatus.TIMEOUT
    assert event.cancel_requested and backend.canceled == ["j-1"]
    assert "deadline" in event.message and "cancellation requested" in event.message


async def test_deadline_without_cancel_on_kill_leaves_the_job_running(backend):
    backend.add_job("j-1", "running")
    event = await first_event(make(deadline=time.time() + 0.05, cancel_on_kill=False))
    assert event.status is OpenEOJobEventStatus.TIMEOUT
    assert not event.cancel_requested and backend.canceled == []


async def test_deadline_is_met_even_while_the_backend_is_down(backend):
    backend.add_job("j-1", "running")
    backend.errors = [OpenEOTransientError("down")] * 1000
    event = await first_event(make(poll_interval=5, deadline=time.time() + 0.2))
    assert event.status is OpenEOJobEventStatus.TIMEOUT


async def test_cancel_running_job_after_counts_from_first_running_poll(backend):
    backend.add_job("j-1", "queued", "queued", "queued", "running")
    started = time.time()
    event = await first_event(make(poll_interval=0.02, cancel_running_job_after=0.2))
    assert event.status is OpenEOJobEventStatus.CANCELED
    assert backend.canceled == ["j-1"] and event.cancel_requested
    assert "cancel_running_job_after=0.2" in event.message
    # The clock started at the first poll that saw "running" (after three queued polls), not at start.
    assert event.running_since >= started + 0.05
    assert time.time() - event.running_since >= 0.2


async def test_failed_cancel_is_retried_not_reported_as_canceled(backend):
    backend.add_job("j-1", "running")
    backend.cancel_errors = [OpenEOTransientError("503 on cancel")]
    event = await first_event(make(poll_interval=0.02, cancel_running_job_after=0.05))
    assert event.status is OpenEOJobEventStatus.CANCELED
    assert backend.calls["cancel_job"] == 2 and backend.canceled == ["j-1"]


async def test_running_since_kwarg_is_used_without_a_row(backend):
    backend.add_job("j-1", "running")
    event = await first_event(make(running_since=time.time() - 3600, cancel_running_job_after=60))
    assert event.status is OpenEOJobEventStatus.CANCELED


async def test_end_task_on_finish_ends_the_task_in_the_triggerer_only_for_a_finished_job(backend, table):
    """The pool slot (a backend slot) is free the moment the job is seen finished; the row says so first."""
    table.rows[7] = {"id": "j-1", "status": "running", "backend_status": "running", "running_start_time": None}
    backend.add_job("j-1", "running", "finished")
    backend.add_job("bad", "running", "error")

    ended = await asyncio.wait_for(anext(make(row=ROW.to_dict(), end_task_on_finish=True).run()), 10)
    assert isinstance(ended, TaskSuccessEvent) and ended.task_instance_state == "success"
    assert table.rows[7]["backend_status"] == "finished", "the row records the end before the task ends"
    # Any other outcome resumes the task, which handles it (error logs, failing without retry).
    resumed = await asyncio.wait_for(anext(make("bad", end_task_on_finish=True).run()), 10)
    assert not isinstance(resumed, TaskSuccessEvent)
    assert OpenEOJobEvent.from_dict(resumed.payload).status is OpenEOJobEventStatus.ERROR


# -- job-db row --------------------------------------------------------------------------------------------------


async def test_status_changes_and_running_start_time_are_written_to_the_row(backend, table):
    table.rows[7] = {"id": "j-1", "status": "queued", "backend_status": None, "running_start_time": None}
    backend.add_job("j-1", "queued", "running", "running", "finished")
    event = await first_event(make(row=ROW.to_dict()))
    assert event.row == ROW.to_dict()
    written = [values for _, values in table.writes]
    assert written[0] == {"backend_status": "queued"}
    assert written[1]["status"] == written[1]["backend_status"] == "running"
    # Only what changed; the final status is the job handler's to write (with usage and results).
    assert written[2] == {"backend_status": "finished"}
    assert table.rows[7]["status"] == "running"
    stamp = table.rows[7]["running_start_time"]
    assert stamp.endswith("Z") and rfc3339.parse_datetime(stamp, with_timezone=True).timestamp() == pytest.approx(
        event.running_since, abs=1
    )


async def test_restart_resumes_running_time_from_the_row(backend, table):
    """A triggerer restart: the new trigger continues the count from the row's running_start_time."""
    table.rows[7] = {"id": "j-1", "status": "queued", "backend_status": "queued", "running_start_time": None}
    backend.add_job("j-1", "running")
    kwargs = {"row": ROW.to_dict(), "cancel_running_job_after": 2.0, "poll_interval": 0.02}

    first = make(**kwargs)
    task = asyncio.ensure_future(anext(first.run()))
    for _ in range(250):  # until the first trigger has recorded when the job started running (well before 2 s)
        await asyncio.sleep(0.02)
        if table.rows[7].get("running_start_time"):
            break
    task.cancel()  # the triggerer goes away ...
    with pytest.raises(asyncio.CancelledError):
        await task
    await first.cleanup()  # ... and cleans up, which must never cancel the job
    assert backend.canceled == []
    recorded = rfc3339.parse_datetime(table.rows[7]["running_start_time"], with_timezone=True).timestamp()
    await asyncio.sleep(max(0.0, recorded + 2.1 - time.time()))  # the limit passes while no triggerer runs

    resumed_at = time.time()
    second = make(**kwargs)  # same serialized kwargs, as the next triggerer builds it
    event = await first_event(second)
    assert event.status is OpenEOJobEventStatus.CANCELED and backend.canceled == ["j-1"]
    assert event.running_since == pytest.approx(recorded)
    # Canceled at once; a count restarted at the resume would have waited another two seconds.
    assert time.time() - resumed_at < 1.5


async def test_row_running_start_time_from_an_earlier_run_is_honoured(backend, table):
    an_hour_ago = rfc3339.datetime(dt.datetime.fromtimestamp(time.time() - 3600, tz=dt.timezone.utc))
    table.rows[7] = {"id": "j-1", "status": "running", "backend_status": "running", "running_start_time": an_hour_ago}
    backend.add_job("j-1", "running")
    event = await first_event(make(row=ROW.to_dict(), cancel_running_job_after=60))
    assert event.status is OpenEOJobEventStatus.CANCELED
    assert table.rows[7]["running_start_time"] == an_hour_ago  # never rewritten


async def test_a_row_holding_another_job_is_never_written(backend, table):
    table.rows[7] = {"id": "j-NEW", "status": "queued", "backend_status": "queued", "running_start_time": None}
    backend.add_job("j-1", "running", "finished")
    event = await first_event(make(row=ROW.to_dict()))
    assert event.status is OpenEOJobEventStatus.FINISHED
    assert table.writes == [] and table.rows[7]["id"] == "j-NEW"


async def test_row_replaced_during_the_wait_stops_the_writes(backend, table):
    table.rows[7] = {"id": "j-1", "status": "queued", "backend_status": "queued", "running_start_time": None}
    backend.add_job("j-1", "queued", "running", "finished")
    trigger = make(row=ROW.to_dict(), poll_interval=0.05)
    task = asyncio.ensure_future(first_event(trigger))
    await asyncio.sleep(0.02)
    table.rows[7]["id"] = "j-2"  # a re-run replaced the job meanwhile
    event = await task
    assert event.status is OpenEOJobEventStatus.FINISHED
    assert table.writes == [] and table.rows[7]["status"] == "queued"


# -- on_kill / cleanup -------------------------------------------------------------------------------------------


async def test_on_kill_cancels_the_job_and_marks_the_row(backend, table):
    table.rows[7] = {"id": "j-1", "status": "running", "backend_status": "running", "running_start_time": None}
    backend.add_job("j-1", "running")
    trigger = make(row=ROW.to_dict())
    task = asyncio.ensure_future(anext(trigger.run()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await trigger.on_kill()
    await trigger.cleanup()
    assert backend.canceled == ["j-1"]
    assert (table.rows[7]["status"], table.rows[7]["backend_status"]) == ("canceled", "canceled")
    assert _status_poller.active_pollers() == []


async def test_on_kill_of_a_job_answering_404_leaves_the_row_to_a_re_run_that_re_attaches(backend, table):
    """A 404 to the cancel proves nothing (a federation's outage): the row keeps the job instead of being freed
    for a second one."""
    table.rows[7] = {"id": "j-gone", "status": "running", "backend_status": "running", "running_start_time": None}
    await make("j-gone", row=ROW.to_dict()).on_kill()
    assert backend.calls["cancel_job"] == 1
    assert table.writes == [] and (table.rows[7]["status"], table.rows[7]["id"]) == ("running", "j-gone")


async def test_on_kill_leaves_the_row_alone_when_the_cancel_fails(backend, table):
    table.rows[7] = {"id": "j-1", "status": "running", "backend_status": "running", "running_start_time": None}
    backend.add_job("j-1", "running")
    backend.cancel_errors.append(OpenEOTransientError("backend down"))
    await make(row=ROW.to_dict()).on_kill()
    assert table.writes == [] and table.rows[7]["status"] == "running"


async def test_on_kill_respects_cancel_on_kill_false(backend):
    backend.add_job("j-1", "running")
    await make(cancel_on_kill=False).on_kill()
    assert backend.calls["cancel_job"] == 0


async def test_cleanup_never_cancels(backend):
    backend.add_job("j-1", "running")
    trigger = make()
    task = asyncio.ensure_future(anext(trigger.run()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await trigger.cleanup()
    await trigger.cleanup()  # idempotent
    assert backend.calls["cancel_job"] == 0
    assert _status_poller.active_pollers() == []


# -- shared polling ----------------------------------------------------------------------------------------------


async def test_many_triggers_share_one_listing_per_interval(backend):
    n = 200
    for i in range(n):
        backend.add_job(f"j-{i}", "queued", "running", "finished")
    triggers = [make(f"j-{i}", poll_interval=0.05) for i in range(n)]
    events = await asyncio.gather(*(first_event(t) for t in triggers))
    assert {e.status for e in events} == {OpenEOJobEventStatus.FINISHED}
    assert backend.calls["get_jobs:openeo_test"] == 3  # queued, running, finished: one listing each
    assert backend.calls["get_job"] == 0
    assert len(backend.listed_ids[0]) == n
    assert backend.hooks_opened - 0 == backend.hooks_closed  # the poller's hook is closed with it
    assert _status_poller.active_pollers() == []


async def test_triggers_joining_later_are_picked_up_by_the_running_poller(backend):
    backend.add_job("early", "running", "running", "running", "running", "finished")
    backend.add_job("late", "running", "finished")
    early = asyncio.ensure_future(first_event(make("early", poll_interval=0.05)))
    await asyncio.sleep(0.07)
    late_event = await first_event(make("late", poll_interval=0.05))
    assert late_event.status is OpenEOJobEventStatus.FINISHED
    assert (await early).status is OpenEOJobEventStatus.FINISHED
    assert backend.hooks_opened == 1  # one poller served both
    assert any(ids == ["early", "late"] for ids in backend.listed_ids)


async def test_backends_are_polled_separately(backend, monkeypatch):
    backend.add_job("a", "running", "finished")
    backend.add_job("b", "finished")
    events = await asyncio.gather(
        first_event(OpenEOJobTrigger("conn_a", "a", poll_interval=FAST)),
        first_event(OpenEOJobTrigger("conn_b", "b", poll_interval=FAST)),
    )
    assert [e.openeo_conn_id for e in events] == ["conn_a", "conn_b"]
    assert backend.listed_ids.count(["a"]) == 2 and backend.listed_ids.count(["b"]) == 1


async def test_one_failing_job_does_not_disturb_the_others(backend):
    backend.add_job("ok", "running", "running", "finished")
    events = await asyncio.gather(first_event(make("ok")), first_event(make("deleted")))
    assert [e.status for e in events] == [OpenEOJobEventStatus.FINISHED, OpenEOJobEventStatus.NOT_FOUND]


def test_each_short_lived_event_loop_gets_its_own_poller(backend):
    """``dag.test()`` runs every trigger in its own ``asyncio.run``: nothing may leak between loops."""
    backend.add_job("j-1", "running", "finished")
    backend.add_job("j-2", "finished")
    for job_id in ("j-1", "j-2"):
        event = asyncio.run(first_event(make(job_id)))
        assert event.status is OpenEOJobEventStatus.FINISHED
    assert backend.hooks_opened == backend.hooks_closed == 2
    assert _status_poller.active_pollers() == []


async def test_two_triggers_on_the_same_job_both_get_the_outcome(backend):
    backend.add_job("j-1", "running", "finished")
    events = await asyncio.gather(first_event(make()), first_event(make()))
    assert [e.status for e in events] == [OpenEOJobEventStatus.FINISHED] * 2
    assert backend.listed_ids[0] == ["j-1"]


async def test_a_job_that_finished_while_unwatched_is_finished_not_canceled(backend, table):
    an_hour_ago = rfc3339.datetime(dt.datetime.fromtimestamp(time.time() - 3600, tz=dt.timezone.utc))
    table.rows[7] = {"id": "j-1", "status": "running", "backend_status": "running", "running_start_time": an_hour_ago}
    backend.add_job("j-1", "finished")
    event = await first_event(make(row=ROW.to_dict(), cancel_running_job_after=60))
    assert event.status is OpenEOJobEventStatus.FINISHED and backend.canceled == []


async def test_triggers_on_one_table_share_one_database_hook(backend, monkeypatch):
    from airflow_provider_openeo.triggers._job_row_recorder import SHARED_HOOKS

    fake = FakeJobTable()
    built: list[JobRowRef] = []
    monkeypatch.setattr(JobRowRef, "hook", lambda self: built.append(self) or fake)
    n = 50
    for i in range(n):
        fake.rows[i] = {"id": f"j-{i}", "status": "queued", "backend_status": None, "running_start_time": None}
        backend.add_job(f"j-{i}", "running", "finished")
    rows = [JobRowRef("jobs", i, sqlite_path="/x.db").to_dict() for i in range(n)]
    events = await asyncio.gather(*(first_event(make(f"j-{i}", row=rows[i])) for i in range(n)))
    assert {e.status for e in events} == {OpenEOJobEventStatus.FINISHED}
    assert len(built) == 1  # one engine/pool for all 50 rows, not 50 database connections
    assert len(SHARED_HOOKS) == 0  # released when the last trigger finished
    assert all(fake.rows[i]["backend_status"] == "finished" for i in range(n))


async def test_a_broken_hook_ends_the_wait_instead_of_hanging(monkeypatch):
    def broken(conn_id):
        raise RuntimeError("no such hook")

    monkeypatch.setattr(OpenEOJobTrigger, "hook_factory", broken)
    event = await first_event(make(), timeout=5)
    assert event.status is OpenEOJobEventStatus.FAILED and "no such hook" in event.message
