"""The recurring example: each monthly data interval appends its own rows to one table and runs only those."""

from __future__ import annotations

from datetime import datetime, timezone

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
)


def expected_rows(start: str, end: str) -> list[str]:
    weeks = pd.date_range(start, end, freq="7D", inclusive="left")
    return [f"{field}/{week:%Y-%m-%d}" for field in ("north", "south") for week in weeks]


def test_two_months_append_and_run_their_own_rows(example_env):
    for backend in example_env.values():
        backend.configure(queue_seconds=0.0, run_seconds=0.2)
    module = load_example("example_openeo_recurring")
    assert module.dag.catchup is False
    # Month-long data intervals whatever [scheduler] create_cron_data_intervals says (the tests turn it on).
    assert type(module.dag.timetable).__name__ == "CronDataIntervalTimetable"
    db = fresh_table(module.DAG_ID)
    root = results_root(module)
    before = backend_job_ids(example_env)

    # A manual run's data interval is the last complete month before its logical date (as the UI trigger does).
    january = module.dag.test(logical_date=datetime(2024, 2, 1, tzinfo=timezone.utc))

    assert january.state == "success"
    assert (january.data_interval_start.date().isoformat(), january.data_interval_end.date().isoformat()) == (
        "2024-01-01",
        "2024-02-01",
    )
    after_january = db.read()
    assert list(after_january.index) == expected_rows("2024-01-01", "2024-02-01")
    assert_batch_consistent(after_january, example_env, new_jobs(example_env, before), root)
    for row_id, row in after_january.iterrows():
        arguments = process_arguments(remote_job(example_env[row["backend_name"]], row["id"]))
        assert arguments["temporal_extent"] == list(row["temporal_extent"]), row_id
        assert arguments["spatial_extent"] == module.FIELDS[row_id.split("/")[0]], row_id

    february = module.dag.test(logical_date=datetime(2024, 3, 1, tzinfo=timezone.utc))

    assert february.state == "success"
    table = db.read()
    assert list(table.index) == expected_rows("2024-01-01", "2024-02-01") + expected_rows("2024-02-01", "2024-03-01")
    # January's rows were not run again: same jobs, each started once, no job added for them.
    pd.testing.assert_series_equal(table.loc[after_january.index, "id"], after_january["id"])
    assert_batch_consistent(table, example_env, new_jobs(example_env, before), root)
    assert table.loc["north/2024-02-29", "temporal_extent"] == ["2024-02-29", "2024-03-01"]

    # January triggered again (a cleared or repeated run): its rows are loaded already and finished.
    again = module.dag.test(logical_date=datetime(2024, 2, 1, tzinfo=timezone.utc))

    assert again.state == "success"
    pd.testing.assert_frame_equal(db.read()[["id", "status"]], table[["id", "status"]])
    assert_batch_consistent(db.read(), example_env, new_jobs(example_env, before), root)
