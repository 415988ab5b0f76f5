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


def rows(
    count: int,
    tag: str,
    *,
    queue_seconds: float = STANDARD["queue_seconds"],
    slow: dict[str, Any] | None = None,
    **durations: float,
) -> pd.DataFrame:
    """``count`` rows titled ``<tag>-<n>``: the tag tells one run's jobs apart on the shared backends.

    ``slow`` (see :data:`HETEROGENEOUS`) makes one backend slower for every row: its jobs queue longer and run
    longer, whoever sends them there (``start_job`` reads it from the row and the ``provider`` it is called for).
    """
    frame = pd.DataFrame(
        {
            "title": [f"{tag}-{n:05d}" for n in range(count)],
            "tile": list(range(count)),
            "queue_seconds": queue_seconds,
            "run_seconds": run_seconds(count, **durations),
        }
    )
    if slow:
        frame["slow_backend"] = slow["backend"]
        frame["slow_queue_seconds"] = slow["queue_seconds"]
        frame["slow_factor"] = slow["factor"]
    return frame


#: Workload 4: near-instant jobs, where only the orchestration's own cost per row is left to see.
INSTANT: dict[str, float] = {"queue_seconds": 0.0, "mean": 0.3, "jitter": 0.1}


#: Workload 6: backends of unequal speed. On ``foo`` every job queues 8 s (not 2 s) and runs 3x longer; ``bar`` is
#: workload 1's backend. A batch that splits rows up front waits for ``foo`` while ``bar`` idles.
HETEROGENEOUS: dict[str, Any] = {"backend": "foo", "queue_seconds": 8.0, "factor": 3.0}

PROFILES = ("standard", "instant", "heterogeneous")


def rows_of_profile(profile: str, count: int, tag: str) -> pd.DataFrame:
    """The rows of a named profile: ``standard`` (workload 1), ``instant`` (workload 4), ``heterogeneous`` (6)."""
    if profile == "standard":
        return rows(count, tag)
    if profile == "instant":
        return rows(count, tag, **INSTANT)
    if profile == "heterogeneous":
        return rows(count, tag, slow=HETEROGENEOUS)
    raise ValueError(f"unknown workload profile {profile!r}; known: {', '.join(PROFILES)}")


def mean_job_seconds(count: int) -> float:
    """The mean backend-side time of a job of a ``count``-row workload: what an ideal client waits per slot."""
    return STANDARD["queue_seconds"] + statistics.fmean(run_seconds(count))


def heterogeneous_job_seconds(count: int, slots: dict[str, int]) -> float:
    """The mean job time an ideal client sees on workload 6: ``sum(slots) / sum(slots_b / job time on b)``, so that
    ``rows / sum(slots) x`` this is the makespan of a client that keeps every slot of both backends busy."""
    fast = mean_job_seconds(count)
    slow = HETEROGENEOUS["queue_seconds"] + HETEROGENEOUS["factor"] * statistics.fmean(run_seconds(count))
    times = {name: slow if name == HETEROGENEOUS["backend"] else fast for name in slots}
    return sum(slots.values()) / sum(n / times[name] for name, n in slots.items())


def start_job(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
    """MBJM's callable signature; a one-band load saved as GTiff (the local backend serves one small asset)."""
    cube = connection.load_collection("S2_FOOBAR", bands=["B04"])
    queue, run = float(row["queue_seconds"]), float(row["run_seconds"])
    if "slow_backend" in row and kwargs.get("provider") == row["slow_backend"]:
        queue, run = float(row["slow_queue_seconds"]), run * float(row["slow_factor"])
    options = {"local_backend": {"queue_seconds": queue, "run_seconds": run}}
    return cube.save_result("GTiff").create_job(title=str(row["title"]), job_options=options)
