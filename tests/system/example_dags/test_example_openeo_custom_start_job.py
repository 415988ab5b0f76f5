"""The MBJM migration example: an MBJM CSV job database and ``start_job`` callable, run unchanged."""

from __future__ import annotations

import pandas as pd
from openeo.extra.job_management import create_job_db

from tests.system.example_dags.conftest import (
    assert_batch_consistent,
    backend_job_ids,
    fresh_table,
    load_example,
    new_jobs,
    results_root,
    run_labels,
)


def test_mbjm_csv_and_callable_run_unchanged(example_env, tmp_path, monkeypatch):
    csv = tmp_path / "jobs.csv"
    create_job_db(csv, df=pd.DataFrame({"year": [2020, 2021, 2022, 2023]}))
    monkeypatch.setenv("OPENEO_EXAMPLE_JOBS_CSV", str(csv))
    module = load_example("example_openeo_custom_start_job")
    db = fresh_table(module.DAG_ID)
    before = backend_job_ids(example_env)

    run = module.dag.test()

    assert run.state == "success"
    table = db.read()
    assert list(table["year"]) == [2020, 2021, 2022, 2023]
    created = new_jobs(example_env, before)
    # one job per row; which backend took which row is the dispatch's choice at the moment (a free slot)
    assert sum(len(jobs) for jobs in created.values()) == 4 and set(created) == {"foo", "bar"}
    assert_batch_consistent(table, example_env, created, results_root(module))
    titles = {job["id"]: job["title"] for jobs in created.values() for job in jobs}
    for _, row in table.iterrows():
        assert titles[row["id"]] == f"NDVI max {row['year']} on {row['backend_name']}"
    # No title column: the UI falls back to the row id.
    assert sorted(run_labels(run).values()) == [f"row {i}" for i in range(4)]
