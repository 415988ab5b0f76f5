"""Job database figures: one row update, claiming a row (the package's claim rule), counting by status, on SQLite and
PostgreSQL at 1,000 / 10,000 / 100,000 rows, next to MBJM's CsvJobDatabase / ParquetJobDatabase persisting one
changed row of the same table (which rewrites the whole file).

    python -m benchmarks.bench_job_db [--sizes 1000 10000 100000] [--repeat 200] [--no-postgres]

Prints JSON: milliseconds per operation (median and 95th percentile). Speed targets live here, never in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

_WORKDIR = Path(tempfile.mkdtemp(prefix="bench_job_db_"))
os.environ.setdefault("AIRFLOW_HOME", str(_WORKDIR / "airflow-home"))
_PG_CONN_ID = "openeo_job_db_bench"
os.environ.setdefault(
    f"AIRFLOW_CONN_{_PG_CONN_ID.upper()}",
    json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "test"}),
)

import pandas as pd  # noqa: E402
from openeo.extra.job_management import CsvJobDatabase, ParquetJobDatabase, create_job_db  # noqa: E402

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook  # noqa: E402
from airflow_provider_openeo.start.job_starting import claim_values  # noqa: E402


def _frame(rows: int) -> pd.DataFrame:
    """A job table like MBJM users have: a few parameter columns per row."""
    rng = random.Random(rows)
    return pd.DataFrame(
        {
            "title": [f"tile {i}" for i in range(rows)],
            "year": [2000 + i % 25 for i in range(rows)],
            "threshold": [rng.random() for _ in range(rows)],
            "bbox": [f"{rng.uniform(-180, 180):.4f},{rng.uniform(-90, 90):.4f}" for _ in range(rows)],
        }
    )


def _timed(operation: Callable[[int], Any], repeat: int) -> dict[str, float]:
    samples = []
    for i in range(repeat):
        start = time.perf_counter()
        operation(i)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 3),
        "n": repeat,
    }


def _bench_hook(hook: OpenEOJobDbHook, rows: int, repeat: int) -> dict[str, Any]:
    started = time.perf_counter()
    hook.initialize_from_df(_frame(rows))
    result: dict[str, Any] = {"initialize_s": round(time.perf_counter() - started, 2)}
    targets = random.Random(1).sample(range(rows), min(repeat, rows))
    try:
        result["update_row"] = _timed(
            lambda i: hook.update_row(targets[i], {"status": "running", "backend_status": "running"}), len(targets)
        )
        result["update_row_cas"] = _timed(
            lambda i: hook.update_row(targets[i], {"status": "finished"}, expected={"status": "running"}),
            len(targets),
        )
        result["claim"] = _timed(
            lambda i: hook.update_row(targets[i], claim_values("bench"), expected={"claimed_by": None}), len(targets)
        )
        result["count_by_status"] = _timed(lambda i: hook.count_by_status(), max(10, repeat // 4))
        result["get_row"] = _timed(lambda i: hook.get_row(targets[i]), len(targets))
    finally:
        hook.drop()
        hook.dispose()
    return result


def _bench_mbjm(suffix: str, rows: int, repeat: int) -> dict[str, Any]:
    path = _WORKDIR / f"mbjm_{rows}{suffix}"
    database = create_job_db(path, _frame(rows))
    database = (CsvJobDatabase if suffix == ".csv" else ParquetJobDatabase)(path)
    database.read()  # MBJM keeps the frame in memory after the first read; persist then writes the file
    targets = random.Random(2).sample(range(rows), min(repeat, rows))

    def persist_one(i: int) -> None:
        changed = database.get_by_indices([targets[i]]).copy()
        changed["status"] = "running"
        database.persist(changed)

    try:
        return {"persist_one_row": _timed(persist_one, len(targets))}
    finally:
        path.unlink(missing_ok=True)


def _postgres_reachable() -> bool:
    try:
        return OpenEOJobDbHook(_PG_CONN_ID, table="bench_probe").exists() in (True, False)
    except Exception:
        return False


def measure(sizes: list[int], repeat: int = 200, *, postgres: bool = True) -> dict[str, Any]:
    """Every figure for every table size: ``{"postgres": where or why not, "results": {rows: figures}}``."""
    use_postgres = postgres and _postgres_reachable()
    report: dict[str, Any] = {
        "postgres": "127.0.0.1:5432" if use_postgres else "skipped (unreachable or disabled)",
        "results": {},
    }
    for rows in sizes:
        figures: dict[str, Any] = {}
        table = f"bench_{uuid.uuid4().hex[:12]}"
        figures["sqlite"] = _bench_hook(
            OpenEOJobDbHook(table=table, sqlite_path=_WORKDIR / f"bench_{rows}.db"), rows, repeat
        )
        if use_postgres:
            figures["postgres"] = _bench_hook(OpenEOJobDbHook(_PG_CONN_ID, table=table), rows, repeat)
        # MBJM rewrites the whole file per persist: fewer repetitions at 100k rows keep the run short
        mbjm_repeat = max(5, min(50, 50_000 // rows))
        figures["mbjm_csv"] = _bench_mbjm(".csv", rows, mbjm_repeat)
        figures["mbjm_parquet"] = _bench_mbjm(".parquet", rows, mbjm_repeat)
        report["results"][str(rows)] = figures
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=200, help="operations timed per figure (SQL)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        **measure(args.sizes, args.repeat, postgres=not args.no_postgres),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
