"""Several backends side by side, restarts, static process definitions, the launcher of `make local-backend`,
and launcher failure reports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import openeo
import pandas as pd
import pytest
import requests
from openeo.extra.job_management.process_based import ProcessBasedJobCreator

from local_backend.launcher import DRIVER_VENV, LocalBackend, LocalBackendError, start_local_backend
from tests.conftest import REPO
from tests.system.local_backend.conftest import connect, create_job, statuses_until_done


def test_two_backends_are_independent(openeo_backends: dict[str, LocalBackend]) -> None:
    foo, bar = openeo_backends["foo"], openeo_backends["bar"]
    assert foo.port != bar.port
    assert openeo.connect(foo.url).capabilities().get("title") == "Local openEO backend foo"
    assert openeo.connect(bar.url).capabilities().get("title") == "Local openEO backend bar"

    foo_job = create_job(connect(foo))
    bar_conn = connect(bar)
    assert foo_job.job_id not in {j["id"] for j in bar_conn.list_jobs(limit=None)}
    foo.configure(error_rate=1.0, endpoints=["GET /jobs"])
    bar_conn.list_jobs()  # faults are per backend
    assert foo.stats()["POST /jobs"] == 1
    assert "GET /jobs" not in foo.stats()
    assert foo.fault_stats() == {}
    assert bar.stats()["GET /jobs"] == 2


def test_process_definitions_are_served(openeo_backend: LocalBackend) -> None:
    definition = {
        "id": "double",
        "parameters": [{"name": "x", "description": "a number", "schema": {"type": "number"}}],
        "process_graph": {
            "m": {"process_id": "multiply", "arguments": {"x": {"from_parameter": "x"}, "y": 2}, "result": True}
        },
    }
    url = openeo_backend.add_process_definition("double", definition)
    assert url == f"{openeo_backend.url}/_static/processes/double.json"
    assert requests.get(url, timeout=10).json() == definition

    # openeo's ProcessBasedJobCreator fetches the definition client-side from the namespace URL.
    creator = ProcessBasedJobCreator(process_id="double", namespace=url)
    job = creator.start_job(row=pd.Series({"x": 21}), connection=connect(openeo_backend))
    process_graph = job.describe()["process"]["process_graph"]
    assert next(iter(process_graph.values()))["arguments"] == {"x": 21}

    openeo_backend.add_process_definition("broken", "this is <html>, not JSON")
    response = requests.get(f"{openeo_backend.url}/_static/processes/broken.json", timeout=10)
    assert (response.status_code, response.text) == (200, "this is <html>, not JSON")
    assert response.headers["Content-Type"].startswith("text/plain")
    assert requests.get(f"{openeo_backend.url}/_static/processes/unknown.json", timeout=10).status_code == 404
    openeo_backend.remove_process_definition("broken")
    assert requests.get(f"{openeo_backend.url}/_static/processes/broken.json", timeout=10).status_code == 404


def test_restart_keeps_jobs_port_and_settings() -> None:
    backend = start_local_backend(name="restart", queue_seconds=0, run_seconds=1.0)
    try:
        backend.configure(max_concurrent_jobs=5)
        conn = connect(backend)
        job = create_job(conn, queue_seconds=0, run_seconds=1.0)
        job.start()
        port, pid = backend.port, backend.pid

        backend.restart()
        assert (backend.port, backend.is_running()) == (port, True)
        assert backend.pid != pid
        assert backend.config()["max_concurrent_jobs"] == 5
        # The same connection (same token) keeps working and the job went on running meanwhile.
        assert statuses_until_done(job)[-1] == "finished"
        assert backend.stats().get("GET /jobs/{job_id}", 0) >= 1
        backend.reset_config()
        assert backend.config()["max_concurrent_jobs"] is None
    finally:
        backend.stop()
    assert not backend.is_running()
    with pytest.raises(requests.ConnectionError):
        requests.get(backend.url, timeout=5)


def test_start_failure_reports_the_server_log(local_backend: LocalBackend) -> None:
    with pytest.raises(LocalBackendError, match="Address already in use"):
        start_local_backend(local_backend.port, name="clash")


def test_bad_interpreter_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_BACKEND_PYTHON", "/bin/false")
    with pytest.raises(LocalBackendError, match="exited with code 1"):
        start_local_backend(name="nopython")


DRIVER_PYTHON = DRIVER_VENV / "bin" / "python"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_local_backend_serves_the_examples_udp_and_stops_with_the_command_that_started_it(
    tmp_path: Path,
) -> None:
    """What `make local-backend NAME=... PORT=...` runs, under a parent that is then killed without a word."""
    port = _free_port()
    udp = REPO / "example_dags" / "udp" / "ndvi_timeseries.json"
    launcher = (
        f"{DRIVER_PYTHON} -m local_backend.launcher --name cli --port {port} --stop-with-parent "
        f"--process ndvi_timeseries={udp}"
    )
    parent = subprocess.Popen(["bash", "-c", f"{launcher} & wait"], cwd=REPO, start_new_session=True)
    url = f"http://127.0.0.1:{port}/_static/processes/ndvi_timeseries.json"
    try:
        deadline = time.monotonic() + 60
        served = None
        while served is None or not served.ok:  # the launcher publishes the process once the server answers
            assert time.monotonic() < deadline, "the launcher never served the process"
            time.sleep(0.5)
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):  # bound before it can answer
                served = requests.get(url, timeout=5)
        assert served.json() == json.loads(udp.read_text(encoding="utf-8"))
        parent.kill()  # SIGKILL of the shell alone: the launcher is orphaned
        parent.wait(timeout=10)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url, timeout=5)
            except requests.ConnectionError:
                break
            assert time.monotonic() < deadline, "the backend outlived the command that started it"
            time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGTERM)


def test_a_bad_process_argument_fails_before_any_server_starts(tmp_path: Path) -> None:
    not_json = tmp_path / "udp.json"
    not_json.write_text("{not json", encoding="utf-8")
    for argument in ("no-equals-sign", f"x={tmp_path / 'missing.json'}", f"x={not_json}"):
        result = subprocess.run(
            [str(DRIVER_PYTHON), "-m", "local_backend.launcher", "--port", "0", "--process", argument],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1 and result.stderr.startswith("error:"), (argument, result.stderr)
