"""How a batch instance takes its row when its try's templates are rendered (real SQLite job table).

Instances that get pool slots at the same moment all pick the first free row; all but one lose the claim. A loser
asks again at once instead of waiting a turn in the triggerer (a second process per row, and a deferral short
enough to meet Airflow's stale-executor-event race).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from airflow_provider_openeo.batch.dispatching import Claim
from airflow_provider_openeo.batch.row_dispatch import DispatchSettings, RowDispatcher, run_key_of
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.operators.openeo import OpenEOBatchJobOperator

BACKENDS = {"foo": 2, "bar": 2}
TASK_IDS = {name: [f"b.run_{name}.job", f"b.run_{name}.results"] for name in BACKENDS}


@dataclass
class _TI:
    """What the dispatch reads of a task instance."""

    task_id: str
    map_index: int
    dag_id: str = "dag"
    run_id: str = "run_1"


@pytest.fixture
def table(tmp_path) -> OpenEOJobDbHook:
    db = OpenEOJobDbHook(table="rows", sqlite_path=tmp_path / "jobs.db")
    db.initialize_from_df(pd.DataFrame({"title": [f"field {i}" for i in range(4)]}))
    db.assign_run([0, 1, 2, 3], run_key_of("dag", "run_1"))
    yield db
    db.dispose()


def _instance(table: OpenEOJobDbHook, index: int) -> tuple[OpenEOBatchJobOperator, dict[str, Any]]:
    task = OpenEOBatchJobOperator(
        task_id="b.run_foo.job",
        start_job=lambda row, connection, **_: None,
        backend_name="foo",
        job_table=table.table,
        sqlite_path=str(table.sqlite_path),
        dispatch=DispatchSettings(backend="foo", backends=BACKENDS, task_ids=TASK_IDS),
    )
    return task, {"ti": _TI(task.task_id, index)}


def test_a_lost_claim_is_asked_again_at_once_and_the_row_labelled(table, monkeypatch):
    """Two rivals take the first free row just before this instance's compare-and-set, twice in a row."""
    rivals = iter([10, 11])
    claim = RowDispatcher.claim

    def contested(self: RowDispatcher, row_id: Any, owner: str) -> bool:
        index = next(rivals, None)
        if index is not None:
            rival_task, rival_context = _instance(table, index)
            rival = rival_task._dispatcher(rival_context)
            assert claim(rival, row_id, f"rival {index}"), "the rival's claim is real"
        return claim(self, row_id, owner)

    monkeypatch.setattr(RowDispatcher, "claim", contested)
    task, context = _instance(table, 0)
    task._before_label(context)
    task._label_row(context)
    assert task.row_id == 2, "rows 0 and 1 went to the rivals; this instance took the next one"
    assert isinstance(task._decision, Claim)
    assert table.get_row(2)["dispatch_slot"] == "b.run_foo.job[0]"
    assert context["openeo_row_label"] == "2: field 2"


def test_every_row_taken_by_someone_else_leaves_the_instance_waiting_unlabelled(table, monkeypatch):
    """Claims lost more often than there are attempts: no row, the label says so, no busy loop forever."""
    monkeypatch.setattr(RowDispatcher, "claim", lambda self, row_id, owner: False)
    task, context = _instance(table, 0)
    task._before_label(context)
    task._label_row(context)
    assert task.row_id is None
    assert context["openeo_row_label"] == "no row yet (foo)"
