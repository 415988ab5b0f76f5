"""One instance's dispatch: read its run from the job database, ask :func:`dispatching.decide`, claim the row.

The rules are pure functions in :mod:`airflow_provider_openeo.batch.dispatching`; this module is the part that reads
and writes the job database for them, so the batch operator (which claims, starts and releases rows) and the
dispatch-wait trigger (which re-asks while an instance waits in the triggerer) share one reading of the table.

A claim is a compare-and-set on the row's ``dispatch_slot`` (free, and still in this run), so two instances
that pick the same row at once cannot both take it; the loser asks again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_openeo.batch.budget import BLOCKED_BY_BUDGET, BLOCKED_BY_COLUMN
from airflow_provider_openeo.batch.dispatching import (
    BackendHealth,
    Decision,
    RunRow,
    StartFailure,
    decide,
    done_backends,
    expected_shares,
    health_after_failure,
    health_after_success,
    is_down,
    pace_of,
    spare_indexes,
)
from airflow_provider_openeo.batch.planning import pinned_backend
from airflow_provider_openeo.hooks._job_db.columns import (
    BACKEND_CHOSEN_BY_DISPATCH,
    BACKEND_CHOSEN_BY_USER,
    ROW_ID_KEY,
)
from airflow_provider_openeo.job_table.job_status import RowStatus
from airflow_provider_openeo.job_table.timestamps import epoch_from_rfc3339, utc_now_rfc3339
from airflow_provider_openeo.start.job_starting import claim_holder, claim_is_stale, claim_values

if TYPE_CHECKING:
    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

log = logging.getLogger(__name__)
#: Task instance states in which an instance will not take a row any more.
ENDED_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


def run_key_of(dag_id: str, run_id: str) -> str:
    """The value of ``dispatch_run``: which DAG run's plan covers a row."""
    return f"{dag_id}/{run_id}"


def slot_of(task_id: str, map_index: int) -> str:
    """The value of ``dispatch_slot``: which instance of the run holds a row."""
    return f"{task_id}[{map_index}]"


def parse_slot(slot: str) -> tuple[str, int]:
    """``("<job task id>", map index)`` of a ``dispatch_slot`` value (to find a row's task instance)."""
    task_id, _, rest = slot.rpartition("[")
    return task_id, int(rest.rstrip("]"))


@dataclass(frozen=True)
class DispatchScope:
    """Everything an instance needs to dispatch, JSON-serialisable so the wait trigger gets it too.

    :param backends: every backend of the batch, name to ``parallel_jobs``.
    :param task_ids: every backend's ``[job task id, results task id]``, to skip the instances nobody needs.
    :param recheck_seconds: how soon a waiting instance looks again at rows held elsewhere.
    :param give_up_after: seconds a backend may keep failing before rows that can only go to failing backends
        fail (None: wait for as long as it takes).
    """

    run_key: str
    slot: str
    backend: str
    backends: dict[str, int]
    task_ids: dict[str, list[str]]
    recheck_seconds: float = 5.0
    give_up_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DispatchSettings:
    """What ``openeo_job_batch`` gives each row task about the dispatch; the run and slot come from the context.

    :param backend: the backend whose group this task belongs to.
    :param slot_task_id: the task whose instance holds the row: the ``job`` task (None: this task itself).
    """

    backend: str
    backends: dict[str, int]
    task_ids: dict[str, list[str]]
    slot_task_id: str | None = None
    recheck_seconds: float = 5.0
    give_up_after: float | None = None

    def scope(self, context: Mapping[str, Any], *, task_id: str) -> DispatchScope:
        ti = context["ti"]
        return DispatchScope(
            run_key=run_key_of(ti.dag_id, ti.run_id),
            slot=slot_of(self.slot_task_id or task_id, ti.map_index),
            backend=self.backend,
            backends=dict(self.backends),
            task_ids={name: list(ids) for name, ids in self.task_ids.items()},
            recheck_seconds=self.recheck_seconds,
            give_up_after=self.give_up_after,
        )


def run_row(values: Mapping[str, Any], *, now: float) -> RunRow:
    """A row as the dispatch sees it (see :class:`RunRow`)."""
    backend = pinned_backend(values)
    slot = values.get("dispatch_slot") or None
    settled = False
    if slot is not None:
        # The starter holds ``claimed_by`` from the slot's claim until the start is through (or the row failed).
        settled = not values.get("claimed_by") or claim_is_stale(values.get("claimed_at"), now)
    return RunRow(row_id=values[ROW_ID_KEY], backend_name=backend, slot=slot, settled=settled)


def split_run_key(run_key: str) -> tuple[str, str]:
    """``(dag_id, run_id)`` of a ``dispatch_run`` value (a DAG id holds no ``/``)."""
    dag_id, _, run_id = run_key.partition("/")
    return dag_id, run_id


def backend_paces(db: OpenEOJobDbHook, names: Iterable[str]) -> dict[str, float]:
    """Seconds a job takes on each backend (creation to the end the trigger recorded), from recent rows."""
    wanted = set(names)
    durations: dict[str, list[float]] = {}
    for backend, started, ended in db.recent_finished_jobs():
        start, end = epoch_from_rfc3339(started), epoch_from_rfc3339(ended)
        if backend in wanted and start is not None and end is not None:
            durations.setdefault(backend, []).append(end - start)
    paces = {name: pace_of(values) for name, values in durations.items()}
    return {name: pace for name, pace in paces.items() if pace is not None}


def backends_health(db: OpenEOJobDbHook, names: Iterable[str]) -> dict[str, BackendHealth]:
    """Each backend's record of recent starts (shared by every batch on the job database)."""
    records = db.backend_health_records()
    return {name: health_from_record(name, records.get(name)) for name in names}


def count_unused(task_states: Mapping[str, Any], job_tasks: Iterable[str], held: set[str]) -> int:
    """Instances of ``job_tasks`` that have not ended and hold no row, from Airflow's ``{"<task>_<index>": state}``."""
    unused = 0
    tasks = set(job_tasks)
    for key, state in task_states.items():
        task_id, _, index = key.rpartition("_")
        if task_id in tasks and index.isdigit() and state not in ENDED_TI_STATES:
            unused += slot_of(task_id, int(index)) not in held
    return unused


def health_from_record(name: str, record: Mapping[str, Any] | None) -> BackendHealth:
    if not record:
        return BackendHealth(name)
    values = dict(record)
    failure = values.get("last_failure")
    values["last_failure"] = StartFailure(failure) if failure else None
    return BackendHealth(**{**values, "name": name})


def health_to_record(health: BackendHealth) -> dict[str, Any]:
    record = asdict(health)
    record["last_failure"] = health.last_failure.value if health.last_failure else None
    return record


class RowDispatcher:
    """Reads the run and the backends' records, decides, claims, and records what starts did."""

    def __init__(self, db: OpenEOJobDbHook, scope: DispatchScope) -> None:
        self.db = db
        self.scope = scope

    # -- reading ------------------------------------------------------------------------------------------

    def rows(self, now: float) -> list[RunRow]:
        return [run_row(values, now=now) for values in self.db.run_rows(self.scope.run_key)]

    def health(self) -> dict[str, BackendHealth]:
        return backends_health(self.db, self.scope.backends)

    def paces(self) -> dict[str, float]:
        return backend_paces(self.db, self.scope.backends)

    def others_unused(self, rows: list[RunRow], health: dict[str, BackendHealth]) -> int | None:
        """Instances of the other working backends that hold no row and have not ended (None: Airflow could not
        tell, e.g. outside a task or trigger). Asked of Airflow's Execution API, only when this backend is down."""
        working = [n for n in self.scope.backends if n != self.scope.backend and not is_down(health[n])]
        if not working:
            return None
        dag_id, run_id = split_run_key(self.scope.run_key)
        job_tasks = [self.scope.task_ids[name][0] for name in working]
        try:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_ids=job_tasks, run_ids=[run_id])
        except Exception as exc:  # no Execution API here: the backend keeps waiting, as it would without this
            log.debug("could not read the other backends' instances: %s", exc)
            return None
        held = {row.slot for row in rows if row.slot is not None}
        return count_unused(states.get(run_id, {}), job_tasks, held)

    def decide(self, now: float | None = None) -> Decision:
        now = time.time() if now is None else now
        scope = self.scope
        health = self.health()
        paces = self.paces()
        rows = self.rows(now)
        others_unused = self.others_unused(rows, health) if is_down(health[scope.backend]) else None
        return decide(
            rows,
            backend=scope.backend,
            slot=scope.slot,
            health=health[scope.backend],
            active=self.db.count_live_jobs(scope.backend),
            now=now,
            recheck_seconds=scope.recheck_seconds,
            eligible_backends=list(scope.backends),
            all_health=health,
            give_up_after=scope.give_up_after,
            paces=paces,
            slots=scope.backends,
            live={name: self.db.count_live_jobs(name) for name in scope.backends} if paces else None,
            others_unused=others_unused,
        )

    def held_row_id(self) -> Any:
        return self.db.slot_row_id(self.scope.run_key, self.scope.slot)

    # -- claiming -----------------------------------------------------------------------------------------

    def claim(self, row_id: Any, owner: str) -> bool:
        """Take a free row of the run for this slot; False when another instance was faster.

        ``owner`` (the task instance, as the starter names it) holds ``claimed_by`` until the start is through:
        that is how other instances tell a row being started (it may come back) from one that is settled.
        """
        values = self.db.get_row(row_id)
        if claim_holder(values, owner, time.time()):
            return False  # a task (of an earlier run, say) is starting this row right now
        pinned = values.get("backend_name")
        expected = {
            "dispatch_run": self.scope.run_key,
            "dispatch_slot": None,
            "backend_name": pinned,
            "claimed_by": values.get("claimed_by"),
        }
        update: dict[str, Any] = {
            "dispatch_slot": self.scope.slot,
            **claim_values(owner),
        }
        if not pinned or (not values.get("id") and values.get("backend_chosen_by") == BACKEND_CHOSEN_BY_DISPATCH):
            update["backend_name"] = self.scope.backend
            update["backend_chosen_by"] = BACKEND_CHOSEN_BY_DISPATCH
        elif pinned != self.scope.backend:
            return False
        elif not values.get("backend_chosen_by"):
            update["backend_chosen_by"] = BACKEND_CHOSEN_BY_USER
        return self.db.update_row(row_id, update, expected=expected)

    def release(self, row_id: Any, message: str) -> bool:
        """Give a row whose start failed back to the run: free, and unpinned again unless the user pinned it or
        it holds a job on this backend."""
        values = self.db.get_row(row_id)
        update: dict[str, Any] = {"dispatch_slot": None, "claimed_by": None, "error_message": message}
        if not values.get("id"):
            update["status"] = RowStatus.NOT_STARTED.value
            if values.get("backend_chosen_by") == BACKEND_CHOSEN_BY_DISPATCH:
                update["backend_name"] = None
                update["backend_chosen_by"] = None
        expected = {"dispatch_run": self.scope.run_key, "dispatch_slot": self.scope.slot}
        return self.db.update_row(row_id, update, expected=expected)

    def give_up(self, row_id: Any, message: str) -> bool:
        """Fail a row no backend can take (it stays held by this slot, so nobody else tries it in this run)."""
        update = {
            "dispatch_slot": self.scope.slot,
            "claimed_by": None,
            "claimed_at": utc_now_rfc3339(),
            "status": RowStatus.START_FAILED.value,
            "error_message": message,
        }
        return self.db.update_row(row_id, update, expected={"dispatch_run": self.scope.run_key, "dispatch_slot": None})

    def hold_back(self, reason: str) -> int:
        """The budget is reached: hold every free row of the run that has no job under this slot, saying why.

        The rows stay ``not_started`` (a run with a raised ``max_costs`` takes them), and the other instances find
        nothing left and end at once, instead of each starting a process to be refused. Returns how many rows.
        """
        held = 0
        for values in self.db.run_rows(self.scope.run_key):
            if values.get("dispatch_slot") or values.get("id"):
                continue
            row_id = values[ROW_ID_KEY]
            update = {
                "dispatch_slot": self.scope.slot,
                BLOCKED_BY_COLUMN: BLOCKED_BY_BUDGET,
                "error_message": f"row {row_id!r} of job table {self.db.table!r}: {reason}",
            }
            expected = {"dispatch_run": self.scope.run_key, "dispatch_slot": None, "id": None}
            held += self.db.update_row(row_id, update, expected=expected)
        return held

    # -- health -------------------------------------------------------------------------------------------

    def record_failure(self, failure: StartFailure, message: str) -> BackendHealth:
        name = self.scope.backend
        active = self.db.count_live_jobs(name)
        now = time.time()

        def change(record: dict[str, Any] | None) -> dict[str, Any]:
            health = health_from_record(name, record)
            return health_to_record(health_after_failure(health, failure, now=now, active=active, message=message))

        return health_from_record(name, self.db.change_backend_health(name, change))

    def record_success(self) -> None:
        """Only written when there is something to forget: a healthy backend costs no write per start."""
        name = self.scope.backend
        current = self.health()[name]
        if not current.failures and current.slot_limit is None:
            return
        parallel_jobs = self.scope.backends[name]

        def change(record: dict[str, Any] | None) -> dict[str, Any]:
            return health_to_record(health_after_success(health_from_record(name, record), parallel_jobs=parallel_jobs))

        self.db.change_backend_health(name, change)

    # -- ending -------------------------------------------------------------------------------------------

    def instances_to_skip(self, leaving: Iterable[str] = ()) -> list[tuple[str, int]]:
        """The unused instances of every backend nothing is left for: ``(task id, map index)`` pairs.

        ``leaving``: backends that end though rows are free (down, their rows continue in the next run).

        Instances holding a row keep theirs; the rest (queued for a pool slot, or waiting in the triggerer) are
        skipped at once rather than each started in a process of its own to find nothing. Indexes past a
        backend's last instance name no task instance and are ignored by Airflow.
        """
        now = time.time()
        rows = self.rows(now)
        held = {row.slot for row in rows if row.slot is not None}
        targets: list[tuple[str, int]] = []
        for name in dict.fromkeys([*done_backends(rows, self.scope.backends), *leaving]):
            job_task, results_task = self.scope.task_ids[name]
            for index in range(len(rows)):
                if slot_of(job_task, index) in held:
                    continue
                targets += [(job_task, index), (results_task, index)]
        return targets

    def spare_instances(self) -> list[tuple[str, int]]:
        """``job`` instances of backends still taking rows that no row of the run can need any more.

        Only ``job`` instances: the scheduler skips a skipped instance's ``results`` task itself (its upstream was
        skipped), so a ``job`` instance that got its slot and took a row a moment ago, which Airflow 3.3 will not
        mark skipped (it never overwrites a running task instance), keeps its ``results`` task too.
        """
        now = time.time()
        rows = self.rows(now)
        held = {row.slot for row in rows if row.slot is not None}
        done = set(done_backends(rows, self.scope.backends))
        shares = expected_shares(self.scope.backends, paces=self.paces(), all_health=self.health(), now=now)
        targets: list[tuple[str, int]] = []
        for name, parallel_jobs in self.scope.backends.items():
            if name in done:
                continue  # instances_to_skip names those, results tasks too
            job_task = self.scope.task_ids[name][0]
            unused = [index for index in range(len(rows)) if slot_of(job_task, index) not in held]

            def own(slot: str, task: str = job_task) -> bool:
                return parse_slot(slot)[0] == task

            share = None if shares is None else shares.get(name, 0.0)
            spare = spare_indexes(rows, name, own=own, unused=unused, margin=parallel_jobs, share=share)
            targets += [(job_task, index) for index in spare]
        return targets
