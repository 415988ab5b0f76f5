"""When will a running job end? Read from the ``progress`` its backend reports, so a listing can be sent right then.

A poller that lists every ``interval`` seconds notices a job's end on average ``interval / 2`` after it happens, and
on a backend with a fixed number of slots that wait is idle time before the next job can start. openEO job
metadata carries an optional ``progress`` (0-100) which backends built on openeo-driver report for running jobs
(estimating it from the run time when nothing better is known). Two readings of one job give its rate, and the
rate the moment it reaches 100: one listing sent then serves every job of the backend.

A forecast is a guess, so what it may cost is bounded: each job pays for at most ``max_early_listings`` listings
sent ahead of the regular schedule on its account, then waits for the regular ones like any other. A backend
that reports no progress, or progress that does not move, gets no forecast and costs nothing extra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from airflow_provider_openeo.job_status import OpenEOJobStatus

#: Seconds added to a forecast end: a listing that arrives a moment late finds the job ended; one that arrives a
#: moment early is wasted.
DEFAULT_MARGIN = 0.25
#: Listings sent early on one job's account before it falls back to the regular schedule.
DEFAULT_MAX_EARLY_LISTINGS = 2


@dataclass
class _Readings:
    first_at: float
    first_progress: float
    last_at: float
    last_progress: float
    early_listings: int = 0

    def end(self) -> float | None:
        """The time progress reaches 100 at the rate seen so far; None until it has moved."""
        moved = self.last_progress - self.first_progress
        elapsed = self.last_at - self.first_at
        if moved <= 0 or elapsed <= 0:
            return None
        return self.last_at + (100.0 - self.last_progress) * elapsed / moved


def _progress(metadata: dict[str, Any]) -> float | None:
    value = metadata.get("progress")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if 0.0 <= value < 100.0 else None


class EndForecast:
    """The running jobs' progress readings, and the earliest moment one of them is due to end."""

    def __init__(self, *, margin: float = DEFAULT_MARGIN, max_early_listings: int = DEFAULT_MAX_EARLY_LISTINGS) -> None:
        self.margin = margin
        self.max_early_listings = max_early_listings
        self._jobs: dict[str, _Readings] = {}

    def observe(self, job_id: str, metadata: dict[str, Any], at: float) -> None:
        """Note what a listing said about a job; ``at`` is when the backend answered (epoch seconds)."""
        progress = _progress(metadata)
        if str(metadata.get("status") or "").lower() != OpenEOJobStatus.RUNNING.value or progress is None:
            self._jobs.pop(job_id, None)
            return
        readings = self._jobs.get(job_id)
        if readings is None or progress < readings.last_progress:  # new, or started over on the backend
            self._jobs[job_id] = _Readings(at, progress, at, progress)
        elif at > readings.last_at:
            readings.last_at, readings.last_progress = at, progress

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def next_listing(self) -> float | None:
        """When to list for the soonest forecast end still allowed an early listing; None when there is none."""
        ends = [
            end
            for readings in self._jobs.values()
            if readings.early_listings < self.max_early_listings and (end := readings.end()) is not None
        ]
        return min(ends) + self.margin if ends else None

    def listing_sent_early(self, at: float) -> None:
        """Charge a listing sent ahead of the regular schedule to every job it was sent for."""
        for readings in self._jobs.values():
            end = readings.end()
            if readings.early_listings < self.max_early_listings and end is not None and end + self.margin <= at:
                readings.early_listings += 1
