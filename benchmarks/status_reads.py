"""Where one backend's status requests go, poll by poll: the triggerer's status poller without Airflow around it.

    python -m benchmarks.status_reads [--jobs 12] [--history 5000] [--profile geopyspark]

Workload 7 of ``make bench`` (BENCHMARKS.md section 1c) counts status requests per job on the backends; this tool
explains them. It starts one local backend in a production profile with an account's old jobs (``seed_history``),
keeps ``--slots`` jobs of the bench's run times in flight (a new one created and started as soon as an event says one
ended, after the hand-over delay the bench measured), and watches them through the real
:class:`~airflow_provider_openeo.triggers._status_poller.StatusPoller` and ``OpenEOAsyncHook``, as the triggerer
does. Every status read is recorded: regular or early (sent before the interval was up, for a forecast end), the jobs
it had to read and those it could report in passing, the listing pages and job reads it cost, and listing pages
that showed none of the watched jobs (scanned past them). Also: how long after its end each job's end was delivered
(``detect``, the part of the idle gap the status reads decide).

Not a benchmark of ours against MBJM (``make bench`` is): a fast, quiet loop to see what a change to the read rules
does, in about two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

CONN_ID = "openeo_status_reads"
ADD = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}
#: The bench's median hand-over plus start (BENCHMARKS.md, gap_parts): from an end's event to the next job started.
HAND_OVER_SECONDS = 1.6
TERMINAL = {"finished", "error", "canceled"}


@dataclass
class Read:
    at: float
    early: bool
    required: int
    optional: int
    pages: int = 0
    pages_past: int = 0
    job_reads: int = 0


@dataclass
class Record:
    reads: list[Read] = field(default_factory=list)
    delivered_end: dict[str, float] = field(default_factory=dict)


def _counting_hook(hook: Any, record: Record, interval: float, watched: set[str]) -> Any:
    """Wrap ``hook`` so each ``read_jobs`` call and each request it makes is recorded."""
    sized = hook._request_sized
    read_jobs = hook.read_jobs
    current: list[Read] = []

    async def request_sized(method: str, url: str, **kwargs: Any) -> Any:
        body, size = await sized(method, url, **kwargs)
        if current and kwargs.get("action") == "GET /jobs":
            current[-1].pages += 1
            jobs = body.get("jobs") if isinstance(body, dict) else None
            if not any(isinstance(job, dict) and job.get("id") in watched for job in jobs or []):
                current[-1].pages_past += 1
        elif current and method == "GET":
            current[-1].job_reads += 1
        return body, size

    async def counted_read_jobs(job_ids: Any, **kwargs: Any) -> Any:
        now = time.time()
        last = record.reads[-1].at if record.reads else None
        early = last is not None and now - last < interval - 0.2
        read = Read(now, early, len(list(job_ids)), len(list(kwargs.get("optional", ()))))
        record.reads.append(read)
        current.append(read)
        try:
            return await read_jobs(job_ids, **kwargs)
        finally:
            current.pop()

    hook._request_sized = request_sized
    hook.read_jobs = counted_read_jobs
    return hook


async def _run(args: argparse.Namespace, backend: Any) -> tuple[Record, list[str]]:
    import openeo

    from airflow_provider_openeo.hooks.openeo import OpenEOAsyncHook
    from airflow_provider_openeo.triggers import _status_poller
    from benchmarks.workload import STANDARD, run_seconds
    from local_backend.credentials import BASIC_PASSWORD, BASIC_USER

    record = Record()
    watched: set[str] = set()
    connection = openeo.connect(backend.url).authenticate_basic(BASIC_USER, BASIC_PASSWORD)
    durations = run_seconds(2 * args.jobs)[: args.jobs]  # one backend's share of the bench's rows
    created: list[str] = []

    def factory(conn_id: str) -> Any:
        return _counting_hook(OpenEOAsyncHook(conn_id), record, args.interval, watched)

    async def one(index: int) -> None:
        options = {"local_backend": {"queue_seconds": STANDARD["queue_seconds"], "run_seconds": durations[index]}}

        def start() -> str:
            job = connection.create_job(ADD, title=f"status-reads-{index}", job_options=options)
            job.start()
            return job.job_id

        job_id = await asyncio.to_thread(start)
        created.append(job_id)
        watched.add(job_id)
        subscription = _status_poller.subscribe(CONN_ID, job_id, interval=args.interval, hook_factory=factory)
        try:
            while True:
                update = await subscription.next_update()
                status = str((update.metadata or {}).get("status") or "").lower() if update else ""
                if update is not None and (update.error is not None or status in TERMINAL):
                    record.delivered_end[job_id] = time.time()
                    return
        finally:
            watched.discard(job_id)
            await subscription.close()

    queue = list(range(args.jobs))

    async def slot() -> None:
        while queue:
            await one(queue.pop(0))
            await asyncio.sleep(HAND_OVER_SECONDS)

    await asyncio.gather(*(slot() for _ in range(args.slots)))
    return record, created


def summarise(record: Record, backend_jobs: list[dict[str, Any]], created: list[str]) -> dict[str, Any]:
    jobs = len(created)
    ends = {}
    for job in backend_jobs:
        if job["id"] in record.delivered_end:
            times = job["times"]
            ended = next((times.get(s) for s in ("finished", "error", "canceled") if times.get(s)), None)
            if ended is not None:
                ends[job["id"]] = record.delivered_end[job["id"]] - ended
    kinds: Counter[str] = Counter()
    for read in record.reads:
        kind = "early" if read.early else "regular"
        kinds[f"{kind} polls"] += 1
        kinds[f"{kind} listing pages"] += read.pages
        kinds[f"{kind} listing pages past the watched jobs"] += read.pages_past
        kinds[f"{kind} job reads"] += read.job_reads
        kinds[f"{kind} jobs to read"] += read.required
        kinds[f"{kind} jobs reported in passing"] += read.optional
    requests = sum(r.pages + r.job_reads for r in record.reads)
    return {
        "jobs": jobs,
        "status_requests_per_job": round(requests / jobs, 2),
        "listing_pages_per_job": round(sum(r.pages for r in record.reads) / jobs, 2),
        "job_reads_per_job": round(sum(r.job_reads for r in record.reads) / jobs, 2),
        "breakdown": dict(sorted(kinds.items())),
        "first_poll": {"pages": record.reads[0].pages, "job_reads": record.reads[0].job_reads} if record.reads else {},
        "detect_s": {
            "median": round(statistics.median(ends.values()), 2) if ends else None,
            "max": round(max(ends.values()), 2) if ends else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--history", type=int, default=5_000)
    parser.add_argument("--profile", default="geopyspark")
    args = parser.parse_args()

    from local_backend.launcher import start_local_backend
    from tests.fixtures.local_backend import backend_connection

    backend = start_local_backend(name="status-reads")
    try:
        backend.configure(profile=args.profile)
        backend.seed_history(args.history, seed=1)
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(backend_connection(backend, "basic"))
        record, created = asyncio.run(_run(args, backend))
        print(json.dumps(summarise(record, backend.jobs(), created), indent=1))
    finally:
        backend.stop()


if __name__ == "__main__":
    main()
