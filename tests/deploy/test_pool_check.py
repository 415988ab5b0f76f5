"""A live Airflow (scheduler, triggerer, dag-processor, API server) refuses a batch whose backend has no pool.

Without the check, the rows of backend ``bar`` (no pool ``openeo_bar``) would sit ``scheduled`` forever with a
warning in the scheduler's log only. With it, the provider's plugin reads the pools in the scheduler when the run
starts and the ``plan`` task fails once, naming the backend, the pool and the command that fixes it, before any
row task exists; no job reaches a backend. No ``airflow_api_conn_id`` is configured.

The plugin is found through the ``airflow.plugins`` entry point of the installed package. When the installed
metadata predates that entry point (a development virtualenv installed from another checkout, before ``make
install`` refreshes it), the test registers the same plugin class through ``$AIRFLOW_HOME/plugins`` instead;
``tests/test_plugin.py`` checks the entry point itself.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from deploy.live_airflow import AirflowSettings, LiveAirflow
from local_backend.credentials import BASIC_PASSWORD, BASIC_USER
from local_backend.launcher import LocalBackend, start_local_backend
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

POOL_DAGS = REPO / "tests" / "deploy" / "pool_dags"
DAG_ID = "pool_missing_bar"
PLUGIN_CLASS = "airflow_provider_openeo.plugin:OpenEOPlugin"


@dataclass
class PoolRig:
    airflow: LiveAirflow
    backend: LocalBackend
    work_dir: Path
    plugin_from: str


def plugin_entry_point_installed() -> bool:
    return any(ep.value == PLUGIN_CLASS for ep in entry_points(group="airflow.plugins"))


@pytest.fixture(scope="module")
def pool_rig() -> Iterator[PoolRig]:
    """Airflow with pool ``openeo_foo`` only; connections ``openeo_foo`` and ``openeo_bar`` work (one local
    backend serves both), so the pool is the only thing wrong."""
    base = REPO / "build" / "test-pools" / uuid.uuid4().hex[:8]
    work_dir = base / "work"
    work_dir.mkdir(parents=True)
    home = base / "airflow-home"
    airflow = LiveAirflow(
        home,
        AirflowSettings(
            dags_folder=POOL_DAGS,
            paused_at_creation=True,
            env={"OPENEO_POOL_DAGS": json.dumps({"work_dir": str(work_dir)})},
        ),
    )
    plugin_from = "entry point"
    if not plugin_entry_point_installed():
        plugin_from = "plugins folder"
        (home / "plugins").mkdir(parents=True, exist_ok=True)
        (home / "plugins" / "openeo_provider_plugin.py").write_text(
            "from airflow_provider_openeo.plugin import OpenEOPlugin  # noqa: F401\n", encoding="utf-8"
        )
    backend = start_local_backend(name="foo", queue_seconds=0.5, run_seconds=2.0)
    try:
        airflow.prepare()
        airflow.start(wait=False)
        airflow.set_pools({"foo": {"conn_id": "openeo_foo", "parallel_jobs": 2}})
        airflow.wait_healthy()
        for conn_id in ("openeo_foo", "openeo_bar"):
            airflow.set_connection(
                conn_id,
                "openeo",
                host=backend.url,
                login=BASIC_USER,
                password=BASIC_PASSWORD,
                extra={"auth_method": "basic"},
            )
        yield PoolRig(airflow, backend, work_dir, plugin_from)
    finally:
        airflow.stop()
        backend.stop()
        if not os.environ.get("OPENEO_KEEP_POOL_HOME"):
            shutil.rmtree(base, ignore_errors=True)


def task_log(airflow: LiveAirflow, run_id: str, task_id: str, try_number: int = 1) -> str:
    """A task try's log file as written (JSON lines: the exception's message is a field of its own, which the REST
    API's log lines leave out)."""
    (path,) = airflow.logs.glob(f"dag_id={DAG_ID}/run_id={run_id}/task_id={task_id}/attempt={try_number}.log")
    return path.read_text(encoding="utf-8", errors="replace")


def test_missing_pool_fails_the_plan_once_before_any_row(pool_rig: PoolRig) -> None:
    airflow = pool_rig.airflow
    run_id = airflow.trigger_dag(DAG_ID)
    run = airflow.wait_for_run(DAG_ID, run_id, timeout=240)
    tis = airflow.task_instances(DAG_ID, run_id)
    states = {(ti["task_id"], ti["map_index"]): (ti["state"], ti["try_number"]) for ti in tis}
    print(f"\n[plugin from {pool_rig.plugin_from}] run {run['state']}; tasks: {json.dumps(sorted(states.items()))}")

    assert run["state"] == "failed"
    assert states[("openeo_job_batch.init", -1)] == ("success", 1)
    assert states[("openeo_job_batch.plan", -1)] == ("failed", 1), "plan fails once, not retried"
    rows = [ti for ti in tis if ".run_" in ti["task_id"]]
    assert rows and all(ti["map_index"] < 0 for ti in rows), "no row task was expanded"
    assert {ti["state"] for ti in rows} <= {"upstream_failed", "skipped", None}, "no row task was queued"

    log = task_log(airflow, run_id, "openeo_job_batch.plan")
    assert "backend 'bar': pool 'openeo_bar' does not exist" in log
    assert "airflow pools set openeo_bar 3 'openEO backend bar (openeo_bar): parallel_jobs' --include-deferred" in log
    assert "python -m airflow_provider_openeo.pools backends.json" in log
    assert "pool 'openeo_foo'" not in log, "foo's pool is right: not named"
    assert BASIC_PASSWORD not in log

    created = [job for job in pool_rig.backend.jobs() if str(job.get("title") or "").startswith(DAG_ID)]
    assert created == [], "no job reached the backend"
    db = OpenEOJobDbHook(table=DAG_ID, sqlite_path=str(pool_rig.work_dir / f"{DAG_ID}.db"))
    try:
        table = db.read()
    finally:
        db.dispose()
    assert len(table) == 4 and set(table["status"]) == {"not_started"}, "rows not started"
    # the table and the summary say why, in the plan's one message
    (why,) = set(table["error_message"])
    assert why.startswith("no row was started, because backend 'bar': pool 'openeo_bar' does not exist"), why
    entry = airflow.api(
        "GET",
        f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/openeo_job_batch.summary/xcomEntries/return_value",
        params={"deserialize": "true", "stringify": "false"},
    )
    summary = json.loads(entry["value"]) if isinstance(entry["value"], str) else entry["value"]
    assert summary["not_started_because"] == why and summary["counts"] == {"not_started": 4}
    scheduler_log = (airflow.logs / "scheduler.log").read_text(encoding="utf-8", errors="replace")
    assert "could not record the pools" not in scheduler_log
