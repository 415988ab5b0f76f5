"""Operators for one row of an openEO job table: start its job, see it through, store its results.

``OpenEOStartJobOperator`` creates and starts the row's job and returns its id. ``OpenEOBatchJobOperator`` is
that same start followed by the sensor's deferrable wait, so the task's pool slot covers the remote job's whole
life; it stores the results itself, or (``handle_results=False``, as ``openeo_job_batch`` does) ends in the
triggerer the moment the job finishes and leaves them to ``OpenEOJobResultsOperator``, so a download never
holds a backend's slot. None holds its own copy of the logic: starting lives in
:mod:`airflow_provider_openeo.start.job_starting`, waiting and result handling in
:mod:`airflow_provider_openeo.wait.job_waiting`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseOperator
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    DownstreamTasksSkipped,
)

from airflow_provider_openeo.batch import arguments
from airflow_provider_openeo.batch.budget import requested_max_costs
from airflow_provider_openeo.batch.dispatching import Claim, Done, GiveUp, StartFailure, Wait
from airflow_provider_openeo.batch.dry_run import (
    DryRunOutcome,
    RowDryRun,
    Verdict,
    requested_dry_run,
    requested_estimates,
)
from airflow_provider_openeo.batch.failure_policy import RETRY_BY_POLICY, RETRY_KEY, FailurePolicy, decide
from airflow_provider_openeo.batch.row_dispatch import DispatchSettings, RowDispatcher
from airflow_provider_openeo.batch.run_chain import chain_key
from airflow_provider_openeo.handlers._stac_item import json_value
from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.hooks._job_db.columns import BACKEND_CHOSEN_BY_DISPATCH
from airflow_provider_openeo.hooks._job_db.sql import DEFAULT_TABLE_NAME
from airflow_provider_openeo.hooks._openeo.http import safe_retry
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.hooks.openeo import OpenEOHook
from airflow_provider_openeo.job_table.job_history import clean, retired_values
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.job_table.job_status import OpenEOJobStatus, RowStatus
from airflow_provider_openeo.links.openeo import OpenEOJobLink
from airflow_provider_openeo.start.job_starting import (
    BudgetReached,
    RowJobStarter,
    RowSkipped,
    RowStartError,
    StartJobCallable,
    StartOutcome,
    TransientStartError,
    is_transient,
)
from airflow_provider_openeo.triggers._wait_settings import (
    DEFAULT_CANCEL_ON_KILL,
    DEFAULT_CANCEL_RUNNING_JOB_AFTER,
    DEFAULT_POLL_INTERVAL,
    JobWaitSettings,
)
from airflow_provider_openeo.triggers.openeo import OpenEODispatchWaitTrigger, OpenEOJobEvent, OpenEOJobEventStatus
from airflow_provider_openeo.wait.job_waiting import NOT_RETRIED, OpenEOJobWaitMixin, ended_in_triggerer

if TYPE_CHECKING:
    from airflow.sdk import Context
    from openeo import Connection

#: Where the batch operator puts a row's label for ``map_index_template`` (see :func:`row_label`).
ROW_LABEL_KEY = "openeo_row_label"
#: The label of the instance that found nothing left for its backend (it skips the unused ones and succeeds).
NO_ROW_LEFT_LABEL = "no row left ({backend})"
#: Retries of a dispatched start's requests: a failing backend is left for another within seconds.
DISPATCH_RETRY = {"total": 2, "backoff_factor": 0.5, "backoff_max": 4.0}
#: The label of an instance that has not taken a row (yet): it waits for one, or was skipped unused.
NO_ROW_YET_LABEL = "no row yet ({backend})"
#: Claims an instance tries before its try's templates are rendered. Instances given pool slots at the same
#: moment all pick the first free row and all but one lose it; each loser asks again at once (milliseconds),
#: where a wait for the next turn would cost it a second process and a trip through the triggerer.
CLAIM_ATTEMPTS = 10
#: The shortest wait in the triggerer for a dispatch turn. Airflow 3.3 can fail a task whose trigger fires before
#: the scheduler has handled the executor's report that the deferring process ended: the resumed try is queued by
#: then and the stale report reads as the task having been killed (apache/airflow#67287 and #72716). Seconds
#: of margin keep a dispatch turn clear of that race.
MIN_DISPATCH_WAIT_SECONDS = 3.0


def holds_no_row(label: str | None) -> bool:
    """Whether a ``job`` instance's label says it ran no row (the grid and the tests tell them apart by it)."""
    text = str(label or "")
    return any(text.startswith(template.split("{")[0]) for template in (NO_ROW_LEFT_LABEL, NO_ROW_YET_LABEL))


class OpenEORowOperator(BaseOperator):
    """What every per-row task shares: which row of which job table, on which backend, and its UI label.

    :param row_id: the row (its index in the job table); None with ``dispatch``: the row this instance takes (the
        batch operator) or took (the results operator) in its batch run.
    :param dispatch: how the instances of ``openeo_job_batch`` take rows (:class:`DispatchSettings`).
    :param openeo_conn_id: connection of the backend the row runs on.
    :param job_table: the job table; ``job_db_conn_id`` None uses the embedded SQLite database (at
        ``sqlite_path``, default ``$AIRFLOW_HOME/openeo_jobs.db``).
    :param label_columns: columns that name a row in the UI (``map_index_template``), first present wins.
    """

    #: ``job_db_conn_id`` and ``sqlite_path`` are template fields also so that Airflow serializes them: the batch
    #: view (in the API server, which has no DAG files) finds a batch's job table through them.
    template_fields: Sequence[str] = ("row_id", "job_table", "job_db_conn_id", "sqlite_path", "openeo_conn_id")

    def __init__(
        self,
        *,
        row_id: int | str | None = None,
        openeo_conn_id: str = OpenEOHook.default_conn_name,
        job_table: str = DEFAULT_TABLE_NAME,
        job_db_conn_id: str | None = None,
        sqlite_path: str | None = None,
        label_columns: Sequence[str] = ("title", "name"),
        dispatch: DispatchSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if row_id is None and dispatch is None:
            raise ValueError(f"{self.task_id}: give row_id (a row of the job table), or dispatch (a batch's rows)")
        self.row_id = row_id
        self.dispatch = dispatch
        self.openeo_conn_id = openeo_conn_id
        self.job_table = job_table
        self.job_db_conn_id = job_db_conn_id
        self.sqlite_path = sqlite_path
        self.label_columns = tuple(label_columns)

    @property
    def row(self) -> JobRowRef:
        if self.row_id is None:
            raise AirflowException(f"{self.task_id}: this instance holds no row of job table {self.job_table!r}")
        return JobRowRef(
            table=self.job_table,
            row_id=self.row_id,
            job_db_conn_id=self.job_db_conn_id,
            sqlite_path=self.sqlite_path,
        )

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Also put the row's label into the context. Airflow calls this at the start of every try, a resumed one
        too (whose context is fresh), just before its first rendering of ``map_index_template``: a task that ends
        in the triggerer is never rendered again, so that label is its only one."""
        super().render_template_fields(context, jinja_env)
        self._before_label(context)
        self._label_row(context)

    def _before_label(self, context: Context) -> None:
        """What a row task does before it is labelled (the batch operator takes its row here)."""

    def _label_row(self, context: Context) -> None:
        """Name the row for ``map_index_template``: the UI then lists rows by title, not by bare index.

        Airflow renders ``map_index_template`` after every successful try with a strict template environment,
        so the key must always be set: an unreadable row gets the plain ``row <id>`` label instead of failing
        a task whose job went fine. A dispatched instance that holds no row yet is labelled as waiting; it is
        labelled again when it takes one.
        """
        if self.row_id is None and self.dispatch is not None:
            dispatcher = self._dispatcher(context)
            try:
                self.row_id = dispatcher.held_row_id()
            except Exception:  # an unreadable table fails the task where it matters, with its own message
                self.row_id = None
            finally:
                dispatcher.db.dispose()
            if self.row_id is None:
                self.set_label(context, NO_ROW_YET_LABEL.format(backend=getattr(self.dispatch, "backend", "")))
                return
        try:
            values = self._read_row()
        except Exception:  # the label is cosmetic: a missing row fails loudly where it matters instead
            values = {}
        self.set_label(context, row_label(self.row_id, values, self.label_columns))

    @staticmethod
    def set_label(context: Context, label: str) -> None:
        context[ROW_LABEL_KEY] = label  # type: ignore[literal-required]

    def _dispatcher(self, context: Context) -> RowDispatcher:
        assert self.dispatch is not None
        return RowDispatcher(self.job_db(), self.dispatch.scope(context, task_id=self.task_id))

    def job_db(self) -> OpenEOJobDbHook:
        return OpenEOJobDbHook(self.job_db_conn_id, table=self.job_table, sqlite_path=self.sqlite_path)

    def _read_row(self) -> dict[str, Any]:
        return self.row.read()


class OpenEOStartJobOperator(OpenEORowOperator):
    """Create and start the openEO job of one job-table row; return the job id.

    Takes everything :class:`OpenEORowOperator` takes (``row_id``, ``openeo_conn_id``, ``job_table``, ...), and:

    :param start_job: MBJM's callable, unchanged: ``start_job(row, connection, connection_provider, provider,
        **kwargs)`` returning a ``BatchJob`` (or None to skip the row). ``ProcessBasedJobCreator`` works as is.
    :param backend_name: the backend's name in the batch (what the row's ``backend_name`` says).
    :param backends: every backend of the batch, name to connection id, for ``start_job``'s
        ``connection_provider``; defaults to just this one.
    :param start_job_kwargs: extra keyword arguments for ``start_job``.
    :param job_options: options for every job this task creates, merged over what ``start_job`` sends and under
        the row's own ``job_options`` column (:mod:`airflow_provider_openeo.start._create_options`).
    :param failure_policy: which rows whose job ended in ``error`` get another job, and with how much memory
        (:mod:`airflow_provider_openeo.batch.failure_policy`); None: none do (``openeo_job_batch`` passes its default).
    :param job_budget: the openEO ``budget`` of every job this task creates (``POST /jobs``), unless the row's
        ``job_budget`` column says otherwise.
    :param max_costs: the batch's budget (:mod:`airflow_provider_openeo.batch.budget`): no job is created once the job
        table's costs and estimates reach it; the run's conf or Param ``max_costs`` overrides it.

    A run whose conf or Param ``dry_run`` is true creates no job: the row's job is built and validated
    (:mod:`airflow_provider_openeo.batch.dry_run`).
    """

    template_fields: Sequence[str] = (
        "row_id",
        "job_table",
        "job_db_conn_id",
        "sqlite_path",
        "backend_name",
        "openeo_conn_id",
    )
    operator_extra_links = (OpenEOJobLink(),)
    ui_color = "#c5e3f6"

    def __init__(
        self,
        *,
        start_job: StartJobCallable,
        backend_name: str | None = None,
        backends: Mapping[str, str] | None = None,
        start_job_kwargs: Mapping[str, Any] | None = None,
        job_options: Mapping[str, Any] | str | None = None,
        failure_policy: FailurePolicy | Mapping[str, Any] | None = None,
        job_budget: float | None = None,
        max_costs: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start_job = arguments.start_job(start_job, start_job_kwargs)
        self.job_options = arguments.job_options(job_options)
        self.failure_policy = arguments.failure_policy(failure_policy) if failure_policy is not None else None
        self.job_budget = arguments.costs("job_budget", job_budget)
        self.max_costs = arguments.costs("max_costs", max_costs)
        self.backend_name = backend_name
        self.backends = dict(backends or {})
        self.start_job_kwargs = dict(start_job_kwargs or {})

    def execute(self, context: Context) -> str | None:
        if requested_dry_run(context):
            self.dry_run_row(context, self._hook())
            return None
        outcome = self.start_row(context)
        return outcome.job_id

    def start_row(self, context: Context) -> StartOutcome:
        """Bring the row to a started (or re-attached) job, translating outcomes into Airflow's vocabulary."""
        try:
            return self._start(context, self._hook())
        except TransientStartError as exc:
            raise AirflowException(f"{exc} (an Airflow retry will try again)") from exc
        except BudgetReached as exc:
            raise AirflowSkipException(str(exc)) from exc

    def dry_run_row(self, context: Context, hook: OpenEOHook) -> DryRunOutcome:
        """Build and validate the row's job without creating it; a row that would fail fails the task."""
        backend_name = self.backend_name or self.openeo_conn_id
        connection = hook.get_conn()
        dry_run = RowDryRun(
            self.row,
            backend_name=backend_name,
            connection=connection,
            start_job=self.start_job,
            connection_provider=self._connection_provider(backend_name, connection),
            start_job_kwargs=self.start_job_kwargs,
            job_options=self.job_options,
            job_budget=self.job_budget,
            chain=chain_key(context),
            estimate_sample=requested_estimates(context),
        )
        try:
            outcome = dry_run.run()
        finally:
            dry_run.db.dispose()
        if outcome.verdict is Verdict.WOULD_FAIL:
            raise AirflowFailException(f"{self.row}: dry run: would fail: {outcome.message}")
        if outcome.verdict is Verdict.SKIPPED:
            raise AirflowSkipException(f"{self.row}: dry run: start_job returned None; the row would be skipped")
        self.log.info("%s: dry run: %s (no job was created)", self.row, outcome.verdict.value)
        return outcome

    def _hook(self) -> OpenEOHook:
        return batch_hook(self.openeo_conn_id)

    def _starter(self, context: Context, hook: OpenEOHook, *, start_attempts: int = 3) -> RowJobStarter:
        backend_name = self.backend_name or self.openeo_conn_id
        connection = hook.get_conn()
        return RowJobStarter(
            self.row,
            backend_name=backend_name,
            connection=connection,
            start_job=self.start_job,
            connection_provider=self._connection_provider(backend_name, connection),
            owner=_task_instance_owner(context),
            start_job_kwargs=self.start_job_kwargs,
            job_options=self.job_options,
            job_budget=self.job_budget,
            max_costs=requested_max_costs(context, self.max_costs),
            start_attempts=start_attempts,
            failure_policy=self.failure_policy,
        )

    def _start(self, context: Context, hook: OpenEOHook, *, start_attempts: int = 3) -> StartOutcome:
        """The start itself; a ``TransientStartError`` is left to the caller (a retry, or the dispatch)."""
        backend_name = self.backend_name or self.openeo_conn_id
        starter = self._starter(context, hook, start_attempts=start_attempts)
        try:
            outcome = starter.start()
        except RowSkipped as exc:
            raise AirflowSkipException(str(exc)) from exc
        except RowStartError as exc:
            raise AirflowFailException(str(exc)) from exc
        finally:
            starter.db.dispose()  # a PostgreSQL pool must not outlive the start in a long-deferred task
        outcome = dataclasses.replace(
            outcome, job_url=OpenEOJobLink.persist(context, hook.job_url(outcome.job_id), row_id=self.row_id)
        )
        self.log.info(
            "%s: job %s on %s is %s%s",
            self.row,
            outcome.job_id,
            backend_name,
            outcome.backend_status,
            " (re-attached)" if outcome.reattached else "",
        )
        return outcome

    def _connection_provider(self, own_name: str, own: Connection) -> Any:
        """MBJM's ``connection_provider``: a connection for any backend of the batch, by name."""
        cache: dict[str, Connection] = {own_name: own}

        def provider(backend_name: str) -> Connection:
            if backend_name not in cache:
                if backend_name not in self.backends:
                    raise KeyError(f"unknown backend {backend_name!r}; known: {sorted({own_name, *self.backends})}")
                cache[backend_name] = batch_hook(self.backends[backend_name]).get_conn()
            return cache[backend_name]

        return provider


class OpenEOBatchJobOperator(OpenEOJobWaitMixin, OpenEOStartJobOperator):
    """One row from start to finish: start (or re-attach), wait deferred in the triggerer, handle the result.

    Takes everything :class:`OpenEOStartJobOperator` takes, plus the sensor's waiting options.

    :param handler: what to do when the job ends (MBJM's ``on_job_done`` / ``on_job_error`` / ``on_job_cancel``);
        default: download results into ``./job_{id}``.
    :param poll_interval: seconds between status reads in the triggerer (shared by all jobs of a backend).
    :param cancel_running_job_after: seconds a job may run (counted from the backend reporting ``running``)
        before it is canceled.
    :param cancel_on_kill: cancel the remote job when the task is marked failed/success, cleared or times out.
    :param handle_results: run the handler's ``on_job_done`` (download) in this task. False: the task ends in
        the triggerer when the job finishes, and an ``OpenEOJobResultsOperator`` for the same row stores the
        results; a job that ended badly is still handled here (its logs fetched, the task failed).
    """

    def __init__(
        self,
        *,
        handler: OpenEOJobHandler | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        cancel_running_job_after: float | None = DEFAULT_CANCEL_RUNNING_JOB_AFTER,
        cancel_on_kill: bool = DEFAULT_CANCEL_ON_KILL,
        handle_results: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.handler = handler if handler is not None else OpenEOJobHandler()
        self.wait_settings = JobWaitSettings(poll_interval, cancel_running_job_after, cancel_on_kill)
        self.handle_results = handle_results

    def execute(self, context: Context) -> Any:
        if self.dispatch is not None:
            return self._take_a_row(context)
        if requested_dry_run(context):
            self.dry_run_row(context, self._hook())
            return None
        return self._wait_for(context, self.start_row(context))

    def execute_dispatch(self, context: Context, event: Any = None) -> Any:
        """Resume after waiting in the triggerer for the dispatch to have something to do."""
        return self._take_a_row(context)

    def _wait_for(self, context: Context, outcome: StartOutcome) -> Any:
        if OpenEOJobStatus.is_terminal_value(outcome.backend_status):
            # Ended while nobody watched (or its download was interrupted): finish it now, no trigger needed.
            event = OpenEOJobEvent(
                status=OpenEOJobEventStatus(outcome.backend_status),
                job_id=outcome.job_id,
                openeo_conn_id=self.openeo_conn_id,
                message=f"the job had already ended: {outcome.backend_status}",
                backend_status=outcome.backend_status,
                row=self.row.to_dict(),
            )
            return self.finish_wait(context, event)
        self.defer_until_terminal(
            context,
            job_id=outcome.job_id,
            row=self.row,
            job_url=outcome.job_url,
            end_task_on_finish=not self.handle_results,
        )

    def _before_label(self, context: Context) -> None:
        """A dispatched instance takes its row here, when Airflow renders the try's templates.

        Airflow renders ``map_index_template`` once before ``execute`` and not again for a task that defers and
        ends in the triggerer, so the row must be known by then for the grid to show it. Only the claim happens
        here (a compare-and-set on the row); everything else that the decision asks for happens in ``execute``.
        """
        self._decision = None
        if self.dispatch is None or self.row_id is not None or "ti" not in context:
            return
        dispatcher = self._dispatcher(context)
        try:
            if dispatcher.held_row_id() is not None:
                return  # a retry or a resumed try: the label reads the row it holds
            owner = _task_instance_owner(context)
            for _ in range(CLAIM_ATTEMPTS):
                decision = dispatcher.decide()
                taken = isinstance(decision, Claim) and dispatcher.claim(decision.row_id, owner)
                if taken or not isinstance(decision, Claim):
                    break  # a lost claim (another instance took that row first) asks again at once
            if taken or isinstance(decision, GiveUp):
                self.row_id = decision.row_id
            self._decision = decision
        finally:
            dispatcher.db.dispose()

    def _take_a_row(self, context: Context) -> Any:
        """Start the row this instance took, or wait for one, or end when nothing is left (``dispatching``).

        A start that fails because of the backend (unreachable, 5xx, ``ConcurrentJobLimit``) is recorded against
        the backend and the row is given back, so another backend's free slot takes it; this instance then waits
        in the triggerer for its next turn (at once, or once the backend's cool-down ends), and takes its next row
        when that turn's templates are rendered, so its label always names the row it runs.
        """
        dispatcher = self._dispatcher(context)
        try:
            return self._take_a_row_with(context, dispatcher)
        finally:
            dispatcher.db.dispose()

    def _take_a_row_with(self, context: Context, dispatcher: RowDispatcher) -> Any:
        decision = getattr(self, "_decision", None)
        if isinstance(decision, GiveUp):
            if dispatcher.give_up(decision.row_id, decision.reason):
                raise AirflowFailException(f"{self.row}: {decision.reason}")
            self.row_id = None  # another instance gave it up first: this one looks again
            self._wait_to_dispatch(dispatcher, Wait(time.time(), "the row was given up elsewhere"))
        if self.row_id is None:
            decision = dispatcher.decide()
            if isinstance(decision, Done):
                self.set_label(context, NO_ROW_LEFT_LABEL.format(backend=self.backend_name))
                self.log.info("%s; skipping the instances nobody needs", decision.reason)
                leaving = [self.backend_name] if decision.leaves_rows else []
                raise DownstreamTasksSkipped(tasks=dispatcher.instances_to_skip(leaving=leaving))
            if isinstance(decision, Wait):
                self._wait_to_dispatch(dispatcher, decision)
            # A row came free since this try's templates were rendered: take it on the next turn, labelled.
            self._wait_to_dispatch(dispatcher, Wait(time.time(), "a row came free"))
        if requested_dry_run(context):
            self.dry_run_row(context, batch_hook(self.openeo_conn_id))
            return None
        # A dead backend must cost seconds, not the minute of backoff a read gets: the row can go elsewhere.
        hook = batch_hook(self.openeo_conn_id, retry=safe_retry(**DISPATCH_RETRY))
        try:
            hook.get_conn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            message = f"cannot connect to backend {self.backend_name!r}: {exc}"
            self._backend_failed(dispatcher, StartFailure.UNAVAILABLE, message)
            dispatcher.release(self.row_id, f"{self.row}: {message}; the row was given back for another slot")
            self._wait_to_dispatch(dispatcher, Wait(time.time(), "the row was given back"))
        try:
            outcome = self._start(context, hook, start_attempts=1)
        except BudgetReached as exc:
            held = dispatcher.hold_back(exc.reason)
            self.log.warning("%s; %d more row(s) of this run held back, none of them started", exc, held)
            raise AirflowSkipException(str(exc)) from exc
        except TransientStartError as exc:
            if exc.failure is None:
                raise AirflowException(f"{exc} (an Airflow retry will try again)") from exc
            self._give_back(context, dispatcher, hook, exc)
            self._wait_to_dispatch(dispatcher, Wait(time.time(), "the row was given back"))
        dispatcher.record_success()
        return self._wait_for(context, outcome)

    def _backend_failed(self, dispatcher: RowDispatcher, failure: StartFailure, message: str) -> None:
        health = dispatcher.record_failure(failure, message)
        self.log.warning("%s: %s", self.backend_name, health.describe(time.time()))

    def _give_back(
        self, context: Context, dispatcher: RowDispatcher, hook: OpenEOHook, exc: TransientStartError
    ) -> None:
        """After a failed start: give up a created job the row need not keep, record the failure, free the row."""
        assert exc.failure is not None
        row_id = self.row_id
        values = self._read_row()
        job_id = values.get("id")
        placed = values.get("backend_chosen_by") == BACKEND_CHOSEN_BY_DISPATCH  # not the user's pin
        if job_id and values.get("status") == OpenEOJobStatus.CREATED.value and placed:
            starter = self._starter(context, hook, start_attempts=1)
            try:
                starter.abandon_created_job(
                    str(job_id), str(exc), certainly_not_started=exc.failure is StartFailure.LIMIT
                )
            finally:
                starter.db.dispose()
        self._backend_failed(dispatcher, exc.failure, str(exc))
        dispatcher.release(row_id, f"{exc}; the row was given back for another slot")
        self.log.warning("%s given back after a failed start on %s: %s", self.row, self.backend_name, exc)

    def _wait_to_dispatch(self, dispatcher: RowDispatcher, decision: Wait) -> NoReturn:
        not_before = time.time() + MIN_DISPATCH_WAIT_SECONDS
        until = max(decision.until, not_before)
        self.log.info("waiting until %s: %s", time.strftime("%H:%M:%S", time.gmtime(until)), decision.reason)
        trigger = OpenEODispatchWaitTrigger(
            job_db={"table": self.job_table, "job_db_conn_id": self.job_db_conn_id, "sqlite_path": self.sqlite_path},
            scope=dispatcher.scope.to_dict(),
            until=until,
            not_before=not_before,
        )
        self.defer(trigger=trigger, method_name="execute_dispatch")
        raise AssertionError("defer() returned")  # pragma: no cover - defer always raises

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume after the trigger fired (the row label is back in the fresh context: ``render_template_fields``)."""
        if not self.handle_results and ended_in_triggerer(event):
            return None
        return super().execute_complete(context, event)

    def after_job_error(self, context: Context, event: OpenEOJobEvent) -> Any:  # type: ignore[override]
        """The failure policy, once the handler recorded the error and its ``error_category``.

        Retry: the row gives its job up into ``job_history`` (compare-and-set on the job id and ``error``, keeping
        its backend and its instance's slot) and this task starts the row again on the path every new row takes
        (``execute``: claim, create with the id recorded at once, lost-create recovery, then the deferred wait).
        A task killed after the give-up finds the row without a job and creates one; killed before it, its retry
        finds the recorded error and creates one as a re-run does: never two jobs. No retry: the row's
        ``error_message`` says why, and the task fails.
        """
        policy, row = self.failure_policy, event.row_ref
        if policy is None or row is None:
            return NOT_RETRIED
        hook = row.hook()
        try:
            values = hook.get_row(row.row_id)
            if clean(values.get("id")) != event.job_id or values.get("status") != RowStatus.ERROR.value:
                self.log.warning("%s no longer records job %s as failed: left to itself", row, event.job_id)
                return NOT_RETRIED
            verdict = decide(policy, clean(values.get("error_category")), clean(values.get("job_history")))
            message = clean(values.get("error_message")) or ""
            expected = {"id": event.job_id, "status": RowStatus.ERROR.value}
            if not verdict.retry:
                self.log.warning("%s: job %s: %s", row, event.job_id, verdict.reason)
                hook.update_row(row.row_id, {"error_message": f"{message} ({verdict.reason})"}, expected=expected)
                return NOT_RETRIED
            note = {RETRY_KEY: RETRY_BY_POLICY}
            retired = retired_values(values, RowStatus.ERROR.value, note=note, keep_backend=True)
            if not hook.update_row(row.row_id, retired, expected=expected):
                self.log.warning("%s changed while being retried; the failure policy leaves it", row)
                return NOT_RETRIED
        finally:
            hook.dispose()
        self.log.warning("%s: job %s: %s", row, event.job_id, verdict.reason)
        self.row_id = row.row_id  # the row this instance holds (its slot is kept): started again, not a new one
        return self.execute(context)

    def on_finished(self, context: Context, event: OpenEOJobEvent) -> Any:  # type: ignore[override]
        """With ``handle_results=False`` (a job that had already finished when re-attached): the row's results
        task stores it."""
        if self.handle_results:
            return super().on_finished(context, event)
        return None


class OpenEOJobResultsOperator(OpenEOJobWaitMixin, OpenEORowOperator):
    """Store the results of a row's finished job: the handler's ``on_job_done``, outside the backend's pool.

    Runs after the row's ``OpenEOBatchJobOperator(handle_results=False)``, which ended when the job finished; the
    row says which job that was. A failed download fails only this task, and its retry downloads again without
    touching the job. Takes what :class:`OpenEORowOperator` takes, and:

    :param handler: the same ``OpenEOJobHandler`` as the row's batch task (default: download into ``./job_{id}``).
    """

    ui_color = "#d9ead3"

    def __init__(self, *, handler: OpenEOJobHandler | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handler = handler if handler is not None else OpenEOJobHandler()

    def execute(self, context: Context) -> Any:
        if requested_dry_run(context):
            raise AirflowSkipException("dry run: no job was created, so there are no results to store")
        if self.row_id is None:  # dispatched: the row the job task's instance took (rendering looked it up)
            self._label_row(context)
            if self.row_id is None:
                raise AirflowSkipException("the job task of this instance took no row: no results to store")
        values = self._read_row()
        job_id = values.get("id")
        if job_id is None or str(job_id) in ("", "nan", "None"):
            raise AirflowFailException(f"{self.row}: field 'id' is empty: there is no job to store results for")
        job_id = str(job_id)
        status = values.get("backend_status")
        if status != OpenEOJobStatus.FINISHED.value:
            # The trigger records the end before it ends the task; a write that failed is asked of the backend.
            status = str(self._batch_job(job_id).status() or "").lower()
        if status != OpenEOJobStatus.FINISHED.value:
            raise AirflowFailException(
                f"{self.row}: field 'backend_status': openEO job {job_id!r} is {status or 'of unknown status'}, "
                "not finished: there are no results to store"
            )
        event = OpenEOJobEvent(
            status=OpenEOJobEventStatus.FINISHED,
            job_id=job_id,
            openeo_conn_id=self.openeo_conn_id,
            message=f"openEO job {job_id!r}: finished",
            backend_status=status,
            row=self.row.to_dict(),
        )
        result = self.finish_wait(context, event)
        self._describe_asset_events(context, result)
        self._skip_spare_instances(context, result)
        return result

    def _describe_asset_events(self, context: Context, result: Any) -> None:
        """Put where the row's results are into the events of this task's outlets (``job_outlets``).

        A DAG scheduled on the asset then finds the row's STAC item and the batch's collection in
        ``triggering_asset_events`` (read it with pystac, or pass it to ``load_stac``) instead of guessing paths.
        """
        if not self.outlets or not isinstance(result, Mapping):
            return
        extra = row_event_extra(self.job_table, self.row_id, result)
        outlet_events = context["outlet_events"]
        for outlet in self.outlets:
            outlet_events[outlet].extra = dict(extra)

    def _skip_spare_instances(self, context: Context, result: Any) -> None:
        """Skip the instances of the batch's groups that no row can need any more (see ``spare_instances``).

        Done here, as each row's results are stored, because Airflow skips other task instances only when a task
        ends with ``DownstreamTasksSkipped``; that ending drops the return value, so it is pushed first. The
        skip only saves scheduler work: a failure to work it out leaves the instances to end on their own.
        """
        if self.dispatch is None:
            return
        try:
            dispatcher = self._dispatcher(context)
            try:
                spare = dispatcher.spare_instances()
            finally:
                dispatcher.db.dispose()
        except Exception as exc:
            self.log.warning("could not tell which unused instances to skip: %s", exc)
            return
        if not spare:
            return
        if self.do_xcom_push and result is not None:
            context["ti"].xcom_push(BaseXCom.XCOM_RETURN_KEY, result)
        self.log.info("skipping %d instance(s) no row of this run can need any more", len(spare))
        raise DownstreamTasksSkipped(tasks=spare)


def row_event_extra(job_table: str, row_id: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    """The ``extra`` of a row's asset event: the row, its job, where its files and STAC item are."""
    extra: dict[str, Any] = {
        "job_table": job_table,
        "row_id": json_value(row_id),
        "job_id": result.get("job_id"),
        "status": result.get("status"),
        "results_state": result.get("results_state"),
        "job_dir": result.get("job_dir"),
    }
    for key in ("stac_collection", "stac_item"):
        if result.get(key):
            extra[key] = result[key]
    return extra


def batch_hook(conn_id: str, **kwargs: Any) -> OpenEOHook:
    """The hook of a row's start, for its own backend and for those ``connection_provider`` hands out alike. The
    openeo client's validation before each create is advisory (warnings only) and costs the backend one
    ``POST /validation`` per job: a batch skips it (the dry run validates on purpose)."""
    return OpenEOHook(conn_id, auto_validate=False, **kwargs)


def row_label(row_id: Any, values: Mapping[str, Any], label_columns: Sequence[str]) -> str:
    for column in label_columns:
        value = values.get(column)
        if value is not None and str(value) not in ("", "nan", "None"):
            return f"{row_id}: {value}"
    return f"row {row_id}"


def _task_instance_owner(context: Context) -> str:
    """Who claims a row: the task instance, so its own retries may take the claim over."""
    ti = context["ti"]
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}"
