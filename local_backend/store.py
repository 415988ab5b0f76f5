"""Job records of a local backend and their wall-clock lifecycle, persisted in an append-only journal.

A job's status is not stored but derived from the time it was started and the durations fixed at that
moment (created -> queued -> running -> finished/error), so every reader (``GET /jobs/{id}``, the
``GET /jobs`` listing, ``/_control/jobs``) sees the same live status with no background thread.
The journal (one JSON line per change) lets a restarted server on the same data directory keep its jobs.
Standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CREATED, QUEUED, RUNNING, FINISHED, ERROR, CANCELED = "created", "queued", "running", "finished", "error", "canceled"
ACTIVE = frozenset({QUEUED, RUNNING})
DONE = frozenset({FINISHED, ERROR, CANCELED})


@dataclasses.dataclass
class JobRecord:
    id: str
    user_id: str
    created: float
    process: dict[str, Any]
    title: str | None = None
    description: str | None = None
    job_options: dict[str, Any] | None = None
    plan: str | None = None
    budget: float | None = None
    start_count: int = 0
    started_at: float | None = None
    queue_seconds: float = 0.0
    run_seconds: float = 0.0
    fail: bool = False
    fail_message: str | None = None
    #: A failure category of ``failure_logs.CATEGORY_LOGS``: the error log entries the failed job shows.
    fail_category: str | None = None
    canceled_at: float | None = None

    @property
    def running_at(self) -> float | None:
        return None if self.started_at is None else self.started_at + self.queue_seconds

    @property
    def ends_at(self) -> float | None:
        return None if self.started_at is None else self.started_at + self.queue_seconds + self.run_seconds

    def status(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.started_at is None:
            return CREATED
        if self.canceled_at is not None:
            return CANCELED
        if now < self.running_at:
            return QUEUED
        if now < self.ends_at:
            return RUNNING
        return ERROR if self.fail else FINISHED

    def timeline(self, now: float | None = None) -> dict[str, float | None]:
        """Epoch seconds at which each state was entered (None: not (yet) reached)."""
        now = time.time() if now is None else now
        stop = self.canceled_at if self.canceled_at is not None else now
        reached = self.started_at is not None

        def when(t: float | None) -> float | None:
            return t if reached and t is not None and t <= stop else None

        status = self.status(now)
        return {
            "created": self.created,
            "queued": when(self.started_at),
            "running": when(self.running_at),
            "finished": self.ends_at if status == FINISHED else None,
            "error": self.ends_at if status == ERROR else None,
            "canceled": self.canceled_at,
        }

    def run_time(self, now: float | None = None) -> float:
        """Seconds spent running so far (the basis of usage and costs)."""
        now = time.time() if now is None else now
        if self.running_at is None:
            return 0.0
        stop = min(x for x in (now, self.ends_at, self.canceled_at) if x is not None)
        return max(0.0, stop - self.running_at)

    def last_change(self, now: float | None = None) -> float:
        return max(t for t in self.timeline(now).values() if t is not None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class JobStore:
    """Thread-safe job registry; with a ``journal`` path every change is appended as one JSON line."""

    def __init__(self, journal: Path | None = None) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}
        self._journal = journal
        if journal is not None:
            self._replay(journal)

    @property
    def lock(self) -> threading.RLock:
        """Held by callers that read-check-write (e.g. the concurrent job limit)."""
        return self._lock

    def _replay(self, journal: Path) -> None:
        if journal.exists():
            for line in journal.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line after a hard kill: that change is lost, the rest is kept
                if "deleted" in entry:
                    self._jobs.pop(entry["deleted"], None)
                else:
                    record = JobRecord.from_dict(entry)
                    self._jobs[record.id] = record
        # Compact: one line per surviving job.
        journal.parent.mkdir(parents=True, exist_ok=True)
        tmp = journal.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in self._jobs.values()), encoding="utf-8")
        os.replace(tmp, journal)

    def _append(self, entry: dict[str, Any]) -> None:
        if self._journal is not None:
            with self._journal.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def put(self, record: JobRecord) -> None:
        with self._lock:
            self._jobs[record.id] = record
            self._append(record.to_dict())

    def put_many(self, records: list[JobRecord]) -> None:
        """Store many records with one journal write (seeding thousands of jobs one append each is slow)."""
        with self._lock:
            for record in records:
                self._jobs[record.id] = record
            if self._journal is not None:
                with self._journal.open("a", encoding="utf-8") as f:
                    f.write("".join(json.dumps(r.to_dict()) + "\n" for r in records))

    def update(self, job_id: str, **changes: Any) -> JobRecord:
        with self._lock:
            record = dataclasses.replace(self._jobs[job_id], **changes)
            self._jobs[job_id] = record
            self._append(record.to_dict())
            return record

    def delete(self, job_id: str) -> None:
        with self._lock:
            del self._jobs[job_id]
            self._append({"deleted": job_id})

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[JobRecord]:
        with self._lock:
            return list(self._jobs.values())

    def for_user(self, user_id: str) -> Iterator[JobRecord]:
        return (r for r in self.all() if r.user_id == user_id)
