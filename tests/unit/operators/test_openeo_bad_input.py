"""Bad input, one row at a time: a clear error naming the row and the field, the row marked, no job created.

The batch-level view (other rows go on) is in ``test_openeo_batch_dag.py``.
"""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_openeo.batch.job_source import JobSourceError, load_job_source
from airflow_provider_openeo.hooks.job_db import JobDbInputError, OpenEOJobDbHook


def test_empty_job_table_is_refused_before_anything_is_created(tmp_path):
    db = OpenEOJobDbHook(table="empty_batch", sqlite_path=tmp_path / "jobs.db")
    with pytest.raises(JobSourceError, match="job table 'empty_batch': job_source \\(DataFrame\\) gave no rows"):
        load_job_source(pd.DataFrame({"title": []}), db)
    assert not db.exists()


def test_duplicate_row_ids_are_refused_naming_them(tmp_path):
    db = OpenEOJobDbHook(table="dup_batch", sqlite_path=tmp_path / "jobs.db")
    frame = pd.DataFrame({"title": ["a", "b", "c"]}, index=[0, 7, 7])
    with pytest.raises(JobDbInputError, match=r"duplicate row ids .* 7; row ids must be unique"):
        load_job_source(frame, db)
    assert not db.exists()


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"poll_interval": 0}, r"poll_interval must be a positive number of seconds or a timedelta, got 0"),
        ({"cancel_running_job_after": 0}, r"cancel_running_job_after must be .*, or None, got 0"),
        ({"start_job": lambda row: None}, r"start_job <lambda>\(row\) cannot be called"),
        ({"start_job": None}, r"start_job must be a callable"),
    ],
)
def test_bad_operator_arguments_are_refused_when_the_dag_is_parsed(kwargs, text):
    """Found at parse time, before any job exists (a poll_interval of 0 used to fail only after the create)."""
    from airflow_provider_openeo.operators.openeo import OpenEOBatchJobOperator

    arguments = {"task_id": "row", "row_id": 0, "start_job": lambda row, connection, **kw: None, **kwargs}
    with pytest.raises(ValueError, match=text):
        OpenEOBatchJobOperator(**arguments)


@pytest.mark.parametrize(("kwargs", "text"), [({"poll_interval": -1}, "poll_interval"), ({"poll_interval": "x"}, "x")])
def test_bad_sensor_arguments_are_refused_when_the_dag_is_parsed(kwargs, text):
    from airflow_provider_openeo.sensors.openeo import OpenEOJobSensor

    with pytest.raises(ValueError, match=text):
        OpenEOJobSensor(task_id="wait", job_id="j-1", **kwargs)
