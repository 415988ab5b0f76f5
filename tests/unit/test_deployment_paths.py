"""A relative ``root_dir`` or ``sqlite_path`` means the same place in every Airflow process: under $AIRFLOW_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_openeo._deployment_paths import deployment_path
from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook


@pytest.fixture
def airflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "airflow-home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # a process's working directory, which must not matter
    return home


def test_relative_paths_are_under_airflow_home_and_absolute_ones_stay(airflow_home: Path, tmp_path: Path) -> None:
    assert deployment_path("results") == airflow_home / "results"
    assert deployment_path(".") == airflow_home / "."
    assert deployment_path(tmp_path / "elsewhere") == tmp_path / "elsewhere"
    assert deployment_path("~/x") == Path.home() / "x"


def test_a_relative_root_dir_puts_job_dirs_under_airflow_home(airflow_home: Path) -> None:
    handler = OpenEOJobHandler(root_dir="results")
    assert handler.get_job_dir("j-1") == airflow_home / "results" / "job_j-1"


def test_a_relative_sqlite_path_is_under_airflow_home(airflow_home: Path) -> None:
    airflow_home.mkdir()
    hook = OpenEOJobDbHook(table="t", sqlite_path="jobs/batch.db")
    default = OpenEOJobDbHook(table="t")
    try:
        assert str(airflow_home / "jobs" / "batch.db") in repr(hook)
        assert str(airflow_home / "openeo_jobs.db") in repr(default)
    finally:
        hook.dispose()
        default.dispose()
