"""The dispatch on a real job database (SQLite and PostgreSQL): claims, give-backs, backend records, skips.

Several processes (fresh interpreters, as Airflow task processes are) claim the rows of one run at once: every row
is taken by exactly one slot, pinned rows only by their backend's slots.
"""

from __future__ import annotations

from airflow_provider_openeo.batch.row_dispatch import (
    count_unused,
    split_run_key,
)


def test_instances_that_ended_or_hold_a_row_are_not_counted_unused():
    states = {"b.run_bar.job_0": "deferred", "b.run_bar.job_1": "success", "b.run_bar.job_2": None, "other_3": None}
    assert count_unused(states, ["b.run_bar.job"], held={"b.run_bar.job[0]"}) == 1
    assert split_run_key("my_dag/manual__2026-12-04T18:01:32+00:00") == ("my_dag", "manual__2026-12-04T18:01:32+00:00")
