"""``OpenEOJobSensor``: wait for any openEO batch job, deferred in the triggerer or poking from a worker."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf

from airflow_provider_openeo.exceptions import (
    OpenEOJobNotFoundError,
    OpenEOProviderError,
    OpenEOTransientError,
)
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.job_table.job_status import OpenEOJobStatus
from airflow_provider_openeo.links.openeo import OpenEOJobLink
from airflow_provider_openeo.triggers._wait_settings import (
    DEFAULT_CANCEL_ON_KILL,
    DEFAULT_CANCEL_RUNNING_JOB_AFTER,
    DEFAULT_POLL_INTERVAL,
    JobWaitSettings,
)
from airflow_provider_openeo.triggers.openeo import (
    OpenEOJobEvent,
    OpenEOJobEventStatus,
    over_running_limit,
    running_limit_at,
)
from airflow_provider_openeo.wait._job_gone import GoneJudge, NotFoundStreak
from airflow_provider_openeo.wait.job_waiting import OpenEOJobWaitMixin

if TYPE_CHECKING:
    from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler

#: Task-state-store key that keeps "running since" across pokes in ``mode="reschedule"``.
_RUNNING_SINCE_KEY = "openeo_running_since"
#: Task-state-store key that keeps the job's unconfirmed 404s across pokes in ``mode="reschedule"``.
_NOT_FOUND_KEY = "openeo_not_found"


class OpenEOJobSensor(OpenEOJobWaitMixin, BaseSensorOperator):
    """Wait until an openEO batch job ends, then run the matching handler.

    :param job_id: the openEO job id (templated).
    :param openeo_conn_id: connection of the job's backend (templated).
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``); otherwise poke.
    :param poll_interval: seconds between status reads, in both modes.
    :param cancel_running_job_after: cancel the job when it has been ``running`` this many seconds.
    :param cancel_on_kill: cancel the job when the task is killed or its ``execution_timeout``/``timeout`` ends.
    :param handler: an ``OpenEOJobHandler`` whose ``on_job_done`` / ``on_job_error`` / ``on_job_cancel`` runs
        when the job finished / failed / was canceled; without one the sensor only waits, returning the job
        metadata on success and failing otherwise.
    :param row: ``JobRowRef`` (or its dict) of a job-db row to keep up to date while waiting, if any.
    """

    template_fields: Sequence[str] = ("job_id", "openeo_conn_id")
    operator_extra_links = (OpenEOJobLink(),)

    def __init__(
        self,
        *,
        job_id: str,
        openeo_conn_id: str = "openeo_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        cancel_running_job_after: float | None = DEFAULT_CANCEL_RUNNING_JOB_AFTER,
        cancel_on_kill: bool = DEFAULT_CANCEL_ON_KILL,
        handler: OpenEOJobHandler | None = None,
        row: JobRowRef | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        wait_settings = JobWaitSettings(poll_interval, cancel_running_job_after, cancel_on_kill)
        kwargs.setdefault("poke_interval", wait_settings.poll_interval)
        super().__init__(**kwargs)
        self.job_id = job_id
        self.openeo_conn_id = openeo_conn_id
        self.deferrable = deferrable
        self.wait_settings = wait_settings
        self.handler = handler
        self.row = row if row is None or isinstance(row, JobRowRef) else JobRowRef.from_dict(dict(row))
        self._running_since: float | None = None
        self._poking_job_id: str | None = None
        self._judge: GoneJudge | None = None

    def wait_timeouts(self) -> list[timedelta | None]:
        return [*super().wait_timeouts(), timedelta(seconds=self.timeout)]

    def execute(self, context: Any) -> Any:
        job_id = str(self.job_id)
        if self.deferrable:
            self.defer_until_terminal(context, job_id=job_id, row=self.row)
        self.push_job_url(context, job_id)
        self._poking_job_id = job_id
        return super().execute(context)

    def poke(self, context: Any) -> bool | PokeReturnValue:
        """One synchronous status read; transient errors just mean "not yet"."""
        job_id = str(self.job_id)
        try:
            metadata = self._describe(job_id)
        except OpenEOTransientError as exc:
            self.log.warning("Status of openEO job %r unavailable (%s); trying again next poke", job_id, exc)
            return False
        except OpenEOJobNotFoundError as exc:
            return self._weigh_not_found(context, job_id, exc)
        except OpenEOProviderError as exc:
            return self._finish(context, OpenEOJobEventStatus.FAILED, f"reading its status failed: {exc}")
        self._clear_not_found(context, job_id)
        status = str(metadata.get("status") or "").lower()
        self.log.info("openEO job %r is %s", job_id, status)
        running_since = self._track_running_since(context, status)
        if OpenEOJobStatus.is_terminal_value(status):
            return self._finish(
                context, OpenEOJobEventStatus(status), f"the backend reports the job {status}", metadata
            )
        limit_at = running_limit_at(running_since, self.cancel_running_job_after)
        if limit_at is not None and time.time() >= limit_at:
            self._cancel(job_id)
            reason = f"{over_running_limit(self.cancel_running_job_after or 0.0)}; cancellation requested"
            return self._finish(context, OpenEOJobEventStatus.CANCELED, reason, metadata, cancel_requested=True)
        return False

    def on_kill(self) -> None:
        """SIGTERM or ``execution_timeout`` while poking: stop the remote job too, if allowed."""
        if self.cancel_on_kill and self._poking_job_id is not None:
            self._cancel(self._poking_job_id)

    def _finish(
        self,
        context: Any,
        status: OpenEOJobEventStatus,
        reason: str,
        metadata: dict[str, Any] | None = None,
        *,
        cancel_requested: bool = False,
    ) -> PokeReturnValue:
        metadata = {k: v for k, v in (metadata or {}).items() if k != "process"} or None
        event = OpenEOJobEvent(
            status=status,
            job_id=str(self.job_id),
            openeo_conn_id=self.openeo_conn_id,
            message=f"openEO job {str(self.job_id)!r}: {reason}",
            backend_status=(metadata or {}).get("status"),
            job=metadata,
            running_since=self._running_since,
            cancel_requested=cancel_requested,
            row=self.row.to_dict() if self.row is not None else None,
        )
        return PokeReturnValue(is_done=True, xcom_value=self.finish_wait(context, event))

    def _weigh_not_found(self, context: Any, job_id: str, exc: Exception) -> bool | PokeReturnValue:
        """A 404 ends the wait only once ``_job_gone`` confirms it; until then the sensor pokes on."""
        from airflow_provider_openeo.hooks.openeo import OpenEOHook
        from airflow_provider_openeo.wait._job_listing import confirm_gone

        hook = OpenEOHook(self.openeo_conn_id)
        judge = self._judge_for(context, job_id, hook)
        verdict = confirm_gone(hook.get_conn(), job_id, judge=judge)
        if verdict.gone:
            return self._finish(context, OpenEOJobEventStatus.NOT_FOUND, f"{exc}, and {verdict.reason}")
        self._remember_not_found(context, job_id, judge.streaks.get(job_id))
        self.log.warning("openEO job %r answers 404, not yet confirmed gone (%s); poking on", job_id, verdict.reason)
        return False

    def _judge_for(self, context: Any, job_id: str, hook: Any) -> GoneJudge:
        """The 404s seen so far: on this instance between pokes, in the task state store across reschedules."""
        if self._judge is None:
            self._judge = GoneJudge()
            stored = _store_get(context, _NOT_FOUND_KEY)
            if isinstance(stored, dict) and stored.get("job_id") == job_id:
                streak = NotFoundStreak.from_dict(stored)
                if streak is not None:
                    self._judge.streaks[job_id] = streak
        self._judge.policy = hook.settings.gone_policy
        return self._judge

    def _remember_not_found(self, context: Any, job_id: str, streak: NotFoundStreak | None) -> None:
        value = {"job_id": job_id, **streak.to_dict()} if streak is not None else None
        if not _store_set(context, _NOT_FOUND_KEY, value):
            self.log.warning("Could not remember the 404s of openEO job %r across reschedules", job_id)

    def _clear_not_found(self, context: Any, job_id: str) -> None:
        """The job answered: earlier 404s were an outage, and a later 404 starts the count over."""
        if self._judge is None:  # a fresh instance (reschedule mode): a streak may wait in the store
            self._judge = GoneJudge()
            if _store_get(context, _NOT_FOUND_KEY) is None:
                return
        elif job_id not in self._judge.streaks:
            return
        self._judge.seen(job_id)
        self._remember_not_found(context, job_id, None)

    def _describe(self, job_id: str) -> dict[str, Any]:
        from airflow_provider_openeo.hooks.openeo import OpenEOHook

        hook = OpenEOHook(self.openeo_conn_id)
        with hook.translated_errors(f"GET /jobs/{job_id}", job_id=job_id):
            return hook.get_conn().job(job_id).describe()

    def _cancel(self, job_id: str) -> None:
        from airflow_provider_openeo.hooks.openeo import OpenEOHook

        try:
            OpenEOHook(self.openeo_conn_id).get_conn().job(job_id).stop()
            self.log.info("Requested cancellation of openEO job %r", job_id)
        except Exception as exc:  # best effort: the outcome is reported by the caller either way
            self.log.warning("Canceling openEO job %r failed: %s", job_id, exc)

    def _track_running_since(self, context: Any, status: str) -> float | None:
        """When the job was first seen running; kept in the task state store so reschedule mode keeps it."""
        store = context.get("task_state_store") if hasattr(context, "get") else None
        if self._running_since is None and store is not None:
            try:
                stored = store.get(_RUNNING_SINCE_KEY)
            except Exception:
                stored = None
            if isinstance(stored, dict) and stored.get("job_id") == str(self.job_id):
                self._running_since = float(stored["since"])
        if self._running_since is None and status == OpenEOJobStatus.RUNNING.value:
            self._running_since = time.time()
            if store is not None:
                try:
                    store.set(_RUNNING_SINCE_KEY, {"job_id": str(self.job_id), "since": self._running_since})
                except Exception as exc:
                    self.log.warning("Could not remember when the job started running: %s", exc)
        return self._running_since


def _store_get(context: Any, key: str) -> Any:
    """A value of the task state store (kept across reschedules); None when absent or unreachable."""
    store = context.get("task_state_store") if hasattr(context, "get") else None
    if store is None:
        return None
    try:
        return store.get(key)
    except Exception:
        return None


def _store_set(context: Any, key: str, value: Any) -> bool:
    """Write a value to the task state store; False when it could not be written (there is none: True)."""
    store = context.get("task_state_store") if hasattr(context, "get") else None
    if store is None:
        return True
    try:
        store.set(key, value)
    except Exception:
        return False
    return True
