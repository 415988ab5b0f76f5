"""The process-based example: Params from the trigger form become rows, each row one UDP call on a backend."""

from __future__ import annotations

from tests.example_dags.conftest import (
    assert_batch_consistent,
    backend_job_ids,
    fresh_table,
    load_example,
    new_jobs,
    process_arguments,
    remote_job,
    results_root,
    run_labels,
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
