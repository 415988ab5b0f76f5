"""Triggerer memory per deferred job: N real ``OpenEOJobTrigger`` s waiting on N real jobs, in one event loop.

A triggerer runs every deferred task's trigger as a coroutine in one asyncio loop; what each one costs is the
trigger object, its coroutine, its share of the shared status poller (one paginated ``GET /jobs`` per
interval and connection) and its row reference. This runs exactly that against a local backend and a SQLite
job table, in a fresh process so that the resident set says what the triggers hold:

    python -m benchmarks.trigger_memory --url http://127.0.0.1:8081 --jobs 1000

Prints JSON: RSS before and while N triggers wait (MB), MB per 1,000 deferred jobs, requests per poll interval.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

CONN_ID = "openeo_bench_memory"


def _rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def _create_jobs(url: str, count: int) -> list[str]:
    import openeo

    from local_backend.launcher import BASIC_PASSWORD, BASIC_USER

    connection = openeo.connect(url).authenticate_basic(BASIC_USER, BASIC_PASSWORD)
    graph = {"load": {"process_id": "load_collection", "arguments": {"id": "S2_FOOBAR"}, "result": True}}
    return [connection.create_job(graph, title=f"memory-{n}").job_id for n in range(count)]


async def _wait_all(triggers: list[Any], seconds: float) -> float:
    """Run every trigger for ``seconds`` (none ends: the jobs stay ``created``); RSS at the end."""
    tasks = [asyncio.ensure_future(anext(trigger.run())) for trigger in triggers]
    await asyncio.sleep(seconds)
    during = _rss_mb()
    ended = [task for task in tasks if task.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for trigger in triggers:
        await trigger.cleanup()
    if ended:
        raise RuntimeError(f"{len(ended)} of {len(tasks)} triggers ended early: {ended[0].result()!r}")
    return during


def measure(url: str, jobs: int, *, poll_interval: float = 2.0, rounds: int = 3) -> dict[str, Any]:
    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
    from airflow_provider_openeo.job_table.job_row import JobRowRef
    from airflow_provider_openeo.triggers.openeo import OpenEOJobTrigger
    from local_backend.launcher import BASIC_PASSWORD, BASIC_USER

    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "openeo", "host": url, "login": BASIC_USER, "password": BASIC_PASSWORD}
    )
    import pandas as pd

    job_ids = _create_jobs(url, jobs)
    sqlite_path = Path(tempfile.mkdtemp(prefix="trigger_memory_")) / "jobs.db"
    db = OpenEOJobDbHook(table="memory", sqlite_path=str(sqlite_path))
    db.initialize_from_df(pd.DataFrame({"title": [f"memory-{n}" for n in range(jobs)]}))
    for row_id, job_id in enumerate(job_ids):
        db.update_row(row_id, {"id": job_id, "status": "created", "backend_name": "bench"})
    db.dispose()

    def triggers(count: int) -> list[OpenEOJobTrigger]:
        return [
            OpenEOJobTrigger(
                CONN_ID,
                job_ids[n],
                poll_interval=poll_interval,
                row=JobRowRef(table="memory", row_id=n, sqlite_path=str(sqlite_path)).to_dict(),
            )
            for n in range(count)
        ]

    # Warm-up with a handful: imports, the HTTP session and the SQLite engine count once, not per job.
    asyncio.run(_wait_all(triggers(5), poll_interval * 1.5))
    baseline = _rss_mb()
    started = time.monotonic()
    during = asyncio.run(_wait_all(triggers(jobs), poll_interval * rounds))
    per_1000 = (during - baseline) * 1000 / jobs
    return {
        "deferred_jobs": jobs,
        "rss_before_mb": round(baseline, 1),
        "rss_waiting_mb": round(during, 1),
        "mb_per_1000_deferred": round(per_1000, 2),
        "waited_s": round(time.monotonic() - started, 1),
        "poll_interval_s": poll_interval,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="a local openEO backend (basic auth alice)")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="trigger_memory_home_"))
    print(json.dumps(measure(args.url, args.jobs, poll_interval=args.poll_interval)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
