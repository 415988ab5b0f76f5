"""Where the job database lives: embedded SQLite by default, or an Airflow connection (sqlite, postgres)."""

from __future__ import annotations

import json
import pickle

import pandas as pd
import pytest

from airflow_provider_openeo.hooks.job_db import JobDbInputError, OpenEOJobDbHook
from tests.fixtures.databases import unique_table_name


def test_zero_configuration_uses_sqlite_file_in_airflow_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    hook = OpenEOJobDbHook(table=unique_table_name())
    hook.initialize_from_df(pd.DataFrame({"a": [1]}))
    assert (tmp_path / "openeo_jobs.db").is_file()
    assert hook.get_conn().dialect.name == "sqlite"
    with hook.get_conn().connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30000
    hook.dispose()


def test_sqlite_airflow_connection(tmp_path, monkeypatch) -> None:
    path = tmp_path / "via_conn.db"
    monkeypatch.setenv("AIRFLOW_CONN_MY_JOB_DB", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    hook = OpenEOJobDbHook("my_job_db", table="jobs")
    hook.initialize_from_df(pd.DataFrame({"a": [1, 2]}))
    assert path.is_file()
    assert OpenEOJobDbHook(table="jobs", sqlite_path=path).read()["a"].tolist() == [1, 2]
    with hook.get_conn().connect() as connection:  # the connection's engine gets the same WAL set-up
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    hook.dispose()


def test_unsupported_connection_type(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOT_SQL", json.dumps({"conn_type": "http", "host": "example.org"}))
    with pytest.raises(JobDbInputError, match=r"Connection 'not_sql' has type 'http'.*'sqlite' and 'postgres'"):
        OpenEOJobDbHook("not_sql").exists()


def test_hook_is_picklable_and_reconnects(sqlite_job_db: OpenEOJobDbHook) -> None:
    sqlite_job_db.initialize_from_df(pd.DataFrame({"a": [1]}))
    clone = pickle.loads(pickle.dumps(sqlite_job_db))
    assert clone.get_row(0)["a"] == 1


def test_either_connection_or_sqlite_path() -> None:
    with pytest.raises(ValueError, match="either job_db_conn_id or sqlite_path"):
        OpenEOJobDbHook("x", sqlite_path="y.db")
