"""One live Airflow and one pair of local openEO backends, shared by every fault test of a module.

Starting Airflow's four services costs half a minute of a 2-core machine, so the fault tests share them
(module scope) and tell their runs apart by DAG: each scenario has a DAG of its own in ``tests/system/deploy/dags``
(own job table, own results folder, job titles starting with the DAG id).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest

from airflow_provider_openeo.batch.row_dispatch import parse_slot
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from deploy.live_airflow import AirflowSettings, LiveAirflow
from local_backend.launcher import LocalBackend, start_local_backend
from tests.conftest import REPO

FAULT_DAGS = REPO / "tests" / "system" / "deploy" / "dags"
BACKEND_NAMES = ("foo", "bar")
#: Pool slots per backend (``parallel_jobs``); the fault DAGs read the same number from ``OPENEO_FAULT_DAGS``.
PARALLEL_JOBS = 3
POLL_INTERVAL = 1.0


@dataclass
class FaultRig:
    """The shared deployment: Airflow, the backends, and where the fault DAGs keep job tables and results."""

    airflow: LiveAirflow
    backends: dict[str, LocalBackend]
    work_dir: Path
    observations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def job_db(self, dag_id: str) -> OpenEOJobDbHook:
        return OpenEOJobDbHook(table=dag_id, sqlite_path=str(self.work_dir / "jobs" / f"{dag_id}.db"))

    def table(self, dag_id: str) -> pd.DataFrame:
        """The DAG's job table now (empty before its init task ran)."""
        db = self.job_db(dag_id)
        try:
            return db.read() if db.exists() else pd.DataFrame()
        finally:
            db.dispose()

    def results(self, dag_id: str) -> Path:
        return self.work_dir / "results" / dag_id

    def jobs_of(self, title_prefix: str) -> dict[str, list[dict[str, Any]]]:
        """Every job each backend holds whose title starts with ``title_prefix``: what the run(s) created there."""
        return {
            name: [job for job in backend.jobs() if str(job.get("title") or "").startswith(title_prefix)]
            for name, backend in self.backends.items()
        }

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        return self.airflow.trigger_dag(dag_id, conf or {})

    def mapped(self, dag_id: str, run_id: str, task: str = "job") -> list[dict[str, Any]]:
        """The run's row task instances: one task (``job`` or ``results``) of the ``run_<backend>`` groups."""
        return [
            ti
            for ti in self.airflow.task_instances(dag_id, run_id)
            if ti["map_index"] >= 0 and ".run_" in ti["task_id"] and ti["task_id"].endswith(f".{task}")
        ]

    def row_task(self, dag_id: str, run_id: str, row_id: Any, task: str = "job") -> dict[str, Any]:
        """One row's task instance (``job`` or ``results``): the instance of its backend's group that took it, as the
        row's ``dispatch_slot`` says (the ``results`` task of the same map index stores its results).

        (The row's label, ``rendered_map_index``, appears only once a try succeeded.)
        """
        job_task, map_index = parse_slot(self.table(dag_id).loc[row_id, "dispatch_slot"])
        task_id = job_task.rsplit(".", 1)[0] + f".{task}"
        (ti,) = [
            ti for ti in self.mapped(dag_id, run_id, task) if (ti["task_id"], ti["map_index"]) == (task_id, map_index)
        ]
        return ti

    def wait_until(self, what: str, check: Callable[[], Any], *, timeout: float = 180.0, interval: float = 0.5) -> Any:
        """Until ``check()`` returns neither None nor False (that value is returned); fails naming ``what``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value is not None and not (isinstance(value, (bool, np.bool_)) and not value):
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def task_process(self, ti_id: str) -> psutil.Process | None:
        """The process running task instance ``ti_id``'s code (Airflow titles it ``airflow worker -- <ti id>``).

        It descends from the scheduler: LocalExecutor worker (the task's supervisor, titled ``airflow worker --
        LocalExecutor: <task>``) -> task process, which runs in a process group of its own.
        """
        scheduler = self.airflow.pid("scheduler")
        if scheduler is None:
            return None
        for process in psutil.Process(scheduler).children(recursive=True):
            try:
                title = " ".join(process.cmdline())
            except psutil.Error:
                continue
            if ti_id in title and "LocalExecutor" not in title:
                return process
        return None


@pytest.fixture(scope="module")
def fault_backends() -> Iterator[dict[str, LocalBackend]]:
    """Backends foo and bar, of this module alone: fault tests change their settings and restart them."""
    backends: dict[str, LocalBackend] = {}
    try:
        with ThreadPoolExecutor(len(BACKEND_NAMES)) as pool:
            futures = {
                name: pool.submit(start_local_backend, name=name, queue_seconds=0.5, run_seconds=3.0)
                for name in BACKEND_NAMES
            }
            for name, future in futures.items():
                backends[name] = future.result()
        yield backends
    finally:
        for backend in backends.values():
            backend.stop()


@pytest.fixture(scope="module")
def fault_rig(fault_backends: dict[str, LocalBackend]) -> Iterator[FaultRig]:
    """A live Airflow (LocalExecutor, SQLite) running the fault DAGs against ``fault_backends``.

    Health thresholds are lowered from Airflow's 30 s so that a killed triggerer's work moves to its successor,
    and a killed scheduler's orphaned task instances are reset, within seconds rather than minutes.
    """
    base = REPO / "build" / "test-faults" / uuid.uuid4().hex[:8]
    work_dir = base / "work"
    (work_dir / "jobs").mkdir(parents=True)
    airflow = LiveAirflow(
        base / "airflow-home",
        AirflowSettings(
            dags_folder=FAULT_DAGS,
            paused_at_creation=True,  # a DAG runs only once its test triggers (and so unpauses) it
            env={
                "OPENEO_FAULT_DAGS": json.dumps(
                    {"work_dir": str(work_dir), "poll_interval": POLL_INTERVAL, "parallel_jobs": PARALLEL_JOBS}
                ),
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "20",
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
            },
        ),
    )
    rig = FaultRig(airflow, fault_backends, work_dir)
    try:
        airflow.prepare()
        airflow.start_for_local_backends(
            {name: backend.url for name, backend in fault_backends.items()}, parallel_jobs=PARALLEL_JOBS
        )
        yield rig
    finally:
        airflow.stop()
        report = REPO / "build" / "test-faults" / "observations.json"
        report.write_text(json.dumps(rig.observations, indent=2, default=str), encoding="utf-8")
        if not os.environ.get("OPENEO_KEEP_FAULT_HOME"):  # keep logs and job tables for a post-mortem
            shutil.rmtree(base, ignore_errors=True)
