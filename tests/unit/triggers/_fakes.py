"""In-process stand-ins for fast unit tests: an async openEO hook over scripted jobs, and a one-table job db.

They implement only the contracts the trigger relies on (``get_jobs``/``cancel_job``/``close`` and
``get_row``/``update_row`` with compare-and-set); the real hook and database are exercised by the tests that
run against the local backend.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from airflow_provider_openeo.exceptions import OpenEOAuthError, OpenEOJobNotFoundError
from airflow_provider_openeo.hooks._openeo.job_reads import JobReads
from airflow_provider_openeo.wait._job_gone import FEDERATION_MISSING_KEY, GonePolicy, JobListing

#: Fast unit tests want the gone rule's window in polls of 0.01 s, not minutes.
FAST_GONE_POLICY = GonePolicy(polls=3, seconds=0.02)


class FakeBackend:
    """Jobs whose status follows a script, one step per listing that includes them.

    ``errors`` are raised by the next listings, in order (a transient error, an auth error, ...);
    ``job_errors[job_id]`` by the next reads of that one job. Jobs in ``outage`` live on (their scripts wait) but
    answer 404; those also ``unlisted`` are left out of listings, as a federation's jobs of an unreachable upstream
    are;
    ``federation_missing`` (None: not a federated backend) is what listings say under ``federation:missing``.
    """

    def __init__(self) -> None:
        self.scripts: dict[str, list[str]] = {}
        self.calls: Counter[str] = Counter()
        self.listed_ids: list[list[str]] = []
        self.canceled: list[str] = []
        self.errors: list[Exception] = []
        self.cancel_errors: list[Exception] = []
        self.job_errors: dict[str, list[Exception]] = {}
        self.outage: set[str] = set()
        self.unlisted: set[str] = set()
        self.federation_missing: list[str] | None = None
        self.policy = FAST_GONE_POLICY
        self.confirm_requests: list[list[str]] = []
        self.optional_ids: list[list[str]] = []
        """The ``optional`` ids of each read (jobs an early read may report in passing)."""
        self.lists_optional = False
        """Whether a read reports its ``optional`` ids too, as a listing page showing them would."""
        self.hooks_opened = 0
        self.hooks_closed = 0

    def add_job(self, job_id: str, *statuses: str) -> None:
        self.scripts[job_id] = list(statuses)

    def _advance(self, job_id: str) -> dict[str, Any] | None:
        script = self.scripts.get(job_id)
        if script is None:
            return None
        status = script.pop(0) if len(script) > 1 else script[0]
        return {"id": job_id, "status": status, "process": {"process_graph": {}}, "title": f"job {job_id}"}

    def hook(self, conn_id: str) -> FakeAsyncHook:
        self.hooks_opened += 1
        return FakeAsyncHook(self, conn_id)


class FakeAsyncHook:
    def __init__(self, backend: FakeBackend, conn_id: str) -> None:
        self.backend = backend
        self.conn_id = conn_id

    async def get_jobs(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        self.backend.calls[f"get_jobs:{self.conn_id}"] += 1
        self.backend.listed_ids.append(list(job_ids))
        if self.backend.errors:
            raise self.backend.errors.pop(0)
        jobs = {job_id: self.backend._advance(job_id) for job_id in job_ids}
        return {job_id: meta for job_id, meta in jobs.items() if meta is not None}

    @property
    def gone_policy(self) -> GonePolicy:
        return self.backend.policy

    async def read_jobs(
        self,
        job_ids: list[str],
        *,
        confirm=(),
        optional=(),
        each_attempts: int | None = None,
        budget: float | None = None,
    ) -> JobReads:
        backend = self.backend
        backend.calls[f"get_jobs:{self.conn_id}"] += 1
        backend.listed_ids.append(list(job_ids))
        backend.optional_ids.append(list(optional))
        if backend.lists_optional:
            job_ids = [*job_ids, *optional]
        if backend.errors:
            raise backend.errors.pop(0)
        reads = JobReads()
        if confirm:
            backend.confirm_requests.append(list(confirm))
            page: dict[str, Any] = {"jobs": [{"id": j} for j in backend.scripts if j not in backend.unlisted]}
            if backend.federation_missing is not None:
                page[FEDERATION_MISSING_KEY] = list(backend.federation_missing)
            reads.listing = JobListing.from_pages([page], limit=None, has_next=False)
        for job_id in job_ids:
            if backend.job_errors.get(job_id):
                reads.errors[job_id] = backend.job_errors[job_id].pop(0)
            elif job_id in backend.outage or job_id not in backend.scripts:
                reads.not_found.add(job_id)
            else:
                reads.jobs[job_id] = backend._advance(job_id)
        return reads

    async def get_job(self, job_id: str) -> dict[str, Any]:
        self.backend.calls["get_job"] += 1
        meta = self.backend._advance(job_id)
        if meta is None:
            raise OpenEOJobNotFoundError(f"GET /jobs/{job_id} failed: [404] JobNotFound", job_id=job_id)
        return meta

    async def cancel_job(self, job_id: str) -> None:
        self.backend.calls["cancel_job"] += 1
        if self.backend.cancel_errors:
            raise self.backend.cancel_errors.pop(0)
        if job_id not in self.backend.scripts:
            raise OpenEOJobNotFoundError("gone", job_id=job_id)
        self.backend.canceled.append(job_id)
        self.backend.scripts[job_id] = ["canceled"]

    async def close(self) -> None:
        self.backend.hooks_closed += 1


def auth_error() -> OpenEOAuthError:
    return OpenEOAuthError("GET /jobs failed: [403] TokenInvalid: token expired", http_status=403)


class FakeJobTable:
    """One job table in memory with the job-db hook's ``get_row`` / compare-and-set ``update_row``."""

    def __init__(self) -> None:
        self.rows: dict[Any, dict[str, Any]] = {}
        self.writes: list[tuple[Any, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def get_row(self, row_id: Any) -> dict[str, Any]:
        with self._lock:
            return dict(self.rows[row_id])

    def update_row(self, row_id: Any, values: dict[str, Any], *, expected: dict[str, Any] | None = None) -> bool:
        with self._lock:
            row = self.rows[row_id]
            if expected and any(row.get(k) != v for k, v in expected.items()):
                return False
            row.update(values)
            self.writes.append((row_id, dict(values)))
            return True
