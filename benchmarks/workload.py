"""The benchmark workload both contenders run: the same rows, the same ``start_job``, the same backends.

Every row carries its own run time, drawn once (seeded) around the standard 28 s, and sends it to the local
backend in its ``job_options``: MBJM and our DAG submit byte-identical requests for the same row. Durations
must not all be equal: with every job lasting exactly 30 s, a client polling every 5 s (or 60 s) from the
moment it created its jobs sees each end the instant it happens, which no real backend grants anyone.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import openeo
import pandas as pd

#: Issue 5, workload 1: two backends, parallel_jobs 4 each, jobs that queue ~2 s and run ~28 s, one small asset.
STANDARD: dict[str, Any] = {
    "backends": ("foo", "bar"),
    "parallel_jobs": 4,
    "queue_seconds": 2.0,
    "run_seconds": 28.0,
    "run_jitter_seconds": 3.0,
}


def run_seconds(count: int, *, mean: float = STANDARD["run_seconds"], jitter: float = STANDARD["run_jitter_seconds"]):
    """``count`` run times, uniform in ``mean +- jitter``, the same for the same ``count`` (seeded)."""
    rng = random.Random(count)
    return [round(rng.uniform(mean - jitter, mean + jitter), 2) for _ in range(count)]


def rows(count: int, tag: str, *, queue_seconds: float = STANDARD["queue_seconds"], **durations: float) -> pd.DataFrame:
    """``count`` rows titled ``<tag>-<n>``: the tag tells one run's jobs apart on the shared backends."""
    return pd.DataFrame(
        {
            "title": [f"{tag}-{n:05d}" for n in range(count)],
            "tile": list(range(count)),
            "queue_seconds": queue_seconds,
            "run_seconds": run_seconds(count, **durations),
        }
    )


#: Workload 4: near-instant jobs, where only the orchestration's own cost per row is left to see.
INSTANT: dict[str, float] = {"queue_seconds": 0.0, "mean": 0.3, "jitter": 0.1}


def rows_of_profile(profile: str, count: int, tag: str) -> pd.DataFrame:
    """The rows of a named profile: ``standard`` (workload 1) or ``instant`` (workload 4)."""
    if profile == "standard":
        return rows(count, tag)
    if profile == "instant":
        return rows(count, tag, **INSTANT)
    raise ValueError(f"unknown workload profile {profile!r}; known: standard, instant")


def mean_job_seconds(count: int) -> float:
    """The mean backend-side time of a job of a ``count``-row workload: what an ideal client waits per slot."""
    return STANDARD["queue_seconds"] + statistics.fmean(run_seconds(count))


def start_job(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
    """MBJM's callable signature; a one-band load saved as GTiff (the local backend serves one small asset)."""
    cube = connection.load_collection("S2_FOOBAR", bands=["B04"])
    options = {
        "local_backend": {"queue_seconds": float(row["queue_seconds"]), "run_seconds": float(row["run_seconds"])}
    }
    return cube.save_result("GTiff").create_job(title=str(row["title"]), job_options=options)
