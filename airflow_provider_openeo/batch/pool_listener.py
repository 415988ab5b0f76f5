"""In the scheduler, when a batch's DAG run starts: read the batch's pools and leave them for its ``plan`` task.

Tasks cannot see pools in Airflow 3 (the Execution API has no pool route); the scheduler can, and it calls the
listeners of plugins when a DAG run becomes running (``DagRun.notify_dagrun_state_changed``), with the run's
serialized DAG at hand. So this listener, shipped in the provider's plugin (:mod:`airflow_provider_openeo.plugin`):

- finds the batches in the run's DAG: every :class:`OpenEOBatchJobOperator` names its backend's pool, and the
  ``plan`` task of its batch is a sibling of its mapped group (``<batch>.run_<backend>.job`` -> ``<batch>.plan``);
- reads those pools in one query, in the scheduler's own session (nothing for a DAG without a batch);
- stores the record (``pool_check.pools_record``) in each batch's ``plan`` task state store, key
  ``pool_check.POOLS_KEY``, through Airflow's configured state backend, once the scheduler has committed the
  run's start (in a transaction of its own: see :func:`on_dag_run_running`).

Why the task state store: it is scoped to this run and this task (a retry or a clear of ``plan`` reads it; a
run's record never leaks into another run; it goes with the run when the run is deleted), the task reads it
through the Execution API with no connection to configure, and the UI shows it on the task instance. A Variable
would be global and need cleaning up, a DAG run note belongs to people, the run's conf is the user's Params
(and is copied into chained runs), an XCom of ``plan`` is cleared when ``plan`` starts, and the job database would
make the scheduler open the user's database connections inside its loop.

A failure here must never hurt the scheduler: nothing is written in its transaction, and any exception is logged
and dropped (``plan`` then says the pools were not checked).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.listeners import hookimpl

from airflow_provider_openeo.batch.pool_check import POOLS_KEY, PoolState, pools_record

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

#: How the serialized DAG names the batch's row operator (``task_type`` and the module it comes from).
JOB_OPERATOR = ("OpenEOBatchJobOperator", "airflow_provider_openeo.operators.openeo")
PLAN_TASK = "plan"


def batch_pools(tasks: Iterable[Any], has_task: Any) -> dict[str, list[str]]:
    """``{plan task id: [pool, ...]}`` for every batch among ``tasks`` (a DAG's, serialized or not).

    A batch is found by its row operator (``JOB_OPERATOR``); its ``plan`` task is the sibling of the row task's
    mapped group. A row operator outside a batch (no such ``plan`` task, ``has_task`` says) is left alone.
    """
    found: dict[str, set[str]] = defaultdict(set)
    for task in tasks:
        if (getattr(task, "task_type", None), getattr(task, "_task_module", None)) != JOB_OPERATOR:
            continue
        group = getattr(task, "task_group", None)
        batch = getattr(group, "parent_group", None)
        if batch is None:
            continue
        plan_id = batch.child_id(PLAN_TASK)
        if has_task(plan_id):
            found[plan_id].add(task.pool)
    return {plan_id: sorted(pools) for plan_id, pools in found.items()}


def read_pools(session: Session, names: Iterable[str]) -> dict[str, PoolState | None]:
    """Each named pool's state (None: it does not exist), in one query."""
    from airflow.models.pool import Pool
    from sqlalchemy import select

    wanted = sorted(set(names))
    rows = session.execute(select(Pool.pool, Pool.slots, Pool.include_deferred).where(Pool.pool.in_(wanted))).all()
    states: dict[str, PoolState | None] = dict.fromkeys(wanted)
    for name, slots, include_deferred in rows:
        states[name] = PoolState(int(slots), bool(include_deferred))
    return states


@dataclass(frozen=True)
class RunRef:
    """The run a record is for, copied out of the scheduler's ORM object (whose attributes expire on commit)."""

    dag_id: str
    run_id: str
    clear_number: int


def record_pools(session: Session, run: RunRef, plans: Mapping[str, list[str]]) -> None:
    """Store each batch's pools in its ``plan`` task's state store, for this run."""
    from airflow._shared.state import TaskScope
    from airflow.configuration import conf
    from airflow.state import get_state_backend

    states = read_pools(session, (pool for pools in plans.values() for pool in pools))
    now = datetime.now(timezone.utc)
    days = conf.getint("state_store", "default_retention_days", fallback=30)
    expires_at = now + timedelta(days=days) if days > 0 else None
    backend = get_state_backend()
    for plan_id, pools in plans.items():
        record = pools_record(
            {pool: states[pool] for pool in pools},
            clear_number=run.clear_number,
            recorded_at=now.isoformat(timespec="seconds"),
        )
        scope = TaskScope(dag_id=run.dag_id, run_id=run.run_id, task_id=plan_id, map_index=-1)
        backend.set(scope, POOLS_KEY, json.dumps(record), expires_at=expires_at, session=session)


def record_in_own_session(run: RunRef, plans: Mapping[str, list[str]]) -> None:
    """:func:`record_pools` in a session and transaction of its own; a failure is logged, never raised."""
    from airflow.utils.session import create_session

    try:
        with create_session(scoped=False) as own:
            record_pools(own, run, plans)
    except Exception:
        log.exception("openEO provider: could not record the pools of %s; its plan will not check them", run)


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    """Record the pools of the run's batches (if any) for their ``plan`` tasks; never raise into the scheduler.

    The scheduler calls this inside its scheduling transaction, which forbids commits (HA locks) and holds the run's
    row locked: a write there could abort its transaction, and a write in another session would wait on that lock
    (a dead-lock on PostgreSQL, "database is locked" on SQLite). So the record is written in a session of its own
    right after the scheduler commits, long before ``plan`` runs (``init`` comes first).
    """
    try:
        dag = getattr(dag_run, "dag", None)
        if dag is None:
            return
        plans = batch_pools(dag.tasks, dag.has_task)
        if not plans:
            return
        run = RunRef(dag_run.dag_id, dag_run.run_id, int(getattr(dag_run, "clear_number", 0) or 0))
        from sqlalchemy import event
        from sqlalchemy.orm import object_session

        session = object_session(dag_run)
        if session is None or not session.in_transaction():
            record_in_own_session(run, plans)
            return
        event.listen(session, "after_commit", lambda _session: record_in_own_session(run, plans), once=True)
    except Exception:
        log.exception("openEO provider: could not record the pools of %s; its plan will not check them", dag_run)
