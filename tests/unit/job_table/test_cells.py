"""One rule for an empty cell, one home for the job table's timestamps, one compare-and-set on a row."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.job_table.cells import clean, is_empty
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.job_table.timestamps import (
    epoch_from_rfc3339,
    rfc3339_of,
    utc_now_precise,
    utc_now_rfc3339,
)
from airflow_provider_openeo.start.job_starting import STALE_CLAIM_SECONDS, claim_is_stale


@pytest.mark.parametrize("value", [None, pd.NA, pd.NaT, float("nan"), np.float32("nan"), np.datetime64("NaT")])
def test_missing_cells_are_empty(value):
    assert is_empty(value)
    assert clean(value) is None


@pytest.mark.parametrize("value", ["", "x", 0, 0.0, False, [], [None], {"a": None}, np.array([np.nan])])
def test_values_are_not_empty_even_when_falsy_or_holding_nan(value):
    assert not is_empty(value)
    assert clean(value) is value


def test_the_row_timestamps_read_back_and_claims_age_by_them():
    now = utc_now_rfc3339()
    precise = utc_now_precise()
    assert len(precise) == len("2024-05-01T12:00:00.123456Z") and precise.endswith("Z")
    assert abs(epoch_from_rfc3339(precise) - epoch_from_rfc3339(now)) < 5
    assert rfc3339_of(dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)) == "2024-05-01T12:00:00Z"
    claimed = epoch_from_rfc3339("2024-05-01T12:00:00Z")
    assert not claim_is_stale("2024-05-01T12:00:00Z", now=claimed + STALE_CLAIM_SECONDS - 1)
    assert claim_is_stale("2024-05-01T12:00:00Z", now=claimed + STALE_CLAIM_SECONDS + 1)
    assert claim_is_stale("2024-05-01T12:00:00.5Z", now=claimed + STALE_CLAIM_SECONDS + 1)
    assert not claim_is_stale("2024-05-01 12:00:00+00:00", now=claimed + 1)  # ISO 8601 as other tools write it
    assert claim_is_stale("not a time") and claim_is_stale(None) and claim_is_stale(float("nan"))


def test_compare_and_set_writes_only_while_the_row_holds_what_was_read(sqlite_job_db: OpenEOJobDbHook):
    sqlite_job_db.initialize_from_df(pd.DataFrame({"x": [1]}))
    row = JobRowRef(
        table=sqlite_job_db.table, row_id=0, job_db_conn_id=None, sqlite_path=str(sqlite_job_db.sqlite_path)
    )
    assert row.compare_and_set({"id": "j-1"}, expected={"id": None})
    assert not row.compare_and_set({"id": "j-2"}, expected={"id": None})
    assert row.read()["id"] == "j-1"
