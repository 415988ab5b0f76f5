"""What a batch run reports at the end: counts by status and per-backend figures, read from the job table.

The job table, not the run's task states, is the truth: a row can finish in an earlier run, or be retried, and
the summary must still add up to the table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import pandas as pd

from airflow_provider_openeo.job_status import RowStatus

_LEADING_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


def usage_value(text: Any) -> float | None:
    """The number in an MBJM usage cell such as ``"12.5 cpu-seconds"``; None when absent or unreadable."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    match = _LEADING_NUMBER.match(str(text))
    return float(match.group(1)) if match else None


def summarize(table: pd.DataFrame, backend_names: Iterable[str]) -> dict[str, Any]:
    """Counts by status, per-backend figures, and MBJM's ``run_jobs`` stats keys where the table can tell them."""
    status = table["status"].fillna(RowStatus.NOT_STARTED.value) if len(table) else pd.Series(dtype=str)
    counts = {str(k): int(v) for k, v in status.value_counts().sort_index().items()}
    per_backend: dict[str, dict[str, Any]] = {}
    for name in backend_names:
        rows = table[table["backend_name"] == name] if len(table) else table
        row_status = rows["status"] if len(rows) else pd.Series(dtype=str)
        durations = [v for v in map(usage_value, rows.get("duration", [])) if v is not None]
        costs = [v for v in map(usage_value, rows.get("costs", [])) if v is not None]
        per_backend[name] = {
            "rows": len(rows),
            "jobs": int(rows["id"].notna().sum()) if len(rows) else 0,
            "finished": int((row_status == RowStatus.FINISHED.value).sum()),
            "failed": int(row_status.isin([RowStatus.ERROR.value, RowStatus.START_FAILED.value]).sum()),
            "canceled": int((row_status == RowStatus.CANCELED.value).sum()),
            "duration_total": sum(durations),
            "duration_mean": (sum(durations) / len(durations)) if durations else None,
            "costs_total": sum(costs),
        }
    stats = {
        "job finished": counts.get(RowStatus.FINISHED.value, 0),
        "job failed": counts.get(RowStatus.ERROR.value, 0),
        "job canceled": counts.get(RowStatus.CANCELED.value, 0),
        "start_job skipped": counts.get(RowStatus.SKIPPED.value, 0),
        "start_job error": counts.get(RowStatus.START_FAILED.value, 0),
    }
    return {"rows": len(table), "counts": counts, "backends": per_backend, "stats": stats}


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
