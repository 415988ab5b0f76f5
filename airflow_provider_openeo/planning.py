"""Choose which rows a batch run starts and on which backend: pure functions over the job table.

Kept free of Airflow so the rules (what resumes, who goes where, how a big batch is cut to fit
``[core] max_map_length``) are easy to read and test on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from airflow_provider_openeo.job_status import RowStatus

#: Rows a run picks up without being asked: never started, or holding a job that may still be alive.
RESUMABLE_STATUSES: frozenset[str] = frozenset(s.value for s in RowStatus.resumable_statuses())


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
    """The outcome of planning one run: row ids per backend, rows left for a later run, rows refused."""

    assignments: dict[str, list[Any]]
    remaining: int = 0
    rejected: dict[Any, str] = field(default_factory=dict)

    @property
    def planned(self) -> int:
        return sum(len(rows) for rows in self.assignments.values())


def rows_to_run(
    table: pd.DataFrame, *, rerun_statuses: Iterable[str] = (), results_done_state: str = "downloaded"
) -> pd.DataFrame:
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
        undownloaded = table["results_state"].isna() | table["results_state"].isin(["downloading", "failed"])
        selected |= finished & undownloaded
    return table[selected]


#: Rows per backend per run unless ``max_rows_per_run`` says otherwise. Every scheduler loop re-checks the
#: upstream of each ``results`` task still waiting for its ``job`` (a few milliseconds each), so the run's size
#: sets the loop's length for the whole deployment; 128 rows still give a backend with 4 slots 32 rounds per run.
DEFAULT_MAX_ROWS_PER_RUN = 128


def rows_per_backend_per_run(max_rows_per_run: int | None, *, max_map_length: int) -> int:
    """The user's ``max_rows_per_run`` or the default, never above ``max_map_length`` (one mapped group's limit)."""
    return min(max_rows_per_run or DEFAULT_MAX_ROWS_PER_RUN, max_map_length)


def assign_backends(rows: pd.DataFrame, backends: Mapping[str, BackendSpec], *, max_rows_per_backend: int) -> Plan:
    """Give each row a backend: its own ``backend_name`` when set, otherwise in proportion to ``parallel_jobs``.

    A row holding a job stays where the job lives. Each backend gets at most ``max_rows_per_backend`` rows
    (one mapped task may not exceed ``[core] max_map_length``); the rest wait for the next run.
    """
    if max_rows_per_backend < 1:
        raise ValueError("max_rows_per_backend must be at least 1")
    assignments: dict[str, list[Any]] = {name: [] for name in backends}
    rejected: dict[Any, str] = {}
    remaining = 0
    free: list[Any] = []
    names = ", ".join(sorted(backends))
    for row_id, row in rows.iterrows():
        pinned = row.get("backend_name")
        if pinned is None or (isinstance(pinned, float) and pd.isna(pinned)) or pinned == "":
            free.append(row_id)
        elif pinned not in backends:
            rejected[row_id] = f"row {row_id!r}: field 'backend_name' is {pinned!r}, not one of the backends ({names})"
        elif len(assignments[pinned]) < max_rows_per_backend:
            assignments[pinned].append(row_id)
        else:
            remaining += 1
    for row_id in free:
        candidates = [b for b in backends.values() if len(assignments[b.name]) < max_rows_per_backend]
        if not candidates:
            remaining += 1
            continue
        # Least loaded relative to its parallel_jobs; ties go to the backend listed first.
        target = min(candidates, key=lambda b: (len(assignments[b.name]) + 1) / b.parallel_jobs)
        assignments[target.name].append(row_id)
    return Plan(assignments=assignments, remaining=remaining, rejected=rejected)
