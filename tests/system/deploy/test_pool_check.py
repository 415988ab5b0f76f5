"""A live Airflow (scheduler, triggerer, dag-processor, API server) refuses a batch one of whose backends cannot
work: no pool, no connection, or a password the backend refuses. Each mistake is the same for every row, so it
must fail the batch once, in its ``plan`` step, naming the backend, what is wrong and what fixes it, before any
row task exists; the rows stay untouched and no job reaches a backend.

Without the check, the rows of a backend without its pool would sit ``scheduled`` forever with a warning in the
scheduler's log only, and a broken connection would fail every row on its own, three tries each. The pools are
read by the provider's plugin in the scheduler when the run starts; no ``airflow_api_conn_id`` is configured.

The plugin is found through the ``airflow.plugins`` entry point of the installed package. When the installed
metadata predates that entry point (a development virtualenv installed from another checkout, before ``make
install`` refreshes it), the test registers the same plugin class through ``$AIRFLOW_HOME/plugins`` instead;
``tests/unit/test_plugin.py`` checks the entry point itself.
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

POOL_DAGS = REPO / "tests" / "system" / "deploy" / "pool_dags"
PLUGIN_CLASS = "airflow_provider_openeo.plugin:OpenEOPlugin"
#: The password of connection ``openeo_qux``, which the backend refuses.
WRONG = "not-the-password-4711"


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
    """Airflow with pools for ``foo``, ``baz`` and ``qux`` (not ``bar``); connections ``openeo_foo`` and
    ``openeo_bar`` work (one local backend serves both), ``openeo_qux`` has a wrong password, ``openeo_baz`` does
    not exist: each DAG of ``pool_dags`` meets exactly one of these mistakes."""
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
        airflow.set_pools(
            {
                "foo": {"conn_id": "openeo_foo", "parallel_jobs": 2},
                "baz": {"conn_id": "openeo_baz", "parallel_jobs": 2},
                "qux": {"conn_id": "openeo_qux", "parallel_jobs": 2},
            }
        )
        airflow.wait_healthy()
        for conn_id, password in (
            ("openeo_foo", BASIC_PASSWORD),
            ("openeo_bar", BASIC_PASSWORD),
            ("openeo_qux", WRONG),
        ):
            airflow.set_connection(
                conn_id, "openeo", host=backend.url, login=BASIC_USER, password=password, extra={"auth_method": "basic"}
            )
        yield PoolRig(airflow, backend, work_dir, plugin_from)
    finally:
        airflow.stop()
        backend.stop()
        if not os.environ.get("OPENEO_KEEP_POOL_HOME"):
            shutil.rmtree(base, ignore_errors=True)


def task_log(airflow: LiveAirflow, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    """A task try's log file as written (JSON lines: the exception's message is a field of its own, which the REST
    API's log lines leave out)."""
    (path,) = airflow.logs.glob(f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}/attempt={try_number}.log")
    return path.read_text(encoding="utf-8", errors="replace")


#: Each DAG's mistake: what the ``plan`` step's message must say, and what it must not.
MISTAKES = {
    "pool_missing_bar": (
        [
            "backend 'bar': pool 'openeo_bar' does not exist",
            "airflow pools set openeo_bar 3 'openEO backend bar (openeo_bar): parallel_jobs' --include-deferred",
            "python -m airflow_provider_openeo.pools backends.json",
        ],
        ["pool 'openeo_foo'"],  # foo's pool is right: not named
    ),
    "connection_missing": (
        [
            "backend 'baz': Airflow connection 'openeo_baz' does not exist",
            "airflow connections add openeo_baz --conn-type openeo",
        ],
        ["'openeo_foo'"],
    ),
    "password_wrong": (
        ["backend 'qux': the backend refused the credentials of connection 'openeo_qux'", "Admin > Connections"],
        ["'openeo_foo'"],
    ),
}


@pytest.mark.parametrize("dag_id", list(MISTAKES))
def test_a_mistake_every_row_shares_fails_the_plan_once_before_any_row(pool_rig: PoolRig, dag_id: str) -> None:
    airflow = pool_rig.airflow
    run_id = airflow.trigger_dag(dag_id)
    run = airflow.wait_for_run(dag_id, run_id, timeout=240)
    tis = airflow.task_instances(dag_id, run_id)
    states = {(ti["task_id"], ti["map_index"]): (ti["state"], ti["try_number"]) for ti in tis}
    print(f"\n[plugin from {pool_rig.plugin_from}] run {run['state']}; tasks: {json.dumps(sorted(states.items()))}")

    assert run["state"] == "failed"
    assert states[("openeo_job_batch.init", -1)] == ("success", 1)
    assert states[("openeo_job_batch.plan", -1)] == ("failed", 1), "plan fails once, not retried"
    rows = [ti for ti in tis if ".run_" in ti["task_id"]]
    assert rows and all(ti["map_index"] < 0 for ti in rows), "no row task was expanded"
    assert {ti["state"] for ti in rows} <= {"upstream_failed", "skipped", None}, "no row task was queued"

    log = task_log(airflow, dag_id, run_id, "openeo_job_batch.plan")
    said, unsaid = MISTAKES[dag_id]
    for text in said:
        assert text in log, text
    failure = [line for line in log.splitlines() if "no row was started" in line]
    assert failure, "the plan step says that no row was started"
    for text in unsaid:
        assert all(text not in line for line in failure), f"{text} is right: not named in the failure"
    assert BASIC_PASSWORD not in log and WRONG not in log, "a password reached the log"

    created = [job for job in pool_rig.backend.jobs() if str(job.get("title") or "").startswith(dag_id)]
    assert created == [], "no job reached the backend"
    db = OpenEOJobDbHook(table=dag_id, sqlite_path=str(pool_rig.work_dir / f"{dag_id}.db"))
    try:
        table = db.read()
    finally:
        db.dispose()
    assert len(table) == 4 and set(table["status"]) == {"not_started"}, "rows not started"
    # the table and the summary say why, in the plan's one message
    (why,) = set(table["error_message"])
    assert why.startswith(f"no row was started, because {said[0]}"), why
    entry = airflow.api(
        "GET",
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/openeo_job_batch.summary/xcomEntries/return_value",
        params={"deserialize": "true", "stringify": "false"},
    )
    summary = json.loads(entry["value"]) if isinstance(entry["value"], str) else entry["value"]
    assert summary["not_started_because"] == why and summary["counts"] == {"not_started": 4}
    scheduler_log = (airflow.logs / "scheduler.log").read_text(encoding="utf-8", errors="replace")
    assert "could not record the pools" not in scheduler_log
