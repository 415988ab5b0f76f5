"""A batch's budget: ``max_costs``, in the backend's currency or credits, checked before every row starts.

The rule (pure functions here; the job database applies it atomically, ``OpenEOJobDbHook.claim_within_budget``):

* **committed** = the ``costs`` the job table records (every row's, and those of jobs a row gave up, kept in its
  ``job_history``) + the ``estimated_costs`` of rows whose job is being started or is running and has no costs yet.
* A row's **expected** cost, reserved on it when it is claimed: the median ``costs`` of the table's jobs on its
  backend (else on any backend), 0 while no job of the batch has reported costs. Once its job exists, the
  backend's ``GET /jobs/{id}/estimate`` (where served) replaces the reservation, checked again before the job
  starts (a job whose estimate does not fit is deleted unstarted).
* A row starts only when ``committed < max_costs`` and ``committed + expected <= max_costs``: the budget is a cap
  that the batch, as far as it can tell, stays under. Otherwise the row stays ``not_started`` (so a run with a
  raised ``max_costs`` takes it at once), with ``blocked_by = "max_costs"`` and an ``error_message`` saying
  what was spent and what is left.

Claims are serialised by the job database (SQLite's write lock, a PostgreSQL advisory lock on the table), and each
sees the reservations of the claims before it: two rows starting at once cannot both take the last of the
budget. The cap can still be passed by what no number foretold: a job costing more than its estimate (the
difference, for the jobs running when the cap is met), and, on a backend serving no estimate, the first jobs of a
batch, which start while no job has reported costs (expected 0), each up to its own cost.

``max_costs`` comes from the run's conf or Param :data:`MAX_COSTS_PARAM` (the trigger form), else the batch's
``max_costs=`` argument; None means no budget.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from airflow.sdk import Param

from airflow_provider_openeo.batch.run_settings import run_setting
from airflow_provider_openeo.job_table._usage import COSTS_COLUMN, parse_costs
from airflow_provider_openeo.job_table.job_status import JOB_HOLDING_ROW_STATUSES, RowStatus

#: The Param (and conf key) setting one run's budget.
MAX_COSTS_PARAM = "max_costs"
#: The row's reservation while its job is being started or runs: the expectation, then the backend's estimate.
ESTIMATED_COSTS_COLUMN = "estimated_costs"
#: Why a ``not_started`` row was not started; cleared when the row is claimed again.
BLOCKED_BY_COLUMN = "blocked_by"
BLOCKED_BY_BUDGET = "max_costs"
#: Row statuses whose ``estimated_costs`` count as committed (a job being started or running, no costs yet).
RESERVING_STATUSES: frozenset[str] = JOB_HOLDING_ROW_STATUSES


def checked_max_costs(name: str, value: Any) -> float | None:
    """A budget as given (``name`` says where): a positive finite number, its text, or None / ``""`` for none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number of the backend's currency or credits, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number (the backend's currency or credits) or None, got {value!r}")
    return float(value)


def max_costs_param(default: float | None = None) -> Param:
    """The trigger form's budget field: add it to the DAG's ``params`` as ``{MAX_COSTS_PARAM: max_costs_param()}``
    (its default should match the batch's ``max_costs``)."""
    return Param(
        checked_max_costs("max_costs_param(default)", default),
        type=["null", "number"],
        exclusiveMinimum=0,
        title="Budget (max_costs)",
        description=(
            "No new row starts once the costs the job table records, plus the estimates of the jobs running, reach "
            "this many of the backend's currency or credits. Empty: no budget."
        ),
    )


def requested_max_costs(context: Mapping[str, Any], default: float | None) -> float | None:
    """This run's budget (:func:`~airflow_provider_openeo.batch.run_settings.run_setting`)."""
    return run_setting(context, MAX_COSTS_PARAM, checked_max_costs, default)


@dataclass(frozen=True)
class BudgetLedger:
    """What the job table says of a budget at one moment."""

    max_costs: float
    spent: float
    running: float

    @property
    def committed(self) -> float:
        return self.spent + self.running

    @property
    def remaining(self) -> float:
        return max(0.0, self.max_costs - self.committed)

    def allows(self, expected: float) -> bool:
        """Whether a row expected to cost ``expected`` may start (see the module doc)."""
        return self.committed < self.max_costs and self.committed + max(expected, 0.0) <= self.max_costs

    def refusal(self, expected: float) -> str:
        """The row's ``error_message`` when :meth:`allows` said no."""
        reason = (
            f"budget reached: max_costs {_n(self.max_costs)}, spent {_n(self.spent)} (costs recorded) + "
            f"{_n(self.running)} (estimated for jobs running) = {_n(self.committed)}"
        )
        if self.committed < self.max_costs:
            reason += f"; the {_n(self.remaining)} left is less than a job's expected {_n(expected)}"
        return f"{reason}; the row was not started: raise max_costs (trigger form or conf) to run it"

    def report(self) -> dict[str, float]:
        return {
            "max_costs": self.max_costs,
            "spent": round(self.spent, 6),
            "running_estimate": round(self.running, 6),
            "remaining": round(self.remaining, 6),
        }


def history_costs(history: Any) -> float:
    """Costs of the jobs a row gave up (``job_history`` entries carry them since the budget exists)."""
    total = 0.0
    for entry in history or ():
        if isinstance(entry, Mapping):
            costs = parse_costs(entry.get(COSTS_COLUMN), job_id=str(entry.get("id")))
            total += costs or 0.0
    return total


def expected_costs(costs: Iterable[float]) -> float:
    """A row's expected cost: the median of earlier jobs' costs (0 without any)."""
    values = [c for c in costs if c is not None and math.isfinite(c) and c >= 0]
    return float(statistics.median(values)) if values else 0.0


def ledger_of(table: pd.DataFrame, max_costs: float) -> BudgetLedger:
    """The ledger from a whole table read (the summary's view; the claim computes the same in SQL)."""
    spent = running = 0.0
    if len(table):
        costs = pd.to_numeric(table.get(COSTS_COLUMN), errors="coerce") if COSTS_COLUMN in table else None
        if costs is not None:
            spent += float(costs.fillna(0).sum())
        if "job_history" in table:
            spent += sum(history_costs(h) for h in table["job_history"].tolist() if isinstance(h, list))
        if ESTIMATED_COSTS_COLUMN in table:
            live = table["status"].isin(RESERVING_STATUSES)
            if costs is not None:
                live &= costs.isna()
            estimates = pd.to_numeric(table.loc[live, ESTIMATED_COSTS_COLUMN], errors="coerce").fillna(0)
            running = float(estimates.sum())
    return BudgetLedger(max_costs=max_costs, spent=spent, running=running)


def budget_report(table: pd.DataFrame, max_costs: float | None) -> dict[str, Any] | None:
    """The summary's ``budget``: max, spent, running estimate, remaining, and the rows it held back."""
    if max_costs is None:
        return None
    report: dict[str, Any] = ledger_of(table, max_costs).report()
    blocked = 0
    if len(table) and BLOCKED_BY_COLUMN in table:
        held = (table[BLOCKED_BY_COLUMN] == BLOCKED_BY_BUDGET) & (table["status"] == RowStatus.NOT_STARTED.value)
        blocked = int(held.sum())
    report["rows_not_started"] = blocked
    return report


def _n(value: float) -> str:
    return f"{value:.6g}"
