"""What a batch run reports at the end: counts by status, per-backend figures, usage and costs, from the job table.

The job table, not the run's task states, is the truth: a row can finish in an earlier run, or be retried, and
the summary must still add up to the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from airflow_provider_openeo.batch.error_categories import ErrorCategory
from airflow_provider_openeo.batch.failure_policy import RETRY_BY_POLICY, RETRY_KEY, FailurePolicy, attempt_streak
from airflow_provider_openeo.job_table._usage import COSTS_COLUMN, USAGE_COLUMNS, parse_costs, parse_usage
from airflow_provider_openeo.job_table.cells import is_empty
from airflow_provider_openeo.job_table.job_history import clean
from airflow_provider_openeo.job_table.job_status import FAILED_ROW_STATUSES, RowStatus


def usage_totals(rows: pd.DataFrame, usage_columns: Iterable[str]) -> dict[str, dict[str, float]]:
    """Usage of ``rows`` added up per key and per unit: ``{"cpu": {"cpu-seconds": 120.0}, ...}``.

    Per unit, because nothing says two backends count in the same one (cpu-seconds here, cpu-hours there); a
    value without unit counts under ``""``. Keys no row reported are left out.
    """
    totals: dict[str, dict[str, float]] = {}
    for column in usage_columns:
        if column not in rows.columns:
            continue
        for amount in map(parse_usage, rows[column].tolist()):
            if amount is not None:
                per_unit = totals.setdefault(column, {})
                per_unit[amount.unit] = per_unit.get(amount.unit, 0.0) + amount.value
    return totals


def costs_total(rows: pd.DataFrame) -> float:
    """The sum of the rows' ``costs`` (in the backend's currency or credits); rows without costs count 0."""
    if COSTS_COLUMN not in rows.columns:
        return 0.0
    values = (parse_costs(value, job_id="(summary)") for value in rows[COSTS_COLUMN].tolist() if not is_empty(value))
    return float(sum(value for value in values if value is not None))


def failure_counts(table: pd.DataFrame, policy: FailurePolicy | None = None) -> dict[str, Any]:
    """What the failure policy did, from the job table (``job_history`` and ``error_category``):

    - ``error_categories``: rows now in ``error``, per category (``other`` for a row without one);
    - ``retried_jobs``: failed jobs the policy replaced, per category (every row's whole ``job_history``);
    - ``retried_rows``: rows with at least one such job; ``retried_then_finished``: those now ``finished``;
    - ``gave_up``: rows in ``error`` whose category the policy retries but whose attempts ran out;
      ``not_retried``: rows in ``error`` whose category it never retries (with ``policy`` None: every row in
      ``error`` counts as not retried).
    """
    categories: dict[str, int] = {}
    retried_jobs: dict[str, int] = {}
    retried_rows = retried_then_finished = gave_up = not_retried = 0
    if not len(table):
        return _failure_result(categories, retried_jobs, 0, 0, 0, 0)
    has_category = "error_category" in table.columns
    for _, row in table.iterrows():
        history = [e for e in (clean(row.get("job_history")) or []) if isinstance(e, dict)]
        retried = [e for e in history if e.get(RETRY_KEY) == RETRY_BY_POLICY]
        for entry in retried:
            category = str(entry.get("error_category") or ErrorCategory.OTHER.value)
            retried_jobs[category] = retried_jobs.get(category, 0) + 1
        status = clean(row.get("status"))
        if retried:
            retried_rows += 1
            retried_then_finished += status == RowStatus.FINISHED.value
        if status != RowStatus.ERROR.value:
            continue
        category = str((clean(row.get("error_category")) if has_category else None) or ErrorCategory.OTHER.value)
        categories[category] = categories.get(category, 0) + 1
        if policy is not None and category in policy.retry and policy.retries(category):
            gave_up += len(attempt_streak(history)) + 1 >= policy.max_attempts
        else:
            not_retried += 1
    return _failure_result(categories, retried_jobs, retried_rows, retried_then_finished, gave_up, not_retried)


def _failure_result(
    categories: dict[str, int],
    retried_jobs: dict[str, int],
    retried_rows: int,
    retried_then_finished: int,
    gave_up: int,
    not_retried: int,
) -> dict[str, Any]:
    return {
        "error_categories": dict(sorted(categories.items())),
        "retried_jobs": dict(sorted(retried_jobs.items())),
        "retried_rows": int(retried_rows),
        "retried_then_finished": int(retried_then_finished),
        "gave_up": int(gave_up),
        "not_retried": int(not_retried),
    }


def summarize(
    table: pd.DataFrame,
    backend_names: Iterable[str],
    usage_columns: Iterable[str] = USAGE_COLUMNS,
    failure_policy: FailurePolicy | None = None,
) -> dict[str, Any]:
    """Counts by status, per-backend figures, usage and costs per backend and for the whole batch, and MBJM's
    ``run_jobs`` stats keys where the table can tell them.

    :param usage_columns: the table's usage columns (``OpenEOJobDbHook.usage_columns``): each is summed per unit
        under ``usage``; ``costs_total`` sums ``costs``.
    :param failure_policy: the batch's, for ``failures`` (:func:`failure_counts`).
    """
    usage_columns = list(usage_columns)
    status = table["status"].fillna(RowStatus.NOT_STARTED.value) if len(table) else pd.Series(dtype=str)
    counts = {str(k): int(v) for k, v in status.value_counts().sort_index().items()}
    per_backend: dict[str, dict[str, Any]] = {}
    for name in backend_names:
        rows = table[table["backend_name"] == name] if len(table) else table
        row_status = rows["status"] if len(rows) else pd.Series(dtype=str)
        durations = [a.value for a in map(parse_usage, rows.get("duration", pd.Series(dtype=object))) if a is not None]
        per_backend[name] = {
            "rows": len(rows),
            "jobs": int(rows["id"].notna().sum()) if len(rows) else 0,
            "finished": int((row_status == RowStatus.FINISHED.value).sum()),
            "failed": int(row_status.isin(sorted(FAILED_ROW_STATUSES)).sum()),
            "canceled": int((row_status == RowStatus.CANCELED.value).sum()),
            "duration_total": sum(durations),
            "duration_mean": (sum(durations) / len(durations)) if durations else None,
            "costs_total": costs_total(rows),
            "usage": usage_totals(rows, usage_columns),
        }
    stats = {
        "job finished": counts.get(RowStatus.FINISHED.value, 0),
        "job failed": counts.get(RowStatus.ERROR.value, 0),
        "job canceled": counts.get(RowStatus.CANCELED.value, 0),
        "start_job skipped": counts.get(RowStatus.SKIPPED.value, 0),
        "start_job error": counts.get(RowStatus.START_FAILED.value, 0),
    }
    return {
        "rows": len(table),
        "counts": counts,
        "backends": per_backend,
        "usage": usage_totals(table, usage_columns),
        "costs_total": costs_total(table),
        "failures": failure_counts(table, failure_policy),
        "stats": stats,
    }


def run_progress(table: pd.DataFrame, run_key: str) -> dict[str, int]:
    """What one DAG run did with the rows its plan covered: ``rows``, ``taken`` (an instance held them) and
    ``left`` (no instance took them: their backend went down and the others' instances were all taken).

    The rows left continue in the next run when this run took at least one row; a run that took none would
    only chain another that fares no better, so it stops and the summary says why.
    """
    if not len(table) or "dispatch_run" not in table.columns:
        return {"rows": 0, "taken": 0, "left": 0}
    mine = table[table["dispatch_run"] == run_key]
    held = mine["dispatch_slot"].notna() & (mine["dispatch_slot"].astype(str) != "")
    waiting = mine["status"].fillna(RowStatus.NOT_STARTED.value) == RowStatus.NOT_STARTED.value
    return {"rows": len(mine), "taken": int(held.sum()), "left": int((~held & waiting).sum())}


def rows_carried_over(progress: dict[str, int]) -> bool:
    """Whether rows a run left continue in a next run (see :func:`run_progress`)."""
    return progress["left"] > 0 and progress["taken"] > 0
