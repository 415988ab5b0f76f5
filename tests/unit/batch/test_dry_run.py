"""A dry run's chain rules as pure functions: which rows a chained dry run plans, and when the chain goes on."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_openeo.batch.dry_run import (
    dry_run_continues,
    dry_run_report,
    in_estimate_sample,
    requested_estimates,
    rows_to_check,
)


def test_a_chained_dry_run_plans_only_the_rows_its_chain_has_not_checked():
    rows = pd.DataFrame({"dry_run_chain": ["d/1", None, "d/0", "d/1"]}, index=[10, 11, 12, 13])
    assert list(rows_to_check(rows, "d/1").index) == [11, 12], "checked by another chain: checked again"
    assert list(rows_to_check(rows, None).index) == [10, 11, 12, 13]
    assert list(rows_to_check(rows.drop(columns="dry_run_chain"), "d/1").index) == [10, 11, 12, 13]


def test_the_chain_goes_on_while_rows_are_left_and_the_run_checked_some():
    assert dry_run_continues(checked_this_run=2, remaining=3)
    assert not dry_run_continues(checked_this_run=2, remaining=0)
    assert not dry_run_continues(checked_this_run=0, remaining=3), "the next run would take the same rows"


def test_the_report_counts_the_chain_and_says_what_is_left():
    table = pd.DataFrame(
        {
            "dry_run_chain": ["d/1", "d/1", "d/1", "d/0", None],
            "dispatch_run": ["d/1", "d/2", "d/2", "d/0", "d/2"],
            "dry_run_verdict": ["valid", "would_fail", "valid", "valid", None],
            "estimated_costs": [1.0, None, None, 5.0, None],
        }
    )
    report = dry_run_report(table, "d/1", "d/2", remaining=4)
    assert (report["rows"], report["rows_this_run"], report["would_fail"]) == (3, 2, 1)
    assert report["verdicts"] == {"valid": 2, "would_fail": 1}
    assert (report["estimated_costs"], report["estimated_rows"]) == (1.0, 1)
    assert (report["continues"], report["rows_left_to_next_run"], report["rows_not_checked"]) == (True, 4, 0)
    stuck = dry_run_report(table, "d/1", "d/3", remaining=4)
    assert (stuck["continues"], stuck["rows_left_to_next_run"], stuck["rows_not_checked"]) == (False, 0, 4)


def test_the_estimate_sample_spreads_over_the_table_without_the_rows_agreeing_on_it():
    assert [i for i in range(10) if in_estimate_sample(i, 10, 3)] == [0, 4, 8]
    assert [i for i in range(10) if in_estimate_sample(i, 10, 20)] == list(range(10)), "a sample above the rows"
    assert not any(in_estimate_sample(i, 10, 0) for i in range(10))
    assert sum(in_estimate_sample(f"key-{i}", 1000, 10) for i in range(1000)) in range(5, 20), "keys: by hash"


def test_the_estimate_sample_is_a_number_of_rows():
    assert requested_estimates({"params": {"dry_run_estimates": 3}}) == 3
    assert requested_estimates({}) == 0
    with pytest.raises(ValueError, match="Param 'dry_run_estimates' must be a number of rows"):
        requested_estimates({"params": {"dry_run_estimates": -1}})


def test_rows_without_an_estimate_are_counted_at_the_median_of_the_backends():
    table = pd.DataFrame(
        {
            "dry_run_chain": ["d/1"] * 4,
            "dispatch_run": ["d/1"] * 4,
            "dry_run_verdict": ["valid", "valid", "valid", "would_fail"],
            "estimated_costs": [2.0, 4.0, None, None],
            "estimate_source": ["backend", "history", None, None],
        }
    )
    report = dry_run_report(table, "d/1", "d/1")
    assert (report["estimated_costs"], report["estimated_by_backend"], report["extrapolated_rows"]) == (8.0, 1, 1)
    assert "estimate_note" not in report
