"""Parse-time argument rules (``arguments``): one message per bad value wherever it is passed, and the default
job table, named after the batch's DAG so that two DAGs never share a table by accident."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_openeo.batch import arguments
from airflow_provider_openeo.hooks._job_db.sql import MAX_TABLE_NAME_LENGTH, validate_table_name


def test_seconds_take_numbers_and_timedeltas_and_refuse_the_rest():
    assert arguments.seconds("poll_interval", 2) == 2.0
    assert arguments.seconds("poll_interval", timedelta(minutes=1)) == 60.0
    assert arguments.seconds("limit", None, optional=True) is None
    for bad in (0, -1, float("inf"), float("nan"), True, "5", None):
        with pytest.raises(ValueError, match="poll_interval must be a positive number of seconds"):
            arguments.seconds("poll_interval", bad)


@pytest.mark.parametrize(
    ("dag_id", "group_id", "table"),
    [
        ("ndvi_2024", "openeo_job_batch", "ndvi_2024"),
        ("ndvi_2024", "tiles", "ndvi_2024__tiles"),
        (None, "openeo_job_batch", "openeo_jobs"),
    ],
)
def test_the_default_job_table_is_named_after_the_dag(dag_id, group_id, table):
    assert arguments.default_job_table(dag_id, group_id) == table


def test_ids_that_are_no_table_names_get_distinct_valid_names():
    names = {
        dag_id: arguments.default_job_table(dag_id, "openeo_job_batch")
        for dag_id in ("My-DAG", "my_dag", "my.dag", "2024_tiles", "openeo_backend_health", "x" * 200)
    }
    assert len(set(names.values())) == len(names), names
    for dag_id, table in names.items():
        assert validate_table_name(table) == table and len(table) <= MAX_TABLE_NAME_LENGTH, (dag_id, table)
    assert names["My-DAG"].startswith("my_dag_") and names["my_dag"] == "my_dag"
    assert arguments.default_job_table("dag", "outer.openeo_job_batch").startswith("dag__outer_openeo_job_batch_")
