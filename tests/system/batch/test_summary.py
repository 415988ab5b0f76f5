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
