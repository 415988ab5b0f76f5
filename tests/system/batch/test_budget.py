"""The budget (``max_costs``): the rule, its atomic claim in real job databases, and the parse-time checks.

The claim's concurrency is tested with processes (forked clean, like Airflow task processes:
``tests.fixtures.races``) racing for rows on one table, on SQLite and PostgreSQL: exactly as many rows win as the
budget has room for.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from airflow_provider_openeo.batch.budget import (
    BLOCKED_BY_BUDGET,
    BudgetLedger,
)
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from tests.fixtures.races import race_on_table

# -- the rule ---------------------------------------------------------------------------------------------------


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


def _claimer(hook: OpenEOJobDbHook, k: int) -> list[int]:
    """Process k claims its own rows (only the budget is shared); the rows it won."""
    won = []
    for row_id in range(2 + k, 2 + ROWS, PROCESSES):
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
    return won


@pytest.mark.slow
def test_concurrent_claims_never_pass_the_last_unit_of_budget_together(job_db: OpenEOJobDbHook):
    """Four processes claim eight rows at once; the budget has room for three: exactly three start, on SQLite and
    PostgreSQL, and the rows left say why."""
    _table_with_history(job_db, ROWS)
    outcomes = race_on_table(job_db, _claimer, PROCESSES)

    winners = sorted(row for won in outcomes for row in won)
    assert len(winners) == 3, winners
    table = job_db.read()
    assert job_db.budget_ledger(MAX_COSTS).committed == MAX_COSTS
    assert (table["status"] == "queued_for_start").sum() == 3
    assert (table["blocked_by"] == BLOCKED_BY_BUDGET).sum() == ROWS - 3
