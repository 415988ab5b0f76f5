"""When will a running job end? So a listing can be sent right then instead of up to an interval later.

A poller that lists every ``interval`` seconds notices a job's end on average ``interval / 2`` after it happens, and
on a backend with a fixed number of slots that wait is idle time before the next job can start. Two sources tell
when a running job is due to end:

- its reported ``progress`` (0-100), which backends built on openeo-driver may report for running jobs: two
  readings give its rate, and the rate the moment it reaches 100;
- when the job reports no progress (openeo-geopyspark-driver's listings, the largest public backends), the
  run times of the jobs already seen to finish on the same connection: a batch's jobs are alike, so a running
  job is due about the median run time after it started (its ``updated`` while running, as those backends stamp
  each status change, or the first listing that saw it running). A job not yet seen running (queued, or never
  listed while it ran because its run is shorter than the interval) is due the median time from creation to end
  after its ``created``. These times outlive the poller (a backend's jobs may all end at once, and the next
  round's poller starts afresh) but not the triggerer process.

Run times spread (the bench's jobs run 25-31 s), so a single listing at the median catches only the half of the jobs
that end before it; the others waited for the regular listing, up to a whole interval (workload 7 measured a median
idle gap 1.5x MBJM's). So the times forecast a ladder of ends per job, one per quantile of the observed times
(:data:`EARLY_QUANTILES`), each rung one early listing: a job is noticed about a quarter of the times' spread after
it ends, wherever in the spread that is, well before the full interval. A progress forecast is a single end, re-read
each listing.

Why four rungs: each rung costs a job at most one listing (less where rungs of the backend's other jobs coincide, as
one listing reads them all), and what a rung saves is the wait between its neighbours. A simulation of workload 7
(four slots, 25-31 s runs, a 5 s interval, this class driving the listings) put the mean wait from a job's end to the
listing that saw it at 2.0 s with two rungs (the median and 0.9) against 1.0 s with four, for 0.65 more listings
per job; the live workload measured a median of 1.48 s against 0.76 s, for 0.79 more, which keeps its status reads
under half of MBJM's at ``poll_sleep=5`` (0.49x; the issue's bound) and took 27 s off its makespan (25 jobs per
slot). A fifth rung (simulated) would save another tenth of a second and take the status reads past that bound.

A forecast is a guess, so what it may cost is bounded: each job pays for at most one listing sent ahead of the
regular schedule per rung of its ladder (``max_early_listings`` for a progress forecast) per source of the forecast
(progress, run time, time from creation), then waits for the regular ones like any other. The poller asks only the
jobs due (those :meth:`EndForecast.listing_sent_early` charged) on such a listing. A backend
whose jobs report neither moving progress nor finish often enough to have a run time gets no forecast and costs
nothing extra.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_openeo.job_table.job_status import OpenEOJobStatus
from airflow_provider_openeo.job_table.timestamps import epoch_from_rfc3339

#: Seconds added to a forecast end: a listing that arrives a moment late finds the job ended; one that arrives a
#: moment early is wasted.
DEFAULT_MARGIN = 0.25
#: Listings sent early on one job's account for its progress forecast before it falls back to the regular schedule.
DEFAULT_MAX_EARLY_LISTINGS = 2
#: The quantiles of the observed times at which a job without progress is due: one early listing each.
EARLY_QUANTILES = (0.25, 0.5, 0.75, 0.9)
#: Run times kept per connection: the recent ones, so a backend that slows down is followed.
RUN_TIME_SAMPLES = 25
#: Finished jobs needed before their run times forecast anything: one could be an outlier.
MIN_RUN_TIME_SAMPLES = 2

_RUNNING = OpenEOJobStatus.RUNNING.value
_FINISHED = OpenEOJobStatus.FINISHED.value
_WAITING = frozenset({OpenEOJobStatus.CREATED.value, OpenEOJobStatus.QUEUED.value})


class RunTimes:
    """Durations (seconds) of the last jobs seen to finish on one connection: running -> finished, or created ->
    finished."""

    def __init__(self, maxlen: int = RUN_TIME_SAMPLES, minimum: int = MIN_RUN_TIME_SAMPLES) -> None:
        self._samples: deque[float] = deque(maxlen=maxlen)
        self.minimum = minimum

    def add(self, seconds: float) -> None:
        if math.isfinite(seconds) and seconds >= 0:
            self._samples.append(seconds)

    def typical(self) -> float | None:
        """The median run time, or None until ``minimum`` jobs have finished."""
        return statistics.median(self._samples) if len(self._samples) >= self.minimum else None

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0-1, linear between samples) of the run times, or None until ``minimum`` finished."""
        if len(self._samples) < self.minimum or not self._samples:
            return None
        ordered = sorted(self._samples)
        position = min(max(q, 0.0), 1.0) * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def __len__(self) -> int:
        return len(self._samples)


_RUN_TIMES: dict[str, RunTimes] = {}
_TOTAL_TIMES: dict[str, RunTimes] = {}


def run_times_of(conn_id: str) -> RunTimes:
    """The run times (running -> finished) of connection ``conn_id`` in this process (the triggerer)."""
    return _RUN_TIMES.setdefault(conn_id, RunTimes())


def total_times_of(conn_id: str) -> RunTimes:
    """The times from creation to end of connection ``conn_id``'s finished jobs in this process (the triggerer)."""
    return _TOTAL_TIMES.setdefault(conn_id, RunTimes())


@dataclass
class _Readings:
    created: float | None = None
    running_since: float | None = None
    first_at: float | None = None
    first_progress: float = 0.0
    last_at: float | None = None
    last_progress: float = 0.0
    early_listings: dict[str, int] = field(default_factory=dict)
    """Early listings charged to this job, per source of the forecast that asked for them."""

    def progress_end(self) -> float | None:
        """The time progress reaches 100 at the rate seen so far; None until it has moved."""
        if self.first_at is None or self.last_at is None:
            return None
        moved = self.last_progress - self.first_progress
        elapsed = self.last_at - self.first_at
        if moved <= 0 or elapsed <= 0:
            return None
        return self.last_at + (100.0 - self.last_progress) * elapsed / moved

    def note_progress(self, progress: float, at: float) -> None:
        if self.first_at is None or progress < self.last_progress:  # first reading, or started over on the backend
            self.first_at, self.first_progress = at, progress
            self.last_at, self.last_progress = at, progress
        elif self.last_at is None or at > self.last_at:
            self.last_at, self.last_progress = at, progress


def _progress(metadata: dict[str, Any]) -> float | None:
    value = metadata.get("progress")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if 0.0 <= value < 100.0 else None


class EndForecast:
    """The running jobs of one connection, and the earliest moment one of them is due to end."""

    def __init__(
        self,
        *,
        margin: float = DEFAULT_MARGIN,
        max_early_listings: int = DEFAULT_MAX_EARLY_LISTINGS,
        quantiles: tuple[float, ...] = EARLY_QUANTILES,
        run_times: RunTimes | None = None,
        total_times: RunTimes | None = None,
    ) -> None:
        if not quantiles or any(not 0.0 <= q <= 1.0 for q in quantiles):
            raise ValueError("quantiles: at least one, each between 0 and 1")
        self.margin = margin
        self.max_early_listings = max_early_listings
        self.quantiles = tuple(sorted(quantiles))
        self.run_times = run_times if run_times is not None else RunTimes()
        self.total_times = total_times if total_times is not None else RunTimes()
        self._jobs: dict[str, _Readings] = {}

    def observe(self, job_id: str, metadata: dict[str, Any], at: float) -> None:
        """Note what a listing said about a job; ``at`` is when the backend answered (epoch seconds)."""
        status = str(metadata.get("status") or "").lower()
        created = epoch_from_rfc3339(metadata.get("created"))
        created = created if created is not None and created <= at else None
        readings = self._jobs.get(job_id)
        if status in _WAITING:
            if readings is None or readings.running_since is not None:  # new, or put back in the queue
                self._jobs[job_id] = _Readings(created=created)
            return
        if status == _RUNNING:
            stamped = epoch_from_rfc3339(metadata.get("updated"))
            since = stamped if stamped is not None and stamped <= at else at
            if readings is None:
                readings = self._jobs[job_id] = _Readings(created=created)
            if readings.running_since is None:
                readings.running_since = since
            progress = _progress(metadata)
            if progress is not None:
                readings.note_progress(progress, at)
            return
        self._jobs.pop(job_id, None)
        if status != _FINISHED:
            return
        ended = epoch_from_rfc3339(metadata.get("updated"))
        ended = ended if ended is not None and ended <= at else at
        if readings is not None and readings.running_since is not None and readings.running_since <= ended:
            self.run_times.add(ended - readings.running_since)
        created = created if created is not None else (readings.created if readings is not None else None)
        if created is not None and created <= ended:
            self.total_times.add(ended - created)

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def _end(self, readings: _Readings) -> tuple[float, str] | None:
        """The forecast end and its source. Each source has a budget of its own, so a guess from creation time spent
        while a job waits in the queue never leaves its reported progress without early listings."""
        if readings.first_at is not None:  # it reports progress: wait for that to move rather than spend its budget
            end = readings.progress_end()
            return None if end is None else (end, "progress")
        if readings.running_since is not None and len(self.run_times) >= self.run_times.minimum:
            return self._rung(readings, readings.running_since, self.run_times, "run time")
        if readings.created is not None and len(self.total_times) >= self.total_times.minimum:
            return self._rung(readings, readings.created, self.total_times, "time from creation")
        return None

    def _rung(self, readings: _Readings, since: float, times: RunTimes, source: str) -> tuple[float, str] | None:
        """The next rung of the ladder of ends ``since`` + a quantile of ``times`` not yet listed for (None: all
        were)."""
        used = readings.early_listings.get(source, 0)
        if used >= len(self.quantiles):
            return None
        seconds = times.quantile(self.quantiles[used])
        return None if seconds is None else (since + seconds, source)

    def _due(self, readings: _Readings) -> tuple[float, str] | None:
        """The forecast end, if its source may still ask for an early listing on this job's account."""
        forecast = self._end(readings)
        if forecast is None:
            return None
        if forecast[1] == "progress" and readings.early_listings.get("progress", 0) >= self.max_early_listings:
            return None
        return forecast

    def next_listing(self) -> float | None:
        """When to list for the soonest forecast end still allowed an early listing; None when there is none."""
        ends = [due[0] for readings in self._jobs.values() if (due := self._due(readings)) is not None]
        return min(ends) + self.margin if ends else None

    def listing_sent_early(self, at: float) -> list[str]:
        """Charge a listing sent ahead of the regular schedule, at ``at``, to every job it is sent for (each then
        moves to its next rung); return those jobs, the ones the early listing has to read."""
        charged = []
        for job_id, readings in self._jobs.items():
            due = self._due(readings)
            if due is not None and due[0] + self.margin <= at:
                readings.early_listings[due[1]] = readings.early_listings.get(due[1], 0) + 1
                charged.append(job_id)
        return charged
