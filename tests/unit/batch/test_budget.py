"""The budget (``max_costs``): the rule, its atomic claim in real job databases, and the parse-time checks.

The claim's concurrency is tested with spawned processes (fresh interpreters, like Airflow task processes) racing
for rows on one table, on SQLite and PostgreSQL: exactly as many rows win as the budget has room for.
"""

from __future__ import annotations

import multiprocessing
import traceback
from types import SimpleNamespace
from typing import Any

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
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
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

CLAIM = {"status": "queued_for_start", "claimed_by": "me"}


def _blocked(ledger: BudgetLedger, expected: float) -> dict[str, Any]:
    return {"blocked_by": BLOCKED_BY_BUDGET, "error_message": ledger.refusal(expected)}


def _table_with_history(db: OpenEOJobDbHook, rows: int, *, costs: tuple[float, ...] = (1.0, 1.0)) -> None:
    """``len(costs)`` finished rows on backend foo with those costs, then ``rows`` rows not started."""
    done = len(costs)
    db.initialize_from_df(pd.DataFrame({"n": range(done + rows)}))
    for row_id, cost in enumerate(costs):
        db.update_row(row_id, {"status": "finished", "backend_name": "foo", "costs": cost, "id": f"j-{row_id}"})


def test_the_claim_reserves_the_expected_cost_and_refuses_once_the_budget_is_used(job_db: OpenEOJobDbHook):
    _table_with_history(job_db, 3, costs=(1.0, 2.0, 3.0))  # spent 6, a job on foo is expected to cost 2

    won, ledger, expected = job_db.claim_within_budget(
        3, CLAIM, expected={"status": "not_started"}, max_costs=9.0, backend_name="foo", blocked=_blocked
    )
    assert (won, ledger.committed, expected) == (True, 6.0, 2.0)
    assert job_db.get_row(3)["estimated_costs"] == 2.0
    assert job_db.budget_ledger(9.0).committed == 8.0

    won, ledger, _ = job_db.claim_within_budget(
        4, CLAIM, expected={"status": "not_started"}, max_costs=9.0, backend_name="foo", blocked=_blocked
    )
    row = job_db.get_row(4)
    assert not won and ledger.committed == 8.0
    assert (row["status"], row["blocked_by"], row["claimed_by"]) == ("not_started", "max_costs", None)
    assert "the 1 left is less than a job's expected 2" in row["error_message"]


def test_a_lost_compare_and_set_writes_nothing(job_db: OpenEOJobDbHook):
    _table_with_history(job_db, 1)
    won, ledger, expected = job_db.claim_within_budget(
        2, CLAIM, expected={"status": "running"}, max_costs=100.0, backend_name="foo", blocked=_blocked
    )
    assert not won and ledger.allows(expected)
    assert job_db.get_row(2)["status"] == "not_started"


def test_a_backend_without_history_expects_the_median_of_every_backend(job_db: OpenEOJobDbHook):
    _table_with_history(job_db, 1, costs=(4.0,))
    _, _, expected = job_db.claim_within_budget(
        1, CLAIM, expected={"status": "not_started"}, max_costs=100.0, backend_name="bar", blocked=_blocked
    )
    assert expected == 4.0


def test_an_estimate_replaces_the_reservation_only_if_it_fits(job_db: OpenEOJobDbHook):
    _table_with_history(job_db, 2, costs=(1.0,))  # spent 1, expected 1
    for row_id in (1, 2):
        job_db.claim_within_budget(
            row_id, CLAIM, expected={"status": "not_started"}, max_costs=4.0, backend_name="foo", blocked=_blocked
        )
        job_db.update_row(row_id, {"id": f"j-{row_id}", "status": "created"})
    assert job_db.budget_ledger(4.0).committed == 3.0

    fits, others = job_db.confirm_estimate(1, "j-1", 1.5, max_costs=4.0)  # others: 1 spent + 1 reserved by row 2
    assert fits and others.committed == 2.0
    assert job_db.get_row(1)["estimated_costs"] == 1.5
    fits, others = job_db.confirm_estimate(2, "j-2", 2.0, max_costs=4.0)  # 1 + 1.5 + 2 > 4
    assert not fits and others.committed == 2.5
    assert job_db.get_row(2)["estimated_costs"] == 1.0, "nothing written when the estimate does not fit"


PROCESSES = 4
ROWS = 8
#: Spent 2 (two jobs of 1.0), room for exactly 3 more jobs expected at 1.0 each.
MAX_COSTS = 5.0


def _claimer(k: int, conn_id: str | None, sqlite_path: str | None, table: str, barrier: Any, results: Any) -> None:
    try:
        hook = OpenEOJobDbHook(conn_id, table=table, sqlite_path=sqlite_path)
        hook.count_by_status()  # connect and load the schema before the race starts
        barrier.wait(timeout=120)
        won = []
        for row_id in range(2 + k, 2 + ROWS, PROCESSES):  # each process its own rows: only the budget is shared
            claimed, _, _ = hook.claim_within_budget(
                row_id,
                {"status": "queued_for_start", "claimed_by": f"worker-{k}"},
                expected={"status": "not_started"},
                max_costs=MAX_COSTS,
                backend_name="foo",
                blocked=_blocked,
            )
            if claimed:
                won.append(row_id)
        results.put(("ok", k, won))
    except BaseException:
        results.put(("error", k, traceback.format_exc()))


@pytest.mark.slow
def test_concurrent_claims_never_pass_the_last_unit_of_budget_together(job_db: OpenEOJobDbHook):
    """Four processes claim eight rows at once; the budget has room for three: exactly three start, on SQLite and
    PostgreSQL, and the rows left say why."""
    _table_with_history(job_db, ROWS)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    sqlite_path = str(job_db.sqlite_path) if job_db.sqlite_path is not None else None
    processes = [
        context.Process(target=_claimer, args=(k, job_db.job_db_conn_id, sqlite_path, job_db.table, barrier, results))
        for k in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=60)

    errors = [o[2] for o in outcomes if o[0] == "error"]
    assert not errors, errors[0]
    winners = sorted(row for _, _, won in outcomes for row in won)
    assert len(winners) == 3, winners
    table = job_db.read()
    assert job_db.budget_ledger(MAX_COSTS).committed == MAX_COSTS
    assert (table["status"] == "queued_for_start").sum() == 3
    assert (table["blocked_by"] == BLOCKED_BY_BUDGET).sum() == ROWS - 3
