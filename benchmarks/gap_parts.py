"""Where the idle gap goes: each row's path from its job ending on the backend to the next job on that slot.

Read from the live Airflow's own task and trigger logs (JSON lines with timestamps) and the backend's job
timeline. Per row (its ``job`` task's first attempt, and its ``results`` task):

- ``detect``: the job ended on the backend -> the trigger fired (the poll interval's share); the trigger ends
  the ``job`` task there and then, which frees the backend's pool slot;
- ``start``: the row's ``job`` task process began -> its job was created (parse + ``POST /jobs``);
- ``results``: the ``results`` task, from its process beginning to its end (download, metadata, row write);
  off the slot's path, it delays only when the row's files are there: ``stored_after_end``, the job's end on the
  backend -> the results task ended.

The median idle gap minus ``detect + start`` is the hand-over: the trigger's event reaching the database (the
triggerer sends events once a second), the scheduler noticing the free pool slot, the next row's task queued
and forked.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.metrics import spans_from_backend_jobs

_JOB_ID = re.compile(r"\bjob (j-[0-9a-f]+)\b")


def _events(path: Path) -> list[tuple[float, str]]:
    """(epoch, message) of each JSON log line; none for a log that does not exist."""
    events: list[tuple[float, str]] = []
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        stamp = record.get("timestamp")
        if stamp:
            when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            events.append((when, str(record.get("event") or "")))
    return events


def _first(events: list[tuple[float, str]], prefix: str) -> float | None:
    return next((t for t, e in events if e.startswith(prefix)), None)


def row_parts(
    job_log: Path, ended_by_job: Mapping[str, float], created_by_job: Mapping[str, float]
) -> dict[str, float] | None:
    """One row's parts from its ``job`` task's first attempt (and trigger log) and its ``results`` task, or None
    if the row did not get that far."""
    events = _events(job_log)
    job_id = next((m.group(1) for _, e in events if (m := _JOB_ID.search(e))), None)
    started = _first(events, "::group::Pre Execute")
    trigger_logs = sorted(job_log.parent.glob(job_log.name + ".trigger.*.log"))
    if job_id is None or job_id not in ended_by_job or job_id not in created_by_job or started is None:
        return None
    fired = _first(_events(trigger_logs[-1]), "Trigger fired event") if trigger_logs else None
    if fired is None:
        return None
    parts = {"start": created_by_job[job_id] - started, "detect": fired - ended_by_job[job_id]}
    task_dir = job_log.parent.parent
    results_dir = task_dir.parent / (task_dir.name.removesuffix(".job") + ".results") / job_log.parent.name
    attempts = sorted(results_dir.glob("attempt=*.log"), key=lambda path: int(path.stem.split("=")[1]))
    results = _events(attempts[-1]) if attempts else []  # the attempt that stored them
    results_started = _first(results, "::group::Pre Execute")
    if results_started is not None:
        results_ended = max(t for t, _ in results)
        parts["results"] = results_ended - results_started
        parts["stored_after_end"] = results_ended - ended_by_job[job_id]
    return parts


def gap_parts(logs_dir: Path, dag_id: str, backend_jobs: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median seconds of each part over every row of ``dag_id``'s runs."""
    spans = [span for name, jobs in backend_jobs.items() for span in spans_from_backend_jobs(name, jobs)]
    ended = {s.job_id: s.ended for s in spans if s.ended is not None}
    created = {s.job_id: s.created for s in spans}
    pattern = "run_id=*/task_id=*.run_*.job/map_index=*/attempt=1.log"
    rows = [
        parts
        for log in sorted((logs_dir / f"dag_id={dag_id}").glob(pattern))
        if (parts := row_parts(log, ended, created)) is not None
    ]
    if not rows:
        return {"rows": 0}
    keys = dict.fromkeys(key for row in rows for key in row)
    medians = {key: round(statistics.median(r[key] for r in rows if key in r), 2) for key in keys}
    return {"rows": len(rows), "median_s": medians}
