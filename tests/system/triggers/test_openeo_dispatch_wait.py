"""OpenEODispatchWaitTrigger on a real job database: it holds an instance until its dispatch would act."""

from __future__ import annotations

import asyncio
import time
import uuid

import pandas as pd

from airflow_provider_openeo.batch.row_dispatch import DispatchScope, RowDispatcher, slot_of
from airflow_provider_openeo.triggers.openeo import OpenEODispatchWaitTrigger

RUN = "dag/run_1"


def _setup(job_db) -> tuple[DispatchScope, RowDispatcher]:
    """One row, held by another instance that is still starting it: a second instance must wait."""
    tag = uuid.uuid4().hex[:8]
    backends = {f"foo{tag}": 2, f"bar{tag}": 2}
    foo = next(iter(backends))
    job_db.initialize_from_df(pd.DataFrame({"title": ["field 1"]}))
    job_db.assign_run([0], RUN)
    task_ids = {name: [f"b.run_{name}.job", f"b.run_{name}.results"] for name in backends}
    holder = RowDispatcher(job_db, DispatchScope(RUN, slot_of(f"b.run_{foo}.job", 0), foo, backends, task_ids))
    assert holder.claim(0, "dag/run_1/b.run_foo.job/0")
    waiter = DispatchScope(RUN, slot_of(f"b.run_{foo}.job", 1), foo, backends, task_ids, recheck_seconds=1.0)
    return waiter, holder


def _trigger(job_db, scope: DispatchScope, *, until: float, not_before: float = 0.0) -> OpenEODispatchWaitTrigger:
    sqlite_path = str(job_db.sqlite_path) if job_db.sqlite_path is not None else None
    return OpenEODispatchWaitTrigger(
        job_db={"table": job_db.table, "job_db_conn_id": job_db.job_db_conn_id, "sqlite_path": sqlite_path},
        scope=scope.to_dict(),
        until=until,
        check_interval=0.1,
        not_before=not_before,
    )


def _fired_after(trigger: OpenEODispatchWaitTrigger) -> float:
    async def first() -> float:
        started = time.monotonic()
        event = await asyncio.wait_for(anext(trigger.run()), 30)
        assert event.payload == {"dispatch": "recheck"}
        return time.monotonic() - started

    return asyncio.run(first())


def test_round_trips_through_serialisation(job_db):
    scope, _ = _setup(job_db)
    trigger = _trigger(job_db, scope, until=123.0, not_before=100.0)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_openeo.triggers.openeo.OpenEODispatchWaitTrigger"
    again = OpenEODispatchWaitTrigger(**kwargs)
    assert (again.until, again.not_before, again.scope) == (123.0, 100.0, scope.to_dict())


def test_an_instance_waits_while_the_run_gives_it_nothing_to_do_and_resumes_at_until(job_db):
    scope, _ = _setup(job_db)
    waited = _fired_after(_trigger(job_db, scope, until=time.time() + 1.0))
    assert 0.9 <= waited < 5, waited


def test_it_resumes_as_soon_as_the_answer_changes(job_db):
    """The holder's start is through: nothing can come back, the waiting instance is done at once."""
    scope, _ = _setup(job_db)
    job_db.update_row(0, {"claimed_by": None, "id": "j-1", "status": "queued"})
    waited = _fired_after(_trigger(job_db, scope, until=time.time() + 60))
    assert waited < 5, waited


def test_never_before_not_before_even_when_the_answer_changed(job_db):
    """Airflow fails a task whose trigger fires before its deferral was fully handled: a margin first."""
    scope, _ = _setup(job_db)
    job_db.update_row(0, {"claimed_by": None, "id": "j-1", "status": "queued"})
    waited = _fired_after(_trigger(job_db, scope, until=time.time(), not_before=time.time() + 1.0))
    assert waited >= 0.9, waited
