"""Upstreams of an ``aggregator``-profile backend: which upstream a new job goes to, and upstream outages.

openEO Platform's aggregator prefixes every job id with the upstream backend it runs on
(``vito-j-...``) and, while it cannot reach an upstream, answers 404 ``JobNotFound`` for every job of that
upstream and lists the upstream under ``federation:missing`` instead of its jobs, although those jobs keep
running there. The provider must not take such a 404 for a job that is gone, so the local backend has to
produce exactly that. An outage is an event with a deadline, not a setting: it lives here, in memory,
and is not replayed by ``restart()`` (which re-posts the settings). Standard library only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from local_backend.profiles import profile_of

ROUND_ROBIN = "round_robin"
UPSTREAM_SEPARATOR = "-"  # ids are f"{upstream}-{local id}"; upstream names cannot contain it


class UpstreamUnavailable(RuntimeError):
    """No reachable upstream can take a new job (the chosen one is in an outage)."""


class Federation:
    """Thread-safe round-robin assignment and outage windows; inert unless the profile is federated."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turn = 0
        self._outages: dict[str, float] = {}  # upstream -> epoch second the outage ends

    # -- outages ----------------------------------------------------------------------------------------
    def start_outage(self, upstream: str, seconds: float, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._outages[upstream] = now + seconds

    def end_outages(self) -> None:
        with self._lock:
            self._outages.clear()

    def outages(self, now: float | None = None) -> dict[str, float]:
        """Upstreams out right now -> seconds their outage still lasts."""
        now = time.time() if now is None else now
        with self._lock:
            return {name: round(until - now, 3) for name, until in sorted(self._outages.items()) if until > now}

    def missing(self, settings: Mapping[str, Any], now: float | None = None) -> list[str]:
        """The configured upstreams that cannot be reached now (the listing's ``federation:missing``)."""
        if not profile_of(settings).federated:
            return []
        out = self.outages(now)
        return [name for name in settings["upstreams"] if name in out]

    # -- jobs ------------------------------------------------------------------------------------------------
    @staticmethod
    def upstream_of(job_id: str, settings: Mapping[str, Any]) -> str | None:
        upstream, sep, _ = job_id.partition(UPSTREAM_SEPARATOR)
        return upstream if sep and upstream in settings["upstreams"] else None

    def hides(self, job_id: str, settings: Mapping[str, Any], now: float | None = None) -> bool:
        """True while the job's upstream is out: the job answers 404 and drops out of listings."""
        missing = self.missing(settings, now)
        return bool(missing) and self.upstream_of(job_id, settings) in missing

    def job_id(self, local_id: str, settings: Mapping[str, Any], now: float | None = None) -> str:
        """The id a new job gets: ``local_id`` itself, or prefixed with its upstream when federated.

        ``upstream_assignment`` is ``round_robin`` (skipping upstreams in an outage) or one upstream name.
        """
        if not profile_of(settings).federated:
            return local_id
        missing = set(self.missing(settings, now))
        assignment = settings["upstream_assignment"]
        if assignment != ROUND_ROBIN:
            if assignment in missing:
                raise UpstreamUnavailable(f"Upstream {assignment!r} cannot be reached.")
            return f"{assignment}{UPSTREAM_SEPARATOR}{local_id}"
        upstreams = settings["upstreams"]
        with self._lock:
            for _ in range(len(upstreams)):
                upstream = upstreams[self._turn % len(upstreams)]
                self._turn += 1
                if upstream not in missing:
                    return f"{upstream}{UPSTREAM_SEPARATOR}{local_id}"
        raise UpstreamUnavailable(f"None of the upstreams {upstreams} can be reached.")
