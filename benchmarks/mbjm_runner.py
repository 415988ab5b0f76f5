"""Run openeo's own ``MultiBackendJobManager.run_jobs`` on the benchmark workload, as its users do."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import openeo
from openeo.extra.job_management import CsvJobDatabase, MultiBackendJobManager

from benchmarks import workload
from local_backend.launcher import BASIC_PASSWORD, BASIC_USER, LocalBackend


def run_mbjm(
    backends: dict[str, LocalBackend],
    *,
    rows: int,
    parallel_jobs: int,
    poll_sleep: float,
    work_dir: Path,
    tag: str,
    profile: str = "standard",
) -> dict[str, Any]:
    """One MBJM run; returns wall time and the ids of the jobs it created (read from its own job db)."""
    shutil.rmtree(work_dir, ignore_errors=True)  # a job db left by an earlier run would be resumed, not run
    work_dir.mkdir(parents=True)
    manager = MultiBackendJobManager(poll_sleep=poll_sleep, root_dir=work_dir / "results")
    for name, backend in backends.items():
        connection = openeo.connect(backend.url).authenticate_basic(BASIC_USER, BASIC_PASSWORD)
        manager.add_backend(name, connection=connection, parallel_jobs=parallel_jobs)
    job_db = CsvJobDatabase(work_dir / "jobs.csv").initialize_from_df(workload.rows_of_profile(profile, rows, tag))
    started = time.time()
    manager.run_jobs(start_job=workload.start_job, job_db=job_db)
    wall = time.time() - started
    table = job_db.read()
    return {"wall_s": wall, "job_ids": set(table["id"].dropna()), "statuses": table["status"].value_counts().to_dict()}
