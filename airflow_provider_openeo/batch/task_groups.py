"""``openeo_job_batch``: MultiBackendJobManager as an Airflow task group.

init (load the run's job source into the job table by row key: ``job_source``) -> plan (first, each backend's
connection and pool, failing once before any row starts: ``preflight``, ``pool_check``; then the run's own rows not
done yet, resumable rows of earlier runs, re-runs asked for: ``run_scope``, ``reruns``) -> per backend, a mapped
task group: ``job`` (an :class:`OpenEOBatchJobOperator` in pool ``openeo_<backend>``) -> ``results`` (an
:class:`OpenEOJobResultsOperator` in the default pool) -> summary.

The plan only says which rows the run covers and how many instances each backend's group gets (its rows and
its share of the free ones, by the job table's history, with slack). Which backend runs a row is decided when a
slot frees: the instances queue in the backend's pool, and an instance that gets a slot takes the next row
(``dispatching``: a backend's own rows first, then free ones; a backend that keeps failing to start jobs cools
down and its rows go elsewhere). A pool comes from the task's arguments, hence one mapped group per backend.
When nothing is left for a backend, its unused instances are skipped at once, without a process each; rows no
instance took (their backend went down mid-run) continue in the next run.

The ``job`` task ends in the triggerer the moment its job finishes, freeing the backend's pool slot at once for
the next row; the row's ``results`` task then downloads, however long that takes, without holding the slot
(MBJM's download threads do the same). One mapped group may not exceed ``[core] max_map_length`` (1024 by
default), and every loop of the scheduler re-checks the upstream of each ``results`` task still waiting for its
``job``, at a few milliseconds per task instance (1,024 rows per backend made each loop take 7 s, for every DAG of
the deployment; BENCHMARKS.md). So a run takes at most ``max_rows_per_run`` rows (``planning.
DEFAULT_MAX_ROWS_PER_RUN`` unless raised; under the default, a few more rather than leave a short last run,
``planning.SHORT_LAST_RUN_SHARE``) and, when rows are left, triggers the next run of the same DAG
(``continue_until_done``). The job table carries the state from run to run.

In this module: :class:`BatchSettings` (the arguments, checked once when the DAG file is parsed) -> :class:`BatchGroup`
(plus what the task group knows: its DAG, the job table, inherited retries) -> the ``add_*`` functions building the
tasks -> the bodies of the steps (``load_rows``, ``plan_rows``, ``summarize_run``), plain functions of those objects.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, NoReturn

import pandas as pd
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, TaskGroup, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_openeo.batch import arguments
from airflow_provider_openeo.batch.budget import budget_report, requested_max_costs
from airflow_provider_openeo.batch.dispatching import expected_shares
from airflow_provider_openeo.batch.dry_run import dry_run_report, requested_dry_run, rows_to_check
from airflow_provider_openeo.batch.failure_policy import FailurePolicy
from airflow_provider_openeo.batch.job_source import JobSource, check_on_exists, load_job_source
from airflow_provider_openeo.batch.planning import (
    BackendSpec,
    parse_backends,
    plan_run,
    rows_per_run,
    rows_to_run,
    short_last_run_rows,
)
from airflow_provider_openeo.batch.pool_check import POOLS_KEY
from airflow_provider_openeo.batch.preflight import BackendsUnusable, check_backends, pool_problems
from airflow_provider_openeo.batch.reruns import checked_statuses, continued_run, requested_statuses
from airflow_provider_openeo.batch.row_dispatch import DispatchSettings, backend_paces, backends_health, run_key_of
from airflow_provider_openeo.batch.run_chain import CHAINED_CONF_TEMPLATE, chain_key
from airflow_provider_openeo.batch.run_scope import RunScope, log_already_done
from airflow_provider_openeo.batch.summary import rows_carried_over, run_progress, summarize
from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.handlers.output_naming import Rule
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.job_table.job_status import RowStatus
from airflow_provider_openeo.job_table.timestamps import utc_now_rfc3339
from airflow_provider_openeo.operators.openeo import ROW_LABEL_KEY, OpenEOBatchJobOperator, OpenEOJobResultsOperator
from airflow_provider_openeo.start.job_starting import StartJobCallable
from airflow_provider_openeo.triggers._wait_settings import (
    DEFAULT_CANCEL_RUNNING_JOB_AFTER,
    DEFAULT_POLL_INTERVAL,
    JobWaitSettings,
)

log = logging.getLogger(__name__)
#: The longest a dispatched instance waits before looking again at rows that may come back to the run.
DISPATCH_RECHECK_SECONDS = 5.0

DEFAULT_MAP_INDEX_TEMPLATE = "{{ " + ROW_LABEL_KEY + " }}"
#: Retries of each row's tasks when neither the call nor ``default_args`` says: a retry re-attaches to the row's
#: job, so retries are what carries a row through a killed worker or a backend's bad minute.
DEFAULT_ROW_RETRIES = 2
DEFAULT_ROW_RETRY_DELAY = timedelta(seconds=30)
#: XCom key (of ``plan``) holding why no row started, for the summary to report once.
STOPPED_XCOM_KEY = "openeo_not_started_because"


def openeo_job_batch(
    *,
    backends: Mapping[str, Mapping[str, Any]],
    start_job: StartJobCallable,
    job_source: JobSource = None,
    job_table: str | None = None,
    job_db_conn_id: str | None = None,
    sqlite_path: str | os.PathLike | None = None,
    on_exists: str = "append",
    key_columns: Sequence[str] | None = None,
    root_dir: Any = ".",
    download_results: bool = True,
    handler: OpenEOJobHandler | None = None,
    stac_collection: bool = True,
    output_dir: Rule | None = None,
    asset_name: Rule | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    cancel_running_job_after: float | timedelta | None = DEFAULT_CANCEL_RUNNING_JOB_AFTER,
    start_job_kwargs: Mapping[str, Any] | None = None,
    job_options: Mapping[str, Any] | str | None = None,
    failure_policy: FailurePolicy | Mapping[str, Any] | None = None,
    job_budget: float | None = None,
    max_costs: float | None = None,
    rerun_statuses: Iterable[str] = (),
    max_rows_per_run: int | None = None,
    continue_until_done: bool = True,
    export_path: str | os.PathLike | None = None,
    airflow_api_conn_id: str | None = None,
    outlets: Sequence[Asset] = (),
    job_outlets: Sequence[Asset] = (),
    label_columns: Sequence[str] = ("title", "name"),
    map_index_template: str = DEFAULT_MAP_INDEX_TEMPLATE,
    retries: int | None = None,
    retry_delay: timedelta | None = None,
    backend_outage_limit: float | timedelta | None = timedelta(hours=1),
    group_id: str = arguments.DEFAULT_GROUP_ID,
) -> TaskGroup:
    """Build the batch. Arguments mirror MBJM's (``add_backend``, ``run_jobs``, its constructor) where they exist.

    :param backends: ``{"name": {"conn_id": "openeo_name", "parallel_jobs": 2}}``; pool ``openeo_<name>`` must
        exist with ``parallel_jobs`` slots and ``include_deferred`` (``python -m airflow_provider_openeo.pools``).
    :param job_source: rows to load into the job table: a (Geo)DataFrame, a CSV/Parquet/GeoParquet path, a
        callable ``(context) -> DataFrame`` (Params, recurring batches), or None for an existing table. Every run
        loads it by row key (``row_keys``): new rows are added, known rows keep their state, and the run works on
        the rows of its own source (and on resumable rows earlier runs left).
    :param job_table: the SQL table holding the batch's rows; default: named after the DAG (and the group, when
        it is not ``openeo_job_batch``; :func:`arguments.default_job_table`), so DAGs never share one by accident.
    :param on_exists: what loading does when the table exists: ``append`` (default: every run loads its
        source by row key, adding the rows the table lacks; known rows keep their state), ``skip`` (the source is
        loaded only into a new table, e.g. an MBJM CSV read once; later runs work on the whole table) or
        ``error``.
    :param key_columns: the source columns that identify a row across runs; default: a digest of all its
        job-defining values (``row_keys``).
    :param job_options: openEO job options for every job of the batch (``{"executor-memory": "4g"}``), over what
        ``start_job`` sends and the process's ``default_job_options``; a row's ``job_options`` column (a JSON object)
        overrides them per key (``job_options``). Checked against the backend's ``GET /processing_parameters``
        before each job is created.
    :param failure_policy: what happens to a row whose job ends in ``error``: its error logs give the row an
        ``error_category``, and per category the row gets another job or not, at most ``max_attempts`` jobs, an
        out-of-memory retry with more memory (:class:`~airflow_provider_openeo.batch.failure_policy.FailurePolicy`, or a
        dict of its fields: ``{"retry": {"other": True}, "max_attempts": 2, "oom_memory": 2.0}``). Default:
        out of memory, timeouts and backend faults are retried, up to 3 jobs per row, memory x1.5 per OOM retry.
    :param job_budget: the openEO ``budget`` field of every job (``POST /jobs``), in the backend's currency or
        credits: the backend's own limit on one job; a row's ``job_budget`` column overrides it.
    :param max_costs: the batch's budget, in the backend's currency or credits: once the costs the job table
        records plus the estimates of the jobs running reach it, no new row starts (``budget``); the rows left stay
        ``not_started`` and say why, and the summary reports ``budget``. A run's Param / conf ``max_costs``
        overrides it (``budget.max_costs_param()`` adds the trigger form's field).
    :param rerun_statuses: statuses of the run's own rows that are done (``error``, ``canceled``, ``finished``,
        ...) to run again in every triggered run; a run's Param / conf ``rerun_statuses`` overrides it
        (``reruns``). Without it, rows that are done are not run again.
    :param max_rows_per_run: rows per run (default ``planning.DEFAULT_MAX_ROWS_PER_RUN``, at most
        ``[core] max_map_length``); the rest follow in chained runs. The groups together hold a few more
        instances than the run's rows, each re-checked by every scheduler loop, so raising it lengthens every loop.
    :param backend_outage_limit: how long a backend may keep failing to start jobs (connection errors, 5xx)
        before the rows that can only run there (pinned by ``backend_name``, or every backend failing) fail with
        a message naming it; until then they wait through its cool-downs. None: wait as long as it takes.
    :param airflow_api_conn_id: optional: a connection to Airflow's REST API, through which the plan reads the
        pools when the provider's plugin did not record them in the scheduler (``pool_check``); without either,
        the plan logs that pools were not checked.
    :param outlets: assets the summary updates once per run; the event's ``extra`` carries the run's counts
        (``rows``, ``counts``, ``not_done``), so a consumer can tell a complete batch from one still chained, and
        ``stac_collection``: where the batch's STAC collection is (``stac_collection``).
    :param job_outlets: assets every row's ``results`` task updates when its job's results are stored (one event
        per finished job); the event's ``extra`` names the row, the job, its ``job_dir``, its ``stac_item`` and the
        ``stac_collection``.
    :param stac_collection: keep the batch's results as one STAC collection under ``root_dir`` (an item per
        finished row); ignored when ``handler`` is given (the handler's own ``stac_collection`` setting counts).
    :param output_dir: where each row's files land under ``root_dir`` (default ``job_{id}``): a format string over
        the row's columns and ``job_id`` / ``row_id`` (``"tiles/{tile}/{year}"``), or a callable of the row
        (``output_naming``); checked here, and against the source's columns when it is a frame.
    :param asset_name: each asset's file name (default the backend's, as MBJM names it): likewise, with the asset's
        ``key``, ``name``, ``stem`` and ``ext`` too (``"ndvi_{tile}{ext}"``).
    :param retries: Airflow retries of each row's tasks (a retry re-attaches to the row's job, never creates a
        second one); default: the DAG's (or an enclosing group's) ``default_args``, else
        :data:`DEFAULT_ROW_RETRIES`.
    :param retry_delay: likewise; default: ``default_args``, else :data:`DEFAULT_ROW_RETRY_DELAY`.

    Every argument that can be checked without running anything is checked here, so a bad value is an import
    error naming it, not a failed row.
    """
    settings = BatchSettings.parse(dict(locals()))  # every argument above, by name, checked once here
    with TaskGroup(group_id=settings.group_id) as group:
        batch = BatchGroup.within(group, settings)
        planned = add_init_and_plan(batch)
        runs = add_backend_runs(batch, planned)
        summarized = add_summary(batch)
        runs >> summarized
        # The summary runs whatever happened (all_done), so on its own a batch with failed rows would end green.
        # This leaf fails the DAG run when any row's task failed, so Airflow's failure alerts fire.
        runs >> EmptyOperator(task_id="all_rows_succeeded", trigger_rule="none_failed")
        if settings.continue_until_done:
            continue_batch(planned, summarized)
    return group


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """``openeo_job_batch``'s arguments, checked and normalised once, when the DAG file is parsed.

    A bad value is then an import error naming it, before any row is touched; and every step of the batch (built
    here, run later on a worker that parses the DAG file again) reads the one checked value instead of checking
    or defaulting it again. Fields keep the argument names; ``specs``, ``wait`` and ``handler`` are what
    ``backends``, ``poll_interval`` / ``cancel_running_job_after`` and the storage arguments become.
    """

    specs: dict[str, BackendSpec]
    start_job: StartJobCallable
    start_job_kwargs: Mapping[str, Any] | None
    job_source: JobSource
    job_table: str | None
    job_db_conn_id: str | None
    sqlite_path: str | None
    on_exists: str
    key_columns: tuple[str, ...] | None
    handler: OpenEOJobHandler
    job_options: dict[str, Any]
    failure_policy: FailurePolicy
    job_budget: float | None
    max_costs: float | None
    wait: JobWaitSettings
    rerun_statuses: tuple[str, ...]
    max_rows_per_run: int | None
    continue_until_done: bool
    export_path: str | os.PathLike | None
    airflow_api_conn_id: str | None
    outlets: tuple[Asset, ...]
    job_outlets: tuple[Asset, ...]
    label_columns: Sequence[str]
    map_index_template: str
    retries: int | None
    retry_delay: timedelta | float | None
    backend_outage_limit: float | None
    group_id: str

    @classmethod
    def parse(cls, args: Mapping[str, Any]) -> BatchSettings:
        """Check ``openeo_job_batch``'s arguments (given as ``{name: value}``), in the order they were always
        checked, so the first bad one is the one reported."""
        checked = {**_checked_job_arguments(args), **_checked_run_arguments(args), **_checked_storage_arguments(args)}
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{**{name: value for name, value in args.items() if name in names}, **checked})


def _checked_job_arguments(args: Mapping[str, Any]) -> dict[str, Any]:
    """What every job of the batch is created and waited for with: backends, ``start_job``, options, budgets."""
    specs = parse_backends(args["backends"])
    if args["job_table"] is not None:
        arguments.job_table(args["job_table"])
    arguments.start_job(args["start_job"], args["start_job_kwargs"])
    return {
        "specs": specs,
        "job_options": arguments.job_options(args["job_options"]),
        "failure_policy": arguments.failure_policy(args["failure_policy"]),
        "job_budget": arguments.costs("job_budget", args["job_budget"]),
        "max_costs": arguments.costs("max_costs", args["max_costs"]),
        "wait": JobWaitSettings(args["poll_interval"], args["cancel_running_job_after"]),
    }


def _checked_run_arguments(args: Mapping[str, Any]) -> dict[str, Any]:
    """How runs go: the row tasks' retries, rows per run, loading the source, re-runs, the outage limit."""
    if args["retries"] is not None:
        arguments.retries("retries", args["retries"])
    if args["retry_delay"] is not None:
        arguments.seconds("retry_delay", args["retry_delay"])
    max_rows_per_run = args["max_rows_per_run"]
    if max_rows_per_run is not None and max_rows_per_run < 1:
        raise ValueError(f"max_rows_per_run must be at least 1, got {max_rows_per_run!r}")
    check_on_exists(args["on_exists"])
    return {
        "key_columns": arguments.key_columns(args["key_columns"]),
        "rerun_statuses": checked_statuses("rerun_statuses", args["rerun_statuses"]),
        "backend_outage_limit": arguments.seconds("backend_outage_limit", args["backend_outage_limit"], optional=True),
        "outlets": tuple(args["outlets"]),
        "job_outlets": tuple(args["job_outlets"]),
    }


def _checked_storage_arguments(args: Mapping[str, Any]) -> dict[str, Any]:
    """Where rows and results are kept: the SQLite path and the job handler (built from the storage arguments
    unless one is given), its output naming checked against a frame source's columns now."""
    sqlite_path = args["sqlite_path"]
    handler = args["handler"] or OpenEOJobHandler(
        root_dir=args["root_dir"],
        download_results=args["download_results"],
        stac_collection=args["stac_collection"],
        output_dir=args["output_dir"],
        asset_name=args["asset_name"],
    )
    if isinstance(args["job_source"], pd.DataFrame):
        handler.naming.check_columns(args["job_source"].columns)
    return {"sqlite_path": os.fspath(sqlite_path) if sqlite_path is not None else None, "handler": handler}


@dataclasses.dataclass(frozen=True)
class BatchGroup:
    """The batch inside its ``TaskGroup``: the settings plus what is known only once the group exists (its DAG,
    which names the default job table, and the ``default_args`` the row tasks inherit)."""

    settings: BatchSettings
    group: TaskGroup
    dag_id: str | None
    job_table: str
    row_retries: int
    row_retry_delay: Any

    @classmethod
    def within(cls, group: TaskGroup, settings: BatchSettings) -> BatchGroup:
        dag_id = getattr(getattr(group, "dag", None), "dag_id", None)
        inherited = inherited_default_args(group)
        retries = settings.retries if settings.retries is not None else inherited.get("retries", DEFAULT_ROW_RETRIES)
        retry_delay = settings.retry_delay if settings.retry_delay is not None else inherited.get("retry_delay")
        return cls(
            settings=settings,
            group=group,
            dag_id=dag_id,
            job_table=settings.job_table or arguments.default_job_table(dag_id, group.group_id),
            row_retries=retries,
            row_retry_delay=DEFAULT_ROW_RETRY_DELAY if retry_delay is None else retry_delay,
        )

    def job_db(self, table: str | None = None) -> OpenEOJobDbHook:
        """A hook on the batch's job table (or on ``table``): a new one per step, as each runs in its own process."""
        settings = self.settings
        return OpenEOJobDbHook(settings.job_db_conn_id, table=table or self.job_table, sqlite_path=settings.sqlite_path)

    def row_task_args(self, spec: BackendSpec) -> dict[str, Any]:
        """What a backend's ``job`` and ``results`` tasks share: the row's backend, table, handler, label, retries."""
        settings = self.settings
        return {
            "openeo_conn_id": spec.conn_id,
            "job_table": self.job_table,
            "job_db_conn_id": settings.job_db_conn_id,
            "sqlite_path": settings.sqlite_path,
            "handler": settings.handler,
            "label_columns": settings.label_columns,
            "map_index_template": settings.map_index_template,
            "retries": self.row_retries,
            "retry_delay": self.row_retry_delay,
        }


def add_init_and_plan(batch: BatchGroup) -> Any:
    """The ``init`` and ``plan`` tasks; returns the plan's output, which the backends' groups map over."""

    @task(task_id="init")
    def init() -> dict[str, Any]:
        return load_rows(batch, get_current_context())

    @task(task_id="plan")
    def plan(loaded: dict[str, Any]) -> dict[str, Any]:
        return plan_rows(batch, loaded, get_current_context())

    return plan(init())


def load_rows(batch: BatchGroup, context: Mapping[str, Any]) -> dict[str, Any]:
    """``init``: load the run's job source into the job table by row key (``job_source``).

    A batch that named no table first makes sure its rows are not still in the table all batches once shared.
    """
    settings = batch.settings
    db = batch.job_db()
    if settings.job_table is None:
        refuse_rows_left_in_the_legacy_table(db, batch.job_db(arguments.LEGACY_JOB_TABLE), batch.dag_id)
    ti = context["ti"]
    return load_job_source(
        settings.job_source,
        db,
        on_exists=settings.on_exists,
        context=context,
        key_columns=settings.key_columns,
        run_key=run_key_of(ti.dag_id, ti.run_id),
    )


def describe_shares(shares: Mapping[str, float] | None) -> str:
    """``foo 0.25, bar 0.75`` for the plan's log; without shares, why every group may take every row."""
    if shares is None:
        return "no pace known for every backend yet: each group may take every free row"
    return ", ".join(f"{name} {share:.2f}" for name, share in shares.items())


def plan_rows(batch: BatchGroup, loaded: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """``plan``: check the backends once, then pick the run's rows and each backend's number of instances.

    The rows a plan refuses (pinned to an unknown backend, ...) are marked ``start_failed`` here, once; the rows it
    takes are assigned to this run, so the row tasks' dispatch and the summary know which rows are the run's.
    """
    settings = batch.settings
    ti = context["ti"]
    stop_unless_backends_usable(batch, context)
    reruns, run_max_costs = requested_for_run(context, settings)
    db = batch.job_db()
    if run_max_costs is not None:
        log.info("budget: %s", db.budget_ledger(run_max_costs).report())
    run_key = run_key_of(ti.dag_id, ti.run_id)
    scope = RunScope.of(db, loaded, run_key, reruns)
    shares = expected_shares(
        {name: spec.parallel_jobs for name, spec in settings.specs.items()},
        paces=backend_paces(db, settings.specs),
        all_health=backends_health(db, settings.specs),
        now=time.time(),
    )
    rows = rows_to_check(scope.rows, chain_key(context)) if requested_dry_run(context) else scope.rows
    limit, stretch = max_rows_this_run(settings), short_last_run(settings)
    outcome = plan_run(rows, settings.specs, max_rows=limit, shares=shares, short_last_run=stretch)
    for row_id, message in outcome.rejected.items():
        db.update_row(row_id, {"status": RowStatus.START_FAILED.value, "error_message": message})
        log.warning("%s", message)
    db.assign_run(outcome.row_ids, run_key)
    source = scope.report(outcome.row_ids)
    scope.log(source, continued_run(context))
    log.info(
        "planned %d row(s), instances per backend: %s (shares %s); %d left for the next run; %d refused",
        outcome.planned,
        ", ".join(f"{name} {count}" for name, count in outcome.slots.items()),
        describe_shares(shares),
        outcome.remaining,
        len(outcome.rejected),
    )
    return {"rows": outcome.planned, "remaining": outcome.remaining, "slots": outcome.slots, "source": source}


def stop_unless_backends_usable(batch: BatchGroup, context: Mapping[str, Any]) -> None:
    """Check every backend's connection and pool before any row starts; a wrong one stops the batch once
    (:func:`stop_before_rows`) instead of failing every row's task with the same message."""
    store = context.get("task_state_store")
    pools_wrong = pool_problems(
        batch.settings.specs,
        store.get(POOLS_KEY) if store is not None else None,
        clear_number=getattr(context.get("dag_run"), "clear_number", None),
        airflow_api_conn_id=batch.settings.airflow_api_conn_id,
    )
    try:
        check_backends(batch.settings.specs, problems=pools_wrong)
    except BackendsUnusable as exc:
        stop_before_rows(context["ti"], batch.job_db(), str(exc))


def requested_for_run(context: Mapping[str, Any], settings: BatchSettings) -> tuple[tuple[str, ...], float | None]:
    """The statuses to re-run and the budget this run asks for (its Params / conf over the batch's arguments).

    A bad Param fails the plan without retry (a retry would read the same conf). A dry run re-opens no row: it
    validates the jobs of the rows not done yet and creates none, so rows done already have nothing to check.
    """
    try:
        reruns = requested_statuses(context, settings.rerun_statuses)
        run_max_costs = requested_max_costs(context, settings.max_costs)
        dry_run = requested_dry_run(context)
    except ValueError as exc:
        raise AirflowFailException(str(exc)) from None
    if dry_run and reruns:
        log.info("dry run: rows done already are not re-opened (rerun_statuses %s ignored)", list(reruns))
        reruns = ()
    if dry_run:
        log.info("dry run: every row's job is built and validated; no job is created")
    return tuple(reruns), run_max_costs


def max_rows_this_run(settings: BatchSettings) -> int:
    """``max_rows_per_run``, never above ``[core] max_map_length`` (read in the plan, where the scheduler's
    configuration is the deployment's)."""
    return rows_per_run(settings.max_rows_per_run, max_map_length=max_map_length())


def short_last_run(settings: BatchSettings) -> int:
    """Rows past :func:`max_rows_this_run` a run takes rather than leave them to a short run of their own."""
    return short_last_run_rows(settings.max_rows_per_run, max_map_length=max_map_length())


def max_map_length() -> int:
    """``[core] max_map_length``: one mapped group's most instances, read in the plan (the deployment's setting)."""
    from airflow.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


def add_backend_runs(batch: BatchGroup, planned: Any) -> list[Any]:
    """One mapped group per backend (a pool comes from a task's arguments), as many instances as the plan says."""
    task_ids = {
        name: [f"{run_group_id(batch.group, name)}.job", f"{run_group_id(batch.group, name)}.results"]
        for name in batch.settings.specs
    }
    return [
        backend_group(batch, spec, task_ids).expand(slot=slots_of(planned, spec.name))
        for spec in batch.settings.specs.values()
    ]


def backend_group(batch: BatchGroup, spec: BackendSpec, task_ids: dict[str, list[str]]) -> Any:
    """A backend's group, to be mapped over its instance numbers: which row an instance runs is decided only when
    it gets a pool slot (``dispatching``), so the number itself is not used."""

    @task_group(group_id=f"run_{spec.name}")
    def run_row(slot: Any) -> None:
        add_row_tasks(batch, spec, task_ids)
        del slot

    return run_row


def add_row_tasks(batch: BatchGroup, spec: BackendSpec, task_ids: dict[str, list[str]]) -> None:
    """An instance's ``job`` task (in the backend's pool; it ends in the triggerer when its job ends, freeing the
    slot) and ``results`` task (in the default pool, storing the results however long that takes)."""
    settings = batch.settings
    dispatch = DispatchSettings(
        backend=spec.name,
        backends={s.name: s.parallel_jobs for s in settings.specs.values()},
        task_ids=task_ids,
        recheck_seconds=min(settings.wait.poll_interval, DISPATCH_RECHECK_SECONDS),
        give_up_after=settings.backend_outage_limit,
    )
    row_task_args = batch.row_task_args(spec)
    job = OpenEOBatchJobOperator(
        task_id="job",
        pool=spec.pool,
        backend_name=spec.name,
        backends={s.name: s.conn_id for s in settings.specs.values()},
        start_job=settings.start_job,
        start_job_kwargs=settings.start_job_kwargs,
        job_options=settings.job_options,
        failure_policy=settings.failure_policy,
        job_budget=settings.job_budget,
        max_costs=settings.max_costs,
        handle_results=False,
        **settings.wait.trigger_kwargs(),  # the wait's settings, as the trigger takes them
        dispatch=dispatch,
        **row_task_args,
    )
    results = OpenEOJobResultsOperator(
        task_id="results",
        outlets=list(settings.job_outlets),
        dispatch=dataclasses.replace(dispatch, slot_task_id=job.task_id),
        **row_task_args,
    )
    job >> results


def add_summary(batch: BatchGroup) -> Any:
    """The ``summary`` task: it runs whatever happened to the rows (``all_done``) and updates the batch's assets."""

    @task(task_id="summary", trigger_rule="all_done", outlets=list(batch.settings.outlets))
    def summary() -> dict[str, Any]:
        return summarize_run(batch, get_current_context())

    return summary()


def summarize_run(batch: BatchGroup, context: Mapping[str, Any]) -> dict[str, Any]:
    """``summary``: the job table's counts, this run's progress, and what a user must know once, not per row
    (the budget reached, a dry run's findings, why no row started, rows left to the next run)."""
    settings = batch.settings
    db = batch.job_db()
    table = db.read()
    result = summarize(table, settings.specs, db.usage_columns(), settings.failure_policy)
    result["finished_at"] = utc_now_rfc3339()
    result["not_done"] = len(rows_to_run(table, rerun_statuses=()))
    ti = context["ti"]
    run_key = run_key_of(ti.dag_id, ti.run_id)
    result["run"] = run_progress(table, run_key)
    report_budget(result, table, context, settings.max_costs)
    planned_run = ti.xcom_pull(task_ids=batch.group.child_id("plan")) or {}
    if requested_dry_run(context):
        remaining = int(planned_run.get("remaining") or 0)
        result["dry_run"] = dry_run_report(table, chain_key(context), run_key, remaining=remaining)
        log.info("dry run: %s", result["dry_run"])
    report_plan(result, ti.xcom_pull(task_ids=batch.group.child_id("plan"), key=STOPPED_XCOM_KEY), planned_run)
    if settings.export_path is not None:
        result["exported_to"] = str(db.export(settings.export_path))
    if settings.handler.stac_collection:
        # Links any item a killed results task wrote but did not link (stac_collection's module doc).
        collection = settings.handler.batch_collection(batch.job_table)
        stac = collection.refresh()
        result["stac_collection"] = collection.uri
        log.info("STAC collection %s: %d item(s)", collection.uri, len(stac["links"]) - 1)
    set_outlet_extras(context["outlet_events"], batch, result)
    log.info("batch summary: %s", result)
    return result


def report_budget(result: dict[str, Any], table: pd.DataFrame, context: Mapping[str, Any], max_costs: Any) -> None:
    """Add the run's budget to the summary, warning once when it kept rows from starting."""
    budget = budget_report(table, requested_max_costs(context, max_costs))
    if budget is None:
        return
    result["budget"] = budget
    if budget["rows_not_started"]:
        log.warning(
            "budget: %d row(s) not started, max_costs reached (%s); raise max_costs to run them",
            budget["rows_not_started"],
            budget,
        )


def report_plan(result: dict[str, Any], stopped: str | None, planned_run: Mapping[str, Any]) -> None:
    """Add to the summary what the plan found: why no row started (once, for the whole batch), which rows the run
    covered, and the rows no instance took (which continue in the next run, when this run took any)."""
    if stopped:
        result["not_started_because"] = stopped
        log.error("no row of this run started: %s", stopped)
    if "source" in planned_run:
        result["source"] = planned_run["source"]
        log_already_done(result["source"])
    if result["run"]["left"]:
        carried = rows_carried_over(result["run"])
        log.warning(
            "%d row(s) of this run were taken by no instance (their backend went down and the others' "
            "instances were all taken); %s",
            result["run"]["left"],
            "they continue in the next run" if carried else "this run took no row, so no next run is started",
        )


def set_outlet_extras(outlet_events: Any, batch: BatchGroup, result: Mapping[str, Any]) -> None:
    """Each outlet's event carries the run's counts and where the STAC collection is, so a consumer can tell a
    complete batch from one still chained without reading the job table."""
    for asset in batch.settings.outlets:
        outlet_events[asset].extra = {
            "job_table": batch.job_table,
            "rows": result["rows"],
            "counts": result["counts"],
            "not_done": result["not_done"],
            **({"stac_collection": result["stac_collection"]} if "stac_collection" in result else {}),
        }


def stop_before_rows(ti: Any, db: OpenEOJobDbHook, message: str) -> NoReturn:
    """Fail the ``plan`` step when the batch cannot run at all (a backend's connection or pool is wrong), leaving
    the reason where a user looks: once on the waiting rows of the job table (their ``error_message``; the batch
    view shows it) and once for the summary (XCom :data:`STOPPED_XCOM_KEY`), not once per row task."""
    ti.xcom_push(key=STOPPED_XCOM_KEY, value=message)
    try:
        noted = db.note_waiting_rows(message)
        log.info("the reason is on the %d waiting row(s) of the job table", len(noted))
    except Exception as exc:  # the step fails with the message all the same
        log.warning("could not write the reason on the job table's rows: %s", exc)
    finally:
        db.dispose()
    raise AirflowFailException(message)


def refuse_rows_left_in_the_legacy_table(db: OpenEOJobDbHook, legacy: OpenEOJobDbHook, dag_id: str | None) -> None:
    """Stop a batch whose rows are still in the table every batch shared before tables were named after DAGs.

    Loading its source into a new, empty table would run every row again: a second job for each, billed twice.
    So when this DAG's table does not exist yet and the old shared table holds rows this DAG's runs planned, the
    run fails once, saying which argument keeps the old table.
    """
    if not dag_id or db.table == legacy.table or db.exists() or not legacy.exists():
        return
    table = legacy.read()
    mine = f"{dag_id}/"  # the run keys and the claims the batch writes on rows start with its DAG's id
    if not any(
        table[column].dropna().astype(str).str.startswith(mine).any()
        for column in ("dispatch_run", "claimed_by")
        if column in table.columns
    ):
        return
    raise AirflowFailException(
        f"job_table: this DAG's rows are in job table {legacy.table!r} (every batch that named no table shared it "
        f"before tables were named after their DAG, now {db.table!r}). Pass job_table={legacy.table!r} to go on with "
        "them; starting over in the new table would create a second job for every row."
    )


def inherited_default_args(group: TaskGroup) -> dict[str, Any]:
    """The ``default_args`` the group's tasks would get from the DAG and the enclosing groups (the nearer wins).

    The row tasks are given their retries explicitly (the batch's default differs from Airflow's 0), so what the
    DAG author set in ``default_args`` is read here and passed on, instead of being overridden.
    """
    dag = getattr(group, "dag", None)
    return {**(getattr(dag, "default_args", None) or {}), **(group.default_args or {})}


def slots_of(planned: Any, backend_name: str) -> Any:
    """One backend's instance numbers from the plan: Airflow maps only over a task's return value."""

    @task(task_id=f"slots_{backend_name}")
    def slots(plan: dict[str, Any]) -> list[int]:
        return list(range(plan["slots"][backend_name]))

    return slots(planned)


def run_group_id(group: TaskGroup, backend_name: str) -> str:
    """The id of a backend's mapped group, as Airflow prefixes it."""
    return group.child_id(f"run_{backend_name}")


def continue_batch(planned: Any, summarized: Any) -> None:
    """Trigger the next run of this DAG when rows are left over: rows the plan could not fit (a batch past
    ``max_rows_per_run``), or rows of this run no instance took (their backend went down mid-run and the working
    backends' instances were all taken; ``summary.run_progress``).

    Rows that failed in this run do not continue the chain, nor do rows left by a run that took no row at all,
    or a backend that stays down would trigger runs forever. The gate reads the summary: this run's rows must be
    through before another plan looks at the table.
    """

    @task.short_circuit(task_id="rows_left", ignore_downstream_trigger_rules=True)
    def rows_left(plan: dict[str, Any], summary: dict[str, Any]) -> bool:
        if "dry_run" in summary:
            # A dry run leaves its rows not_started; the next run of its chain checks the rows it has not.
            dry = summary["dry_run"]
            if dry["rows_not_checked"]:
                log.warning(
                    "dry run: %d row(s) not checked: this run checked none of its rows", dry["rows_not_checked"]
                )
            return bool(dry["continues"])
        if (summary.get("budget") or {}).get("rows_not_started"):
            log.info("budget reached: no next run is started")
            return False
        return bool(plan["remaining"]) or rows_carried_over(summary["run"])

    next_run: Callable[..., Any] = TriggerDagRunOperator
    trigger_next = next_run(
        task_id="next_run",
        trigger_dag_id="{{ dag.dag_id }}",
        conf=CHAINED_CONF_TEMPLATE,
        wait_for_completion=False,
    )
    rows_left(planned, summarized) >> trigger_next
