"""The status sets are defined once in ``job_status`` and every module uses those (no set rebuilt elsewhere)."""

from __future__ import annotations

import pytest

from airflow_provider_openeo.batch import budget, planning, reruns, summary
from airflow_provider_openeo.batch_view import progress
from airflow_provider_openeo.job_table.job_status import (
    ACTIVE_BACKEND_STATUSES,
    FAILED_ROW_STATUSES,
    FINAL_ROW_STATUSES,
    JOB_HOLDING_ROW_STATUSES,
    RECORDED_FAILURE_ROW_STATUSES,
    RESUMABLE_ROW_STATUSES,
    TERMINAL_BACKEND_STATUSES,
    OpenEOJobStatus,
    RowStatus,
)


def test_backend_statuses_are_either_active_or_terminal():
    assert {s.value for s in OpenEOJobStatus} == ACTIVE_BACKEND_STATUSES | TERMINAL_BACKEND_STATUSES
    assert not ACTIVE_BACKEND_STATUSES & TERMINAL_BACKEND_STATUSES
    assert {"finished", "error", "canceled"} == TERMINAL_BACKEND_STATUSES


@pytest.mark.parametrize(
    ("value", "ended"),
    [
        ("finished", True),
        ("error", True),
        ("canceled", True),
        ("running", False),
        ("queued", False),
        (None, False),
        ("", False),
    ],
)
def test_is_terminal_value_reads_a_cell_or_a_backend_answer(value, ended):
    assert OpenEOJobStatus.is_terminal_value(value) is ended


def test_row_statuses_are_either_final_or_resumable():
    assert RowStatus.values() == FINAL_ROW_STATUSES | RESUMABLE_ROW_STATUSES
    assert not FINAL_ROW_STATUSES & RESUMABLE_ROW_STATUSES
    assert RESUMABLE_ROW_STATUSES - {RowStatus.NOT_STARTED.value} == JOB_HOLDING_ROW_STATUSES
    assert FAILED_ROW_STATUSES <= FINAL_ROW_STATUSES
    assert RECORDED_FAILURE_ROW_STATUSES <= FINAL_ROW_STATUSES


def test_every_module_uses_the_one_definition():
    assert planning.RESUMABLE_STATUSES is RESUMABLE_ROW_STATUSES
    assert reruns.REOPENABLE_STATUSES is FINAL_ROW_STATUSES
    assert budget.RESERVING_STATUSES is JOB_HOLDING_ROW_STATUSES
    assert progress.DONE_STATUSES is FINAL_ROW_STATUSES
    assert progress.FAILED_STATUSES is FAILED_ROW_STATUSES
    assert summary.FAILED_ROW_STATUSES is FAILED_ROW_STATUSES


def test_results_state_is_one_enum_behind_every_name():
    from airflow_provider_openeo.handlers import job_handlers
    from airflow_provider_openeo.hooks._job_db import columns as _job_db_columns
    from airflow_provider_openeo.job_table.job_status import UNSTORED_RESULTS_STATES, ResultsState

    assert job_handlers.ResultsState is ResultsState
    assert ResultsState.values() == _job_db_columns.RESULTS_STATES
    assert {"downloading", "downloaded", "failed", "skipped"} == ResultsState.values()
    assert {"downloading", "failed"} == UNSTORED_RESULTS_STATES
    assert ResultsState.DOWNLOADED == "downloaded"
