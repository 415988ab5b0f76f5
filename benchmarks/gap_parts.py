"""Where the idle gap goes: each row's path from its job ending on the backend to the next job on that slot.

Read from the live Airflow's own task and trigger logs (JSON lines with timestamps) and the backend's job
timeline. Per row (its ``job`` task's first attempt, and its ``results`` task):

- ``detect``: the job ended on the backend -> the trigger fired (the poll interval's share); the trigger ends
  the ``job`` task there and then, which frees the backend's pool slot;
- ``start``: the row's ``job`` task process began -> its job was created (parse + ``POST /jobs``);
- ``results``: the ``results`` task, from its process beginning to its end (download, metadata, row write);
  off the slot's path, it delays only when the row's files are there: ``stored_after_end``, the job's end on the
  backend -> the results task ended.

Per idle gap (a slot's job ending -> the next job created on that slot, paired as ``metrics.assign_lanes`` pairs
them), the gap is split exactly into the ending job's ``detect``, the ``hand_over`` (its trigger fired -> the
next row's ``job`` task process began: the event reaching the database, the triggerer sends events once a second;
the scheduler noticing the free pool slot; the task queued and forked) and the next row's ``start``. The median
and p95 of each, and their means over the slowest 5% of gaps, show where the tail goes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.metrics import JobSpan, assign_lanes, percentile, spans_from_backend_jobs

_JOB_ID = re.compile(r"\bjob (j-[0-9a-f]+)\b")


#: The line Airflow logs when a task process begins its task, and the one its trigger runner logs when a trigger fires.
TASK_BEGAN = "::group::Pre Execute"
TRIGGER_FIRED = "Trigger fired event"


def log_events(path: Path) -> list[tuple[float, str]]:
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


def first_event(events: list[tuple[float, str]], prefix: str) -> float | None:
    """When the first event whose message starts with ``prefix`` was logged (None: never)."""
    return next((t for t, e in events if e.startswith(prefix)), None)


@dataclass(frozen=True)
class RowTimes:
    """Epoch seconds of one row's milestones in the live Airflow's logs."""

    job_id: str
    task_started: float
    """Its ``job`` task's first attempt began (``Pre Execute``)."""
    fired: float
    """Its trigger fired: the job's end was noticed and the ``job`` task ended there."""
    results_started: float | None = None
    results_ended: float | None = None
    """The ``results`` task attempt that stored the files (the last one)."""


def row_times(job_log: Path) -> RowTimes | None:
    """One row's milestones from its ``job`` task's first attempt (and trigger log) and its ``results`` task, or
    None if the row did not get that far."""
    events = log_events(job_log)
    job_id = next((m.group(1) for _, e in events if (m := _JOB_ID.search(e))), None)
    started = first_event(events, TASK_BEGAN)
    trigger_logs = sorted(job_log.parent.glob(job_log.name + ".trigger.*.log"))
    fired = first_event(log_events(trigger_logs[-1]), TRIGGER_FIRED) if trigger_logs else None
    if job_id is None or started is None or fired is None:
        return None
    task_dir = job_log.parent.parent
    results_dir = task_dir.parent / (task_dir.name.removesuffix(".job") + ".results") / job_log.parent.name
    attempts = sorted(results_dir.glob("attempt=*.log"), key=lambda path: int(path.stem.split("=")[1]))
    results = log_events(attempts[-1]) if attempts else []
    results_started = first_event(results, TASK_BEGAN)
    results_ended = max(t for t, _ in results) if results_started is not None else None
    return RowTimes(job_id, started, fired, results_started, results_ended)


def _row_parts(row: RowTimes, span: JobSpan) -> dict[str, float]:
    parts = {"start": span.created - row.task_started}
    if span.ended is not None:
        parts["detect"] = row.fired - span.ended
    if row.results_started is not None and row.results_ended is not None:
        parts["results"] = row.results_ended - row.results_started
        if span.ended is not None:
            parts["stored_after_end"] = row.results_ended - span.ended
    return parts


def _gap_split(rows: Mapping[str, RowTimes], spans: list[JobSpan]) -> list[dict[str, float]]:
    """Each idle gap of one backend, split into the ending job's detect, the hand-over, the next job's start."""
    gaps = []
    for lane in assign_lanes(spans):
        for previous, following in itertools.pairwise(lane):
            ending, next_row = rows.get(previous.job_id), rows.get(following.job_id)
            if ending is None or next_row is None or previous.ended is None:
                continue
            gaps.append(
                {
                    "gap": following.created - previous.ended,
                    "detect": ending.fired - previous.ended,
                    "hand_over": next_row.task_started - ending.fired,
                    "start": following.created - next_row.task_started,
                }
            )
    return gaps


def _summary(samples: list[dict[str, float]], statistic: Callable[[list[float]], float | None]) -> dict[str, float]:
    keys = dict.fromkeys(key for sample in samples for key in sample)
    values = {key: statistic([s[key] for s in samples if key in s]) for key in keys}
    return {key: round(value, 2) for key, value in values.items() if value is not None}


def gap_parts(logs_dir: Path, dag_id: str, backend_jobs: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each part's median over every row of ``dag_id``'s runs, and the idle gaps split into their parts."""
    spans = {name: spans_from_backend_jobs(name, jobs) for name, jobs in backend_jobs.items()}
    span_of = {span.job_id: span for group in spans.values() for span in group}
    pattern = "run_id=*/task_id=*.run_*.job/map_index=*/attempt=1.log"
    rows = {
        row.job_id: row
        for log in sorted((logs_dir / f"dag_id={dag_id}").glob(pattern))
        if (row := row_times(log)) is not None and row.job_id in span_of
    }
    if not rows:
        return {"rows": 0}
    figures: dict[str, Any] = {
        "rows": len(rows),
        "median_s": _summary([_row_parts(row, span_of[job_id]) for job_id, row in rows.items()], statistics.median),
    }
    gaps = [gap for group in spans.values() for gap in _gap_split(rows, group)]
    if gaps:
        figures["median_s"]["hand_over"] = _summary(gaps, statistics.median)["hand_over"]
        threshold = percentile([g["gap"] for g in gaps], 95)
        figures["gaps"] = {
            "count": len(gaps),
            "median_s": _summary(gaps, statistics.median),
            "p95_s": _summary(gaps, lambda values: percentile(values, 95)),
            "slowest_5pct_mean_s": _summary([g for g in gaps if g["gap"] >= threshold], statistics.fmean),
        }
    return figures
