"""When is an openEO job gone? The one rule every path that meets a 404 on a job asks.

A 404 ``JobNotFound`` on ``GET /jobs/{id}`` is weak evidence. The openEO aggregator (openEO Platform) answers it
for every job of an upstream backend it cannot reach at the moment, and names that upstream under
``"federation:missing"`` in its ``GET /jobs`` listing; its job ids are ``<upstream>-<id>``. Ending a row ``error``
on such a 404, or giving it a second job, leaves the first job running (and billing) unwatched. So a job is
declared gone only when the backend is demonstrably healthy and confirms it, in one of two ways:

- **listing**: the job is absent from a *complete* ``GET /jobs`` listing (every page seen, the last one not cut
  at ``limit``) that shows other jobs of the same backend (of the same upstream, for a federated listing);
- **window**: the job answered 404 at least ``polls`` times over at least ``seconds``, and each of those 404s came
  with proof that the backend answered other requests fine (a listing, or other jobs' reads, in the same poll).

Never while the listing's ``federation:missing`` names the job's upstream: such a listing, or a listing that shows
the job, starts the count over. Until confirmed, a 404 leaves the job *unconfirmed*: its wait goes on.

Everything here is pure (time is passed in), so the trigger's poller, the sensor's pokes and the re-attach check
of a starting task share it, and the unit tests drive it without a server.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_openeo.exceptions import OpenEOConfigurationError

#: 404s in a row (each with the backend otherwise healthy) before a job counts as gone by the window rule.
DEFAULT_GONE_POLLS = 5
#: ... over at least this many seconds: a partial outage of a federation's upstream lasts minutes, not a poll.
DEFAULT_GONE_SECONDS = 180.0
#: Connection extras that override the two defaults per backend.
GONE_POLLS_FIELD = "job_gone_polls"
GONE_SECONDS_FIELD = "job_gone_seconds"
#: The key of the openEO federation extension that names upstream backends a listing could not reach.
FEDERATION_MISSING_KEY = "federation:missing"


@dataclass(frozen=True)
class GonePolicy:
    """How much evidence the window rule wants (per connection: extras ``job_gone_polls``/``job_gone_seconds``)."""

    polls: int = DEFAULT_GONE_POLLS
    seconds: float = DEFAULT_GONE_SECONDS

    @classmethod
    def from_extra(cls, extras: Mapping[str, Any], *, label: str = "openEO connection") -> GonePolicy:
        """Read the two extras; empty means the default, anything else must be a sane number."""
        polls_raw, seconds_raw = extras.get(GONE_POLLS_FIELD), extras.get(GONE_SECONDS_FIELD)
        polls, seconds = DEFAULT_GONE_POLLS, DEFAULT_GONE_SECONDS
        try:
            if polls_raw not in (None, ""):
                polls = int(polls_raw)
                if polls < 1 or polls != float(polls_raw):
                    raise ValueError
            if seconds_raw not in (None, ""):
                seconds = float(seconds_raw)
                if not math.isfinite(seconds) or seconds < 0:
                    raise ValueError
        except (TypeError, ValueError):
            raise OpenEOConfigurationError(
                f"{label}: {GONE_POLLS_FIELD} must be a whole number >= 1 and {GONE_SECONDS_FIELD} a number of "
                f"seconds >= 0; got {polls_raw!r} and {seconds_raw!r}."
            ) from None
        return cls(polls=polls, seconds=seconds)


def federation_missing(body: Any) -> tuple[str, ...] | None:
    """The upstreams a listing page names as unreachable; None when the page carries no federation extension."""
    if not isinstance(body, dict) or FEDERATION_MISSING_KEY not in body:
        return None
    missing = body.get(FEDERATION_MISSING_KEY)
    return tuple(str(m) for m in missing) if isinstance(missing, list) else ()


def upstream_named(job_id: str, upstreams: Iterable[str]) -> str | None:
    """The upstream among ``upstreams`` that ``job_id`` belongs to (aggregator ids are ``<upstream>-<id>``)."""
    for upstream in upstreams:
        if upstream and str(job_id).startswith(f"{upstream}-"):
            return upstream
    return None


def _upstream_prefix(job_id: str) -> str | None:
    head, sep, _ = str(job_id).partition("-")
    return head if sep and head else None


@dataclass(frozen=True)
class JobListing:
    """What one scan of ``GET /jobs`` showed: the ids listed, whether that was all of them, unreachable upstreams.

    ``complete``: the scan followed every ``next`` link to a last page that was not cut at ``limit`` (a page of
    exactly ``limit`` jobs without a ``next`` link may be a truncated one: the aggregator drops ``next`` links).
    ``federated``: a page carried ``federation:missing`` (even empty): the listing merges upstream backends.
    """

    ids: frozenset[str]
    complete: bool
    missing_upstreams: tuple[str, ...] = ()
    federated: bool = False

    @classmethod
    def from_pages(cls, pages: Sequence[Any], *, limit: int | None, has_next: bool) -> JobListing:
        """Summarise the pages of one scan; ``has_next``: the last page still linked to another."""
        ids: set[str] = set()
        missing: list[str] = []
        federated = False
        last_count = 0
        for body in pages:
            jobs = body.get("jobs") if isinstance(body, dict) else None
            jobs = jobs if isinstance(jobs, list) else []
            last_count = len(jobs)
            ids.update(str(job["id"]) for job in jobs if isinstance(job, dict) and job.get("id") is not None)
            named = federation_missing(body)
            if named is not None:
                federated = True
                missing.extend(m for m in named if m not in missing)
        complete = bool(pages) and not has_next and (limit is None or last_count != limit)
        return cls(frozenset(ids), complete, tuple(missing), federated)

    def others_of(self, job_id: str) -> set[str]:
        """Listed jobs of the same backend as ``job_id``: of its upstream when the listing is federated."""
        others = self.ids - {str(job_id)}
        if not self.federated:
            return others
        prefix = _upstream_prefix(job_id)
        return {other for other in others if prefix is not None and _upstream_prefix(other) == prefix}


@dataclass(frozen=True)
class GoneVerdict:
    """The rule's answer for one 404: ``gone`` or not yet, and why (for the log and the row's message)."""

    gone: bool
    reason: str


@dataclass
class NotFoundStreak:
    """The 404s of one job since it was last seen alive that count towards the window rule (JSON-able)."""

    first_at: float
    last_at: float
    count: int = 1

    def to_dict(self) -> dict[str, float]:
        return {"first_at": self.first_at, "last_at": self.last_at, "count": self.count}

    @classmethod
    def from_dict(cls, value: Any) -> NotFoundStreak | None:
        try:
            return cls(float(value["first_at"]), float(value["last_at"]), int(value["count"]))
        except (TypeError, KeyError, ValueError):
            return None


@dataclass
class GoneJudge:
    """Weighs the 404s of the jobs one watcher follows on one backend (a poller, a sensor, a starting task)."""

    policy: GonePolicy = field(default_factory=GonePolicy)
    streaks: dict[str, NotFoundStreak] = field(default_factory=dict)

    def seen(self, job_id: str) -> None:
        """The backend answered for the job: whatever 404s came before were an outage, not a deletion."""
        self.streaks.pop(str(job_id), None)

    forget = seen

    def not_found(
        self, job_id: str, *, at: float, listing: JobListing | None, others_answered: bool = False
    ) -> GoneVerdict:
        """Weigh one 404 on ``job_id`` seen at ``at``.

        :param listing: the scan of ``GET /jobs`` made in the same poll, if one was (None when the backend
            refused or was not asked).
        :param others_answered: other jobs' reads of the same poll succeeded (the backend answered fine).
        """
        job_id = str(job_id)
        if listing is not None:
            if job_id in listing.ids:
                self.seen(job_id)
                return GoneVerdict(False, "its GET answers 404 but the backend's listing still shows it")
            upstream = upstream_named(job_id, listing.missing_upstreams)
            if upstream is not None:
                self.seen(job_id)
                return GoneVerdict(
                    False, f"its upstream {upstream!r} is listed under {FEDERATION_MISSING_KEY} (a partial outage)"
                )
            others = listing.others_of(job_id)
            if listing.complete and others:
                self.seen(job_id)
                reason = f"it is absent from the complete job listing, which shows {len(others)} other job(s)"
                return GoneVerdict(True, reason)
        if listing is None and not others_answered:
            streak = self.streaks.get(job_id)
            count = streak.count if streak else 0
            return GoneVerdict(False, f"404 while the backend's health is unknown ({count} healthy 404(s) so far)")
        streak = self.streaks.get(job_id)
        if streak is None:
            streak = self.streaks[job_id] = NotFoundStreak(at, at)
        elif at > streak.last_at:
            streak.last_at, streak.count = at, streak.count + 1
        span = streak.last_at - streak.first_at
        if streak.count >= self.policy.polls and span >= self.policy.seconds:
            return GoneVerdict(
                True, f"it answered 404 {streak.count} times over {span:.0f} s while the backend answered otherwise"
            )
        return GoneVerdict(
            False,
            f"404 {streak.count} time(s) over {span:.0f} s; gone only after {self.policy.polls} over "
            f"{self.policy.seconds:g} s with the backend otherwise healthy, or when a complete listing confirms it",
        )
