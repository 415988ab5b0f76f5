"""Run the example DAGs for real: dag.test() against two local openEO backends and an SQLite job database.

Each test gets its own SQLite job database and results folder (``OPENEO_EXAMPLE_SQLITE_PATH``,
``OPENEO_EXAMPLE_RESULTS_DIR``): test sessions running side by side share the test AIRFLOW_HOME, and a job
table shared between them would hold job ids of the other session's backends.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import openeo
import pandas as pd
import pytest

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.operators.openeo import holds_no_row
from local_backend.launcher import BASIC_PASSWORD, BASIC_USER, LocalBackend
from tests.conftest import REPO
from tests.fixtures.local_backend import backend_conn_env
from tests.stac_checks import assert_validates_offline, items_by_row

UDP_FILE = REPO / "example_dags" / "udp" / "ndvi_timeseries.json"
#: Files every finished job leaves in ``root_dir/job_{id}`` (besides its metadata ``job_{id}.json``).
RESULT_FILES = ("job-results.json", "result.tif", "result.json")


@pytest.fixture
def example_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, openeo_backends: dict[str, LocalBackend], airflow_db: Path
) -> Iterator[dict[str, LocalBackend]]:
    """Connections openeo_foo/openeo_bar, the UDP published on a backend, job db and results in tmp, fast polling."""
    for name, backend in openeo_backends.items():
        backend_conn_env(monkeypatch, f"openeo_{name}", backend)
        backend.configure(queue_seconds=0.2, run_seconds=0.5)
    udp_url = openeo_backends["foo"].add_process_definition("ndvi_timeseries", json.loads(UDP_FILE.read_text()))
    monkeypatch.setenv("OPENEO_EXAMPLE_UDP_URL", udp_url)
    monkeypatch.setenv("OPENEO_EXAMPLE_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("OPENEO_EXAMPLE_SQLITE_PATH", str(tmp_path / "jobs.db"))
    monkeypatch.delenv("OPENEO_EXAMPLE_JOB_DB_CONN_ID", raising=False)
    monkeypatch.setenv("OPENEO_EXAMPLE_POLL_INTERVAL", "0.3")
    yield openeo_backends


def load_example(module_name: str) -> ModuleType:
    """(Re)import an example DAG module so it reads this test's environment."""
    for name in (module_name, "_common"):
        sys.modules.pop(name, None)
    return importlib.import_module(module_name)


def fresh_table(table: str) -> OpenEOJobDbHook:
    """The example's job table in this test's SQLite file, emptied so each test starts from scratch."""
    db = OpenEOJobDbHook(table=table, sqlite_path=os.environ["OPENEO_EXAMPLE_SQLITE_PATH"])
    if db.exists():
        db.drop()
    return db


def results_root(module: ModuleType) -> Path:
    """Where the example stores its jobs' folders (``root_dir``)."""
    return Path(os.environ["OPENEO_EXAMPLE_RESULTS_DIR"]) / module.DAG_ID


def jobs_on_backends(backends: dict[str, LocalBackend], job_ids: set[str]) -> dict[str, list[dict]]:
    """Server-side jobs among ``job_ids``, per backend: what really ran where."""
    return {name: [j for j in backend.jobs() if j["id"] in job_ids] for name, backend in backends.items()}


def backend_job_ids(backends: Mapping[str, LocalBackend]) -> dict[str, set[str]]:
    """Every job id each backend holds now (the backends live for the whole session)."""
    return {name: {j["id"] for j in backend.jobs()} for name, backend in backends.items()}


def new_jobs(backends: Mapping[str, LocalBackend], before: Mapping[str, set[str]]) -> dict[str, list[dict]]:
    """Jobs created on each backend since ``before``: every job a run created, whatever the job table says."""
    return {name: [j for j in backend.jobs() if j["id"] not in before[name]] for name, backend in backends.items()}


def remote_job(backend: LocalBackend, job_id: str) -> dict[str, Any]:
    """``GET /jobs/{id}`` on the backend, as the test user: the job as the backend stored it (process graph)."""
    connection = openeo.connect(backend.url, auto_validate=False).authenticate_basic(BASIC_USER, BASIC_PASSWORD)
    return connection.job(job_id).describe()


def process_arguments(job: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of the process graph's result node (the UDP call ``ProcessBasedJobCreator`` builds)."""
    graph = job["process"]["process_graph"]
    (node,) = [n for n in graph.values() if n.get("result")]
    return node["arguments"]


def assert_batch_consistent(
    table: pd.DataFrame,
    backends: Mapping[str, LocalBackend],
    created: Mapping[str, Iterable[Mapping[str, Any]]],
    root: Path,
    *,
    finished_rows: Iterable[Any] | None = None,
) -> None:
    """The job table, the result folders and the backends' job lists agree row for row, without duplicates.

    ``created``: the jobs the run(s) created per backend (:func:`new_jobs`). ``finished_rows``: the rows that
    must have finished (default: all rows).
    """
    expected_finished = set(table.index if finished_rows is None else finished_rows)
    created_by_id = {job["id"]: (name, job) for name, jobs in created.items() for job in jobs}
    ids = table["id"].dropna()
    assert ids.is_unique, f"two rows hold the same job: {ids[ids.duplicated()].tolist()}"
    assert set(ids) == set(created_by_id), "every job the run created belongs to exactly one row (no duplicates)"
    for row_id, row in table.iterrows():
        if row_id not in expected_finished:
            continue
        job_id = row["id"]
        assert row["status"] == "finished", f"row {row_id!r}: {row['status']} ({row.get('error_message')})"
        assert row["results_state"] == "downloaded", f"row {row_id!r}"
        backend_name, job = created_by_id[job_id]
        assert row["backend_name"] == backend_name, f"row {row_id!r}: table and backend disagree on the backend"
        assert job["status"] == "finished" and job["start_count"] == 1, f"row {row_id!r}: {job}"
        job_dir = root / f"job_{job_id}"
        assert (job_dir / f"job_{job_id}.json").is_file(), f"row {row_id!r}: no metadata in {job_dir}"
        for name in RESULT_FILES:
            assert (job_dir / name).is_file(), f"row {row_id!r}: no {name} in {job_dir}"
        metadata = json.loads((job_dir / f"job_{job_id}.json").read_text())
        assert metadata["id"] == job_id
    folders = {p.name for p in root.iterdir()} if root.exists() else set()
    if "stac" in folders:  # the batch's STAC collection: it validates, and lists every finished row's job
        folders.remove("stac")
        (collection_dir,) = (root / "stac").iterdir()
        collection = assert_validates_offline(collection_dir / "collection.json")
        items = items_by_row(collection)
        for row_id in expected_finished:
            assert items[row_id].properties["openeo_provider:job_id"] == table.loc[row_id, "id"], f"row {row_id!r}"
    assert folders >= {f"job_{table.loc[r, 'id']}" for r in expected_finished}, "one result folder per finished row"
    assert folders <= {f"job_{job_id}" for job_id in ids}, "no result folder of a job the table does not hold"


def instances_with_a_row(tis: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The row groups' task instances (REST API dicts) that ran a row: not the unused instances (skipped) nor
    the one per backend that found no row left."""
    return [
        ti
        for ti in tis
        if ti["map_index"] >= 0 and ti["state"] != "skipped" and not holds_no_row(ti["rendered_map_index"])
    ]


def task_instances(run: Any) -> list[Any]:
    """The run's task instances as Airflow's metadata database has them (map index, rendered label, state)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id)
            .order_by(TaskInstance.task_id, TaskInstance.map_index)
            .all()
        )
        session.expunge_all()
    return tis


def run_labels(run: Any, task: str = "job") -> dict[str, str | None]:
    """``task_id[map_index] -> rendered_map_index`` of one task (``job`` or ``results``) of the run's row groups
    (``run_<backend>``), for the instances that ran a row: not the unused ones (skipped) nor the one per backend
    that found no row left and skipped them."""
    return {
        f"{ti.task_id}[{ti.map_index}]": ti.rendered_map_index
        for ti in task_instances(run)
        if ti.map_index >= 0
        and ".run_" in ti.task_id
        and ti.task_id.endswith(f".{task}")
        and ti.state != "skipped"
        and not holds_no_row(ti.rendered_map_index)
    }


# -- the configurable test DAG tests/dags/test_dag_batch_pipeline.py (for tests/system/batch/test_task_groups.py) --

BATCH_DAG_FILE = REPO / "tests" / "dags" / "test_dag_batch_pipeline.py"


@pytest.fixture
def batch_env(example_env: dict[str, LocalBackend], tmp_path: Path) -> dict[str, Any]:
    """Settings for the test batch DAG: its own SQLite job db and results folder; extend and pass to run_batch."""
    return {"sqlite_path": str(tmp_path / "jobs.db"), "root_dir": str(tmp_path / "results"), "poll_interval": 0.3}


def load_batch_dag(monkeypatch: pytest.MonkeyPatch, config: Mapping[str, Any]) -> ModuleType:
    """Import the test batch DAG file afresh with ``config`` in ``OPENEO_TEST_BATCH`` (dag.test re-parses it too)."""
    import importlib.util

    monkeypatch.setenv("OPENEO_TEST_BATCH", json.dumps(config))
    spec = importlib.util.spec_from_file_location("test_dag_batch_pipeline", BATCH_DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batch_table(config: Mapping[str, Any]) -> OpenEOJobDbHook:
    return OpenEOJobDbHook(table=config.get("table", "test_dag_batch_pipeline"), sqlite_path=config["sqlite_path"])


def xcom_of(run: Any, task_id: str, map_index: int = -1) -> Any:
    """A task's return value in the run, from Airflow's metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = (
            session.query(XComModel.value)
            .filter(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key == "return_value",
            )
            .scalar()
        )
    return XComModel.deserialize_value(SimpleNamespace(value=value)) if value is not None else None


def triggered_runs(dag_id: str, *, since: Any) -> list[Any]:
    """Runs of ``dag_id`` that an operator (``next_run``) triggered after ``since``; removed from the shared
    metadata database once read, so no queued run lingers for a later scheduler."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = (
            session.query(DagRun)
            .filter(DagRun.dag_id == dag_id, DagRun.run_type == "operator_triggered", DagRun.queued_at >= since)
            .all()
        )
        found = [SimpleNamespace(run_id=r.run_id, conf=dict(r.conf or {}), state=r.state) for r in runs]
        for r in runs:
            session.delete(r)
    return found
