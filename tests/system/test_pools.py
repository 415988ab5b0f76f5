"""Pools standing in for parallel_jobs: the document, the checks, the CLI on a real metadata DB, the REST API read."""

# Fixtures come from tests/system/example_dags/conftest.py by import (F401/F811: pytest injects them by name).
# ruff: noqa: F401, F811

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import requests

from airflow_provider_openeo.batch.planning import parse_backends
from airflow_provider_openeo.pools import (
    PoolError,
    check_pools,
    describe_changes,
    ensure_pools,
    fetch_pools,
    main,
    pools_document,
)
from tests.conftest import AIRFLOW_HOME
from tests.fixtures.local_backend import backend_conn_env
from tests.system.example_dags.conftest import batch_env, batch_table, example_env, load_batch_dag, task_instances
from tests.unit.test_pools import drop_pools, unique_backends

AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))


# -- the plan-time check through Airflow's REST API ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def api_server(airflow_db) -> Iterator[str]:
    """Airflow's API server on the test metadata DB (SimpleAuthManager, everyone admin): its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }
    log = AIRFLOW_HOME / f"api-server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [AIRFLOW_BIN, "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"airflow api-server exited with {process.returncode}: {log.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server not ready after 90 s: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.unlink(missing_ok=True)


@pytest.mark.slow
def test_fetch_pools_reads_slots_and_include_deferred(api_server, monkeypatch, drop_pools):
    backends = unique_backends((2,))
    (name,) = (f"openeo_{n}" for n in backends)
    drop_pools.append(name)
    ensure_pools(parse_backends(backends), airflow_bin=AIRFLOW_BIN)
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API_OPEN", json.dumps({"conn_type": "http", "host": api_server}))
    # With a login the helper first gets a token from /auth/token, as a secured deployment needs.
    with_login = {"conn_type": "http", "host": api_server, "login": "admin", "password": "any"}
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API_LOGIN", json.dumps(with_login))

    for conn_id in ("airflow_api_open", "airflow_api_login"):
        pools = fetch_pools(conn_id)
        assert pools[name]["slots"] == 2 and pools[name]["include_deferred"] is True, conn_id
        assert "default_pool" in pools
        check_pools(parse_backends(backends), pools)


@pytest.mark.slow
def test_plan_fails_on_missing_pools_and_runs_once_they_exist(
    api_server, example_env, batch_env, monkeypatch, tmp_path, drop_pools
):
    backends = unique_backends((2, 1))
    drop_pools.extend(f"openeo_{n}" for n in backends)
    for settings in backends.values():  # working connections: only the pools are missing (the preflight passes)
        backend_conn_env(monkeypatch, str(settings["conn_id"]), example_env["foo"])
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API_TEST", json.dumps({"conn_type": "http", "host": api_server}))
    source = tmp_path / "rows.parquet"
    pd.DataFrame({"title": ["a", "b", "c"]}).to_parquet(source)
    config = {**batch_env, "backends": backends, "source": str(source), "airflow_api_conn_id": "airflow_api_test"}
    module = load_batch_dag(monkeypatch, config)

    refused = module.dag.test(mark_success_pattern=r"openeo_job_batch\.run_.*")

    states = {ti.task_id: ti.state for ti in task_instances(refused) if ti.map_index < 0}
    assert refused.state == "failed" and states["openeo_job_batch.plan"] == "failed"
    assert batch_table(config).read()["dispatch_run"].isna().all(), "a refused plan covers no row"
    with pytest.raises(PoolError, match="does not exist"):
        check_pools(parse_backends(backends), fetch_pools("airflow_api_test"))

    ensure_pools(parse_backends(backends), airflow_bin=AIRFLOW_BIN)
    planned = module.dag.test(mark_success_pattern=r"openeo_job_batch\.run_.*")

    states = {ti.task_id: ti.state for ti in task_instances(planned) if ti.map_index < 0}
    assert states["openeo_job_batch.plan"] == "success"
    assert set(batch_table(config).read()["dispatch_run"]) == {f"{planned.dag_id}/{planned.run_id}"}
