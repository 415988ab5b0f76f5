"""Bad input: each gets a clear error naming what is wrong, and nothing in the job database changes."""

from __future__ import annotations

import pytest

from airflow_provider_openeo.hooks.job_db import (
    JobDbInputError,
    OpenEOJobDbHook,
)


def test_bad_table_names() -> None:
    for name in ["Jobs", "jobs; DROP TABLE x", "1jobs", "", "openeo_job_db_meta", "x" * 49, 'a"b']:
        with pytest.raises(JobDbInputError, match="Invalid job table name"):
            OpenEOJobDbHook(table=name, sqlite_path="unused.db")
