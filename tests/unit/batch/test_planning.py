from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_openeo.batch.planning import (
    DEFAULT_MAX_ROWS_PER_RUN,
    BackendSpec,
    parse_backends,
    pinned_backend,
    plan_run,
    pool_name,
    rows_per_run,
    rows_to_run,
    short_last_run_rows,
)


def _table(statuses, backend_names=None, results_state=None) -> pd.DataFrame:
    n = len(statuses)
    return pd.DataFrame(
        {
            "status": statuses,
            "backend_name": backend_names or [None] * n,
            "results_state": results_state or [None] * n,
        },
        index=range(100, 100 + n),
    )


def test_parse_backends_defaults_and_validation():
    specs = parse_backends({"foo": {"parallel_jobs": 3}, "bar": {"conn_id": "my_bar"}})
    assert specs["foo"] == BackendSpec("foo", "openeo_foo", 3)
    assert specs["bar"].conn_id == "my_bar" and specs["bar"].parallel_jobs == 2
    assert specs["foo"].pool == pool_name("foo") == "openeo_foo"
    with pytest.raises(ValueError, match="at least one backend"):
        parse_backends({})
    with pytest.raises(ValueError, match="parallel_jobs must be a positive integer"):
        parse_backends({"foo": {"parallel_jobs": 0}})
    with pytest.raises(ValueError, match="unknown setting"):
        parse_backends({"foo": {"paralel_jobs": 2}})
    with pytest.raises(ValueError, match="names a pool"):
        parse_backends({"foo bar": {}})


def test_rows_to_run_resumes_interrupted_rows_and_undownloaded_results():
    table = _table(
        ["not_started", "queued_for_start", "created", "running", "finished", "finished", "finished", "error"],
        results_state=[None, None, None, None, "downloaded", "downloading", "failed", None],
    )
    assert list(rows_to_run(table).index) == [100, 101, 102, 103, 105, 106]
    assert 107 in rows_to_run(table, rerun_statuses=["error"]).index


def test_the_plan_fixes_no_backend_and_without_shares_lets_every_group_take_every_row():
    """Which backend runs a row is decided when a slot frees; the plan only sizes each backend's group. Without
    shares (no history tells which backend is faster) either backend may turn out to take nearly every row."""
    specs = parse_backends({"foo": {"parallel_jobs": 3}, "bar": {"parallel_jobs": 1}})
    plan = plan_run(_table(["not_started"] * 40), specs, max_rows=100)
    assert plan.row_ids == list(range(100, 140))
    assert plan.slots == {"foo": 40, "bar": 40}
    assert plan.remaining == 0 and not plan.rejected


def test_with_shares_by_slots_a_group_holds_its_share_with_slack_and_a_pool_more():
    specs = parse_backends({"foo": {"parallel_jobs": 3}, "bar": {"parallel_jobs": 1}})
    plan = plan_run(_table(["not_started"] * 40), specs, max_rows=100, shares={"foo": 0.75, "bar": 0.25})
    assert plan.slots == {"foo": 40, "bar": 13 + 1}  # bar: ceil(40 x 1/4 x 1.25) + 1


def test_the_plan_sizes_groups_by_the_shares_it_is_given():
    specs = parse_backends({"foo": {"parallel_jobs": 4}, "bar": {"parallel_jobs": 4}})
    plan = plan_run(_table(["not_started"] * 100), specs, max_rows=100, shares={"foo": 0.25, "bar": 0.75})
    assert plan.slots == {"foo": 32 + 4, "bar": 94 + 4}
    assert sum(plan.slots.values()) >= len(plan.row_ids), "together the groups cover every row"


def test_under_the_default_a_run_takes_a_few_rows_more_rather_than_leave_a_short_last_run():
    """200 rows at the default 192 per run: one run of 200, not a run of 192 and one of 8 (a chained run starts
    only after the run before it ended). A limit the user set is kept to the row."""
    specs = parse_backends({"foo": {}, "bar": {}})
    stretch = short_last_run_rows(None, max_map_length=1024)
    assert stretch == DEFAULT_MAX_ROWS_PER_RUN // 8 == 24
    plan = plan_run(_table(["not_started"] * 200), specs, max_rows=DEFAULT_MAX_ROWS_PER_RUN, short_last_run=stretch)
    assert (plan.planned, plan.remaining) == (200, 0)
    plan = plan_run(_table(["not_started"] * 217), specs, max_rows=DEFAULT_MAX_ROWS_PER_RUN, short_last_run=stretch)
    assert (plan.planned, plan.remaining) == (192, 25), "25 rows left are a run worth its head and tail"
    assert short_last_run_rows(192, max_map_length=1024) == 0, "the user's own limit"
    assert short_last_run_rows(None, max_map_length=200) == 8, "never past max_map_length"
    assert short_last_run_rows(None, max_map_length=100) == 0


def test_pins_size_only_their_backend_and_unknown_backends_are_refused_naming_row_and_field():
    specs = parse_backends({"foo": {}, "bar": {}})
    table = _table(["not_started"] * 4, backend_names=["bar", "bar", "nope", None])
    plan = plan_run(table, specs, max_rows=10)
    assert plan.row_ids == [100, 101, 103]
    assert plan.slots == {"foo": 1, "bar": 3}
    assert plan.rejected == {102: "row 102: field 'backend_name' is 'nope', not one of the backends (bar, foo)"}


def test_a_backend_the_dispatch_chose_is_no_pin_once_the_row_holds_no_job():
    assert pinned_backend({"backend_name": "foo", "backend_chosen_by": "dispatch", "id": None}) is None
    assert pinned_backend({"backend_name": "foo", "backend_chosen_by": "dispatch", "id": "j-1"}) == "foo"
    assert pinned_backend({"backend_name": "foo", "backend_chosen_by": "user", "id": None}) == "foo"
    assert pinned_backend({"backend_name": "foo", "id": float("nan")}) == "foo", "a pin from the job source"
    assert pinned_backend({"backend_name": float("nan")}) is None


def test_a_5000_row_batch_is_split_so_no_mapped_task_exceeds_max_map_length():
    """Default Airflow: max_map_length 1024. 5,000 rows take five runs of at most 1,024 instances per backend."""
    specs = parse_backends({"foo": {"parallel_jobs": 4}, "bar": {"parallel_jobs": 4}})
    table = _table(["not_started"] * 5000)
    runs = []
    while True:
        plan = plan_run(rows_to_run(table), specs, max_rows=rows_per_run(5000, max_map_length=1024))
        if not plan.planned:
            break
        runs.append(len(plan.row_ids))
        assert all(count <= 1024 for count in plan.slots.values())
        table.loc[plan.row_ids, "status"] = "finished"
        table.loc[plan.row_ids, "results_state"] = "downloaded"
    assert runs == [1024, 1024, 1024, 1024, 904]


@pytest.mark.parametrize(
    ("asked", "max_map_length", "expected"),
    [(None, 1024, DEFAULT_MAX_ROWS_PER_RUN), (50, 1024, 50), (5000, 1024, 1024), (None, 64, 64)],
)
def test_rows_per_run_default_to_a_short_scheduler_loop_and_never_exceed_max_map_length(
    asked, max_map_length, expected
):
    assert rows_per_run(asked, max_map_length=max_map_length) == expected
