"""Driving the per-row operators against the real local backend and a real job database, without a scheduler.

``run_row`` plays the part of Airflow around one task try: ``execute``; on ``TaskDeferred`` the trigger is
serialised and rebuilt (as the triggerer does), run to its event, and the task resumes in the method it named
with a *fresh* context (as a resumed try gets). Tests that need the real task runner use ``dag.test()``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import openeo
import pandas as pd
import pytest
from airflow.sdk.exceptions import TaskDeferred
from airflow.triggers.base import BaseTaskEndEvent

from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.hooks.openeo import OpenEOHook
from airflow_provider_openeo.operators.openeo import ROW_LABEL_KEY, OpenEOBatchJobOperator, OpenEOStartJobOperator
from airflow_provider_openeo.triggers.openeo import OpenEOJobTrigger
from local_backend.launcher import LocalBackend
from tests.fixtures.local_backend import backend_conn_env

CONN_ID = "openeo_row_ops"
BACKEND_NAME = "local"
ADD_GRAPH = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}
FAST = {"queue_seconds": 0.2, "run_seconds": 0.5}
POLL_INTERVAL = 0.3


@dataclass
class FakeTaskInstance:
    """What the operators read from ``context["ti"]``: identity (the row claim's owner), start, XCom push."""

    dag_id: str = "row_ops"
    run_id: str = "manual__1"
    task_id: str = "run_local"
    map_index: int = 0
    start_date: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)  # XCom values must be JSON: fail here, like Airflow would
        self.xcoms[key] = value


def make_context(ti: FakeTaskInstance | None = None) -> dict[str, Any]:
    return {"ti": ti or FakeTaskInstance()}


def rendered_context(operator: Any, ti: FakeTaskInstance | None = None) -> dict[str, Any]:
    """A fresh context after ``render_template_fields``, as Airflow prepares every try (a resumed one too)."""
    context = make_context(ti)
    operator.render_template_fields(context)
    return context


def run_row(operator: OpenEOStartJobOperator, ti: FakeTaskInstance | None = None, *, timeout: float = 60) -> Any:
    """One try of ``operator`` (start, trigger, resume), returning what the try returns or raising what it raises.

    A trigger that ends the task itself (``TaskSuccessEvent``) ends the try with None, as the triggerer does.
    """
    ti = ti or FakeTaskInstance()
    try:
        return operator.execute(rendered_context(operator, ti))
    except TaskDeferred as deferred:
        classpath, kwargs = deferred.trigger.serialize()
        assert classpath == f"{OpenEOJobTrigger.__module__}.{OpenEOJobTrigger.__qualname__}"
        trigger = OpenEOJobTrigger(**json.loads(json.dumps(kwargs)))
        event = asyncio.run(asyncio.wait_for(anext(trigger.run()), timeout))
        if isinstance(event, BaseTaskEndEvent):
            assert event.task_instance_state == "success"
            return None  # the triggerer ends the try itself; the task is not resumed
        resumed = rendered_context(operator, ti)
        result = getattr(operator, deferred.method_name)(resumed, event=json.loads(json.dumps(event.payload)))
        if isinstance(operator, OpenEOBatchJobOperator):
            assert ROW_LABEL_KEY in resumed, "map_index_template needs the row label in the resumed context too"
        return result


def deferred_job_id(operator: OpenEOStartJobOperator, ti: FakeTaskInstance | None = None) -> str:
    """Run ``execute`` only; the batch operator must defer, and this returns the job id it waits for."""
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(make_context(ti))
    return deferred.value.trigger.job_id


def fast_options(**overrides: Any) -> dict[str, Any]:
    return {"local_backend": {**FAST, **overrides}}


def add_job_start(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
    """An MBJM ``start_job``: one tiny job per row, titled by the row (tests count server-side jobs by title)."""
    return connection.create_job(ADD_GRAPH, title=str(row["title"]), job_options=fast_options())


@dataclass
class RowOps:
    """One test's world: a backend, its Airflow connection, a fresh job table, a results directory."""

    backend: LocalBackend
    db: OpenEOJobDbHook
    root_dir: Path
    prefix: str

    def table(self, n: int = 1, **columns: list[Any]) -> list[str]:
        """Create the job table with ``n`` rows titled uniquely for this test; return the titles."""
        titles = [f"{self.prefix}-{i}" for i in range(n)]
        self.db.initialize_from_df(pd.DataFrame({"title": titles, **columns}))
        return titles

    def operator(
        self,
        row_id: Any = 0,
        *,
        start_job: Callable[..., Any] = add_job_start,
        cls: type[OpenEOStartJobOperator] = OpenEOBatchJobOperator,
        **kwargs: Any,
    ) -> Any:
        settings: dict[str, Any] = {
            "task_id": f"run_{uuid.uuid4().hex[:6]}",
            "row_id": row_id,
            "start_job": start_job,
            "openeo_conn_id": CONN_ID,
            "backend_name": BACKEND_NAME,
            "job_table": self.db.table,
            "job_db_conn_id": self.db.job_db_conn_id,
            "sqlite_path": str(self.db.sqlite_path) if self.db.sqlite_path is not None else None,
        }
        if issubclass(cls, OpenEOBatchJobOperator):
            settings.update(handler=OpenEOJobHandler(root_dir=self.root_dir), poll_interval=POLL_INTERVAL)
        settings.update(kwargs)
        return cls(**settings)

    def connection(self) -> openeo.Connection:
        return OpenEOHook(CONN_ID).get_conn()

    def jobs(self, title: str) -> list[dict[str, Any]]:
        """Every job the backend holds for one row (by its unique title): the no-duplicates evidence."""
        return [job for job in self.backend.jobs() if job.get("title") == title]

    def row(self, row_id: Any = 0) -> dict[str, Any]:
        return self.db.get_row(row_id)


def make_row_ops(backend: LocalBackend, db: OpenEOJobDbHook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RowOps:
    """Local backend (fast jobs) behind connection ``CONN_ID``, the given job table, results in tmp."""
    backend_conn_env(monkeypatch, CONN_ID, backend)
    backend.configure(**FAST)
    return RowOps(backend, db, tmp_path / "results", f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture
def row_ops(
    openeo_backend: LocalBackend, sqlite_job_db: OpenEOJobDbHook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RowOps:
    return make_row_ops(openeo_backend, sqlite_job_db, tmp_path, monkeypatch)


@pytest.fixture
def row_ops_any_db(
    openeo_backend: LocalBackend, job_db: OpenEOJobDbHook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RowOps:
    """As ``row_ops``, once on SQLite and once on PostgreSQL."""
    return make_row_ops(openeo_backend, job_db, tmp_path, monkeypatch)
