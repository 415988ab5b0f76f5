"""Figures of one batch run, computed from what the backends themselves saw.

Both contenders (our DAG on a live Airflow, MBJM's ``run_jobs``) are judged by the same evidence: the local
backends' job timelines (``LocalBackend.jobs()``: epoch seconds at which each job was created, queued, began
running and ended) and their request counters. Nothing is taken from the contender's own bookkeeping.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: How requests are grouped per job: (kind, predicate on "METHOD /path/template").
REQUEST_KINDS: tuple[tuple[str, Any], ...] = (
    ("create", lambda k: k == "POST /jobs"),
    ("start", lambda k: k == "POST /jobs/{job_id}/results"),
    ("status", lambda k: k in ("GET /jobs/{job_id}", "HEAD /jobs/{job_id}")),
    ("listing", lambda k: k == "GET /jobs"),
    ("results", lambda k: k in ("GET /jobs/{job_id}/results", "HEAD /jobs/{job_id}/results")),
    ("assets", lambda k: k.split(" ", 1)[1].startswith("/jobs/{job_id}/results/") or "/assets" in k),
    ("logs", lambda k: k.startswith("GET /jobs/{job_id}/logs")),
    ("cancel", lambda k: k == "DELETE /jobs/{job_id}/results"),
)


@dataclass(frozen=True)
class JobSpan:
    """One job on one backend: when it was created and when it occupied a slot (queued .. ended)."""

    backend: str
    job_id: str
    created: float
    started: float | None
    ended: float | None

    @property
    def busy_seconds(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return max(0.0, self.ended - self.started)


def spans_from_backend_jobs(
    backend: str, jobs: Iterable[Mapping[str, Any]], job_ids: set[str] | None = None
) -> list[JobSpan]:
    """``LocalBackend.jobs()`` records -> spans; ``job_ids`` keeps only one run's jobs."""
    spans = []
    for job in jobs:
        if job_ids is not None and job["id"] not in job_ids:
            continue
        times = job["times"]
        ended = next((times.get(s) for s in ("finished", "error", "canceled") if times.get(s)), None)
        spans.append(
            JobSpan(
                backend=backend,
                job_id=job["id"],
                created=times["created"],
                started=times.get("queued"),
                ended=ended,
            )
        )
    return spans


def assign_lanes(spans: Sequence[JobSpan]) -> list[list[JobSpan]]:
    """Spread one backend's jobs over slots ("lanes"): each job goes to the lane whose last job ended most
    recently before it started, which pairs every job with the one whose slot it most plausibly took over."""
    lanes: list[list[JobSpan]] = []
    for span in sorted((s for s in spans if s.started is not None), key=lambda s: s.started):
        free = [lane for lane in lanes if lane[-1].ended is not None and lane[-1].ended <= span.started]
        if free:
            max(free, key=lambda lane: lane[-1].ended).append(span)
        else:
            lanes.append([span])
    return lanes


def idle_gaps(spans: Sequence[JobSpan]) -> list[float]:
    """Seconds between a job ending on a slot and the next job being created for that slot."""
    gaps = []
    for lane in assign_lanes(spans):
        for previous, following in itertools.pairwise(lane):
            gaps.append(max(0.0, following.created - previous.ended))
    return gaps


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def run_figures(
    spans_by_backend: Mapping[str, Sequence[JobSpan]],
    slots_by_backend: Mapping[str, int],
    *,
    job_seconds: float,
    wall_seconds: float,
) -> dict[str, Any]:
    """A batch run's figures.

    ``makespan_s`` is what the user waits: from starting the batch (triggering the DAG, calling ``run_jobs``) to
    every row done, results stored (the DAG run ended, ``run_jobs`` returned). ``job_span_s`` is what the
    backends saw: first job created to last job ended; utilisation is their queued+running seconds over
    ``slots x job_span_s``. The ideal is ``ceil(rows / slots) x job_seconds`` (the mean job's backend time).
    """
    spans = [s for group in spans_by_backend.values() for s in group]
    ended = [s.ended for s in spans if s.ended is not None]
    if not spans or not ended:
        raise ValueError("no finished jobs in this run")
    job_span = max(ended) - min(s.created for s in spans)
    slots = sum(slots_by_backend.values())
    ideal = math.ceil(len(spans) / slots) * job_seconds
    gaps = [g for group in spans_by_backend.values() for g in idle_gaps(group)]
    return {
        "jobs": len(spans),
        "makespan_s": round(wall_seconds, 2),
        "job_span_s": round(job_span, 2),
        "ideal_makespan_s": round(ideal, 2),
        "utilisation": round(sum(s.busy_seconds for s in spans) / (slots * job_span), 3),
        "idle_gap_median_s": round(statistics.median(gaps), 2) if gaps else None,
        "idle_gap_p95_s": round(percentile(gaps, 95), 2) if gaps else None,
    }


def idle_share_while_rows_wait(spans: Sequence[JobSpan], all_spans: Sequence[JobSpan], slots: int) -> float | None:
    """The share of a backend's slot-seconds left idle while rows still waited for a slot anywhere.

    The window runs from the batch's first job created to its last job created (until then some row had no job
    yet); a slot counts as busy from creating its job to the job's end.
    """
    if not all_spans or slots < 1:
        return None
    start, end = min(s.created for s in all_spans), max(s.created for s in all_spans)
    if end <= start:
        return None
    busy = sum(max(0.0, min(end, s.ended if s.ended is not None else end) - max(start, s.created)) for s in spans)
    return round(max(0.0, 1 - busy / (slots * (end - start))), 3)


def requests_per_job(stats_by_backend: Mapping[str, Mapping[str, int]], jobs: int) -> dict[str, float]:
    """Requests the backends received per job, by kind (``other``: capabilities, credentials, validation...)."""
    totals: dict[str, int] = {kind: 0 for kind, _ in REQUEST_KINDS}
    totals["other"] = 0
    for stats in stats_by_backend.values():
        for key, count in stats.items():
            kind = next((name for name, matches in REQUEST_KINDS if matches(key)), "other")
            totals[kind] += count
    per_job = {kind: round(count / jobs, 2) for kind, count in totals.items()}
    per_job["total"] = round(sum(totals.values()) / jobs, 2)
    return per_job
