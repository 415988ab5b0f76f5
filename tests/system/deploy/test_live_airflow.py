"""The provider on a live Airflow (scheduler, triggerer, dag-processor, API server as separate processes).

The slow test runs ``make demo``'s code path with ``--stop-after``: two local backends, SQLite metadata and job
databases, LocalExecutor, a 50-row two-backend batch of the process-based example triggered through the REST API.
The fast tests cover what the demo and the harness decide on their own: the config, the PID file, progress.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest

from deploy.demo import (
    DEFAULT_CONFIG,
    DemoConfigError,
    format_summary,
    load_config,
    parse_config,
    progress_by_backend,
    run_demo,
    status_counts,
)
from deploy.live_airflow import AirflowSettings, LiveAirflow, ProcessRecord, ProcessRegistry
from tests.conftest import REPO
from tests.system.example_dags.conftest import assert_batch_consistent, instances_with_a_row

BACKENDS = {"foo": {"parallel_jobs": 2}, "bar": {"parallel_jobs": 2}}


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A demo work directory under build/ (an AIRFLOW_HOME in tmp would do too, but build/ keeps the logs)."""
    path = REPO / "build" / "test-live-airflow" / uuid.uuid4().hex[:8]
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- config --------------------------------------------------------------------------------------------------


def test_shipped_config_makes_the_rows_it_promises() -> None:
    from example_openeo_process_based import date_windows

    config = load_config(DEFAULT_CONFIG)
    assert config.rows == 50
    assert len(date_windows({"params": config.params})) == config.rows


@pytest.mark.parametrize(
    ("params", "rows"),
    [({"start": "2024-01-15", "frequency": "MS"}, 7), ({"start": "2024-03-01", "frequency": "W"}, 3)],
)
def test_rows_become_an_end_date_the_dag_agrees_with(params: dict[str, str], rows: int) -> None:
    from example_openeo_process_based import date_windows

    config = parse_config({"rows": rows, "params": params, "backends": BACKENDS})
    windows = date_windows({"params": config.params})
    assert len(windows) == rows
    assert windows["temporal_extent"].iloc[-1][1] == config.params["end"]


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"rows": 5, "backends": BACKENDS, "pool_size": 3}, "pool_size"),
        ({"rows": 5, "backends": {"foo": {}}}, "exactly the entries ['foo', 'bar']"),
        ({"rows": 5, "backends": {**BACKENDS, "bar": {"run_seconds": -1}}}, "backends.bar"),
        ({"rows": 5, "backends": {**BACKENDS, "bar": {"queue_secs": 1}}}, "queue_secs"),
        ({"rows": 5, "backends": {**BACKENDS, "bar": {"parallel_jobs": 0}}}, "backends.bar.parallel_jobs"),
        ({"rows": 5, "backends": {**BACKENDS, "bar": {"parallel_jobs": 3}}}, "must be equal"),
        ({"rows": 5, "params": {"end": "2024-02-01"}, "backends": BACKENDS}, "either 'rows' or 'params.end'"),
        ({"rows": 0, "backends": BACKENDS}, "'rows'"),
        ({"params": {"start": "2024-02-01", "end": "2024-01-01"}, "backends": BACKENDS}, "no windows"),
        ({"rows": 5, "backends": BACKENDS, "poll_interval": "1"}, "'poll_interval'"),
    ],
)
def test_bad_config_names_the_entry(raw: dict, names: str) -> None:
    with pytest.raises(DemoConfigError, match="demo config") as info:
        parse_config(raw)
    assert names in str(info.value)


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    path.write_text("{not json")
    with pytest.raises(DemoConfigError, match=str(path)):
        load_config(path)


# -- progress and summary ------------------------------------------------------------------------------------


def test_progress_and_counts_come_from_the_job_table() -> None:
    table = pd.DataFrame(
        {
            "backend_name": ["foo", "foo", "foo", "bar", None],
            "status": ["finished", "running", "error", "queued", "not_started"],
        }
    )
    assert progress_by_backend(table) == {
        "foo": {"total": 3, "done": 2, "active": 1},
        "bar": {"total": 1, "done": 0, "active": 1},
        "(unassigned)": {"total": 1, "done": 0, "active": 0},
    }
    assert status_counts(table)["foo"] == {"error": 1, "finished": 1, "running": 1}


# -- the harness's configuration ----------------------------------------------------------------------------


def test_services_get_our_settings_not_the_callers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__UNIT_TEST_MODE", "True")  # what the test session itself runs with
    monkeypatch.setenv("AIRFLOW_CONN_OPENEO_FOO", '{"conn_type": "openeo"}')
    monkeypatch.setenv("OPENEO_EXAMPLE_UDP_URL", "https://elsewhere.example/udp.json")
    airflow = LiveAirflow(tmp_path / "home", AirflowSettings(api_port=12345, env={"OPENEO_EXAMPLE_POLL_INTERVAL": "1"}))
    env = airflow.env
    assert not {"AIRFLOW__CORE__UNIT_TEST_MODE", "AIRFLOW_CONN_OPENEO_FOO", "OPENEO_EXAMPLE_UDP_URL"} & set(env)
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:12345/execution/"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'home' / 'airflow.db'}"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "4" and env["OPENEO_EXAMPLE_POLL_INTERVAL"] == "1"
    assert airflow.url == "http://127.0.0.1:12345"


# -- the PID file --------------------------------------------------------------------------------------------

_PARENT_WITH_DETACHED_CHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def _wait_for_line(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.strip():
            return text.strip()
        time.sleep(0.05)
    raise AssertionError(f"nothing written to {path}")


def test_registry_stops_the_whole_tree_from_another_process(tmp_path: Path) -> None:
    """Like an Airflow task process, the grandchild leaves the process group; stop() still ends it."""
    registry = ProcessRegistry(tmp_path / "processes.json")
    parent = registry.spawn(
        "parent", [sys.executable, "-c", _PARENT_WITH_DETACHED_CHILD], env={}, cwd=tmp_path, log=tmp_path / "p.log"
    )
    child = psutil.Process(int(_wait_for_line(tmp_path / "p.log")))
    assert child.is_running()
    stopped = ProcessRegistry(tmp_path / "processes.json").stop(grace=5)  # a fresh handle: `make demo-stop`
    assert stopped == ["parent"]
    assert parent.wait(timeout=5) is not None
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert not (tmp_path / "processes.json").exists()


def test_registry_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = tmp_path / "processes.json"
        created = psutil.Process(bystander.pid).create_time()
        stale = ProcessRecord("old", bystander.pid, created - 100.0, "old.log")  # the PID once was someone else's
        path.write_text(json.dumps({"processes": [stale.__dict__]}))
        assert ProcessRegistry(path).stop(grace=1) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def _most_at_once(jobs: list[dict]) -> int:
    """Most jobs queued or running at the same moment on one backend."""
    edges = sorted(
        [(job["times"]["queued"], 1) for job in jobs] + [(job["times"]["finished"], -1) for job in jobs],
        key=lambda edge: (edge[0], edge[1]),  # an end and a start at the same instant do not overlap
    )
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


# -- the live run --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_demo_runs_a_50_row_batch_on_a_live_airflow(workdir: Path) -> None:
    # Shorter jobs and one more slot per backend than the demo: the same path, inside the time budget.
    fast = {"parallel_jobs": 3, "queue_seconds": 0.5, "run_seconds": 2.5}
    config = load_config(DEFAULT_CONFIG, rows=50, api_port=None, backends={"foo": fast, "bar": fast})
    out = io.StringIO()
    report = run_demo(config, workdir, stop_after=True, out=out)
    print(out.getvalue(), format_summary(report), sep="\n")

    assert report.state == "success", out.getvalue()
    table = report.table
    assert len(table) == 50
    assert set(table["backend_name"]) == {"foo", "bar"}
    # job table, result folders and the backends' own job lists agree row for row, no duplicate job anywhere
    assert_batch_consistent(table, {}, report.backend_jobs, report.results_dir)
    assert sum(len(jobs) for jobs in report.backend_jobs.values()) == 50

    # the pools (include_deferred) held each backend to parallel_jobs jobs at a time, by the backend's own clock
    for backend, jobs in report.backend_jobs.items():
        assert 1 <= _most_at_once(jobs) <= fast["parallel_jobs"], backend

    mapped = [ti for ti in report.task_instances if ti["map_index"] >= 0]
    assert {ti["state"] for ti in mapped} <= {"success", "skipped"}  # unused instances are skipped
    mapped = instances_with_a_row(mapped)
    assert len(mapped) == 2 * 50 and {ti["state"] for ti in mapped} == {"success"}  # a job and a results task
    for backend in ("foo", "bar"):
        rows = table[table["backend_name"] == backend]
        for task in ("job", "results"):
            suffix = f".run_{backend}.{task}"
            labels = sorted(ti["rendered_map_index"] for ti in mapped if ti["task_id"].endswith(suffix))
            assert labels == sorted(f"{row_id}: {title}" for row_id, title in rows["title"].items()), suffix
    summary = next(ti for ti in report.task_instances if ti["task_id"].endswith(".summary"))
    assert summary["state"] == "success"

    # --stop-after: every process it started is gone, and so is the PID file
    assert not (workdir / "processes.json").exists()
    for name, (pid, created) in report.processes.items():
        alive = psutil.pid_exists(pid) and abs(psutil.Process(pid).create_time() - created) < 1
        assert not alive, f"{name} (pid {pid}) still runs"
