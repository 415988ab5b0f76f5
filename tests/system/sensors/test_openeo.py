"""OpenEOJobSensor in real DAG runs (``dag.test()``) against the local openEO backend, deferred and poking."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import openeo
import pytest
from airflow.utils.state import DagRunState, TaskInstanceState

from airflow_provider_openeo.hooks.openeo import OpenEOHook
from airflow_provider_openeo.wait.job_waiting import JOB_URL_XCOM_KEY
from local_backend.launcher import BASIC_PASSWORD
from tests.fixtures.local_backend import backend_conn_env

CONN_ID = "openeo_sensor_test"
ADD = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}


@pytest.fixture
def connection(openeo_backend, monkeypatch, airflow_db) -> openeo.Connection:
    backend_conn_env(monkeypatch, CONN_ID, openeo_backend)
    return OpenEOHook(CONN_ID).get_conn()


def start_job(connection: openeo.Connection, *, run: float = 0.5, fail: bool = False) -> str:
    options = {"local_backend": {"queue_seconds": 0.2, "run_seconds": run, "fail": fail}}
    job = connection.create_job(ADD, title="sensor test", job_options=options)
    job.start()
    return job.job_id


@pytest.fixture
def run_sensor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run a one-sensor DAG with dag.test(); return the run and the sensor's XComs.

    dag.test() only runs DAGs it finds in a DAG bundle, so each DAG is written to a bundle of this test's own.
    """
    bundle = tmp_path / "dags"
    bundle.mkdir()
    config = [
        {
            "name": "sensor_tests",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(bundle), "refresh_interval": 0},
        }
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(config))

    def run(dag_id: str, sensor_kwargs: str) -> tuple[Any, dict[str, Any]]:
        path = bundle / f"{dag_id}.py"
        path.write_text(DAG_TEMPLATE.format(dag_id=dag_id, conn_id=CONN_ID, sensor_kwargs=sensor_kwargs))
        spec = importlib.util.spec_from_file_location(dag_id, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dag_run = module.dag.test()
        return dag_run, _xcoms(dag_run)

    return run


DAG_TEMPLATE = """
import datetime as dt

from airflow.sdk import DAG

from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.sensors.openeo import OpenEOJobSensor

with DAG({dag_id!r}, schedule=None, start_date=dt.datetime(2024, 1, 1), catchup=False) as dag:
    OpenEOJobSensor(task_id="wait", openeo_conn_id={conn_id!r}, {sensor_kwargs})
"""


def _xcoms(dag_run: Any) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id="wait")
        return {row.key: XComModel.deserialize_value(row) for row in rows}


def _state(dag_run: Any) -> TaskInstanceState:
    return dag_run.get_task_instance("wait").state


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "poke"])
def test_sensor_waits_for_a_finished_job_and_runs_on_job_done(connection, run_sensor, tmp_path: Path, deferrable):
    job_id = start_job(connection)
    dag_run, xcoms = run_sensor(
        f"sensor_finished_{'deferred' if deferrable else 'poke'}",
        # job_id is templated: here from the task's params
        f"job_id='{{{{ params.job_id }}}}', params={{'job_id': {job_id!r}}}, deferrable={deferrable}, "
        f"poll_interval=0.3, handler=OpenEOJobHandler(root_dir={str(tmp_path)!r})",
    )
    assert dag_run.state == DagRunState.SUCCESS
    assert xcoms[JOB_URL_XCOM_KEY].endswith(f"/jobs/{job_id}")
    result = xcoms["return_value"]
    assert result["status"] == "finished" and result["job_id"] == job_id
    assert BASIC_PASSWORD not in json.dumps(xcoms)  # no credential in XCom
    job_dir = tmp_path / f"job_{job_id}"
    assert (job_dir / "job-results.json").is_file() and (job_dir / f"job_{job_id}.json").is_file()


def test_deferred_sensor_runs_on_job_error_and_fails(connection, run_sensor, tmp_path: Path):
    job_id = start_job(connection, fail=True)
    dag_run, xcoms = run_sensor(
        "sensor_error_deferred",
        f"job_id={job_id!r}, deferrable=True, poll_interval=0.3, handler=OpenEOJobHandler(root_dir={str(tmp_path)!r})",
    )
    assert dag_run.state == DagRunState.FAILED and _state(dag_run) == TaskInstanceState.FAILED
    assert (tmp_path / f"job_{job_id}" / f"job_{job_id}_errors.json").is_file()
    assert JOB_URL_XCOM_KEY in xcoms  # pushed before waiting, so the link works on a failed task too


def test_poking_sensor_cancels_a_job_running_too_long(connection, run_sensor, openeo_backend):
    job_id = start_job(connection, run=60)
    dag_run, _ = run_sensor(
        "sensor_cancel_poke", f"job_id={job_id!r}, deferrable=False, poll_interval=0.3, cancel_running_job_after=0.5"
    )
    assert _state(dag_run) == TaskInstanceState.FAILED
    assert connection.job(job_id).status() == "canceled"
    assert openeo_backend.stats()["DELETE /jobs/{job_id}/results"] == 1


def test_deferred_sensor_enforces_cancel_running_job_after(connection, run_sensor):
    job_id = start_job(connection, run=60)
    dag_run, _ = run_sensor(
        "sensor_cancel_deferred", f"job_id={job_id!r}, deferrable=True, poll_interval=0.3, cancel_running_job_after=0.5"
    )
    assert _state(dag_run) == TaskInstanceState.FAILED
    assert connection.job(job_id).status() == "canceled"
