"""Where the job database lives: embedded SQLite by default, or an Airflow connection (sqlite, postgres)."""

from __future__ import annotations

import json
import pickle

import pandas as pd
import pytest

from airflow_provider_openeo.hooks.job_db import JobDbInputError, OpenEOJobDbHook
from tests.fixtures.databases import unique_table_name


def test_postgres_connection_never_leaks_the_password(postgres_conn_id, monkeypatch) -> None:
    secret = "s3cr3t-pa55"
    monkeypatch.setenv(
        "AIRFLOW_CONN_PG_WITH_PASSWORD",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "login": "postgres",
                "password": secret,
                "schema": "test",
                "port": 5432,
            }
        ),
    )
    hook = OpenEOJobDbHook("pg_with_password", table=unique_table_name())
    try:
        hook.initialize_from_df(pd.DataFrame({"a": [1]}))  # trust auth: the password is not even checked
        with pytest.raises(JobDbInputError) as info:
            hook.update_row(0, {"status": "nonsense"})
        for text in (repr(hook), str(info.value), repr(pickle.loads(pickle.dumps(hook)))):
            assert secret not in text
        assert "pg_with_password" in repr(hook)
    finally:
        hook.drop()
        hook.dispose()
