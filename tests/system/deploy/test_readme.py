"""The README's code as written, on a live Airflow, outside the fault rig's conveniences.

The first example ("A batch in one DAG") runs verbatim with the shell lines the README gives to try it: two
`make local-backend` servers on ports 8081 and 8082 (skipped when those ports are taken), connections by
`airflow connections add`, pools by the pools command.

The "From MultiBackendJobManager" section's two files (the MBJM script ``ndvi_jobs.py`` and the DAG
``dags/ndvi_years.py``) go into a fresh Airflow's DAG folder as the README prints them, with one change: the
README's ``/data/ndvi`` becomes a folder of the test. The pools come from the README's own shell lines, the
connections through Airflow's REST API, as a user makes them in the UI. One backend is down for the whole
batch: the README promises that a row runs on whichever backend has a free slot, so every row must finish on
the other one, one job each, without the user doing anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from openeo.extra.job_management import create_job_db

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from deploy.live_airflow import AirflowSettings, LiveAirflow
from local_backend.credentials import BASIC_PASSWORD, BASIC_USER
from local_backend.launcher import LocalBackend, start_local_backend
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

README = REPO / "README.md"
#: The README's data folder; a user's machine has it, the test puts it under its own folder.
README_DATA = "/data/ndvi"
YEARS = [2020, 2021, 2022, 2023]  # the MBJM script's rows


def readme_section(heading: str) -> str:
    """The README's text from ``## heading`` to the next ``## ``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def block_starting(blocks: list[str], first_line: str) -> str:
    (block,) = [b for b in blocks if b.splitlines()[0].strip() == first_line]
    return block


def run_shell(block: str, *, cwd: Path, env: dict[str, str]) -> str:
    """A README shell block, as a user pastes it (the venv's ``python`` and ``airflow`` first on PATH)."""
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"{block}\n{done.stdout}{done.stderr}"
    return done.stdout


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_first_example_runs_as_written() -> None:
    section = readme_section("A batch in one DAG")
    (dag_file,) = code_blocks(section, "python")
    try_it, pools = (
        next(b for b in code_blocks(section, "bash") if marker in b) for marker in ("make local-backend", ".pools")
    )
    ports = [int(p) for p in re.findall(r"PORT=(\d+)", try_it)]
    taken = [p for p in ports if port_taken(p)]
    if taken:
        pytest.skip(f"the README's local backends need ports {ports}; {taken} already in use here")
    base = REPO / "build" / "test-readme" / uuid.uuid4().hex[:8]
    dags = base / "dags"
    dags.mkdir(parents=True)
    (dags / "ndvi_batch.py").write_text(dag_file, encoding="utf-8")

    airflow = LiveAirflow(base / "airflow-home", AirflowSettings(dags_folder=dags, paused_at_creation=True))
    servers: subprocess.Popen[bytes] | None = None
    try:
        airflow.prepare()
        airflow.start(wait=False)
        env = {**airflow.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        # The "try it" lines as one shell whose background `make local-backend` jobs live on after it: run it in a
        # session of its own, ended as a whole at the end.
        servers = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", f"{try_it}\nwait"], cwd=REPO, env=env, start_new_session=True
        )
        for port in ports:
            deadline = time.monotonic() + 180
            while True:
                assert servers.poll() is None, "the README's shell lines failed (see the test output)"
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"http://127.0.0.1:{port}/_static/processes/ndvi_timeseries.json", timeout=5).ok:
                        break
                assert time.monotonic() < deadline, f"no local backend with the UDP on port {port}"
                time.sleep(1)
        run_shell(pools, cwd=base, env=airflow.env)
        airflow.wait_healthy()
        run_id = airflow.trigger_dag("ndvi_batch")
        run = airflow.wait_for_run("ndvi_batch", run_id, timeout=420)
        states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in airflow.task_instances("ndvi_batch", run_id)}
        assert run["state"] == "success", states
    finally:
        airflow.stop()
        if servers is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(servers.pid, signal.SIGTERM)
            servers.wait(timeout=60)

    home = base / "airflow-home"
    db = OpenEOJobDbHook(table="ndvi_batch", sqlite_path=str(home / "openeo_jobs.db"))  # the defaults, by DAG id
    try:
        table = db.read()
    finally:
        db.dispose()
    assert len(table) == 2 and set(table["status"]) == {"finished"}, table[["status", "error_message"]]
    assert table["id"].nunique() == 2
    for job_id in table["id"]:  # root_dir="results": under $AIRFLOW_HOME, whatever the workers' directory
        assert (home / "results" / f"job_{job_id}" / "job-results.json").exists()


@pytest.fixture(scope="module")
def readme_backends() -> Iterator[dict[str, LocalBackend]]:
    backends = {name: start_local_backend(name=name, queue_seconds=0.5, run_seconds=2.0) for name in ("foo", "bar")}
    try:
        yield backends
    finally:
        for backend in backends.values():
            backend.stop()


def test_mbjm_migration_from_the_readme_runs_with_one_backend_down(
    readme_backends: dict[str, LocalBackend],
) -> None:
    base = REPO / "build" / "test-readme" / uuid.uuid4().hex[:8]
    data = base / "data" / "ndvi"
    dags = base / "dags"
    for folder in (data, dags):
        folder.mkdir(parents=True)

    migration = code_blocks(readme_section("From MultiBackendJobManager"), "python")
    (dags / "ndvi_jobs.py").write_text(block_starting(migration, "# ndvi_jobs.py"), encoding="utf-8")
    dag_file = block_starting(migration, "# dags/ndvi_years.py")
    assert README_DATA in dag_file, "the README's DAG no longer reads /data/ndvi: update this test"
    (dags / "ndvi_years.py").write_text(dag_file.replace(README_DATA, str(data)), encoding="utf-8")
    # The job database the MBJM script's create_job_db wrote, as the README says.
    create_job_db(data / "jobs.csv", df=pd.DataFrame({"year": YEARS}), on_exists="skip")

    airflow = LiveAirflow(base / "airflow-home", AirflowSettings(dags_folder=dags, paused_at_creation=True))
    try:
        airflow.prepare()
        airflow.start(wait=False)
        # The pools, by the README's own two shell lines, run where a user would run them.
        (pools_block,) = [b for b in code_blocks(readme_section("A batch in one DAG"), "bash") if ".pools" in b]
        made = run_shell(pools_block, cwd=base, env=airflow.env)
        assert "openeo_foo" in made and "openeo_bar" in made, made
        airflow.wait_healthy()
        for name, backend in readme_backends.items():
            airflow.set_connection(
                f"openeo_{name}",
                "openeo",
                host=backend.url,
                login=BASIC_USER,
                password=BASIC_PASSWORD,
                extra={"auth_method": "basic"},
            )

        readme_backends["foo"].stop()  # down for the whole batch
        run_id = airflow.trigger_dag("ndvi_years")
        run = airflow.wait_for_run("ndvi_years", run_id, timeout=420)
        states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in airflow.task_instances("ndvi_years", run_id)}
        assert run["state"] == "success", states
    finally:
        airflow.stop()

    db = OpenEOJobDbHook(table="ndvi_years", sqlite_path=str(base / "airflow-home" / "openeo_jobs.db"))
    try:
        table = db.read()
    finally:
        db.dispose()
    assert sorted(table["year"].astype(int)) == YEARS
    assert set(table["status"]) == {"finished"}, table[["year", "status", "error_message"]]
    assert set(table["backend_name"]) == {"bar"}, "a row ran on the backend that is down"
    jobs = [job for job in readme_backends["bar"].jobs() if str(job.get("title", "")).startswith("NDVI max ")]
    assert sorted(job["title"] for job in jobs) == [f"NDVI max {year} on bar" for year in YEARS]
    assert sorted(table["id"]) == sorted(job["id"] for job in jobs), "one job per row, no duplicate"
    for job_id in table["id"]:
        stored = {p.name for p in (data / "results" / f"job_{job_id}").iterdir()}
        assert {"result.tif", "job-results.json", f"job_{job_id}.json"} <= stored, stored
