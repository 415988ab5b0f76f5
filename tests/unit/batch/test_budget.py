"""The budget (``max_costs``): the rule, its atomic claim in real job databases, and the parse-time checks.

The claim's concurrency is tested with spawned processes (fresh interpreters, like Airflow task processes) racing
for rows on one table, on SQLite and PostgreSQL: exactly as many rows win as the budget has room for.
"""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from airflow.sdk import DAG

from airflow_provider_openeo.batch.budget import (
    BLOCKED_BY_BUDGET,
    BudgetLedger,
    budget_report,
    checked_max_costs,
    expected_costs,
    ledger_of,
    max_costs_param,
    requested_max_costs,
)
from airflow_provider_openeo.batch.task_groups import openeo_job_batch
from airflow_provider_openeo.job_table.job_history import retired_values

# -- the rule ---------------------------------------------------------------------------------------------------


def test_a_row_starts_only_while_the_committed_costs_and_its_expected_cost_fit():
    ledger = BudgetLedger(max_costs=10.0, spent=6.0, running=2.0)
    assert ledger.committed == 8.0 and ledger.remaining == 2.0
    assert ledger.allows(2.0)
    assert not ledger.allows(2.5)
    assert "the 2 left is less than a job's expected 2.5" in ledger.refusal(2.5)
    reached = BudgetLedger(max_costs=10.0, spent=9.0, running=1.0)
    assert not reached.allows(0.0), "reached: not even a job of unknown cost starts"
    assert "spent 9 (costs recorded) + 1 (estimated for jobs running) = 10" in reached.refusal(0.0)
    assert "raise max_costs" in reached.refusal(0.0)


def test_expected_cost_is_the_median_of_earlier_jobs():
    assert expected_costs([]) == 0.0
    assert expected_costs([1.0, 9.0, 2.0]) == 2.0
    assert expected_costs([float("nan"), 3.0]) == 3.0


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "lots", [5]])
def test_bad_max_costs_is_refused_naming_where_it_came_from(bad):
    with pytest.raises(ValueError, match="max_costs must be a"):
        checked_max_costs("max_costs", bad)


def test_max_costs_accepts_numbers_their_text_and_none():
    assert checked_max_costs("max_costs", 5) == 5.0
    assert checked_max_costs("max_costs", " 2.5 ") == 2.5
    assert checked_max_costs("max_costs", None) is None
    assert checked_max_costs("max_costs", "") is None


def test_the_runs_conf_then_its_param_then_the_batch_argument_set_the_budget():
    run = SimpleNamespace(conf={"max_costs": 3})
    assert requested_max_costs({"dag_run": run, "params": {"max_costs": 7}}, 9.0) == 3.0
    assert requested_max_costs({"params": {"max_costs": 7}}, 9.0) == 7.0
    assert requested_max_costs({"params": {"max_costs": None}}, 9.0) is None, "the form's empty field: no budget"
    assert requested_max_costs({}, 9.0) == 9.0
    with pytest.raises(ValueError, match="the run's conf 'max_costs'"):
        requested_max_costs({"dag_run": SimpleNamespace(conf={"max_costs": -2})}, None)


def test_the_trigger_forms_field_is_a_positive_number_or_empty():
    param = max_costs_param(12)
    assert param.resolve() == 12.0
    assert param.schema["exclusiveMinimum"] == 0
    with pytest.raises(ValueError, match="max_costs_param"):
        max_costs_param(-1)


@pytest.mark.parametrize(("argument", "value"), [("max_costs", -5), ("max_costs", "cheap"), ("job_budget", 0)])
def test_bad_budgets_fail_when_the_dag_file_is_parsed(argument, value):
    with DAG("budget_parse_check", schedule=None), pytest.raises(ValueError, match=f"{argument} must be a"):
        openeo_job_batch(
            backends={"foo": {"parallel_jobs": 1}},
            start_job=lambda row, connection, connection_provider, provider: None,
            **{argument: value},
        )


def test_a_given_up_job_keeps_its_costs_in_job_history():
    values = {"id": "j-1", "backend_name": "foo", "costs": 2.5, "status": "error", "job_history": [], "attempt": 0}
    retired = retired_values(values, "error")
    assert retired["job_history"][0]["costs"] == 2.5
    assert retired["costs"] is None and retired["estimated_costs"] is None


def test_ledger_and_report_from_a_table_count_history_estimates_and_held_rows():
    table = pd.DataFrame(
        {
            "status": ["finished", "running", "queued_for_start", "not_started", "not_started", "error"],
            "costs": [2.0, None, None, None, None, 1.0],
            "estimated_costs": [9.0, 1.5, 0.5, 7.0, None, 3.0],  # only live rows without costs count theirs
            "job_history": [[{"id": "old", "costs": 4.0}], [], [], [], [], []],
            "blocked_by": [None, None, None, BLOCKED_BY_BUDGET, None, None],
        }
    )
    ledger = ledger_of(table, 10.0)
    assert (ledger.spent, ledger.running) == (7.0, 2.0)
    assert budget_report(table, 10.0) == {
        "max_costs": 10.0,
        "spent": 7.0,
        "running_estimate": 2.0,
        "remaining": 1.0,
        "rows_not_started": 1,
    }
    assert budget_report(table, None) is None


# -- the claim in the job database (SQLite and PostgreSQL) --------------------------------------------------------


#: Spent 2 (two jobs of 1.0), room for exactly 3 more jobs expected at 1.0 each.
