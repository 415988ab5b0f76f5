"""Usage columns (MBJM 0.53 parity): one column per usage key, added as it appears, on SQLite and PostgreSQL.

Includes processes adding the same new column at the same moment (``tests.fixtures.races``), the
keys that must not get a column, a column MBJM wrote taken over, and CSV round trips MBJM can read.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from openeo.extra.job_management import CsvJobDatabase

from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.job_table.job_row import JobRowRef
from tests.fixtures.databases import same_table
from tests.fixtures.races import race_on_table

PROCESSES = 4
NEW_KEYS = ["input_pixel", "sentinelhub", "network_received"]


def _frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"title": [f"job {i}" for i in range(n)], "year": list(range(2000, 2000 + n))})


def test_a_new_usage_key_gets_its_column_in_every_hook(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame())
    assert job_db.usage_columns() == ["cpu", "memory", "duration"]

    assert job_db.ensure_usage_columns(["cpu", "input_pixel", "sentinelhub"]) == ["cpu", "input_pixel", "sentinelhub"]
    assert job_db.update_row(1, {"input_pixel": "2.5 mega-pixel", "sentinelhub": "3 sentinelhub_processing_unit"})

    other = same_table(job_db)  # another task process: knows the columns from the side table
    assert other.usage_columns() == ["cpu", "memory", "duration", "input_pixel", "sentinelhub"]
    row = other.get_row(1)
    assert row["input_pixel"] == "2.5 mega-pixel" and row["sentinelhub"] == "3 sentinelhub_processing_unit"
    assert other.get_row(0)["input_pixel"] is None
    assert other.ensure_usage_columns(["sentinelhub"]) == ["sentinelhub"]  # already there: nothing to do
    assert list(other.read().columns[-2:]) == ["input_pixel", "sentinelhub"]


@pytest.mark.parametrize("key", ["status", "costs", "attempt", "id", "_oe_seq", "CPU", "x" * 80])
def test_keys_that_cannot_have_a_column_are_skipped_with_a_warning(
    job_db: OpenEOJobDbHook, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    job_db.initialize_from_df(_frame())
    caplog.set_level(logging.WARNING)
    assert job_db.ensure_usage_columns([key, "input_pixel"]) == ["input_pixel"]
    assert f"Not recording usage {key!r}" in caplog.text
    assert key not in job_db.read().columns or key in ("status", "costs", "attempt", "id")
    assert job_db.usage_columns() == ["cpu", "memory", "duration", "input_pixel"]


def test_a_user_column_is_taken_over_only_when_it_holds_usage_text(
    job_db: OpenEOJobDbHook, caplog: pytest.LogCaptureFixture
) -> None:
    frame = _frame()
    frame["input_pixel"] = ["1 mega-pixel", None, "2"]  # as MBJM left it in its CSV file
    frame["sentinelhub"] = ["high", None, None]  # a job parameter that happens to share a usage key's name
    frame["max_executor_memory"] = [1.0, 2.0, 3.0]
    job_db.initialize_from_df(frame)
    caplog.set_level(logging.WARNING)

    keys = ["input_pixel", "sentinelhub", "max_executor_memory"]
    assert job_db.ensure_usage_columns(keys) == ["input_pixel"]
    assert "holds values that are not usage text (such as 'high')" in caplog.text
    assert "holds float64 values" in caplog.text
    assert same_table(job_db).usage_columns() == ["input_pixel", "cpu", "memory", "duration"]
    assert job_db.read()["sentinelhub"].tolist() == ["high", None, None]


def test_the_handler_writes_every_usage_key_with_the_status(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame())
    job_db.update_row(2, {"id": "j-2", "status": "running"})
    row = JobRowRef(job_db.table, 2, job_db.job_db_conn_id, str(job_db.sqlite_path) if job_db.sqlite_path else None)
    metadata = {
        "id": "j-2",
        "usage": {
            "cpu": {"value": 40, "unit": "cpu-seconds"},
            "input_pixel": {"value": 0.5, "unit": "mega-pixel"},
            "status": {"value": 1, "unit": "odd"},  # would clobber the row's status: skipped
        },
        "costs": 1.25,
    }
    handler = OpenEOJobHandler()
    values = handler.usage_values(row, "j-2", metadata)
    assert values == {"cpu": "40 cpu-seconds", "input_pixel": "0.5 mega-pixel", "costs": 1.25}
    assert handler.update_row(row, "j-2", {"status": "finished", **values})
    stored = same_table(job_db).get_row(2)
    assert (stored["status"], stored["cpu"], stored["input_pixel"], stored["costs"]) == (
        "finished",
        "40 cpu-seconds",
        "0.5 mega-pixel",
        1.25,
    )


def test_usage_columns_round_trip_through_mbjm_csv(job_db: OpenEOJobDbHook, tmp_path) -> None:
    job_db.initialize_from_df(_frame())
    job_db.ensure_usage_columns(["input_pixel"])
    job_db.update_row(0, {"cpu": "4 cpu-seconds", "input_pixel": "2.5 mega-pixel", "costs": 0.5})
    path = job_db.export(tmp_path / "jobs.csv")

    mbjm = CsvJobDatabase(path).read()
    assert mbjm.loc[0, "input_pixel"] == "2.5 mega-pixel" and mbjm.loc[0, "cpu"] == "4 cpu-seconds"
    assert pd.isna(mbjm.loc[1, "input_pixel"])

    imported = OpenEOJobDbHook(job_db.job_db_conn_id, table=f"{job_db.table}_in", sqlite_path=job_db.sqlite_path)
    try:
        imported.import_file(path)
        # MBJM's file says nothing of which columns are usage: the first job reporting the key takes it over
        assert imported.ensure_usage_columns(["input_pixel"]) == ["input_pixel"]
        assert imported.update_row(1, {"input_pixel": "1 mega-pixel"})
        column = imported.read()["input_pixel"]
        assert column.iloc[:2].tolist() == ["2.5 mega-pixel", "1 mega-pixel"] and pd.isna(column.iloc[2])
        assert imported.get_row(0)["cpu"] == "4 cpu-seconds"
    finally:
        imported.drop()
        imported.dispose()


def _add_same_columns(hook: OpenEOJobDbHook, k: int) -> list[str]:
    """Process k adds the new usage columns and writes its row: the keys it could write."""
    writable = hook.ensure_usage_columns(NEW_KEYS)
    values = {key: f"{k + 1} unit-{key}" for key in writable}
    assert hook.update_row(k, values), f"process {k} could not write its row"
    return writable


@pytest.mark.slow
def test_processes_adding_the_same_usage_columns_at_once_all_succeed(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(PROCESSES))
    outcomes = race_on_table(job_db, _add_same_columns, PROCESSES)
    assert all(writable == NEW_KEYS for writable in outcomes)

    df = same_table(job_db).read()
    assert same_table(job_db).usage_columns() == ["cpu", "memory", "duration", *NEW_KEYS]
    for key in NEW_KEYS:
        assert df[key].tolist() == [f"{k + 1} unit-{key}" for k in range(PROCESSES)], f"lost writes in {key!r}"
    assert list(df.columns).count("input_pixel") == 1
