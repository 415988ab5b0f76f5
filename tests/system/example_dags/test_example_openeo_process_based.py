"""The process-based example: Params from the trigger form become rows, each row one UDP call on a backend."""

from __future__ import annotations

import pandas as pd

from tests.system.example_dags.conftest import (
    assert_batch_consistent,
    backend_job_ids,
    fresh_table,
    load_example,
    new_jobs,
    process_arguments,
    remote_job,
    results_root,
    run_labels,
    xcom_of,
)


def test_params_become_rows_and_temporal_extents(example_env):
    module = load_example("example_openeo_process_based")
    db = fresh_table(module.DAG_ID)
    before = backend_job_ids(example_env)

    run = module.dag.test(run_conf={"start": "2024-03-01", "end": "2024-05-15", "frequency": "MS"})

    assert run.state == "success"
    table = db.read()
    windows = [["2024-03-01", "2024-04-01"], ["2024-04-01", "2024-05-01"], ["2024-05-01", "2024-05-15"]]
    assert [list(w) for w in table["temporal_extent"]] == windows
    assert list(table["title"]) == ["NDVI 2024-03-01", "NDVI 2024-04-01", "NDVI 2024-05-01"]
    created = new_jobs(example_env, before)
    assert_batch_consistent(table, example_env, created, results_root(module))
    for row_id, row in table.iterrows():
        job = remote_job(example_env[row["backend_name"]], row["id"])
        arguments = process_arguments(job)
        assert arguments["temporal_extent"] == list(row["temporal_extent"]), f"row {row_id}"
        assert arguments["spatial_extent"] == {"west": 5.0, "south": 51.0, "east": 5.1, "north": 51.1}
    labels = run_labels(run)
    assert sorted(labels.values()) == [f"{row_id}: {row['title']}" for row_id, row in table.iterrows()]


def test_params_a_then_b_then_a_again_run_each_row_once(example_env):
    """The user's re-trigger: new Params run their new rows, the same Params run nothing again and say so, and
    the Param rerun_statuses asks for re-runs."""
    module = load_example("example_openeo_process_based")
    db = fresh_table(module.DAG_ID)
    a = {"start": "2024-01-01", "end": "2024-03-01", "frequency": "MS"}
    b = {"start": "2024-06-01", "end": "2024-07-15", "frequency": "MS"}
    before = backend_job_ids(example_env)

    first = module.dag.test(run_conf=a)
    after_a = db.read()
    second = module.dag.test(run_conf=b)
    after_b = db.read()
    jobs_before_third = backend_job_ids(example_env)
    third = module.dag.test(run_conf=a)

    assert (first.state, second.state, third.state) == ("success", "success", "success")
    table = db.read()
    assert list(table["title"]) == ["NDVI 2024-01-01", "NDVI 2024-02-01", "NDVI 2024-06-01", "NDVI 2024-07-01"]
    assert set(table["status"]) == {"finished"}
    pd.testing.assert_series_equal(after_b.loc[after_a.index, "id"], after_a["id"])
    pd.testing.assert_frame_equal(table[["id", "status", "job_history"]], after_b[["id", "status", "job_history"]])
    assert_batch_consistent(table, example_env, new_jobs(example_env, before), results_root(module))
    assert new_jobs(example_env, jobs_before_third) == {"foo": [], "bar": []}, "the third run starts no job"
    assert not run_labels(third), "no instance of the third run took a row"

    summaries = [xcom_of(run, "openeo_job_batch.summary") for run in (first, second, third)]
    assert [s["source"]["rows"] for s in summaries] == [2, 2, 2]
    assert [s["source"]["added"] for s in summaries] == [2, 2, 0]
    assert [s["source"]["already_done"] for s in summaries] == [0, 0, 2]
    assert summaries[2]["source"]["already_done_by_status"] == {"finished": 2}
    assert xcom_of(third, "openeo_job_batch.plan")["rows"] == 0

    # A asked again with re-runs of finished rows: A's two rows get new jobs, their old ones kept in job_history.
    jobs_before_rerun = backend_job_ids(example_env)
    rerun = module.dag.test(run_conf={**a, "rerun_statuses": ["finished"]})

    assert rerun.state == "success"
    again = db.read()
    created = new_jobs(example_env, jobs_before_rerun)
    assert sum(len(jobs) for jobs in created.values()) == 2
    for row_id in after_a.index:
        assert again.loc[row_id, "status"] == "finished" and again.loc[row_id, "id"] != after_a.loc[row_id, "id"]
        assert [h["id"] for h in again.loc[row_id, "job_history"]] == [after_a.loc[row_id, "id"]]
    pd.testing.assert_frame_equal(again.loc[after_b.index[2:], ["id"]], after_b.loc[after_b.index[2:], ["id"]])
    assert xcom_of(rerun, "openeo_job_batch.summary")["source"]["rerun"] == 2
