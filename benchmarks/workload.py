"""The benchmark workload both contenders run: the same rows, the same ``start_job``, the same backends.

Job durations are set on the local backends (``queue_seconds``, ``run_seconds``), not in the jobs, so MBJM and
our DAG submit byte-identical process graphs.
"""

from __future__ import annotations

from typing import Any

import openeo
import pandas as pd

#: Issue 5, workload 1: two backends, parallel_jobs 4 each, jobs queue ~2 s and run ~28 s, one small asset.
STANDARD = {"backends": ("foo", "bar"), "parallel_jobs": 4, "queue_seconds": 2.0, "run_seconds": 28.0}


def rows(count: int, tag: str) -> pd.DataFrame:
    """``count`` rows titled ``<tag>-<n>``: the tag tells one run's jobs apart on the shared backends."""
    return pd.DataFrame({"title": [f"{tag}-{n:05d}" for n in range(count)], "tile": list(range(count))})


def start_job(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
    """MBJM's callable signature; a one-band load saved as GTiff (the local backend serves one small asset)."""
    cube = connection.load_collection("S2_FOOBAR", bands=["B04"])
    return cube.save_result("GTiff").create_job(title=str(row["title"]))
