"""Operators for one row of an openEO job table: start its job, see it through, store its results.

``OpenEOStartJobOperator`` creates and starts the row's job and returns its id. ``OpenEOBatchJobOperator`` is
that same start followed by the sensor's deferrable wait, so the task's pool slot covers the remote job's whole
life; it stores the results itself, or (``handle_results=False``, as ``openeo_job_batch`` does) ends in the
triggerer the moment the job finishes and leaves them to ``OpenEOJobResultsOperator``, so a download never
holds a backend's slot. None holds its own copy of the logic: starting lives in
:mod:`airflow_provider_openeo.job_starting`, waiting and result handling in
:mod:`airflow_provider_openeo.job_waiting`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from airflow_provider_openeo.hooks.openeo import OpenEOHook
from airflow_provider_openeo.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.job_row import JobRowRef
from airflow_provider_openeo.job_starting import (
    RowJobStarter,
    RowSkipped,
    RowStartError,
    StartJobCallable,
    StartOutcome,
    TransientStartError,
)
from airflow_provider_openeo.job_status import OpenEOJobStatus
from airflow_provider_openeo.job_waiting import OpenEOJobWaitMixin, ended_in_triggerer
from airflow_provider_openeo.links.openeo import OpenEOJobLink
from airflow_provider_openeo.triggers.openeo import DEFAULT_POLL_INTERVAL, OpenEOJobEvent, OpenEOJobEventStatus

if TYPE_CHECKING:
    from airflow.sdk import Context
    from openeo import Connection

#: Backend statuses the batch operator hands straight to the job handler (a re-attached job that ended).
_ENDED = frozenset(s.value for s in OpenEOJobStatus.terminal_statuses())
#: Where the batch operator puts a row's label for ``map_index_template`` (see :func:`row_label`).
ROW_LABEL_KEY = "openeo_row_label"


class OpenEORowOperator(BaseOperator):
    """What every per-row task shares: which row of which job table, on which backend, and its UI label.

    :param row_id: the row (its index in the job table).
    :param openeo_conn_id: connection of the backend the row runs on.
    :param job_table: the job table; ``job_db_conn_id`` None uses the embedded SQLite database (at
        ``sqlite_path``, default ``$AIRFLOW_HOME/openeo_jobs.db``).
    :param label_columns: columns that name a row in the UI (``map_index_template``), first present wins.
    """

    template_fields: Sequence[str] = ("row_id", "job_table", "openeo_conn_id")

    def __init__(
        self,
        *,
        row_id: int | str,
        openeo_conn_id: str = OpenEOHook.default_conn_name,
        job_table: str = "openeo_jobs",
        job_db_conn_id: str | None = None,
        sqlite_path: str | None = None,
        label_columns: Sequence[str] = ("title", "name"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.row_id = row_id
        self.openeo_conn_id = openeo_conn_id
        self.job_table = job_table
        self.job_db_conn_id = job_db_conn_id
        self.sqlite_path = sqlite_path
        self.label_columns = tuple(label_columns)

    @property
    def row(self) -> JobRowRef:
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
        self._label_row(context)

    def _label_row(self, context: Context) -> None:
        """Name the row for ``map_index_template``: the UI then lists rows by title, not by bare index.

        Airflow renders ``map_index_template`` after every successful try with a strict template environment,
        so the key must always be set: an unreadable row gets the plain ``row <id>`` label instead of failing
        a task whose job went fine.
        """
        try:
            values = self._read_row()
        except Exception:  # the label is cosmetic: a missing row fails loudly where it matters instead
            values = {}
        context[ROW_LABEL_KEY] = row_label(self.row_id, values, self.label_columns)  # type: ignore[literal-required]

    def _read_row(self) -> dict[str, Any]:
        hook = self.row.hook()
        try:
            return hook.get_row(self.row_id)
        finally:
            hook.dispose()


class OpenEOStartJobOperator(OpenEORowOperator):
    """Create and start the openEO job of one job-table row; return the job id.

    Takes everything :class:`OpenEORowOperator` takes (``row_id``, ``openeo_conn_id``, ``job_table``, ...), and:

    :param start_job: MBJM's callable, unchanged: ``start_job(row, connection, connection_provider, provider,
        **kwargs)`` returning a ``BatchJob`` (or None to skip the row). ``ProcessBasedJobCreator`` works as is.
    :param backend_name: the backend's name in the batch (what the row's ``backend_name`` says).
    :param backends: every backend of the batch, name to connection id, for ``start_job``'s
        ``connection_provider``; defaults to just this one.
    :param start_job_kwargs: extra keyword arguments for ``start_job``.
    """

    template_fields: Sequence[str] = ("row_id", "job_table", "backend_name", "openeo_conn_id")
    operator_extra_links = (OpenEOJobLink(),)
    ui_color = "#c5e3f6"

    def __init__(
        self,
        *,
        start_job: StartJobCallable,
        backend_name: str | None = None,
        backends: Mapping[str, str] | None = None,
        start_job_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start_job = start_job
        self.backend_name = backend_name
        self.backends = dict(backends or {})
        self.start_job_kwargs = dict(start_job_kwargs or {})

    def execute(self, context: Context) -> str:
        outcome = self.start_row(context)
        return outcome.job_id

    def start_row(self, context: Context) -> StartOutcome:
        """Bring the row to a started (or re-attached) job, translating outcomes into Airflow's vocabulary."""
        backend_name = self.backend_name or self.openeo_conn_id
        # Validation is advisory (warnings only) and costs the backend one request per job: skip it in batches.
        hook = OpenEOHook(self.openeo_conn_id, auto_validate=False)
        connection = hook.get_conn()
        starter = RowJobStarter(
            self.row,
            backend_name=backend_name,
            connection=connection,
            start_job=self.start_job,
            connection_provider=self._connection_provider(backend_name, connection),
            owner=_task_instance_owner(context),
            start_job_kwargs=self.start_job_kwargs,
        )
        try:
            outcome = starter.start()
        except RowSkipped as exc:
            raise AirflowSkipException(str(exc)) from exc
        except RowStartError as exc:
            raise AirflowFailException(str(exc)) from exc
        except TransientStartError as exc:
            raise AirflowException(f"{exc} (an Airflow retry will try again)") from exc
        finally:
            starter.db.dispose()  # a PostgreSQL pool must not outlive the start in a long-deferred task
        outcome = dataclasses.replace(outcome, job_url=OpenEOJobLink.persist(context, hook.job_url(outcome.job_id)))
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
                cache[backend_name] = OpenEOHook(self.backends[backend_name]).get_conn()
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
        cancel_running_job_after: float | None = None,
        cancel_on_kill: bool = True,
        handle_results: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.handler = handler if handler is not None else OpenEOJobHandler()
        self.poll_interval = poll_interval
        self.cancel_running_job_after = cancel_running_job_after
        self.cancel_on_kill = cancel_on_kill
        self.handle_results = handle_results

    def execute(self, context: Context) -> Any:
        outcome = self.start_row(context)
        if outcome.backend_status in _ENDED:
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

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume after the trigger fired (the row label is back in the fresh context: ``render_template_fields``)."""
        if not self.handle_results and ended_in_triggerer(event):
            return None
        return super().execute_complete(context, event)

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
        return self.finish_wait(context, event)


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
