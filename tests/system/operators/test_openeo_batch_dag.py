"""Whole DAG runs (``dag.test()``, the real task runner): bad rows among good ones, credentials, start + sensor.

- A three-row ``openeo_job_batch``: one good row, one whose ``start_job`` raises, one pinned to an unknown
  backend. The good row finishes; each bad row says what is wrong with it; the backend holds one job.
- The same run with basic auth and with OIDC client credentials: no password, client secret or token in the
  task logs, any XCom of the run, any cell of the job table, or any file written to ``root_dir``.
- ``OpenEOStartJobOperator`` returns the job id; ``OpenEOJobSensor`` waits on it and finishes the row.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from airflow_provider_openeo.batch.row_dispatch import parse_slot
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from local_backend.launcher import BASIC_PASSWORD, OIDC_CLIENT_SECRET, LocalBackend
from tests.conftest import AIRFLOW_HOME, REPO
from tests.fixtures.local_backend import backend_conn_env
from tests.system.example_dags.conftest import task_instances

DAGS = REPO / "tests" / "dags"
CONN_ID = "openeo_row_ops_dag"
#: What a bearer token looks like: the OIDC access tokens here are JWTs; the basic token is base64("alice").
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")
SECRETS = {"basic": (BASIC_PASSWORD, "YWxpY2U="), "oidc_client_credentials": (OIDC_CLIENT_SECRET,)}


def load_dag(file_name: str, env_name: str, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import a DAG file of tests/dags with its configuration in the environment (dag.test() re-parses it)."""
    monkeypatch.setenv(env_name, json.dumps(config))
    spec = importlib.util.spec_from_file_location(file_name, DAGS / f"{file_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def xcom_values(run: Any) -> list[str]:
    """Every XCom of the run, serialised as stored in Airflow's database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id).all()
        return [f"{x.task_id}[{x.map_index}].{x.key}={json.dumps(x.value, default=str)}" for x in rows]


def files_text(root: Path, *, newer_than: float = 0.0) -> str:
    if not root.exists():
        return ""
    texts = []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_mtime >= newer_than:
            texts.append(f"{path}: {path.read_bytes().decode('utf-8', errors='replace')}")
    return "\n".join(texts)


def leaks(text: str, secrets: tuple[str, ...]) -> list[str]:
    return [s for s in secrets if s in text] + JWT.findall(text)


@pytest.fixture
def batch_world(
    openeo_backend: LocalBackend, airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    openeo_backend.configure(queue_seconds=0.2, run_seconds=0.5)
    return {"backend": openeo_backend, "tmp": tmp_path, "prefix": f"b{uuid.uuid4().hex[:8]}", "started": time.time()}


@pytest.mark.parametrize("auth_method", ["basic", "oidc_client_credentials"])
def test_bad_rows_fail_alone_and_no_credential_is_written_anywhere(
    batch_world: dict[str, Any], auth_method: str, monkeypatch: pytest.MonkeyPatch, capfd, caplog
):
    backend, tmp, prefix = batch_world["backend"], batch_world["tmp"], batch_world["prefix"]
    backend_conn_env(monkeypatch, CONN_ID, backend, auth_method)
    titles = [f"{prefix}-good", f"{prefix}-explode", f"{prefix}-pinned"]
    source = tmp / "rows.parquet"
    pd.DataFrame({"title": titles, "backend_name": [None, None, "nowhere"]}).to_parquet(source)
    config = {
        "conn_id": CONN_ID,
        "source": str(source),
        "table": f"rows_{prefix}",
        "sqlite_path": str(tmp / "jobs.db"),
        "root_dir": str(tmp / "results"),
    }
    module = load_dag("test_dag_row_failures", "OPENEO_TEST_ROW_FAILURES", config, monkeypatch)

    run = module.dag.test()

    table = OpenEOJobDbHook(table=config["table"], sqlite_path=config["sqlite_path"]).read()
    good, exploded, pinned = (table.loc[i] for i in range(3))
    assert (good["status"], good["results_state"]) == ("finished", "downloaded")
    assert exploded["status"] == "start_failed" and exploded["id"] is None
    assert exploded["error_message"].startswith(f"row 1 of job table {config['table']!r}: start_job raised ValueError")
    assert f"field 'title' is '{prefix}-explode'" in exploded["error_message"]
    assert pinned["status"] == "start_failed"
    assert pinned["error_message"] == "row 2: field 'backend_name' is 'nowhere', not one of the backends (local)"
    jobs = [job for job in backend.jobs() if (job.get("title") or "").startswith(prefix)]
    assert [(job["title"], job["id"]) for job in jobs] == [(titles[0], good["id"])], "one job, for the good row"

    states = {(ti.task_id, ti.map_index): ti.state for ti in task_instances(run)}
    # each row's instance is the one that took it (its dispatch_slot); the third instance found nothing left
    (_, good_index), (_, exploded_index) = (parse_slot(table.loc[i, "dispatch_slot"]) for i in (0, 1))
    assert states[("openeo_job_batch.run_local.job", good_index)] == "success"
    assert states[("openeo_job_batch.run_local.results", good_index)] == "success"
    assert states[("openeo_job_batch.run_local.job", exploded_index)] == "failed"
    assert states[("openeo_job_batch.run_local.results", exploded_index)] == "upstream_failed"
    assert states[("openeo_job_batch.summary", -1)] == "success"
    # A failed row fails the run (so Airflow's alerts fire), after the summary has reported everything.
    assert states[("openeo_job_batch.all_rows_succeeded", -1)] == "upstream_failed"
    assert run.state == "failed"
    labels = {
        ti.map_index: ti.rendered_map_index
        for ti in task_instances(run)
        if ti.map_index >= 0 and ti.task_id.endswith(".job")
    }
    assert labels[good_index] == f"0: {titles[0]}"
    assert labels[exploded_index] == f"1: {titles[1]}"

    captured = capfd.readouterr()
    places = {
        "task output": captured.out + captured.err,
        "log records": caplog.text,
        "log files": files_text(AIRFLOW_HOME / "logs", newer_than=batch_world["started"]),
        "XCom": "\n".join(xcom_values(run)),
        "job table": "\n".join(str(cell) for cell in table.astype(str).to_numpy().ravel()),
        "results": files_text(tmp / "results"),
    }
    assert "Stored asset" in places["task output"] + places["log records"], "the task logs were captured"
    assert any("return_value" in x for x in xcom_values(run))
    found = {where: leaks(text, SECRETS[auth_method]) for where, text in places.items()}
    assert found == {where: [] for where in places}


def test_per_row_job_options_reach_each_rows_job_and_a_refused_option_fails_only_its_row(
    batch_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
):
    backend, tmp, prefix = batch_world["backend"], batch_world["tmp"], batch_world["prefix"]
    backend_conn_env(monkeypatch, CONN_ID, backend)
    titles = [f"{prefix}-plain", f"{prefix}-big", f"{prefix}-typo"]
    options = [None, json.dumps({"executor-memory": "8g", "executor-cores": 4}), json.dumps({"executor-memroy": "8g"})]
    source = tmp / "rows.parquet"
    pd.DataFrame({"title": titles, "job_options": options}).to_parquet(source)
    config = {
        "conn_id": CONN_ID,
        "source": str(source),
        "table": f"options_{prefix}",
        "sqlite_path": str(tmp / "jobs.db"),
        "root_dir": str(tmp / "results"),
    }
    module = load_dag("test_dag_job_options", "OPENEO_TEST_JOB_OPTIONS", config, monkeypatch)

    run = module.dag.test()

    table = OpenEOJobDbHook(table=config["table"], sqlite_path=config["sqlite_path"]).read()
    plain, big, typo = (table.loc[i] for i in range(3))
    assert plain["status"] == big["status"] == "finished"
    assert typo["status"] == "start_failed" and typo["id"] is None
    assert typo["error_message"].startswith(
        f"row 2 of job table {config['table']!r}: job option 'executor-memroy' is not one the backend knows"
    )
    jobs = {job["title"]: job for job in backend.jobs() if (job.get("title") or "").startswith(prefix)}
    assert sorted(jobs) == sorted(titles[:2]), "no job for the refused row"
    fast = module.BATCH_OPTIONS["local_backend"]
    assert jobs[titles[0]]["job_options"] == {"driver-memory": "1g", "executor-memory": "2g", "local_backend": fast}
    assert jobs[titles[1]]["job_options"] == {
        "driver-memory": "1g",
        "executor-memory": "8g",
        "executor-cores": 4,
        "local_backend": fast,
    }
    assert (jobs[titles[0]]["id"], jobs[titles[1]]["id"]) == (plain["id"], big["id"])
    assert run.state == "failed", "a failed row fails the run, after the others finished"


def test_failure_policy_retries_out_of_memory_with_more_memory_and_gives_up_after_max_attempts(
    batch_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
):
    """The default failure policy under ``dag.test()``: an out-of-memory row (2g given, 3g needed) is retried once
    with 3g and finishes; a row that always times out gets 3 jobs and gives up; an invalid graph gets 1 job."""
    backend, tmp, prefix = batch_world["backend"], batch_world["tmp"], batch_world["prefix"]
    backend_conn_env(monkeypatch, CONN_ID, backend)
    fast = {"queue_seconds": 0.2, "run_seconds": 0.5}
    titles = [f"{prefix}-oom", f"{prefix}-timeout", f"{prefix}-graph"]
    local = [{"min_executor_memory": "3g"}, {"fail_category": "timeout"}, {"fail_category": "invalid_process_graph"}]
    options = [json.dumps({"local_backend": {**fast, **extra}}) for extra in local]
    source = tmp / "rows.parquet"
    pd.DataFrame({"title": titles, "job_options": options}).to_parquet(source)
    config = {
        "conn_id": CONN_ID,
        "source": str(source),
        "table": f"policy_{prefix}",
        "sqlite_path": str(tmp / "jobs.db"),
        "root_dir": str(tmp / "results"),
    }
    module = load_dag("test_dag_job_options", "OPENEO_TEST_JOB_OPTIONS", config, monkeypatch)

    run = module.dag.test()

    table = OpenEOJobDbHook(table=config["table"], sqlite_path=config["sqlite_path"]).read()
    oom, timeout, graph = (table.loc[i] for i in range(3))
    jobs: dict[str, list[dict[str, Any]]] = {}
    for job in backend.jobs():
        jobs.setdefault(job.get("title") or "", []).append(job)
    assert oom["status"] == "finished" and oom["attempt"] == 1
    assert [h["error_category"] for h in oom["job_history"]] == ["out_of_memory"]
    assert [job["job_options"]["executor-memory"] for job in jobs[titles[0]]] == ["2g", "3g"]
    assert timeout["status"] == "error" and timeout["error_category"] == "timeout" and timeout["attempt"] == 2
    assert [(h["error_category"], h["retry"]) for h in timeout["job_history"]] == [("timeout", "failure_policy")] * 2
    assert timeout["error_message"].endswith("(timeout: gave up after 3 attempt(s) (max_attempts=3))")
    assert len(jobs[titles[1]]) == 3 and {job["status"] for job in jobs[titles[1]]} == {"error"}
    assert graph["status"] == "error" and graph["error_category"] == "invalid_process_graph"
    assert graph["job_history"] == [] and len(jobs[titles[2]]) == 1
    assert run.state == "failed"
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        (summary,) = [
            x.value
            for x in session.query(XComModel).filter(XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id)
            if x.task_id == "openeo_job_batch.summary" and x.key == "return_value"
        ]
    summary = json.loads(summary) if isinstance(summary, str) else summary
    assert summary["failures"] == {
        "error_categories": {"invalid_process_graph": 1, "timeout": 1},
        "retried_jobs": {"out_of_memory": 1, "timeout": 2},
        "retried_rows": 2,
        "retried_then_finished": 1,
        "gave_up": 1,
        "not_retried": 1,
    }


def test_start_operator_then_sensor_on_its_job_id(
    batch_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    backend, prefix = batch_world["backend"], batch_world["prefix"]
    backend_conn_env(monkeypatch, CONN_ID, backend)
    config = {
        "conn_id": CONN_ID,
        "table": f"start_{prefix}",
        "sqlite_path": str(tmp_path / "jobs.db"),
        "root_dir": str(tmp_path / "results"),
    }
    db = OpenEOJobDbHook(table=config["table"], sqlite_path=config["sqlite_path"])
    db.initialize_from_df(pd.DataFrame({"title": [f"{prefix}-0"]}))
    module = load_dag("test_dag_start_then_sensor", "OPENEO_TEST_START_SENSOR", config, monkeypatch)

    run = module.dag.test()

    assert run.state == "success"
    [job] = [job for job in backend.jobs() if job.get("title") == f"{prefix}-0"]
    xcoms = "\n".join(xcom_values(run))
    assert f'start[-1].return_value="{job["id"]}"' in xcoms
    row = db.get_row(0)
    assert (row["id"], row["status"], row["results_state"]) == (job["id"], "finished", "downloaded")
    assert (tmp_path / "results" / f"job_{job['id']}" / "result.tif").is_file()
