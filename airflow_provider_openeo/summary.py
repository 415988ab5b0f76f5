"""What a batch run reports at the end: counts by status, per-backend figures, usage and costs, from the job table.

The job table, not the run's task states, is the truth: a row can finish in an earlier run, or be retried, and
the summary must still add up to the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from airflow_provider_openeo._usage import COSTS_COLUMN, USAGE_COLUMNS, parse_costs, parse_usage
from airflow_provider_openeo.job_status import RowStatus


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
    values = (parse_costs(value, job_id="(summary)") for value in rows[COSTS_COLUMN].tolist() if not pd.isna(value))
    return float(sum(value for value in values if value is not None))


def summarize(
    table: pd.DataFrame, backend_names: Iterable[str], usage_columns: Iterable[str] = USAGE_COLUMNS
) -> dict[str, Any]:
    """Counts by status, per-backend figures, usage and costs per backend and for the whole batch, and MBJM's
    ``run_jobs`` stats keys where the table can tell them.

    :param usage_columns: the table's usage columns (``OpenEOJobDbHook.usage_columns``): each is summed per unit
        under ``usage``; ``costs_total`` sums ``costs``.
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
            "failed": int(row_status.isin([RowStatus.ERROR.value, RowStatus.START_FAILED.value]).sum()),
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
