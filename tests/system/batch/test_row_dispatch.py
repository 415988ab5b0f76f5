"""The dispatch on a real job database (SQLite and PostgreSQL): claims, give-backs, backend records, skips.

Several processes (forked clean from a fork server, as Airflow task processes are: ``tests.fixtures.races``)
claim the rows of one run at once: every row is taken by exactly one slot, pinned rows only by their backend's
slots.
"""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

import pandas as pd
import pytest

from airflow_provider_openeo.batch.dispatching import Claim, Done, StartFailure, Wait
from airflow_provider_openeo.batch.row_dispatch import (
    DispatchScope,
    RowDispatcher,
    parse_slot,
    slot_of,
)
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.job_table.timestamps import rfc3339_from_epoch
from tests.fixtures.databases import same_table
from tests.fixtures.races import race_on_table

RUN = "dag/run_1"
OWNER = "dag/run_1/task/0"


def scope(backend: str, index: int, backends: dict[str, int]) -> DispatchScope:
    return DispatchScope(
        run_key=RUN,
        slot=slot_of(f"b.run_{backend}.job", index),
        backend=backend,
        backends=backends,
        task_ids={name: [f"b.run_{name}.job", f"b.run_{name}.results"] for name in backends},
    )


def names() -> dict[str, int]:
    """Backend names of their own: the backend records are shared by every table of a database."""
    tag = uuid.uuid4().hex[:8]
    return {f"foo{tag}": 2, f"bar{tag}": 2}


def table_of(job_db: OpenEOJobDbHook, pins: list[str | None]) -> OpenEOJobDbHook:
    job_db.initialize_from_df(pd.DataFrame({"title": [f"t{i}" for i in range(len(pins))], "backend_name": pins}))
    job_db.assign_run(list(range(len(pins))), RUN)
    return job_db


def test_a_slot_claims_free_rows_in_order_and_keeps_what_it_holds(job_db):
    backends = names()
    foo, bar = list(backends)
    db = table_of(job_db, [None, bar, None])
    first = RowDispatcher(db, scope(foo, 0, backends))
    assert first.decide() == Claim(0)
    assert first.claim(0, OWNER)
    row = db.get_row(0)
    assert (row["backend_name"], row["backend_chosen_by"], row["dispatch_slot"]) == (foo, "dispatch", first.scope.slot)
    assert parse_slot(row["dispatch_slot"]) == (f"b.run_{foo}.job", 0)
    assert first.decide() == Claim(0, held=True), "a retry of the slot continues with its row"
    assert first.held_row_id() == 0
    second = RowDispatcher(db, scope(foo, 1, backends))
    assert second.decide() == Claim(2), "row 1 is pinned to the other backend"
    assert not second.claim(0, OWNER), "a held row cannot be taken twice"
    bar_slot = RowDispatcher(db, scope(bar, 0, backends))
    assert bar_slot.decide() == Claim(1)
    assert bar_slot.claim(1, OWNER) and db.get_row(1)["backend_chosen_by"] == "user"


def test_a_row_given_back_is_free_again_unpinned_and_the_failure_is_recorded(job_db):
    backends = names()
    foo, bar = list(backends)
    db = table_of(job_db, [None])
    on_foo = RowDispatcher(db, scope(foo, 0, backends))
    assert on_foo.claim(0, OWNER)
    for _ in range(3):
        on_foo.record_failure(StartFailure.UNAVAILABLE, "connection refused")
    assert on_foo.release(0, "backend down; given back")
    row = db.get_row(0)
    assert (row["backend_name"], row["backend_chosen_by"], row["dispatch_slot"], row["status"]) == (
        None,
        None,
        None,
        "not_started",
    )
    assert row["error_message"] == "backend down; given back"
    health = same_table(db).backend_health_records()[foo]
    assert health["failures"] == 3 and health["last_failure"] == "unavailable"
    waiting = RowDispatcher(db, scope(foo, 1, backends)).decide()
    assert isinstance(waiting, Wait) and "cooling down" in waiting.reason
    assert RowDispatcher(db, scope(bar, 0, backends)).decide() == Claim(0), "the other backend takes it"
    on_foo.record_success()
    assert db.backend_health_records()[foo]["failures"] == 0


def test_when_nothing_is_left_the_unused_instances_of_done_backends_are_named_for_skipping(job_db):
    backends = names()
    foo, bar = list(backends)
    db = table_of(job_db, [None, None, None])
    for backend, index, row_id in ((foo, 0, 0), (foo, 1, 1), (bar, 0, 2)):
        assert RowDispatcher(db, scope(backend, index, backends)).claim(row_id, OWNER)
        db.update_row(row_id, {"status": "running", "id": f"j-{row_id}", "claimed_by": None})
    last = RowDispatcher(db, scope(foo, 2, backends))
    assert last.decide() == Done(f"no row of this run is left for backend {foo!r}")
    skip = set(last.instances_to_skip())
    holders = {
        (f"b.run_{foo}.job", 0),
        (f"b.run_{foo}.results", 1),
        (f"b.run_{bar}.job", 0),
        (f"b.run_{bar}.results", 0),
    }
    assert not holders & skip, "instances holding a row keep it"
    assert (f"b.run_{foo}.results", 2) in skip, "the asking instance's own results task (it runs: Airflow keeps it)"
    assert {(f"b.run_{bar}.job", 1), (f"b.run_{bar}.results", 2)} <= skip


def test_while_rows_are_taken_the_instances_no_row_can_need_are_named_for_skipping(job_db):
    """Two slots of margin per backend; a row being started elsewhere counts for the other (it may come back)."""
    backends = names()
    foo, bar = list(backends)
    db = table_of(job_db, [None] * 10)
    for backend, index, row_id in [(foo, i, i) for i in range(4)] + [(bar, i, 4 + i) for i in range(4)]:
        assert RowDispatcher(db, scope(backend, index, backends)).claim(row_id, OWNER)
        if row_id != 7:  # row 7 is still being started on bar
            db.update_row(row_id, {"status": "running", "id": f"j-{row_id}", "claimed_by": None})
    spare = set(RowDispatcher(db, scope(foo, 4, backends)).spare_instances())
    # foo: rows 8, 9 free and row 7 may come back -> 3 + 2 of its unused instances 4..9 stay, 9 goes
    # bar: rows 8, 9 -> 2 + 2 of its unused 4..9 stay, 8 and 9 go (its own row 7 comes back to its own slot)
    assert spare == {(f"b.run_{foo}.job", 9), (f"b.run_{bar}.job", 8), (f"b.run_{bar}.job", 9)}
    assert not any(task.endswith(".results") for task, _ in spare), "results tasks follow their job's skip"


def test_once_each_backends_pace_is_known_a_group_keeps_only_its_share_of_the_free_rows(job_db):
    """A new table's groups may each take every row; the jobs the run has ended show ``foo`` 3x slower than
    ``bar``, so ``foo`` keeps a quarter of the free rows with slack and a pool's worth, and ``bar`` keeps them all."""
    backends = names()
    foo, bar = list(backends)
    db = job_db
    db.initialize_from_df(pd.DataFrame({"title": [f"t{i}" for i in range(44)]}))
    now = time.time()
    for row_id in range(4):  # ended in this run already: 2 on foo (90 s each), 2 on bar (30 s each)
        backend, seconds = (foo, 90.0) if row_id < 2 else (bar, 30.0)
        db.update_row(
            row_id,
            {
                "status": "finished",
                "backend_status": "finished",
                "backend_name": backend,
                "start_time": rfc3339_from_epoch(now - seconds),
                "id": f"j-{row_id}",
            },
        )
    db.assign_run(list(range(4, 44)), RUN)
    spare = RowDispatcher(db, scope(foo, 0, backends)).spare_instances()
    # foo: ceil(40 x 0.25 x 1.25) = 13 free rows + 2 of margin: its instances 0..14 stay, 15..39 go; bar keeps all
    assert sorted(spare) == [(f"b.run_{foo}.job", index) for index in range(15, 40)]


def _claimer(backends: dict[str, int], db: OpenEOJobDbHook, k: int) -> tuple[str, list[int]]:
    """Slots of one backend (process k's) claiming rows until the dispatch says done: the backend, the rows taken."""
    backend = list(backends)[k % 2]
    taken = []
    index = k
    while True:
        dispatcher = RowDispatcher(db, scope(backend, index, backends))
        decision = dispatcher.decide()
        if isinstance(decision, Done):
            break
        if isinstance(decision, Claim) and dispatcher.claim(decision.row_id, OWNER):
            started = {"status": "running", "id": f"j-{decision.row_id}", "claimed_by": None}
            db.update_row(decision.row_id, started)
            taken.append(decision.row_id)
            index += 100
    return backend, taken


@pytest.mark.slow
def test_concurrent_slots_take_every_row_exactly_once_and_pins_only_on_their_backend(job_db):
    backends = names()
    foo, bar = list(backends)
    pins = [foo if i % 10 == 0 else bar if i % 10 == 1 else None for i in range(60)]
    db = table_of(job_db, pins)
    # Six processes forked clean from the races' fork server (tests.fixtures.races), started together.
    results = race_on_table(db, functools.partial(_claimer, backends), processes=6)
    taken = [(backend, row) for backend, rows in results for row in rows]
    assert sorted(row for _, row in taken) == list(range(60)), "every row exactly once"
    table = db.read()
    for backend, row in taken:
        assert table.loc[row, "backend_name"] == backend
        if pins[row] is not None:
            assert backend == pins[row], f"row {row} is pinned to {pins[row]}"


def test_live_jobs_free_their_slot_when_the_job_ends_not_when_its_results_are_stored(job_db):
    db = table_of(job_db, [None, None, None, None])
    rows = {
        0: {"backend_name": "foo", "status": "queued_for_start"},
        1: {"backend_name": "foo", "status": "running", "backend_status": "running", "id": "j-1"},
        2: {"backend_name": "foo", "status": "running", "backend_status": "finished", "id": "j-2"},
        3: {"backend_name": "foo", "status": "error", "backend_status": "queued", "id": "j-3"},
    }
    for row_id, values in rows.items():
        db.update_row(row_id, values)
    assert db.count_live_jobs("foo") == 2, "being started, and running; not finished (results pending), not ended"
    assert db.count_live_jobs("bar") == 0


def test_a_backends_pace_counts_from_the_end_the_trigger_recorded_before_results_are_stored(job_db):
    backends = names()
    foo, bar = list(backends)
    db = table_of(job_db, [None, None, None])
    db.update_row(
        0,
        {"backend_name": foo, "status": "running", "backend_status": "finished", "start_time": "2020-01-01T00:00:00Z"},
    )
    db.update_row(
        1, {"backend_name": bar, "status": "running", "backend_status": "running", "start_time": "2020-01-01T00:00:00Z"}
    )
    paces = RowDispatcher(db, scope(foo, 0, backends)).paces()
    assert set(paces) == {foo} and paces[foo] > 0, "a finished job counts at once; a running one not yet"


def test_a_backend_down_ends_and_names_its_unused_instances_once_the_others_are_all_taken(job_db, monkeypatch):
    """The live path asks Airflow's Execution API for the other backends' instances (tests/system/deploy covers it);
    here its answer is given, and without an answer (outside a task) the backend keeps waiting."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    backends = names()
    foo, bar = list(backends)
    db = table_of(job_db, [None, None, None])
    down = RowDispatcher(db, scope(foo, 0, backends))
    for _ in range(3):
        down.record_failure(StartFailure.UNAVAILABLE, "connection refused")
    assert RowDispatcher(db, scope(bar, 0, backends)).claim(0, OWNER)
    assert isinstance(down.decide(), Wait), "outside Airflow nobody can tell: wait, as before"

    bar_states = {f"b.run_{bar}.job_0": "deferred", f"b.run_{bar}.job_1": "scheduled"}
    asked: list[dict[str, Any]] = []

    def task_states(**query: Any) -> dict[str, Any]:
        asked.append(query)
        return {"run_1": dict(bar_states)}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(task_states))
    assert isinstance(down.decide(), Wait), "bar still has an instance for a free row"
    assert asked[-1] == {"dag_id": "dag", "task_ids": [f"b.run_{bar}.job"], "run_ids": ["run_1"]}
    bar_states[f"b.run_{bar}.job_1"] = "skipped"
    decision = down.decide()
    assert isinstance(decision, Done) and decision.leaves_rows, decision
    skip = set(down.instances_to_skip(leaving=[foo]))
    assert {(f"b.run_{foo}.job", 1), (f"b.run_{foo}.results", 2)} <= skip
    assert not {(f"b.run_{bar}.job", 0), (f"b.run_{bar}.job", 1)} & skip, "bar is not done: its rows are free"
