"""Choose which rows a batch run covers: pure functions over the job table.

Kept free of Airflow so the rules (what resumes, which rows are pinned, how a big batch is cut to fit
``[core] max_map_length``) are easy to read and test on their own. Which backend a row runs on is not chosen
here but when a slot frees (``dispatching``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from airflow_provider_openeo.batch.dispatching import RunRow, instances_per_backend
from airflow_provider_openeo.hooks._job_db.columns import BACKEND_CHOSEN_BY_DISPATCH, SOURCE_RUN_COLUMN
from airflow_provider_openeo.job_table.cells import clean
from airflow_provider_openeo.job_table.job_status import RESUMABLE_ROW_STATUSES, UNSTORED_RESULTS_STATES, RowStatus

#: Rows a run picks up without being asked: never started, or holding a job that may still be alive.
RESUMABLE_STATUSES: frozenset[str] = RESUMABLE_ROW_STATUSES


@dataclass(frozen=True)
class BackendSpec:
    """One backend of a batch: its Airflow connection and how many jobs it may run at once."""

    name: str
    conn_id: str
    parallel_jobs: int = 2

    @property
    def pool(self) -> str:
        return pool_name(self.name)


def pool_name(backend_name: str) -> str:
    return f"openeo_{backend_name}"


def parse_backends(backends: Mapping[str, Mapping[str, Any]]) -> dict[str, BackendSpec]:
    """Validate MBJM-style backend settings at DAG-parse time, so a typo fails the import, not the run."""
    if not backends:
        raise ValueError("backends: give at least one backend, e.g. {'foo': {'conn_id': 'openeo_foo'}}")
    specs: dict[str, BackendSpec] = {}
    for name, settings in backends.items():
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"backends: name {name!r} must be letters, digits, '_' or '-' (it names a pool)")
        unknown = set(settings) - {"conn_id", "parallel_jobs"}
        if unknown:
            raise ValueError(f"backends[{name!r}]: unknown setting(s) {sorted(unknown)}")
        parallel_jobs = settings.get("parallel_jobs", 2)
        if not isinstance(parallel_jobs, int) or isinstance(parallel_jobs, bool) or parallel_jobs < 1:
            raise ValueError(f"backends[{name!r}]: parallel_jobs must be a positive integer, got {parallel_jobs!r}")
        specs[name] = BackendSpec(
            name=name, conn_id=settings.get("conn_id", f"openeo_{name}"), parallel_jobs=parallel_jobs
        )
    return specs


@dataclass
class Plan:
    """The outcome of planning one run: the rows it covers, how many instances each backend's group gets, rows
    left for a later run, rows refused (with the message for the row)."""

    row_ids: list[Any]
    slots: dict[str, int]
    remaining: int = 0
    rejected: dict[Any, str] = field(default_factory=dict)

    @property
    def planned(self) -> int:
        return len(self.row_ids)


def rows_to_run(table: pd.DataFrame, *, rerun_statuses: Iterable[str] = ()) -> pd.DataFrame:
    """Rows this run must handle, in table order.

    Resumable rows always; finished rows whose results were not (fully) downloaded, because neither a crash
    during a download nor a download that failed through all of its retries may lose results; and rows in
    ``rerun_statuses`` when the user asks for re-runs.
    """
    wanted = set(RESUMABLE_STATUSES) | set(rerun_statuses)
    status = table["status"].fillna(RowStatus.NOT_STARTED.value)
    selected = status.isin(wanted)
    if "results_state" in table.columns:
        finished = status == RowStatus.FINISHED.value
        undownloaded = table["results_state"].isna() | table["results_state"].isin(sorted(UNSTORED_RESULTS_STATES))
        selected |= finished & undownloaded
    return table[selected]


def split_by_source(table: pd.DataFrame, run_key: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(the run's own rows, the other rows)``: own are the rows its job source holds (marked with ``run_key``
    when the source was loaded); with no ``run_key`` (no source loaded this run) every row is the run's."""
    if run_key is None or SOURCE_RUN_COLUMN not in table.columns:
        return table, table.iloc[0:0]
    mine = (table[SOURCE_RUN_COLUMN] == run_key).to_numpy()
    return table[mine], table[~mine]


def already_done(own: pd.DataFrame) -> dict[str, int]:
    """The run's own rows it will not run, by status: done in earlier runs (finished, failed, skipped ...)."""
    left = own.drop(index=rows_to_run(own).index)
    if not len(left):
        return {}
    return {str(k): int(v) for k, v in left["status"].value_counts().sort_index().items()}


#: Rows per run unless ``max_rows_per_run`` says otherwise. Every scheduler loop re-checks the upstream of each
#: ``results`` task still waiting for its ``job`` (a few milliseconds each), and the groups together hold a few
#: more instances than the run's rows (``dispatching.instances_per_backend``: 244 for 192 rows on two backends of
#: 2 slots; 388 on a new table until the run's first ended jobs show each backend's pace), so the run's size sets
#: the loop's length for the whole deployment. 192 keeps two backends' run under the 256 instances the
#: split-up-front code held at its default of 128 rows per backend (BENCHMARKS.md, scale).
DEFAULT_MAX_ROWS_PER_RUN = 192


#: Under the default rows per run, a run also takes the rows that would be left after it when they are at most this
#: part of a run: with ``[core] max_map_length`` allowing, 200 rows are one run of 200, not one of 192 and a run of
#: 8. A chained run is triggered only once the run before it has ended (its gate reads the summary of what the
#: rows did), so a short last run costs a whole run's head and tail, plus the slots left idle while the run before
#: it drains, for a few rows (workload 1, 200 rows: 857.9 s before this and the new-table groups, 819.7 s after;
#: BENCHMARKS.md).
SHORT_LAST_RUN_SHARE = 1 / 8


def rows_per_run(max_rows_per_run: int | None, *, max_map_length: int) -> int:
    """The user's ``max_rows_per_run`` or the default, never above ``max_map_length`` (one mapped group's limit)."""
    return min(max_rows_per_run or DEFAULT_MAX_ROWS_PER_RUN, max_map_length)


def short_last_run_rows(max_rows_per_run: int | None, *, max_map_length: int) -> int:
    """How many rows past :func:`rows_per_run` a run may take so that no short run of them follows.

    0 when the user set ``max_rows_per_run``: a limit the user chose is kept to the row. Never past
    ``max_map_length``.
    """
    if max_rows_per_run:
        return 0
    limit = rows_per_run(None, max_map_length=max_map_length)
    return max(0, min(int(limit * SHORT_LAST_RUN_SHARE), max_map_length - limit))


def pinned_backend(values: Mapping[str, Any]) -> str | None:
    """The backend a row must run on: the user's ``backend_name``, or the backend of the job the row holds.

    A ``backend_name`` the dispatch wrote for a row that holds no job (its job was given up) is where an earlier
    start went, not a pin: such a row may go anywhere.
    """
    backend = values.get("backend_name")
    if clean(backend) in (None, ""):
        return None
    holds_job = clean(values.get("id")) not in (None, "")
    if not holds_job and values.get("backend_chosen_by") == BACKEND_CHOSEN_BY_DISPATCH:
        return None
    return str(backend)


def plan_run(
    rows: pd.DataFrame,
    backends: Mapping[str, BackendSpec],
    *,
    max_rows: int,
    shares: Mapping[str, float] | None = None,
    short_last_run: int = 0,
) -> Plan:
    """Pick the rows this run covers (at most ``max_rows``, in table order) and size each backend's group.

    ``short_last_run``: when no more than that many rows would be left after ``max_rows``, this run takes them too
    (:func:`short_last_run_rows`).

    No row is given a backend here: an instance of a backend's group takes a row when the backend's pool gives
    it a slot (``dispatching``). A backend's group holds the rows pinned to it and its ``shares`` of the free
    ones with slack (``dispatching.instances_per_backend``); without ``shares`` (no pace known for some backend,
    ``dispatching.expected_shares``) every group may take every free row.
    A row pinned to a backend the batch does not have is refused, naming the row and the field.
    """
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    candidates: list[RunRow] = []
    rejected: dict[Any, str] = {}
    names = ", ".join(sorted(backends))
    for row_id, row in rows.iterrows():
        pinned = pinned_backend(row)
        if pinned is not None and pinned not in backends:
            rejected[row_id] = f"row {row_id!r}: field 'backend_name' is {pinned!r}, not one of the backends ({names})"
            continue
        candidates.append(RunRow(row_id, backend_name=pinned))
    limit = len(candidates) if len(candidates) - max_rows <= short_last_run else max_rows
    covered, remaining = candidates[:limit], max(0, len(candidates) - limit)
    parallel_jobs = {name: spec.parallel_jobs for name, spec in backends.items()}
    return Plan(
        row_ids=[row.row_id for row in covered],
        slots=instances_per_backend(covered, parallel_jobs, shares),
        remaining=remaining,
        rejected=rejected,
    )
