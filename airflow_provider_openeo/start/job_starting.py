"""Create and start the openEO job of one job-table row, or re-attach to the job the row already holds.

This is the one place that decides what a row needs, so a retried, re-run or cleared task instance continues
where its predecessor stopped instead of creating a second job:

==========================  ==============================================================
row says                    what happens
==========================  ==============================================================
no job id                   claim the row, call ``start_job``, start the job
job ``created``             start it (a crash between create and start)
job ``queued``/``running``  re-attach: nothing is created or started
job ``finished``            nothing to start: the caller goes straight to the result handler
job ``error``/``canceled``  the row already says so (its handler ran, the task failed): a deliberate
                            re-run (a clear; or a task retry after a crash before the failure policy's
                            verdict); the old job goes to ``job_history`` (``retry: "task"``, counted
                            as an attempt by the failure policy), a new job is created
                            the row does not say so yet (the task died while the job ended): a
                            continuation; nothing is created, the caller runs the handler
job gone (404, confirmed)   recorded in ``job_history``, a new job is created
job 404, not confirmed      re-attach: the trigger watches it until the backend shows it again or
                            confirms it gone (a federation answers 404 during an upstream's outage)
==========================  ==============================================================

A 404 is confirmed by :mod:`~airflow_provider_openeo.wait._job_gone` (here: the job absent from a complete listing that
shows other jobs of its backend, and its upstream not missing from a federation), or when the row already records the
job's end.

The job id is written to the row the moment ``POST /jobs`` answers (a response hook on the connection), before
``start_job`` even returns, so a crash after the create never loses the id. ``POST /jobs`` itself is never retried,
and neither is the row when a ``POST /jobs`` reached the backend but its answer was lost (a 5xx, a dropped
connection, a read timeout): the backend may have created a job we know nothing about. The starter then looks for
that job in the backend's listing (status ``created``, same title, created since the request, same process graph)
and adopts it when exactly one matches; otherwise the row is marked ``start_failed`` with a message saying so,
instead of risking a second job.

Job options (the batch's ``job_options=`` and the row's ``job_options`` column) are put into the ``POST /jobs``
``start_job`` sends, over its own and the process's defaults, and checked against the backend's processing
parameters before it is sent (:mod:`~airflow_provider_openeo.start._create_options`): a refused option marks the row
``start_failed`` naming it, and no job exists.

With a budget (``max_costs``, :mod:`~airflow_provider_openeo.batch.budget`) the claim is taken only while the job
table's committed costs leave room for one more job, atomically in the job database; otherwise :class:`BudgetReached`
and the row stays ``not_started`` saying why. Once the job exists, its ``GET /jobs/{id}/estimate`` replaces the row's
reservation, checked again before the start: a job whose estimate does not fit is deleted unstarted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, NoReturn

import pandas as pd
from openeo import BatchJob, Connection
from openeo.extra.job_management import ProcessBasedJobCreator
from openeo.rest import OpenEoApiError
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from airflow_provider_openeo.batch._oom_memory import raise_memory
from airflow_provider_openeo.batch.budget import (
    BLOCKED_BY_BUDGET,
    BLOCKED_BY_COLUMN,
    ESTIMATED_COSTS_COLUMN,
    BudgetLedger,
    checked_max_costs,
)
from airflow_provider_openeo.batch.dispatching import StartFailure
from airflow_provider_openeo.batch.failure_policy import RETRY_BY_TASK, RETRY_KEY, FailurePolicy, oom_retries
from airflow_provider_openeo.exceptions import (
    BudgetReached,
    OpenEOJobNotFoundError,
    OpenEOTransientError,
    RowSkipped,
    RowStartError,
    TransientStartError,
)
from airflow_provider_openeo.hooks._job_db.columns import RESERVED
from airflow_provider_openeo.hooks._openeo.http import scrub, translate_openeo_error
from airflow_provider_openeo.job_table._usage import parse_costs
from airflow_provider_openeo.job_table.job_history import clean, retired_values
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.job_table.job_status import (
    ACTIVE_BACKEND_STATUSES,
    RECORDED_FAILURE_ROW_STATUSES,
    OpenEOJobStatus,
    RowStatus,
)
from airflow_provider_openeo.job_table.timestamps import epoch_from_rfc3339, utc_now_rfc3339
from airflow_provider_openeo.start._create_options import (
    AppliedOptions,
    JobOptionsRefused,
    OptionLayers,
    applying_job_options,
    wrapping_provider,
)
from airflow_provider_openeo.start._lost_create import (
    CreateLog,
    LostCreate,
    find_orphan,
    lost_create_answer,
    recording_created_jobs,
)
from airflow_provider_openeo.start.job_options import JOB_BUDGET_COLUMN, JOB_OPTIONS_COLUMN, parse_job_options
from airflow_provider_openeo.wait._job_listing import confirm_gone

log = logging.getLogger(__name__)

StartJobCallable = Callable[..., "BatchJob | None"]
ConnectionProvider = Callable[[str], Connection]

#: A claim older than this is taken to belong to a dead task process: creating and starting takes seconds.
STALE_CLAIM_SECONDS = 15 * 60
#: ``StartOutcome.backend_status`` of a re-attached job that answers 404 without being confirmed gone: not an
#: openEO status, so nothing takes it for an end; the trigger finds out what the job really is.
UNCONFIRMED = "unconfirmed"


def start_failure_of(exc: BaseException) -> StartFailure:
    """``ConcurrentJobLimit`` (HTTP 400 on geopyspark, 429 elsewhere) is a full account; the rest an outage."""
    if isinstance(exc, OpenEoApiError) and exc.code == "ConcurrentJobLimit":
        return StartFailure.LIMIT
    return StartFailure.UNAVAILABLE


@dataclass(frozen=True)
class StartOutcome:
    """What the row holds after :meth:`RowJobStarter.start`: the job and the status the backend last reported."""

    job_id: str
    backend_status: str
    reattached: bool
    job_url: str | None = None


def is_transient(exc: BaseException) -> bool:
    """Worth a later retry: what the hook classes as transient (network, 429, 5xx), and ``ConcurrentJobLimit``."""
    if isinstance(exc, OpenEoApiError) and exc.code == "ConcurrentJobLimit":
        return True
    return isinstance(translate_openeo_error(exc, action="start"), OpenEOTransientError)


def is_job_not_found(exc: BaseException, job_id: str) -> bool:
    return isinstance(translate_openeo_error(exc, action="status", job_id=job_id), OpenEOJobNotFoundError)


class RowJobStarter:
    """Brings one row to a started job; shared by the start operator and the batch operator."""

    def __init__(
        self,
        row: JobRowRef,
        *,
        backend_name: str,
        connection: Connection,
        start_job: StartJobCallable,
        connection_provider: ConnectionProvider,
        owner: str,
        start_job_kwargs: Mapping[str, Any] | None = None,
        job_options: Mapping[str, Any] | None = None,
        job_budget: float | None = None,
        max_costs: float | None = None,
        start_attempts: int = 3,
        start_backoff: float = 5.0,
        failure_policy: FailurePolicy | None = None,
    ) -> None:
        self.row = row
        self.backend_name = backend_name
        self.connection = connection
        self.start_job = start_job
        self.connection_provider = connection_provider
        self.owner = owner
        self.start_job_kwargs = dict(start_job_kwargs or {})
        self.job_options = parse_job_options(job_options, where="job_options")
        self.job_budget = checked_max_costs("job_budget", job_budget)
        self.max_costs = checked_max_costs("max_costs", max_costs)
        self.start_attempts = start_attempts
        self.start_backoff = start_backoff
        self.failure_policy = failure_policy
        self.db = row.hook()

    # -- decision -----------------------------------------------------------------------------------------

    def start(self) -> StartOutcome:
        values = self.db.get_row(self.row.row_id)
        self._check_backend(values)
        job_id = clean(values.get("id"))
        if job_id:
            outcome = self._resume(job_id, values)
            if outcome is not None:
                return outcome
            values = self.db.get_row(self.row.row_id)
        return self._create_and_start(values)

    def _check_backend(self, values: Mapping[str, Any]) -> None:
        pinned = clean(values.get("backend_name"))
        if pinned and pinned != self.backend_name:
            raise RowStartError(
                f"{self.row}: field 'backend_name' is {pinned!r}, but this task runs on backend "
                f"{self.backend_name!r}; the plan step assigns each row to exactly one backend"
            )

    def _resume(self, job_id: str, values: Mapping[str, Any]) -> StartOutcome | None:
        """Continue with the row's existing job; None means the job is over and a new one is due."""
        job = self.connection.job(job_id)
        try:
            status = job.status()
        except Exception as exc:
            if is_job_not_found(exc, job_id):
                return self._resume_not_found(job_id, values)
            if is_transient(exc):
                raise TransientStartError(
                    self._scrub(f"{self.row}: cannot read the status of job {job_id}: {exc}")
                ) from exc
            raise
        if status == OpenEOJobStatus.CREATED:
            log.info("%s: job %s was created but not started; starting it", self.row, job_id)
            return self._start_created(job, reattached=True)
        if status in (OpenEOJobStatus.ERROR, OpenEOJobStatus.CANCELED):
            if clean(values.get("status")) in RECORDED_FAILURE_ROW_STATUSES:
                log.info("%s: job %s ended %s; creating a new job for this re-run", self.row, job_id, status)
                # A clear, or a task retry after a crash between recording the error and the failure policy's
                # verdict: counted as an attempt of the row (``failure_policy.attempt_streak``).
                self._retire_job(job_id, values, status, note={RETRY_KEY: RETRY_BY_TASK})
                return None
            # The job ended while no task watched it (a retry after a crash): finish it, never replace it
            # behind the user's back; only a re-run of a row that records the failure creates a new job.
            log.info("%s: job %s ended %s while unwatched; handing it to the job handler", self.row, job_id, status)
            self._record(job_id, status, {"claimed_by": None})
            return StartOutcome(job_id=job_id, backend_status=status, reattached=True)
        # queued, running, finished, or a status this client does not know: the job may be alive, and a
        # second job for the row is the one outcome we must never cause.
        log.info("%s: re-attaching to job %s (%s)", self.row, job_id, status)
        self._record(job_id, status, {"claimed_by": None})
        return StartOutcome(job_id=job_id, backend_status=status, reattached=True)

    def _resume_not_found(self, job_id: str, values: Mapping[str, Any]) -> StartOutcome | None:
        """The row's job answers 404: replace it only when it is certainly gone, else watch it (never two jobs)."""
        if clean(values.get("status")) in RECORDED_FAILURE_ROW_STATUSES:
            reason = f"the row already records its end ({values.get('status')})"
        else:
            verdict = confirm_gone(self.connection, job_id)
            if not verdict.gone:
                log.warning(
                    "%s: job %s answers 404 on backend %s but is not confirmed gone (%s); re-attaching to it "
                    "instead of creating a second job",
                    self.row,
                    job_id,
                    self.backend_name,
                    verdict.reason,
                )
                self.db.update_row(self.row.row_id, {"claimed_by": None}, expected={"id": job_id})
                return StartOutcome(job_id=job_id, backend_status=UNCONFIRMED, reattached=True)
            reason = verdict.reason
        log.warning("%s: job %s no longer exists on backend %s: %s", self.row, job_id, self.backend_name, reason)
        self._retire_job(job_id, values, "deleted")
        return None

    # -- creating -----------------------------------------------------------------------------------------

    def _create_and_start(self, values: Mapping[str, Any]) -> StartOutcome:
        """Claim the row, create its job through the user's ``start_job`` (the job options applied), check what
        came back, then start the job unless ``start_job`` did."""
        self._claim(values)
        series = self._row_series()
        self._check_geometries(series)
        job, created = self._call_start_job(series, self._option_layers(values, series))
        job = self._checked_job(job, created)
        self._update({"start_time": utc_now_rfc3339()})
        if self.max_costs is not None:
            self._check_estimate(job, created)
        status = self._status_after_start_job(job, created)
        if status == OpenEOJobStatus.CREATED:
            return self._start_created(job, reattached=False)
        self._record(job.job_id, status, {"claimed_by": None})
        return StartOutcome(job_id=job.job_id, backend_status=status, reattached=False)

    def _option_layers(self, values: Mapping[str, Any], series: pd.Series) -> OptionLayers:
        """The job options this row's job is created with: the batch's, the row's, a memory raise after an
        out-of-memory error, the row's budget (``job_options``)."""
        return OptionLayers(
            batch=self.job_options,
            row=self._row_job_options(series),
            adjust=self._memory_adjustment(values),
            budget=self._row_job_budget(series),
        )

    def _call_start_job(self, series: pd.Series, layers: OptionLayers) -> tuple[Any, CreateLog]:
        """Call ``start_job`` as MBJM does, recording every job it creates (on this backend's connection and on
        any other it gets from ``connection_provider``, with the options applied there too).

        Returns what ``start_job`` returned (or the job a lost ``POST /jobs`` answer created) and the jobs
        created; options the backend refused fail the row here, naming them.
        """
        asked_at = time.time()
        with recording_created_jobs(self.connection, self._on_created) as created, ExitStack() as options_scope:

            def apply_options(connection: Connection, backend: str) -> AppliedOptions:
                return options_scope.enter_context(
                    applying_job_options(connection, layers, label=str(self.row), backend=backend)
                )

            applied = apply_options(self.connection, self.backend_name)
            connection_provider = (
                wrapping_provider(self.connection_provider, apply_options, already=(self.connection,))
                if layers
                else self.connection_provider
            )
            try:
                job = self.start_job(
                    row=series,
                    connection=self.connection,
                    connection_provider=connection_provider,
                    provider=self.backend_name,
                    **self.start_job_kwargs,
                )
            except Exception as exc:
                job = self._adopt_lost_create(exc, applied, created, asked_at, series)
        self._check_options_refused(None, applied, created)
        return job, created

    def _adopt_lost_create(
        self, exc: Exception, applied: AppliedOptions, created: CreateLog, asked_at: float, series: pd.Series
    ) -> BatchJob:
        """``start_job`` raised: when its ``POST /jobs`` lost the answer but the backend made the job, take that job
        (``_lost_create``) rather than create a second one; otherwise the start failed, and the row says why."""
        self._check_options_refused(exc, applied, created)
        lost = None if created.ids else (created.unanswered or [lost_create_answer(exc)])[0]
        orphan = (
            find_orphan(self.connection, lost, asked_at, held_ids=self._held_job_ids, label=str(self.row))
            if lost is not None
            else None
        )
        if orphan is None:
            self._start_failed(exc, created, lost, series)
        log.warning("%s: POST /jobs lost its answer (%s); adopting job %s", self.row, lost.reason, orphan)
        self._on_created(orphan)
        return self.connection.job(orphan)

    def _checked_job(self, job: Any, created: CreateLog) -> BatchJob:
        """What ``start_job`` returned: None skips the row (as in MBJM), anything but a ``BatchJob`` fails it; a job
        created through another connection (``connection_provider``) is recorded now."""
        if job is None:
            if created.ids:
                log.warning("%s: start_job returned None after creating job(s) %s", self.row, created.ids)
            self._update({"status": RowStatus.SKIPPED.value, "claimed_by": None, "start_time": utc_now_rfc3339()})
            raise RowSkipped(f"{self.row}: start_job returned None; the row is marked skipped")
        if not isinstance(job, BatchJob):
            message = f"{self.row}: start_job returned {type(job).__name__}, expected an openeo BatchJob or None"
            self._update({"status": RowStatus.START_FAILED.value, "error_message": message, "claimed_by": None})
            raise RowStartError(message)
        if job.job_id not in created.ids:
            self._on_created(job.job_id)
        return job

    def _status_after_start_job(self, job: BatchJob, created: CreateLog) -> str:
        """The job's status once ``start_job`` returned it, asking the backend only when this connection cannot tell.

        Seen on this connection: a start the backend accepted means queued (openEO API); a job it created and never
        started is still created. A job ``start_job`` got elsewhere (``connection_provider``) is read back. Sparing
        the read spares every job one ``GET /jobs/{id}`` (BENCHMARKS.md, requests per job).
        """
        if job.job_id in created.started:
            return OpenEOJobStatus.QUEUED.value
        if job.job_id in created.ids:
            return OpenEOJobStatus.CREATED.value
        try:
            return job.status()
        except Exception as exc:
            if is_transient(exc):
                raise TransientStartError(
                    self._scrub(f"{self.row}: job {job.job_id} created; status unreadable: {exc}")
                ) from exc
            raise

    def _row_job_options(self, series: pd.Series) -> dict[str, Any]:
        """The row's own ``job_options`` (a JSON object, or its text); a bad one fails the row before any job."""
        try:
            return parse_job_options(
                clean(series.get(JOB_OPTIONS_COLUMN)), where=f"{self.row}: field {JOB_OPTIONS_COLUMN!r}"
            )
        except ValueError as exc:
            message = f"{exc}; no job was created for this row"
            self._update({"status": RowStatus.START_FAILED.value, "error_message": message, "claimed_by": None})
            raise RowStartError(message) from None

    def _row_job_budget(self, series: pd.Series) -> float | None:
        """The openEO ``budget`` of the row's job: its ``job_budget`` column, else the batch's ``job_budget``."""
        try:
            own = checked_max_costs(f"{self.row}: field {JOB_BUDGET_COLUMN!r}", clean(series.get(JOB_BUDGET_COLUMN)))
        except ValueError as exc:
            message = f"{exc}; no job was created for this row"
            self._update({"status": RowStatus.START_FAILED.value, "error_message": message, "claimed_by": None})
            raise RowStartError(message) from None
        return own if own is not None else self.job_budget

    def _check_estimate(self, job: BatchJob, created: CreateLog) -> None:
        """The backend's ``GET /jobs/{id}/estimate`` replaces the row's reservation against the budget (``budget``),
        checked again before the job starts: a job whose estimate does not fit is deleted, never started, and the
        row is held back like one refused at its claim. This is what keeps the first jobs of a batch (no costs
        recorded yet, so expected at 0 when claimed) from passing the cap together.

        Optional in the openEO API: a backend that does not serve it (or gives no ``costs``) leaves the expectation
        the claim reserved; said in the log, never a failure. A job ``start_job`` started itself is only recorded.
        """
        assert self.max_costs is not None
        try:
            answer = self.connection.get(f"/jobs/{job.job_id}/estimate", expected_status=200).json()
        except Exception as exc:
            log.info("%s: no estimate for job %s (%s); the budget counts its expected cost", self.row, job.job_id, exc)
            return
        costs = parse_costs(answer.get("costs"), job_id=job.job_id) if isinstance(answer, Mapping) else None
        if costs is None:
            log.info("%s: job %s's estimate has no costs; the budget counts its expected cost", self.row, job.job_id)
            return
        fits, others = self.db.confirm_estimate(self.row.row_id, job.job_id, costs, max_costs=self.max_costs)
        log.info("%s: job %s is estimated at %s (%s)", self.row, job.job_id, costs, "fits" if fits else "too much")
        if fits or job.job_id in created.started:
            if not fits:
                self.db.update_row(self.row.row_id, {ESTIMATED_COSTS_COLUMN: costs}, expected={"id": job.job_id})
            return
        reason = f"{others.refusal(costs)} (by the estimate of job {job.job_id}, deleted before it started)"
        message = f"{self.row}: {reason}"
        self.abandon_created_job(job.job_id, reason, certainly_not_started=True)
        self._update(
            {
                "status": RowStatus.NOT_STARTED.value,
                BLOCKED_BY_COLUMN: BLOCKED_BY_BUDGET,
                "error_message": message,
                "claimed_by": None,
            }
        )
        raise BudgetReached(message, reason)

    def _check_options_refused(self, exc: Exception | None, applied: AppliedOptions, created: CreateLog) -> None:
        """Options the backend's processing parameters refuse: the row fails, naming them; no job was sent.

        Also when ``start_job`` caught the refusal itself: the row must still say why it has no job.
        """
        refused = exc if isinstance(exc, JobOptionsRefused) else applied.refused
        if refused is None or created.ids:
            return
        message = self._scrub(str(refused))
        self._update({"status": RowStatus.START_FAILED.value, "error_message": message, "claimed_by": None})
        raise RowStartError(message) from exc

    def _claim(self, values: Mapping[str, Any]) -> None:
        """Compare-and-set on what we read: of two processes that read the same row, one wins."""
        claimed_by = claim_holder(values, self.owner)
        if claimed_by:
            raise TransientStartError(
                f"{self.row} is being started by {claimed_by}; not starting it twice", failure=None
            )
        expected = {
            "status": values.get("status"),
            "id": values.get("id"),
            "claimed_by": values.get("claimed_by"),
        }
        claim = {
            "status": RowStatus.QUEUED_FOR_START.value,
            "backend_name": self.backend_name,
            **claim_values(self.owner),
            "error_message": None,
            BLOCKED_BY_COLUMN: None,
        }
        if self.max_costs is None:
            won = self.db.update_row(self.row.row_id, claim, expected=expected)
        else:
            won = self._claim_within_budget(claim, expected)
        if not won:
            raise TransientStartError(
                f"{self.row} changed while being claimed; another task is starting it", failure=None
            )

    def _claim_within_budget(self, claim: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
        """The claim, taken only while ``max_costs`` leaves room for one more job (atomic in the job database)."""
        refusals: list[str] = []

        def blocked(ledger: BudgetLedger, reserve: float) -> dict[str, Any]:
            refusals.append(ledger.refusal(reserve))
            return {
                "status": RowStatus.NOT_STARTED.value,
                BLOCKED_BY_COLUMN: BLOCKED_BY_BUDGET,
                "error_message": f"{self.row}: {refusals[-1]}",
                "claimed_by": None,
            }

        won, ledger, reserve = self.db.claim_within_budget(
            self.row.row_id,
            claim,
            expected=expected,
            max_costs=self.max_costs,
            backend_name=self.backend_name,
            blocked=blocked,
        )
        if refusals:
            raise BudgetReached(f"{self.row}: {refusals[-1]}", refusals[-1])
        if won:
            log.info("%s: within budget (%s; this job expected at %s)", self.row, ledger.report(), round(reserve, 6))
        return won

    def _on_created(self, job_id: str) -> None:
        self._update(
            {
                "id": job_id,
                "status": RowStatus.CREATED.value,
                "backend_status": OpenEOJobStatus.CREATED.value,
                "backend_name": self.backend_name,
            }
        )

    def _held_job_ids(self) -> set[str]:
        return {str(value) for value in self.db.read()["id"].dropna()}

    def _check_geometries(self, series: pd.Series) -> None:
        """An empty or invalid geometry fails here, naming the field, before any job is created for it."""
        problem = geometry_problem(series)
        if problem is not None:
            message = f"{self.row}: {problem}; no job was created for this row"
            self._update({"status": RowStatus.START_FAILED.value, "error_message": message, "claimed_by": None})
            raise RowStartError(message)

    def _start_failed(self, exc: Exception, created: CreateLog, lost: LostCreate | None, series: pd.Series) -> NoReturn:
        message = self._scrub(
            f"{self.row}: start_job{describe_start_job(self.start_job)} raised {type(exc).__name__}: {exc}"
            f"{empty_fields_hint(series)}"
        )
        if created.ids:
            # The job exists; a retry must start it, not create another.
            self._update({"error_message": message})
        elif lost is not None:
            message = self._scrub(
                f"{self.row}: field 'id' is unknown: POST /jobs reached backend {self.backend_name!r} at "
                f"{utc_now_rfc3339()} but its answer was lost ({lost.reason}; {type(exc).__name__}: {exc}), and "
                "the backend's job list shows no single job that is certainly it. The backend may hold a job for "
                "this row whose id never reached us; not retrying, so that no second job is created. Look for a "
                "job in 'created' status from that time: delete it, or write its id into field 'id' to adopt it, "
                "then re-run the row."
            )
            self._update({"status": RowStatus.START_FAILED.value, "error_message": message, "claimed_by": None})
            raise RowStartError(message) from exc
        else:
            status = RowStatus.NOT_STARTED if is_transient(exc) else RowStatus.START_FAILED
            self._update({"status": status.value, "error_message": message, "claimed_by": None})
        if is_transient(exc):
            raise TransientStartError(message, failure=start_failure_of(exc)) from exc
        raise RowStartError(message) from exc

    def _start_created(self, job: BatchJob, *, reattached: bool) -> StartOutcome:
        """``POST /jobs/{id}/results`` is idempotent per the openEO API, so transient failures are retried here."""
        for attempt in range(1, self.start_attempts + 1):
            try:
                job.start()
                break
            except Exception as exc:
                if not is_transient(exc):
                    message = self._scrub(f"{self.row}: backend refused to start job {job.job_id}: {exc}")
                    self._update({"status": RowStatus.START_FAILED.value, "error_message": message, "claimed_by": None})
                    raise RowStartError(message) from exc
                if attempt == self.start_attempts:
                    message = self._scrub(f"{self.row}: cannot start job {job.job_id} now: {exc}")
                    self._update({"error_message": message})
                    raise TransientStartError(message, failure=start_failure_of(exc)) from exc
                log.warning("%s: starting job %s failed (%s); retrying", self.row, job.job_id, exc)
                time.sleep(self.start_backoff * attempt)
        # An accepted start means queued (openEO API); the trigger's shared listing reports what follows. Not
        # reading the status here spares every job one GET /jobs/{id} (BENCHMARKS.md, requests per job).
        status = OpenEOJobStatus.QUEUED.value
        self._record(job.job_id, status, {"claimed_by": None, "error_message": None})
        return StartOutcome(job_id=job.job_id, backend_status=status, reattached=reattached)

    # -- row writes ---------------------------------------------------------------------------------------

    def _row_series(self) -> pd.Series:
        """The row exactly as MBJM hands it to ``start_job``: a Series named by its index, geometry as shapely."""
        frame = self.db.get_by_indices([self.row.row_id])
        if frame.empty:
            raise RowStartError(f"{self.row} does not exist")
        return frame.iloc[0]

    def _record(self, job_id: str, backend_status: str, extra: Mapping[str, Any]) -> None:
        """What the backend said, compare-and-set on the job id.

        ``status`` follows only a live job: ``finished`` (and the final statuses) are the job handler's to write,
        together with results and usage, so a row that says ``finished`` has always been through ``on_job_done``
        (the trigger keeps the same rule).
        """
        values: dict[str, Any] = {"backend_status": backend_status, **extra}
        if backend_status in ACTIVE_BACKEND_STATUSES:
            values["status"] = backend_status
        self.db.update_row(self.row.row_id, values, expected={"id": job_id})

    def _retire_job(
        self, job_id: str, values: Mapping[str, Any], final_status: str, *, note: Mapping[str, Any] | None = None
    ) -> None:
        """Keep the old job in ``job_history`` so a re-run never hides what happened before."""
        self.db.update_row(
            self.row.row_id,
            retired_values({**values, "id": job_id}, final_status, note=note),
            expected={"id": job_id},
        )

    def _memory_adjustment(self, values: Mapping[str, Any]) -> Any:
        """After out-of-memory failures the failure policy retried, the policy's memory rule for the new job's
        options (applied once per such retry, counted from the row's ``job_history``, so a task that re-creates
        the job after a crash sends the same memory); None when there is nothing to raise."""
        policy = self.failure_policy
        if policy is None or policy.oom_memory is None:
            return None
        retries = oom_retries(clean(values.get("job_history")))
        if not retries:
            return None
        rule, label = policy.oom_memory, str(self.row)

        def adjust(options: dict[str, Any], parameters: list[dict[str, Any]] | None) -> dict[str, Any]:
            return raise_memory(options, rule, retries, parameters, label=label)

        return adjust

    def abandon_created_job(self, job_id: str, reason: str, *, certainly_not_started: bool) -> bool:
        """Give up a job that was created but whose start failed, so the row may go to another backend.

        The job is deleted first: a start whose answer was lost (a 5xx, a dropped connection) may have started it,
        and a second job elsewhere must never run beside it. When the delete fails too, the row keeps the job
        (False) unless the start was certainly refused (``ConcurrentJobLimit``: the job stays ``created`` and
        never runs). The job goes to ``job_history`` as ``abandoned``.
        """
        try:
            self.connection.job(job_id).delete()
        except Exception as exc:
            gone = is_job_not_found(exc, job_id) and confirm_gone(self.connection, job_id).gone
            if not gone and not certainly_not_started:
                log.warning("%s: job %s could not be deleted (%s); the row keeps it", self.row, job_id, exc)
                return False
        values = self.db.get_row(self.row.row_id)
        log.info("%s: job %s on %s abandoned (%s)", self.row, job_id, self.backend_name, reason)
        self._retire_job(job_id, values, "abandoned")
        return True

    def _update(self, values: Mapping[str, Any]) -> None:
        self.db.update_row(self.row.row_id, values)

    def _scrub(self, message: str) -> str:
        """Error texts go to the row, the task log and XCom: never with a credential of the connection in them."""
        return scrub(message, self.connection)


def geometry_problem(series: pd.Series) -> str | None:
    """The first empty or invalid geometry of a row, as ``field 'name' is ...``; None when all are fine."""
    for name, value in series.items():
        if not isinstance(value, BaseGeometry):
            continue
        if value.is_empty:
            return f"field {name!r} is empty"
        if not value.is_valid:
            return f"field {name!r} is not a valid geometry ({explain_validity(value)})"
    return None


def describe_start_job(start_job: StartJobCallable) -> str:
    """Where a ``ProcessBasedJobCreator`` reads its process from: its errors (a 404, a page that is not JSON)
    seldom say which URL they came from."""
    if not isinstance(start_job, ProcessBasedJobCreator):
        return ""
    process_id = getattr(start_job, "_process_id", None)
    namespace = getattr(start_job, "_namespace", None)
    return f" (ProcessBasedJobCreator, process {process_id!r} from namespace {namespace!r})"


def empty_fields_hint(series: pd.Series) -> str:
    """Name the row's empty fields: ``start_job`` failing on one (NaN in a JSON body) rarely says which."""
    empty = [repr(str(name)) for name, value in series.items() if name not in RESERVED and clean(value) is None]
    return f" (empty field(s) in this row: {', '.join(empty)})" if empty else ""


def claim_holder(values: Mapping[str, Any], owner: str, now: float | None = None) -> str | None:
    """The one claim rule, shared by the starter and the dispatch: who else holds the row now (a claim by another
    owner that is not stale), or None when ``owner`` may take it. The caller then writes :func:`claim_values`
    with ``expected={"claimed_by": <the holder it read>}``, so of two processes that read the same row one wins."""
    holder = clean(values.get("claimed_by"))
    if holder and holder != owner and not claim_is_stale(values.get("claimed_at"), now):
        return str(holder)
    return None


def claim_values(owner: str) -> dict[str, Any]:
    """The cells a claim writes: the owner, and when (the job table's one timestamp format)."""
    return {"claimed_by": owner, "claimed_at": utc_now_rfc3339()}


def claim_is_stale(claimed_at: Any, now: float | None = None) -> bool:
    """Whether a row's claim (``claimed_at``) is old enough to belong to a dead task: creating and starting a job
    takes seconds, so a claim older than :data:`STALE_CLAIM_SECONDS` (or unreadable) is taken over."""
    claimed_at = clean(claimed_at)
    if not claimed_at:
        return True
    when = epoch_from_rfc3339(claimed_at)
    if when is None:
        return True
    return (time.time() if now is None else now) - when > STALE_CLAIM_SECONDS
