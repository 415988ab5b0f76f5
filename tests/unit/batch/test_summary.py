"""The summary's figures from a job table: counts, per-backend usage and costs, the run's progress (in-process;
after a real run: tests/system/batch/test_summary.py)."""

from __future__ import annotations

import json
import math

import pandas as pd

from airflow_provider_openeo.batch.summary import costs_total, rows_carried_over, run_progress, summarize, usage_totals


def test_summarize_counts_and_per_backend_figures():
    table = pd.DataFrame(
        {
            "id": ["j1", "j2", None, "j4", None],
            "backend_name": ["foo", "foo", "bar", "bar", None],
            "status": ["finished", "error", "start_failed", "canceled", None],
            "duration": ["10 seconds", "4 seconds", None, "6 seconds", None],
            "costs": [1.5, 0.5, None, None, None],
        }
    )
    result = summarize(table, ["foo", "bar"])
    assert result["rows"] == 5
    assert result["counts"] == {"canceled": 1, "error": 1, "finished": 1, "not_started": 1, "start_failed": 1}
    assert result["backends"]["foo"] == {
        "rows": 2,
        "jobs": 2,
        "finished": 1,
        "failed": 1,
        "canceled": 0,
        "duration_total": 14.0,
        "duration_mean": 7.0,
        "costs_total": 2.0,
        "usage": {"duration": {"seconds": 14.0}},
    }
    assert result["backends"]["bar"]["failed"] == 1 and result["backends"]["bar"]["canceled"] == 1
    assert result["backends"]["bar"]["duration_mean"] == 6.0 and result["backends"]["bar"]["costs_total"] == 0
    assert result["stats"]["start_job error"] == 1 and result["stats"]["job canceled"] == 1


def test_summarize_sums_every_usage_column_per_key_and_unit_per_backend_and_for_the_batch():
    table = pd.DataFrame(
        {
            "id": ["j1", "j2", "j3", "j4"],
            "backend_name": ["foo", "foo", "bar", "bar"],
            "status": ["finished", "error", "finished", "canceled"],
            "cpu": ["10 cpu-seconds", "5 cpu-seconds", "0.5 cpu-hours", None],
            "input_pixel": ["1.5 mega-pixel", None, "2 mega-pixel", "0.5 mega-pixel"],
            "sentinelhub": [None, None, "3", "not usage"],
            "title": ["10 m", "20 m", "30 m", "40 m"],  # looks like usage, is not a usage column
            "costs": [1.0, 0.25, 2.0, math.nan],
        }
    )
    result = summarize(table, ["foo", "bar"], ["cpu", "memory", "input_pixel", "sentinelhub"])
    assert result["usage"] == {
        "cpu": {"cpu-seconds": 15.0, "cpu-hours": 0.5},
        "input_pixel": {"mega-pixel": 4.0},
        "sentinelhub": {"": 3.0},
    }
    assert result["costs_total"] == 3.25
    assert result["backends"]["foo"]["usage"] == {"cpu": {"cpu-seconds": 15.0}, "input_pixel": {"mega-pixel": 1.5}}
    assert result["backends"]["foo"]["costs_total"] == 1.25
    assert result["backends"]["bar"]["usage"] == {
        "cpu": {"cpu-hours": 0.5},
        "input_pixel": {"mega-pixel": 2.5},
        "sentinelhub": {"": 3.0},
    }
    assert result["backends"]["bar"]["costs_total"] == 2.0
    json.dumps(result)  # an XCom value


def test_usage_totals_and_costs_total_of_columns_the_table_lacks():
    table = pd.DataFrame({"status": ["finished"]})
    assert usage_totals(table, ["cpu", "input_pixel"]) == {}
    assert costs_total(table) == 0.0


def test_summarize_empty_table():
    empty = pd.DataFrame({"id": [], "backend_name": [], "status": []})
    result = summarize(empty, ["foo"])
    assert result["rows"] == 0 and result["counts"] == {}
    assert result["backends"]["foo"]["rows"] == 0 and result["backends"]["foo"]["duration_mean"] is None
    assert result["usage"] == {} and result["costs_total"] == 0.0


def test_run_progress_counts_the_rows_no_instance_took_and_only_a_run_that_took_some_continues():
    table = pd.DataFrame(
        {
            "status": ["finished", "not_started", "not_started", "not_started", "error"],
            "dispatch_run": ["d/r1", "d/r1", "d/r1", "d/r0", "d/r1"],
            "dispatch_slot": ["t.job[0]", None, "", None, "t.job[1]"],
        }
    )
    progress = run_progress(table, "d/r1")
    assert progress == {"rows": 4, "taken": 2, "left": 2}
    assert rows_carried_over(progress)
    assert not rows_carried_over({"rows": 2, "taken": 0, "left": 2}), "a run that took nothing chains no other"
    assert not rows_carried_over({"rows": 2, "taken": 2, "left": 0})
    assert run_progress(pd.DataFrame({"status": []}), "d/r1") == {"rows": 0, "taken": 0, "left": 0}
