"""Where the idle gap goes: each row's path from its job ending on the backend to its task instance ending.

Read from the live Airflow's own task and trigger logs (JSON lines with timestamps) and the backend's job
timeline. Per row, in order:

- ``detect``: the job ended on the backend -> the trigger fired its event (the poll interval's share);
- ``to_resume``: the event -> the resumed task process began (scheduler loop, executor, fork);
- ``resume``: the resumed task, DAG parse + result download + row write, until it ended;
- ``start``: for the row's first try, its task process began -> the job was created (parse + POST /jobs).

The median idle gap minus ``detect + to_resume + resume + start`` is the hand-over: a freed pool slot noticed by
the scheduler and the next row's task queued and forked.
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
    events = []
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


def row_parts(task_log: Path, ended_by_job: Mapping[str, float], created_by_job: Mapping[str, float]) -> dict | None:
    """One row's parts from its first attempt's log (and its trigger log), or None if it did not get that far."""
    events = _events(task_log)
    job_id = next((m.group(1) for _, e in events if (m := _JOB_ID.search(e))), None)
    starts = [t for t, e in events if e.startswith("::group::Pre Execute")]
    trigger_logs = sorted(task_log.parent.glob(task_log.name + ".trigger.*.log"))
    if job_id is None or job_id not in ended_by_job or len(starts) < 2 or not trigger_logs:
        return None
    fired = _first(_events(trigger_logs[-1]), "Trigger fired event")
    finished = max(t for t, _ in events)
    if fired is None:
        return None
    return {
        "start": created_by_job[job_id] - starts[0],
        "detect": fired - ended_by_job[job_id],
        "to_resume": starts[1] - fired,
        "resume": finished - starts[1],
    }


def gap_parts(logs_dir: Path, dag_id: str, backend_jobs: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median seconds of each part over every row of ``dag_id``'s runs."""
    spans = [span for name, jobs in backend_jobs.items() for span in spans_from_backend_jobs(name, jobs)]
    ended = {s.job_id: s.ended for s in spans if s.ended is not None}
    created = {s.job_id: s.created for s in spans}
    rows = [
        parts
        for log in sorted((logs_dir / f"dag_id={dag_id}").glob("run_id=*/task_id=*.run_*/map_index=*/attempt=1.log"))
        if (parts := row_parts(log, ended, created)) is not None
    ]
    if not rows:
        return {"rows": 0}
    medians = {key: round(statistics.median(r[key] for r in rows), 2) for key in rows[0]}
    return {"rows": len(rows), "median_s": medians}
