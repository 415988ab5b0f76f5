"""Test-wide set-up: an isolated AIRFLOW_HOME before Airflow is imported, and the shared fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# One AIRFLOW_HOME (and so one SQLite metadata database) per pytest process running at once (``make test`` runs
# tests/system/deploy beside the rest; a pytest-xdist worker counts too): dag.test() runs must not share a SQLite file.
_WORKER = os.environ.get("OPENEO_TEST_SHARD") or os.environ.get("PYTEST_XDIST_WORKER")
AIRFLOW_HOME = REPO / "build" / (f"test-airflow-home-{_WORKER}" if _WORKER else "test-airflow-home")
AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
# dag.test() runs DAGs found in a bundle: the example DAGs and the tests' own DAGs.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path), "refresh_interval": 0},
        }
        for name, path in (("openeo_examples", REPO / "example_dags"), ("test_dags", REPO / "tests" / "dags"))
    ]
)
# Example DAGs import their shared settings as a top-level module, as Airflow's DAG folder allows.
sys.path.insert(0, str(REPO / "example_dags"))

pytest_plugins = [
    "tests.fixtures.local_backend",
    "tests.fixtures.databases",
]


@pytest.fixture(autouse=True)
def _fresh_connection_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's triggers learn their backends afresh (how to read statuses, how long jobs take): tests reuse
    connection ids for servers in other profiles and jobs of other lengths."""
    from airflow_provider_openeo.hooks._openeo import read_strategy as _read_strategy
    from airflow_provider_openeo.triggers import _end_forecast

    monkeypatch.setattr(_read_strategy, "_STRATEGIES", {})
    monkeypatch.setattr(_end_forecast, "_RUN_TIMES", {})
    monkeypatch.setattr(_end_forecast, "_TOTAL_TIMES", {})


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata database (SQLite in the test AIRFLOW_HOME), migrated once per session for dag.test()."""
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    return AIRFLOW_HOME / "airflow.db"


# DAG files used through dag.test(), not test modules.
collect_ignore_glob = ["dags/*"]
