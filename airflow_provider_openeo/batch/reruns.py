"""Re-runs: which of a run's rows that are done already it runs again, as the trigger asked.

A run never starts a second job for a row that has one on its own: rows already ``finished`` (or failed,
canceled, skipped) stay so when the same source is triggered again, and the summary says how many. A re-run is
asked for by statuses: the batch's ``rerun_statuses`` argument for every run, or the run's Param / conf key
``rerun_statuses`` for one trigger (``["error", "canceled"]``; ``["finished"]`` to compute everything again).
The triggered run's plan re-opens those rows of its own source at once: the old job goes to ``job_history`` and
the row is ``not_started`` again, so runs chained after it (rows past ``max_rows_per_run``) take them as any
other row and never re-open them a second time: a chained run carries :data:`CONTINUES_KEY` in its conf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
from airflow.sdk import Param

from airflow_provider_openeo.batch.run_settings import run_conf, run_setting
from airflow_provider_openeo.job_table.job_history import clean, retired_values
from airflow_provider_openeo.job_table.job_status import FINAL_ROW_STATUSES, RowStatus

if TYPE_CHECKING:
    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

#: The Param (and conf key) asking one run for re-runs.
RERUN_PARAM = "rerun_statuses"
#: The conf key of a run chained by the batch (``next_run``): the run key of the run it continues.
CONTINUES_KEY = "openeo_continues"
#: Statuses a re-run can re-open: the rows that are done. Other rows are resumed by every run anyway.
REOPENABLE_STATUSES: frozenset[str] = FINAL_ROW_STATUSES


def checked_statuses(name: str, value: Any) -> tuple[str, ...]:
    """Re-run statuses as given to the batch (``name`` says where): known statuses, a list or a comma list."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise ValueError(f"{name} must be a list of row statuses, e.g. ['error', 'canceled'], got {value!r}")
    statuses = tuple(value)
    unknown = sorted({str(s) for s in statuses} - RowStatus.values())
    if unknown or not all(isinstance(s, str) for s in statuses):
        known = ", ".join(sorted(REOPENABLE_STATUSES))
        raise ValueError(f"{name}: unknown status(es) {unknown or list(statuses)}; re-runnable: {known}")
    return statuses


def rerun_param(default: Iterable[str] = ()) -> Param:
    """The trigger form's field asking a run for re-runs: add it to the DAG's ``params`` as
    ``{RERUN_PARAM: rerun_param()}`` (its default should match the batch's ``rerun_statuses``)."""
    return Param(
        list(default),
        type="array",
        items={"type": "string", "enum": sorted(REOPENABLE_STATUSES)},
        title="Run again the rows of these statuses",
        description=(
            "Rows of this run's source that are done already are not run again unless their status is listed "
            "here (e.g. error, canceled; finished computes them again)."
        ),
    )


def requested_statuses(context: Mapping[str, Any], default: tuple[str, ...]) -> tuple[str, ...]:
    """The statuses this run re-runs (:func:`~airflow_provider_openeo.batch.run_settings.run_setting`); none for a
    run the batch chained (its first run re-opened them already)."""
    if run_conf(context).get(CONTINUES_KEY):
        return ()
    return run_setting(context, RERUN_PARAM, checked_statuses, default)


def continued_run(context: Mapping[str, Any]) -> str | None:
    """The run key of the run this one continues, when the batch chained it."""
    return clean(run_conf(context).get(CONTINUES_KEY)) or None


def reopen_rows(db: OpenEOJobDbHook, rows: pd.DataFrame, statuses: Iterable[str]) -> list[Any]:
    """Make the ``rows`` whose status is in ``statuses`` (and done) ``not_started`` again, their job kept in
    ``job_history``; compare-and-set on status and job id, so a row another task changed meanwhile is left
    alone. Returns the ids of the rows re-opened."""
    wanted = set(statuses) & REOPENABLE_STATUSES
    if not wanted or not len(rows):
        return []
    reopened = []
    for row_id, row in rows[rows["status"].isin(wanted)].iterrows():
        values = {name: clean(row[name]) for name in rows.columns}
        expected = {"status": values["status"], "id": values.get("id")}
        new = {**retired_values(values, values["status"]), "claimed_by": None, "error_message": None}
        if db.update_row(row_id, new, expected=expected):
            reopened.append(row_id)
    return reopened
