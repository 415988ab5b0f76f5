"""Wait for an openEO batch job in the triggerer: shared status polling, deadline, running-time limit, kill.

The trigger ends with exactly one :class:`OpenEOJobEvent` (the payload schema lives here, in one place, and the
task side reads it back with :meth:`OpenEOJobEvent.from_dict`). What it guarantees:

- transient backend errors only slow polling down (see ``_status_poller``), for the failing job alone when only
  its read fails; they never end the wait;
- a 404 ends the wait (``not_found``) only once the backend, otherwise healthy, confirms the job gone
  (``airflow_provider_openeo.wait._job_gone``); until then the wait goes on, and the task log says so once;
- ``deadline`` (epoch seconds) stands in for the task's ``execution_timeout``, which Airflow does not enforce
  while a task is deferred; past it the remote job is canceled (if ``cancel_on_kill``) and the event is
  ``timeout``;
- ``cancel_running_job_after`` counts from the first poll that saw the job ``running`` (so it is exact to the
  poll interval) and survives a triggerer restart: with a job-db ``row`` the start of running is written to the
  row's ``running_start_time`` at once and read back when the trigger starts again;
- with a ``row``, every status change goes into it at once (``backend_status``; ``status`` and
  ``running_start_time`` while the job lives), compare-and-set on the row's job id so a stale trigger never
  writes over a newer job;
- ``on_kill`` (a user marked the task failed/success or cleared it) cancels the remote job; ``cleanup`` (every
  exit, including a move to another triggerer) never does;
- with ``end_task_on_finish``, a finished job ends the task right here (a ``TaskSuccessEvent``) instead of
  resuming it on a worker: the task's pool slot, which stands for a backend slot, is free the moment the job is
  seen finished, and a later task stores the results (the row, written first, says which job finished).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_openeo.exceptions import OpenEOAuthError, OpenEOJobNotFoundError, OpenEOProviderError
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.job_table.job_status import OpenEOJobStatus, RowStatus
from airflow_provider_openeo.job_table.timestamps import epoch_from_rfc3339, rfc3339_from_epoch
from airflow_provider_openeo.triggers import _status_poller
from airflow_provider_openeo.triggers._job_row_recorder import JobRowRecorder
from airflow_provider_openeo.triggers._status_poller import AsyncJobStatusHook, StatusUpdate, Subscription
from airflow_provider_openeo.triggers._wait_settings import (
    DEFAULT_CANCEL_ON_KILL,
    DEFAULT_CANCEL_RUNNING_JOB_AFTER,
    DEFAULT_POLL_INTERVAL,
    JobWaitSettings,
)

#: Bound on one cancel request, so ``on_kill`` (itself time-boxed by the triggerer) never hangs.
CANCEL_TIMEOUT = 30.0


class OpenEOJobEventStatus(str, Enum):
    """How a wait ended. The first three are the job's own terminal statuses; the rest are about the wait."""

    FINISHED = "finished"
    ERROR = "error"
    CANCELED = "canceled"
    TIMEOUT = "timeout"
    """The task's deadline (its ``execution_timeout``) passed first."""
    NOT_FOUND = "not_found"
    """The backend confirmed the job gone (see ``_job_gone``: repeated 404s while healthy, or a complete listing)."""
    FAILED = "failed"
    """The wait itself failed (authentication, an answer we cannot read); the job may still be alive."""


@dataclass(frozen=True)
class OpenEOJobEvent:
    """The payload of the one event an :class:`OpenEOJobTrigger` fires (JSON-only, no credentials).

    ``job`` is the backend's last metadata for the job without its ``process`` graph (which can be large);
    ``running_since`` is the epoch time the job was first seen running; ``cancel_requested`` says whether this
    trigger asked the backend to cancel the job; ``row`` is the :class:`JobRowRef` dict when a row was given.
    """

    status: OpenEOJobEventStatus
    job_id: str
    openeo_conn_id: str
    message: str
    backend_status: str | None = None
    job: dict[str, Any] | None = None
    running_since: float | None = None
    cancel_requested: bool = False
    row: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["status"] = self.status.value
        return payload

    @classmethod
    def from_dict(cls, payload: Any) -> OpenEOJobEvent:
        """Read an event back; a missing event or an unknown status is a ``ValueError`` saying which."""
        if not isinstance(payload, dict):
            raise ValueError(f"expected an openEO job event (a dict), got {type(payload).__name__}: {payload!r}")
        try:
            status = OpenEOJobEventStatus(payload.get("status"))
        except ValueError:
            known = ", ".join(s.value for s in OpenEOJobEventStatus)
            raise ValueError(f"unknown openEO job event status {payload.get('status')!r} (known: {known})") from None
        missing = [name for name in ("job_id", "openeo_conn_id") if not payload.get(name)]
        if missing:
            raise ValueError(f"openEO job event lacks {', '.join(missing)}: {payload!r}")
        names = {f for f in cls.__dataclass_fields__ if f != "status"}
        return cls(status=status, **{k: v for k, v in payload.items() if k in names})

    @property
    def row_ref(self) -> JobRowRef | None:
        return JobRowRef.from_dict(self.row) if self.row else None

    def describe_job(self) -> str:
        """``job 'j-1' on connection 'x' (row 3 of job table 'jobs')``: what error messages should name."""
        text = f"openEO job {self.job_id!r} on connection {self.openeo_conn_id!r}"
        return f"{text} ({self.row_ref})" if self.row else text


class JsonKwargsTrigger(BaseTrigger):
    """A trigger whose constructor kwargs are its attributes named in ``serialize_fields`` (all JSON values).

    Owning serialisation here keeps each concrete trigger to its logic, and makes the round trip
    ``cls(**serialize()[1])`` hold by construction.
    """

    serialize_fields: ClassVar[tuple[str, ...]] = ()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        classpath = f"{type(self).__module__}.{type(self).__qualname__}"
        return classpath, {name: getattr(self, name) for name in self.serialize_fields}


def _default_hook_factory(conn_id: str) -> AsyncJobStatusHook:
    from airflow_provider_openeo.hooks._openeo.read_strategy import read_strategy_of
    from airflow_provider_openeo.hooks.openeo import OpenEOAsyncHook

    # The connection's read strategy outlives this hook: the next poller of the connection starts from what it learnt.
    return OpenEOAsyncHook(openeo_conn_id=conn_id, read_strategy=read_strategy_of(conn_id))


class OpenEOJobTrigger(JsonKwargsTrigger):
    """Poll one openEO batch job until it ends, sharing status reads with every trigger on the same backend.

    :param openeo_conn_id: Airflow connection of the backend.
    :param job_id: the openEO job id.
    The wait's settings (``poll_interval``, ``cancel_running_job_after``, ``cancel_on_kill``) come from a task as
    :meth:`JobWaitSettings.trigger_kwargs`, with the defaults :class:`JobWaitSettings` defines.

    :param poll_interval: seconds between status reads (a shared poller lists at its subscribers' shortest
        interval; a trigger joining a running poller is included from its next listing). A listing may come
        sooner when a running job's reported progress forecasts its end (``_end_forecast``).
    :param deadline: epoch seconds after which the wait ends with ``timeout`` (the task's execution_timeout).
    :param cancel_running_job_after: seconds a job may stay ``running`` before it is canceled.
    :param running_since: epoch seconds the job was first seen running, when known and no ``row`` is given.
    :param cancel_on_kill: cancel the remote job on deadline and when a user kills the task.
    :param row: ``JobRowRef.to_dict()`` of the job's row, to record status changes and survive restarts.
    :param end_task_on_finish: when the job finishes, end the task successfully from the triggerer; every other
        outcome resumes the task as usual.
    """

    serialize_fields = (
        "openeo_conn_id",
        "job_id",
        "poll_interval",
        "deadline",
        "cancel_running_job_after",
        "running_since",
        "cancel_on_kill",
        "row",
        "end_task_on_finish",
    )
    hook_factory: ClassVar[_status_poller.HookFactory | None] = None
    """Override to use another async hook (tests use an in-process fake); None means ``OpenEOAsyncHook``."""

    def __init__(
        self,
        openeo_conn_id: str,
        job_id: str,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        deadline: float | None = None,
        cancel_running_job_after: float | None = DEFAULT_CANCEL_RUNNING_JOB_AFTER,
        running_since: float | None = None,
        cancel_on_kill: bool = DEFAULT_CANCEL_ON_KILL,
        row: dict[str, Any] | None = None,
        end_task_on_finish: bool = False,
    ) -> None:
        super().__init__()
        # The settings' own check; kept as flat attributes, which are the serialised kwargs (stored triggers).
        settings = JobWaitSettings(poll_interval, cancel_running_job_after, cancel_on_kill)
        self.openeo_conn_id = openeo_conn_id
        self.job_id = str(job_id)
        self.poll_interval = settings.poll_interval
        self.deadline = deadline
        self.cancel_running_job_after = settings.cancel_running_job_after
        self.running_since = running_since
        self.cancel_on_kill = settings.cancel_on_kill
        self.row = row
        self.end_task_on_finish = end_task_on_finish
        self._state = _WaitState(running_since=running_since)
        self._subscription: Subscription | None = None

    def _make_hook(self, conn_id: str) -> AsyncJobStatusHook:
        factory = type(self).hook_factory or _default_hook_factory
        return factory(conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = await self._wait()
        if self.end_task_on_finish and event.status is OpenEOJobEventStatus.FINISHED:
            yield TaskSuccessEvent()
        else:
            yield TriggerEvent(event.to_dict())

    async def _wait(self) -> OpenEOJobEvent:
        recorder = JobRowRecorder(JobRowRef.from_dict(self.row), self.job_id, self.log) if self.row else None
        self._subscription = _status_poller.subscribe(
            self.openeo_conn_id, self.job_id, interval=self.poll_interval, hook_factory=self._make_hook
        )
        try:
            if recorder is not None:
                self._resume_from_row(await recorder.load())
            while True:
                event = await self._check_limits()
                if event is not None:
                    return event
                update = await self._subscription.next_update(timeout=self._seconds_to_next_limit())
                if update is None:
                    continue
                event = self._event_for_error(update) if update.error else None
                if event is not None:
                    return event
                if update.unconfirmed is not None:
                    self._note_unconfirmed(update.unconfirmed)
                if update.metadata is not None:
                    self._observe(update)
                    if recorder is not None:
                        await recorder.record(self._row_values())
                    if self._state.status_is_terminal:
                        return self._terminal_event()
        finally:
            await self._release()
            if recorder is not None:
                await recorder.close()

    def _resume_from_row(self, values: dict[str, Any] | None) -> None:
        """After a restart, continue the running-time count from the row, not from now.

        Only the start time is taken over: whether the job is still running is asked of the backend first,
        so a job that finished while no triggerer watched it is reported finished, not canceled.
        """
        since = epoch_from_rfc3339((values or {}).get("running_start_time"))
        if since is not None and (self._state.running_since is None or since < self._state.running_since):
            self._state.running_since = since

    def _note_unconfirmed(self, reason: str) -> None:
        """A 404 the backend has not confirmed: say so once per wait, and keep waiting (the row stays as it is)."""
        if self._state.unconfirmed_since is None:
            self._state.unconfirmed_since = time.time()
            self.log.warning(
                "openEO job %r answers 404 on connection %r, not yet confirmed gone (%s); still watching it",
                self.job_id,
                self.openeo_conn_id,
                reason,
            )

    def _observe(self, update: StatusUpdate) -> None:
        if self._state.unconfirmed_since is not None:
            self.log.info(
                "openEO job %r answers again after %.0f s of 404s",
                self.job_id,
                time.time() - self._state.unconfirmed_since,
            )
            self._state.unconfirmed_since = None
        metadata = {k: v for k, v in (update.metadata or {}).items() if k != "process"}
        status = str(metadata.get("status") or "").lower() or None
        if status != self._state.backend_status:
            self.log.info("openEO job %r is %s (was %s)", self.job_id, status, self._state.backend_status)
        self._state.backend_status = status
        self._state.job = metadata
        if status == OpenEOJobStatus.RUNNING.value and self._state.running_since is None:
            self._state.running_since = update.observed_at

    def _row_values(self) -> dict[str, Any]:
        """``backend_status`` always; ``status`` only while the job lives: the final ``status`` is the job
        handler's to write, together with usage, costs and results, so a row that says ``finished`` has always
        been through ``on_job_done`` (and a task that resumes after a crash re-attaches and finishes it)."""
        values: dict[str, Any] = {"backend_status": self._state.backend_status}
        if not self._state.status_is_terminal:
            values["status"] = self._state.backend_status
        if self._state.running_since is not None:
            values["running_start_time"] = rfc3339_from_epoch(self._state.running_since)
        return values

    def _seconds_to_next_limit(self) -> float | None:
        limits = [self.deadline] if self.deadline is not None else []
        if self._running_limit_at() is not None:
            limits.append(self._running_limit_at())
        return max(0.0, min(limits) - time.time()) if limits else None

    def _running_limit_at(self) -> float | None:
        limit_at = running_limit_at(self._state.running_since, self.cancel_running_job_after)
        if limit_at is None or self._state.backend_status != OpenEOJobStatus.RUNNING.value:
            return None
        return max(limit_at, self._state.next_cancel_attempt)

    async def _check_limits(self) -> OpenEOJobEvent | None:
        now = time.time()
        if self.deadline is not None and now >= self.deadline:
            message = f"the task's deadline ({rfc3339_from_epoch(self.deadline)}) passed while waiting"
            canceled = False
            if self.cancel_on_kill:
                result, outcome = await self._cancel_remote()
                canceled = result.stopped
                message += f"; {outcome}"
            return self._event(OpenEOJobEventStatus.TIMEOUT, message, cancel_requested=canceled)
        limit_at = self._running_limit_at()
        if limit_at is not None and now >= limit_at:
            result, outcome = await self._cancel_remote()
            if not result.stopped:
                self._state.next_cancel_attempt = now + self.poll_interval
                self.log.warning(
                    "openEO job %r is over its running limit but %s; retrying in %g s",
                    self.job_id,
                    outcome,
                    self.poll_interval,
                )
                return None
            message = (
                f"{over_running_limit(self.cancel_running_job_after or 0.0)} "
                f"(running since {rfc3339_from_epoch(self._state.running_since or now)}); {outcome}"
            )
            return self._event(OpenEOJobEventStatus.CANCELED, message, cancel_requested=True)
        return None

    def _event_for_error(self, update: StatusUpdate) -> OpenEOJobEvent:
        error = update.error
        if isinstance(error, OpenEOJobNotFoundError):
            return self._event(OpenEOJobEventStatus.NOT_FOUND, f"the backend no longer knows the job: {error}")
        if isinstance(error, OpenEOAuthError):
            reason = f"authentication failed; check connection {self.openeo_conn_id!r}: {error}"
        elif isinstance(error, OpenEOProviderError):
            reason = f"the backend refused the status request: {error}"
        else:
            reason = f"reading the job status failed: {type(error).__name__}: {error}"
        return self._event(OpenEOJobEventStatus.FAILED, reason + " (the job may still be running)")

    def _terminal_event(self) -> OpenEOJobEvent:
        status = OpenEOJobEventStatus(self._state.backend_status)
        return self._event(status, f"the backend reports the job {status.value}")

    def _event(self, status: OpenEOJobEventStatus, reason: str, *, cancel_requested: bool = False) -> OpenEOJobEvent:
        return OpenEOJobEvent(
            status=status,
            job_id=self.job_id,
            openeo_conn_id=self.openeo_conn_id,
            message=f"openEO job {self.job_id!r}: {reason}",
            backend_status=self._state.backend_status,
            job=self._state.job,
            running_since=self._state.running_since,
            cancel_requested=cancel_requested,
            row=self.row,
        )

    async def _cancel_remote(self) -> tuple[_CancelResult, str]:
        """Ask the backend to cancel the job; (result, what happened) and never raises."""
        hook = self._make_hook(self.openeo_conn_id)
        try:
            await asyncio.wait_for(hook.cancel_job(self.job_id), CANCEL_TIMEOUT)
        except OpenEOJobNotFoundError:
            # Not proof that it stopped: a federation answers 404 for jobs of an upstream it cannot reach now.
            return _CancelResult.NOT_FOUND, "the backend answered 404 to the cancel (gone, or unreachable for now)"
        except Exception as exc:
            return _CancelResult.FAILED, f"canceling it failed: {type(exc).__name__}: {exc}"
        finally:
            await _close_quietly(hook)
        self.log.info("Requested cancellation of openEO job %r", self.job_id)
        return _CancelResult.ACCEPTED, "cancellation requested"

    async def on_kill(self) -> None:
        """A user marked the task failed/success or cleared it: stop the remote job too (if allowed).

        The row is marked ``canceled`` so that a deliberate re-run starts a new job instead of re-attaching
        to the one just stopped, and only when the backend accepted the cancel: a cancel answered 404 proves
        nothing (see ``_job_gone``), so the row keeps the job and a re-run re-attaches to it and finds out.
        """
        if not self.cancel_on_kill:
            return
        result, outcome = await self._cancel_remote()
        self.log.info("Task killed by a user; openEO job %r: %s", self.job_id, outcome)
        if not (result.stopped and self.row):
            return
        values = {"status": RowStatus.CANCELED.value, "backend_status": OpenEOJobStatus.CANCELED.value}
        recorder = JobRowRecorder(JobRowRef.from_dict(self.row), self.job_id, self.log)
        try:
            await recorder.record(values)
        finally:
            await recorder.close()

    async def cleanup(self) -> None:
        """Release the shared poller; NEVER cancel here (this also runs when moving to another triggerer)."""
        await self._release()

    async def _release(self) -> None:
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.close()


class _CancelResult(Enum):
    ACCEPTED = "accepted"
    NOT_FOUND = "not_found"
    FAILED = "failed"

    @property
    def stopped(self) -> bool:
        """The backend accepted the cancel; a 404 does not prove the job stopped (a federation's outage)."""
        return self is _CancelResult.ACCEPTED


@dataclass
class _WaitState:
    """What the trigger learned so far about its job (not serialised: rebuilt from the row after a restart)."""

    running_since: float | None = None
    backend_status: str | None = None
    job: dict[str, Any] | None = field(default=None)
    next_cancel_attempt: float = 0.0
    """After a failed cancel (over the running limit), do not try again before this epoch time."""
    unconfirmed_since: float | None = None
    """Epoch time of the first 404 not (yet) confirmed as the job's end, while it lasts."""

    @property
    def status_is_terminal(self) -> bool:
        return OpenEOJobStatus.is_terminal_value(self.backend_status)


async def _close_quietly(hook: AsyncJobStatusHook) -> None:
    with contextlib.suppress(Exception):  # closing an HTTP session must never mask the outcome
        await hook.close()


class OpenEODispatchWaitTrigger(JsonKwargsTrigger):
    """Hold a batch instance in the triggerer (no worker, its pool slot kept) until its dispatch would act.

    The instance found nothing to take now (its backend cools down, runs all the jobs its account allows, or
    rows held elsewhere may come back). Every ``check_interval`` seconds this asks the same
    :func:`dispatching.decide` the instance asked, from the job database; as soon as the answer is no longer
    "wait" (or at ``until``), the instance resumes and acts on it.

    :param job_db: ``{"table", "job_db_conn_id", "sqlite_path"}`` of the batch's job table.
    :param scope: ``row_dispatch.DispatchScope.to_dict()`` of the instance.
    :param until: epoch seconds at which to resume in any case.
    :param not_before: epoch seconds before which the instance does not resume, whatever the answer (see
        ``operators.openeo.MIN_DISPATCH_WAIT_SECONDS``).
    """

    serialize_fields = ("job_db", "scope", "until", "check_interval", "not_before")

    def __init__(
        self,
        job_db: dict[str, Any],
        scope: dict[str, Any],
        until: float,
        check_interval: float = 2.0,
        not_before: float = 0.0,
    ) -> None:
        super().__init__()
        self.job_db = dict(job_db)
        self.scope = dict(scope)
        self.until = float(until)
        self.check_interval = float(check_interval)
        self.not_before = float(not_before)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_openeo.batch.dispatching import Wait
        from airflow_provider_openeo.batch.row_dispatch import DispatchScope, RowDispatcher
        from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

        db = OpenEOJobDbHook(
            self.job_db.get("job_db_conn_id"), table=self.job_db["table"], sqlite_path=self.job_db.get("sqlite_path")
        )
        dispatcher = RowDispatcher(db, DispatchScope(**self.scope))
        try:
            await asyncio.sleep(max(0.0, self.not_before - time.time()))
            while time.time() < self.until:
                try:
                    decision = await asyncio.to_thread(dispatcher.decide)
                except Exception as exc:  # the database is busy or away: the instance will ask itself at `until`
                    self.log.warning("dispatch check failed (%s); looking again", exc)
                    decision = None
                if decision is not None and not isinstance(decision, Wait):
                    break
                await asyncio.sleep(max(0.0, min(self.check_interval, self.until - time.time())))
        finally:
            await asyncio.to_thread(db.dispose)
        yield TriggerEvent({"dispatch": "recheck"})


def running_limit_at(running_since: float | None, limit: float | None) -> float | None:
    """The epoch time a job seen ``running`` since ``running_since`` passes ``cancel_running_job_after``
    (``limit``); None without either. The one rule of the running-time limit, for the trigger and the sensor."""
    if limit is None or running_since is None:
        return None
    return running_since + limit


def over_running_limit(limit: float) -> str:
    """Why a job was canceled for its running time (the start of the event's message)."""
    return f"running for more than cancel_running_job_after={limit:g} s"
