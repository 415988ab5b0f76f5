"""How a trigger keeps its job-db row current without blocking the triggerer or exhausting the database.

Blocking SQL runs in a worker thread (``asyncio.to_thread``), so one slow database never stalls the other
triggers of the event loop. All triggers of a process that write to the same table share one
``OpenEOJobDbHook`` (one SQLAlchemy engine and pool): hundreds of deferred tasks must not open hundreds of
PostgreSQL connections. Every write is a compare-and-set on the row's job id, so a stale trigger (its row was
re-run with a new job meanwhile) never overwrites a newer job's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from airflow_provider_openeo.job_table.job_row import JobRowRef


class _SharedHooks:
    """One job-db hook per (connection, table, SQLite file), reference-counted; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[tuple[Any, ...], Any] = {}
        self._users: dict[tuple[Any, ...], int] = {}

    @staticmethod
    def _key(row: JobRowRef) -> tuple[Any, ...]:
        return (row.job_db_conn_id, row.table, row.sqlite_path)

    def acquire(self, row: JobRowRef) -> Any:
        key = self._key(row)
        with self._lock:
            if key not in self._hooks:
                self._hooks[key] = row.hook()
                self._users[key] = 0
            self._users[key] += 1
            return self._hooks[key]

    def release(self, row: JobRowRef) -> None:
        key = self._key(row)
        with self._lock:
            self._users[key] -= 1
            if self._users[key] > 0:
                return
            hook = self._hooks.pop(key)
            del self._users[key]
        dispose = getattr(hook, "dispose", None)
        if dispose is not None:
            with contextlib.suppress(Exception):
                dispose()

    def __len__(self) -> int:
        return len(self._hooks)


SHARED_HOOKS = _SharedHooks()


class JobRowRecorder:
    """Reads and writes one row for one job; a failed write is retried with the next update, never fatal.

    The row is evidence, the backend is the truth: a database hiccup must not end the wait on a live job.
    """

    def __init__(self, row: JobRowRef, job_id: str, log: Any) -> None:
        self.row = row
        self.job_id = job_id
        self.log = log
        self.stale = False
        self.written: dict[str, Any] = {}
        self._hook: Any = None

    def _db(self) -> Any:
        if self._hook is None:
            self._hook = SHARED_HOOKS.acquire(self.row)
        return self._hook

    async def load(self) -> dict[str, Any] | None:
        """The row if it still holds our job; None otherwise (and this recorder stops writing)."""
        try:
            values = await asyncio.to_thread(lambda: self._db().get_row(self.row.row_id))
        except Exception as exc:
            self.log.warning("Could not read %s for openEO job %r: %s", self.row, self.job_id, exc)
            return None
        if str(values.get("id")) != self.job_id:
            self._mark_stale(values.get("id"))
            return None
        self.written = {k: values.get(k) for k in ("status", "backend_status", "running_start_time")}
        return values

    async def record(self, values: dict[str, Any]) -> None:
        """Write the values that differ from what the row is known to hold."""
        changed = {k: v for k, v in values.items() if self.written.get(k) != v}
        if self.stale or not changed:
            return
        try:
            updated = await asyncio.to_thread(
                lambda: self._db().update_row(self.row.row_id, changed, expected={"id": self.job_id})
            )
        except Exception as exc:
            self.log.warning("Could not write %s to %s (will retry): %s", sorted(changed), self.row, exc)
            return
        if updated:
            self.written.update(changed)
        else:
            self._mark_stale("another job")

    async def close(self) -> None:
        if self._hook is not None:
            self._hook = None
            await asyncio.to_thread(SHARED_HOOKS.release, self.row)

    def _mark_stale(self, holder: Any) -> None:
        self.stale = True
        self.log.warning(
            "%s now holds %r, not openEO job %r: this wait no longer writes to it", self.row, holder, self.job_id
        )
