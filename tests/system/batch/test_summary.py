"""The summary task: figures equal the job table after a real run with one failing job; the export opens in MBJM."""

# Fixtures come from tests/system/example_dags/conftest.py by import (F401/F811: pytest injects them by name).
# ruff: noqa: F401, F811

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from openeo.extra.job_management import CsvJobDatabase

from airflow_provider_openeo.batch.summary import costs_total, rows_carried_over, run_progress, summarize, usage_totals
from airflow_provider_openeo.job_table._usage import parse_usage
from tests.system.example_dags.conftest import (
    assert_batch_consistent,
    backend_job_ids,
    batch_env,
    batch_table,
    example_env,
    load_batch_dag,
    new_jobs,
    xcom_of,
)

FAIL = json.dumps({"local_backend": {"fail": True, "fail_message": "the field is under water"}})


def test_summary_matches_job_table_after_a_run_with_one_failure(example_env, batch_env, monkeypatch, tmp_path):
    rows = pd.DataFrame({"title": ["a", "b", "c", "d", "e"], "job_options": [None, None, FAIL, None, None]})
    source = tmp_path / "rows.parquet"
    rows.to_parquet(source)
    export = tmp_path / "export" / "jobs.csv"
    config = {**batch_env, "source": str(source), "export_path": str(export)}
    module = load_batch_dag(monkeypatch, config)
    before = backend_job_ids(example_env)

    run = module.dag.test()

    summary = xcom_of(run, "openeo_job_batch.summary")
    table = batch_table(config).read()
    assert list(table["status"]) == ["finished", "finished", "error", "finished", "finished"]
    assert summary["rows"] == 5
    assert summary["counts"] == {"error": 1, "finished": 4}
    assert summary["stats"] == {
        "job finished": 4,
        "job failed": 1,
        "job canceled": 0,
        "start_job skipped": 0,
        "start_job error": 0,
    }
    assert summary["not_done"] == 0
    for name in ("foo", "bar"):
        rows_of = table[table["backend_name"] == name]
        figures = summary["backends"][name]
        durations = [parse_usage(v).value for v in rows_of["duration"] if parse_usage(v) is not None]
        assert figures["rows"] == len(rows_of) and figures["jobs"] == rows_of["id"].notna().sum()
        assert figures["finished"] == (rows_of["status"] == "finished").sum()
        assert figures["failed"] == (rows_of["status"] == "error").sum()
        assert figures["duration_total"] == pytest.approx(sum(durations))
        assert figures["costs_total"] == pytest.approx(rows_of["costs"].fillna(0).sum())
        assert figures["costs_total"] > 0, "the local backend charges for every job that ran"
    assert sum(summary["backends"][n]["failed"] for n in ("foo", "bar")) == 1
    # usage parity with MBJM 0.53: the keys the backend reports beyond cpu/memory/duration became columns
    assert batch_table(config).usage_columns() == ["cpu", "memory", "duration", "input_pixel", "sentinelhub"]
    assert table.loc[table["status"] == "finished", "input_pixel"].str.fullmatch(r"[0-9.]+ mega-pixel").all()
    assert table.loc[table["status"] == "finished", "sentinelhub"].str.endswith(" sentinelhub_processing_unit").all()
    for key, unit in [
        ("cpu", "cpu-seconds"),
        ("input_pixel", "mega-pixel"),
        ("sentinelhub", "sentinelhub_processing_unit"),
    ]:
        values = [parse_usage(v).value for v in table[key] if parse_usage(v) is not None]
        assert summary["usage"][key] == {unit: pytest.approx(sum(values))}
        assert sum(summary["backends"][n]["usage"].get(key, {}).get(unit, 0) for n in ("foo", "bar")) == pytest.approx(
            sum(values)
        )
    assert summary["costs_total"] == pytest.approx(table["costs"].fillna(0).sum())
    assert "under water" in table.loc[2, "error_message"]
    finished = [row for row in table.index if row != 2]
    root = Path(config["root_dir"])
    assert_batch_consistent(table, example_env, new_jobs(example_env, before), root, finished_rows=finished)
    failed_id = table.loc[2, "id"]
    assert (root / f"job_{failed_id}" / f"job_{failed_id}_errors.json").is_file()

    assert summary["exported_to"] == str(export)
    mbjm = CsvJobDatabase(export).read()
    assert list(mbjm["status"]) == list(table["status"])
    assert list(mbjm["id"]) == list(table["id"])
    assert list(mbjm["title"]) == list(table["title"])


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
