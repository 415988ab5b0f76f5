"""Waiting for an openEO job from a task, shared by ``OpenEOJobSensor`` and ``OpenEOBatchJobOperator``.

One piece of code decides how a task waits (defer to :class:`OpenEOJobTrigger` with a deadline carried in,
the job's URL pushed to XCom first) and what it does with the outcome (validate the event, run the job
handler, fail without retry for a job that ended badly). It knows nothing about starting jobs, so the batch
operator adds its start logic on top and the sensor adds its poke mode.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import TaskInstanceState
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.job_table.job_status import RowStatus
from airflow_provider_openeo.links.openeo import OPENEO_JOB_URL_XCOM_KEY, OpenEOJobLink
from airflow_provider_openeo.triggers.openeo import (
    JobWaitSettings,
    OpenEOJobEvent,
    OpenEOJobEventStatus,
    OpenEOJobTrigger,
)

if TYPE_CHECKING:
    import openeo

    from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler

#: XCom key of the job's URL on its backend (read by the "openEO job" extra link).
JOB_URL_XCOM_KEY = OPENEO_JOB_URL_XCOM_KEY
#: What :meth:`OpenEOJobWaitMixin.after_job_error` returns when the row gets no new job: the task fails.
NOT_RETRIED = object()
#: Outcomes after which running the task again cannot help: the task fails without retry.
_FINAL_FAILURES = frozenset(
    {
        OpenEOJobEventStatus.ERROR,
        OpenEOJobEventStatus.CANCELED,
        OpenEOJobEventStatus.TIMEOUT,
        OpenEOJobEventStatus.NOT_FOUND,
    }
)


def validate_event(event: Any) -> OpenEOJobEvent:
    """The trigger's event, or an ``AirflowException`` when it is missing or not one of ours."""
    if event is None:
        raise AirflowException("The task resumed without an openEO job event: the trigger did not report back")
    try:
        return OpenEOJobEvent.from_dict(event)
    except ValueError as exc:
        raise AirflowException(f"Invalid openEO job event: {exc}") from None


def ended_in_triggerer(event: Any) -> bool:
    """Whether a resumed task's ``event`` says a trigger already ended the task successfully.

    A live triggerer ends such a task without resuming it; ``dag.test()`` resumes it instead, with the
    ``TaskSuccessEvent``'s payload (the state's name), and the task must then end the same way.
    """
    return event == TaskInstanceState.SUCCESS.value


def compute_deadline(
    context: Mapping[str, Any], timeouts: list[timedelta | None], *, now: float | None = None
) -> float | None:
    """Epoch seconds by which the earliest of ``timeouts`` (counted from the try's start) runs out.

    Airflow does not enforce ``execution_timeout`` while a task is deferred, so the trigger must know it.
    """
    seconds = [t.total_seconds() for t in timeouts if t is not None]
    if not seconds:
        return None
    ti = context.get("ti")
    start_date = getattr(ti, "start_date", None)
    started = start_date.timestamp() if start_date is not None else (time.time() if now is None else now)
    return started + min(seconds)


class OpenEOJobWaitMixin:
    """Wait for an openEO job and finish it, for an operator that also derives from ``BaseOperator``.

    What the operator sets: ``openeo_conn_id``, ``handler`` (an ``OpenEOJobHandler`` or None) and
    ``wait_settings`` (a :class:`JobWaitSettings`, passed as a whole to the trigger; its defaults otherwise).
    ``poll_interval``, ``cancel_running_job_after`` and ``cancel_on_kill`` read and replace single fields of it,
    checked like the whole, for code that set them one by one.
    """

    openeo_conn_id: str
    wait_settings: JobWaitSettings = JobWaitSettings()
    handler: OpenEOJobHandler | None = None

    @property
    def poll_interval(self) -> float:
        return self.wait_settings.poll_interval

    @poll_interval.setter
    def poll_interval(self, value: float) -> None:
        self.wait_settings = dataclasses.replace(self.wait_settings, poll_interval=value)

    @property
    def cancel_running_job_after(self) -> float | None:
        return self.wait_settings.cancel_running_job_after

    @cancel_running_job_after.setter
    def cancel_running_job_after(self, value: float | None) -> None:
        self.wait_settings = dataclasses.replace(self.wait_settings, cancel_running_job_after=value)

    @property
    def cancel_on_kill(self) -> bool:
        return self.wait_settings.cancel_on_kill

    @cancel_on_kill.setter
    def cancel_on_kill(self, value: bool) -> None:
        self.wait_settings = dataclasses.replace(self.wait_settings, cancel_on_kill=value)

    def wait_timeouts(self) -> list[timedelta | None]:
        """Time limits of one try that the trigger must enforce (a sensor adds its own ``timeout``)."""
        return [getattr(self, "execution_timeout", None)]

    def push_job_url(self, context: Mapping[str, Any], job_id: str) -> None:
        """Before waiting, so the "openEO job" link works even when the task then fails.

        The link is a convenience: a backend that cannot tell its API root right now must not fail the task.
        """
        from airflow_provider_openeo.hooks.openeo import OpenEOHook

        try:
            url = OpenEOHook(self.openeo_conn_id).job_url(job_id)
        except Exception as exc:
            log = getattr(self, "log", None)
            if log is not None:
                log.warning("No link to openEO job %r: its URL could not be determined (%s)", job_id, exc)
            return
        OpenEOJobLink.persist(context, url)

    def defer_until_terminal(
        self,
        context: Mapping[str, Any],
        *,
        job_id: str,
        row: JobRowRef | None = None,
        running_since: float | None = None,
        job_url: str | None = None,
        end_task_on_finish: bool = False,
    ) -> NoReturn:
        """Hand the wait to the triggerer; the task resumes in :meth:`execute_complete`.

        ``job_url``: the job's URL when the caller knows it already (saves building a hook to ask again).
        ``end_task_on_finish``: a finished job ends the task in the triggerer (successfully, returning nothing).
        """
        if job_url:
            OpenEOJobLink.persist(context, job_url, row_id=row.row_id if row is not None else None)
        else:
            self.push_job_url(context, job_id)
        trigger = OpenEOJobTrigger(
            openeo_conn_id=self.openeo_conn_id,
            job_id=job_id,
            **self.wait_settings.trigger_kwargs(),
            deadline=compute_deadline(context, self.wait_timeouts()),
            running_since=running_since,
            row=row.to_dict() if row is not None else None,
            end_task_on_finish=end_task_on_finish,
        )
        self.defer(trigger=trigger, method_name="execute_complete")  # type: ignore[attr-defined]
        raise AssertionError("defer() returned")  # pragma: no cover - defer always raises

    def execute_complete(self, context: Mapping[str, Any], event: Any = None) -> Any:
        """Resume after the trigger fired: run the handler that fits the outcome."""
        return self.finish_wait(context, validate_event(event))

    def finish_wait(self, context: Mapping[str, Any], event: OpenEOJobEvent) -> Any:
        """Dispatch an outcome (from the trigger, or from a poke) to the job handler.

        Returns what ``on_job_done`` returns for a finished job; raises ``AirflowFailException`` (no retry)
        when the job ended badly, and ``AirflowException`` (retry allowed: the retry re-attaches to the job)
        when only the wait failed.
        """
        status = event.status
        log = getattr(self, "log", None)
        if log is not None:
            log.info("%s ended: %s", event.describe_job(), event.message)
        if status is OpenEOJobEventStatus.FINISHED:
            return self.on_finished(context, event)
        if status is OpenEOJobEventStatus.FAILED:
            raise AirflowException(f"Waiting for {event.describe_job()} failed: {event.message}")
        if status is OpenEOJobEventStatus.ERROR:
            self._dispatch("on_job_error", context, event)
            retried = self.after_job_error(context, event)
            if retried is not NOT_RETRIED:
                return retried
        elif status is OpenEOJobEventStatus.CANCELED or (
            status is OpenEOJobEventStatus.TIMEOUT and event.cancel_requested
        ):
            self._dispatch("on_job_cancel", context, event)
        elif status is OpenEOJobEventStatus.NOT_FOUND:
            self._mark_row_lost(event)
        assert status in _FINAL_FAILURES
        raise AirflowFailException(f"{event.describe_job()} did not finish: {event.message}")

    def after_job_error(self, context: Mapping[str, Any], event: OpenEOJobEvent) -> Any:
        """After the handler recorded a job that ended in ``error``: :data:`NOT_RETRIED` (the task fails), or what
        the task returns once the row got a new job (the batch operator's failure policy; it usually defers)."""
        return NOT_RETRIED

    def on_finished(self, context: Mapping[str, Any], event: OpenEOJobEvent) -> Any:
        """A finished job: the handler's ``on_job_done`` (an operator that leaves results to a later task
        overrides this)."""
        return self._dispatch("on_job_done", context, event)

    def _dispatch(self, method: str, context: Mapping[str, Any], event: OpenEOJobEvent) -> Any:
        handler = self.handler
        if handler is None:
            return event.job
        job = self._batch_job(event.job_id)
        return getattr(handler, method)(context, job, event.row_ref, dict(event.job or {}))

    def _batch_job(self, job_id: str) -> openeo.BatchJob:
        from airflow_provider_openeo.hooks.openeo import OpenEOHook

        return OpenEOHook(self.openeo_conn_id).get_conn().job(job_id)

    def _mark_row_lost(self, event: OpenEOJobEvent) -> None:
        """A deleted job leaves no handler anything to do; its row must still say what happened."""
        row = event.row_ref
        if row is None:
            return
        values = {
            "status": RowStatus.ERROR.value,
            "backend_status": None,
            "error_message": f"field 'id': openEO job {event.job_id!r} is gone from the backend: {event.message}",
        }
        updated = row.compare_and_set(values, expected={"id": event.job_id})
        log = getattr(self, "log", None)
        if not updated and log is not None:
            log.warning("%s holds another job now; left unchanged", row)
