"""openeo_job_batch when the DAG file is parsed: bad arguments refused, retries from default_args, a job table per
DAG, the old shared table (in-process; the runs themselves: tests/system/batch/test_task_groups.py)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from airflow.sdk import DAG, TaskGroup

from airflow_provider_openeo.batch.task_groups import DEFAULT_ROW_RETRIES, DEFAULT_ROW_RETRY_DELAY, openeo_job_batch


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"max_rows_per_run": 0}, "max_rows_per_run must be at least 1, got 0"),
        ({"on_exists": "replace"}, "on_exists must be one of 'append', 'skip', 'error'"),
        ({"key_columns": "tile"}, r"key_columns must be a non-empty list of column names"),
        ({"key_columns": ["tile", "tile"]}, r"key_columns: \['tile', 'tile'\] names a column twice"),
        ({"key_columns": ["status"]}, r"key_columns: \['status'\] are the job table's own columns"),
        ({"rerun_statuses": ["eror"]}, "rerun_statuses: unknown status"),
        ({"poll_interval": 0}, r"poll_interval must be a positive number of seconds or a timedelta, got 0"),
        ({"poll_interval": "60"}, r"poll_interval must be a positive number .* got '60'"),
        ({"poll_interval": float("nan")}, r"poll_interval must be a positive number .* got nan"),
        ({"cancel_running_job_after": -5}, r"cancel_running_job_after must be .*, or None, got -5"),
        ({"cancel_running_job_after": timedelta(0)}, r"cancel_running_job_after must be .* got 0.0"),
        ({"backend_outage_limit": 0}, r"backend_outage_limit must be .*, or None, got 0"),
        ({"retries": -1}, r"retries must be a whole number of retries \(0 or more\), got -1"),
        ({"retries": True}, r"retries must be a whole number"),
        ({"retry_delay": 0}, r"retry_delay must be a positive number"),
        ({"job_table": "My-Jobs"}, r"job_table: Invalid job table name 'My-Jobs': use lower-case letters"),
        ({"job_table": "openeo_backend_health"}, r"job_table: Invalid job table name .* reserved"),
        ({"start_job": "start_job"}, r"start_job must be a callable"),
        ({"start_job": lambda row: None}, r"start_job <lambda>\(row\) cannot be called .* \*\*kwargs"),
        ({"start_job_kwargs": {"provider": "x"}}, r"start_job_kwargs: \['provider'\] are passed by every row's task"),
        ({"job_options": ["executor-memory", "4g"]}, r"job_options must be a JSON object of job options"),
        ({"job_options": '{"executor-memory": 4g}'}, r"job_options is not valid JSON"),
        ({"job_options": {"executor-memory": float("nan")}}, r"job_options cannot be sent as JSON"),
        (
            {"start_job": lambda row, connection, **kw: None, "start_job_kwargs": {"extent": 1}},
            None,
        ),
        (
            {"start_job": lambda row, connection, connection_provider, provider: None, "start_job_kwargs": {"x": 1}},
            r"cannot be called the way every row's task calls it, start_job\(row=\.\.\., .*x=\.\.\.\)",
        ),
    ],
)
def test_bad_batch_arguments_are_refused_when_the_dag_is_parsed(kwargs, text):
    kwargs = {"start_job": lambda row, connection, **kw: None, **kwargs}
    with DAG("bad_arguments", schedule=None):
        if text is None:  # the control: a start_job taking its extra keyword by **kwargs is accepted
            openeo_job_batch(backends={"foo": {}}, **kwargs)
            return
        with pytest.raises(ValueError, match=text):
            openeo_job_batch(backends={"foo": {}}, **kwargs)


def _row_task_retries(dag: DAG) -> set[tuple[int, float]]:
    return {
        (task.retries, task.retry_delay.total_seconds())
        for task in dag.tasks
        if task.task_id.endswith((".job", ".results"))
    }


def test_row_retries_follow_default_args_unless_given():
    """``default_args`` of the DAG (or of an enclosing group) reach the row tasks; an explicit argument wins; without
    either, the batch's own default (a retry re-attaches to the row's job, so it has one)."""
    start = lambda row, connection, **kw: None  # noqa: E731
    with DAG("plain", schedule=None) as plain:
        openeo_job_batch(backends={"foo": {}}, start_job=start)
    assert _row_task_retries(plain) == {(DEFAULT_ROW_RETRIES, DEFAULT_ROW_RETRY_DELAY.total_seconds())}

    with DAG("with_defaults", schedule=None, default_args={"retries": 5, "retry_delay": timedelta(seconds=7)}) as dag:
        openeo_job_batch(backends={"foo": {}}, start_job=start)
    assert _row_task_retries(dag) == {(5, 7.0)}

    with (
        DAG("group_defaults", schedule=None, default_args={"retries": 5}) as nested,
        TaskGroup("outer", default_args={"retries": 1}),
    ):
        openeo_job_batch(backends={"foo": {}}, start_job=start)
    assert _row_task_retries(nested) == {(1, DEFAULT_ROW_RETRY_DELAY.total_seconds())}

    with DAG("explicit", schedule=None, default_args={"retries": 5}) as explicit:
        openeo_job_batch(backends={"foo": {}}, start_job=start, retries=0, retry_delay=timedelta(seconds=3))
    assert _row_task_retries(explicit) == {(0, 3.0)}


def test_dags_that_name_no_job_table_get_tables_of_their_own():
    start = lambda row, connection, **kw: None  # noqa: E731
    tables = {}
    for dag_id in ("ndvi_2024", "ndvi_2025"):
        with DAG(dag_id, schedule=None) as dag:
            openeo_job_batch(backends={"foo": {}}, start_job=start)
        tables[dag_id] = {task.job_table for task in dag.tasks if task.task_id.endswith((".job", ".results"))}
    assert tables == {"ndvi_2024": {"ndvi_2024"}, "ndvi_2025": {"ndvi_2025"}}


def test_a_dag_whose_rows_are_in_the_old_shared_table_is_told_how_to_keep_them(tmp_path):
    """Starting over in the new, empty table would give every row a second job: the run stops once, saying why."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_openeo.batch.task_groups import refuse_rows_left_in_the_legacy_table
    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

    sqlite = str(tmp_path / "jobs.db")
    legacy = OpenEOJobDbHook(table="openeo_jobs", sqlite_path=sqlite)
    legacy.initialize_from_df(pd.DataFrame({"title": ["a", "b"]}))
    legacy.assign_run([0, 1], "ndvi_2024/manual__2024-01-01")
    new = OpenEOJobDbHook(table="ndvi_2024", sqlite_path=sqlite)
    with pytest.raises(AirflowFailException, match=r"Pass job_table='openeo_jobs' to go on with them"):
        refuse_rows_left_in_the_legacy_table(new, legacy, "ndvi_2024")
    refuse_rows_left_in_the_legacy_table(new, legacy, "other_dag")  # another DAG's rows: nothing to say
    new.initialize_from_df(pd.DataFrame({"title": ["c"]}))
    refuse_rows_left_in_the_legacy_table(new, legacy, "ndvi_2024")  # its own table exists: it was chosen already
