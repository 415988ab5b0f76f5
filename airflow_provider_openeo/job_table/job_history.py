"""What a row keeps of a job it gives up: the job goes to ``job_history``, the row is ready for a new one.

Three paths give a job up: the starter, when a re-run row's job ended or vanished (``job_starting``), the plan,
when a run asks for re-runs of finished or failed rows (``reruns``), and the failure policy, when a failed job's
category is retried (``OpenEOBatchJobOperator.after_job_error``). All write the same values, from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_openeo.hooks._job_db.columns import BACKEND_CHOSEN_BY_DISPATCH
from airflow_provider_openeo.job_table.cells import clean
from airflow_provider_openeo.job_table.job_status import RowStatus
from airflow_provider_openeo.job_table.timestamps import utc_now_rfc3339


def unpinned(values: Mapping[str, Any]) -> dict[str, Any]:
    """Once its job is gone, a row the dispatch placed is free to go anywhere again; a user's pin stays."""
    if values.get("backend_chosen_by") == BACKEND_CHOSEN_BY_DISPATCH:
        return {"backend_name": None, "backend_chosen_by": None}
    return {}


def retired_values(
    values: Mapping[str, Any],
    final_status: str,
    *,
    note: Mapping[str, Any] | None = None,
    keep_backend: bool = False,
) -> dict[str, Any]:
    """The row's new values once its job (if any) is given up as ``final_status``: ``not_started``, the job in
    ``job_history`` (a re-run never hides what happened before; a job that ended in ``error`` keeps its
    ``error_category`` and ``error_message`` there), one more ``attempt``.

    :param note: more fields for the job's ``job_history`` entry (the failure policy's ``retry``).
    :param keep_backend: the row stays on its backend (a failure-policy retry runs in the instance holding it).
    """
    history = list(clean(values.get("job_history")) or [])
    job_id = clean(values.get("id"))
    if job_id:
        entry = {
            "id": job_id,
            "backend_name": clean(values.get("backend_name")),
            "status": final_status,
            "ended_at": utc_now_rfc3339(),
            # What the job cost stays counted against a budget (``budget``) after the row moves on.
            **({"costs": costs} if (costs := clean(values.get("costs"))) is not None else {}),
        }
        if final_status == RowStatus.ERROR.value:
            for name in ("error_category", "error_message"):
                if clean(values.get(name)) is not None:
                    entry[name] = clean(values.get(name))
        history.append({**entry, **(note or {})})
    return {
        "id": None,
        "status": RowStatus.NOT_STARTED.value,
        "backend_status": None,
        "job_history": history,
        "results_state": None,
        "running_start_time": None,
        "start_time": None,
        "estimated_costs": None,
        **({"costs": None} if job_id else {}),  # now in job_history
        "attempt": int(clean(values.get("attempt")) or 0) + 1,
        "error_category": None,
        **({} if keep_backend else unpinned(values)),
    }
