"""A ``POST /jobs`` whose answer never arrived: notice it, and find the job it may have created.

Creating a job is the one openEO request whose repetition does harm (a second job), so it is never retried. What
remains is to learn, from the HTTP session, which creates were answered (their ids go to the row at once) and which
reached the backend without an answer; for those, the backend's job listing may show the job, and it is adopted
only when exactly one job certainly fits.

Listing order is the backend's to choose (newest first here, undefined on geopyspark, oldest first elsewhere), so
the search reads where the order puts new jobs
(:func:`~airflow_provider_openeo.wait._job_listing.scan_jobs_created_since`): the first pages of a newest-first
listing, the last pages of an oldest-first one numbered by page, and otherwise a bounded number of pages through
``next`` links.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import requests
from openeo import Connection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_provider_openeo.job_table.job_status import OpenEOJobStatus
from airflow_provider_openeo.start._session_send import is_create_request
from airflow_provider_openeo.wait._job_listing import newest_first_before, scan_jobs_created_since

log = logging.getLogger(__name__)

#: Jobs per listing page and pages read, and candidates read back, when looking for the job a lost ``POST /jobs``
#: created: at most 1,000 listed jobs and 5 reads, whatever the backend's history holds (plus, in an oldest-first
#: listing numbered by page, the search for its last page: ``hooks._listing_pages.MAX_SEARCH_PAGES`` reads).
ORPHAN_SEARCH_LIMIT = 100
ORPHAN_SEARCH_PAGES = 10
ORPHAN_DESCRIBE_LIMIT = 5
CLOCK_SKEW_SECONDS = 60.0


def _started_job_id(request: Any) -> str | None:
    """The job a ``POST .../jobs/{id}/results`` (start) request is about, or None for any other request."""
    if getattr(request, "method", None) != "POST":
        return None
    parts = urlparse(getattr(request, "url", None) or "").path.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-3] == "jobs" and parts[-1] == "results" and parts[-2]:
        return unquote(parts[-2])
    return None


#: Failures after which a request may have reached the server (errors while building one, e.g. NaN in the JSON
#: body, never do).
_MAY_HAVE_BEEN_SENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _never_sent(exc: requests.RequestException) -> bool:
    """The connection was never made (refused, connect timeout): the backend cannot have seen the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


@dataclass(frozen=True)
class LostCreate:
    """A ``POST /jobs`` that reached the backend without an answer reaching us: what went wrong, what was sent."""

    reason: str
    body: Any = None


def lost_create_answer(exc: BaseException) -> LostCreate | None:
    """The ``POST /jobs`` in ``exc``'s chain that failed after reaching the backend, or None if none did."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _MAY_HAVE_BEEN_SENT) and is_create_request(current.request) and not _never_sent(current):
            reason = f"{type(current).__name__}: the connection broke before the answer arrived"
            return LostCreate(reason, getattr(current.request, "body", None))
        current = current.__cause__ or current.__context__
    return None


@dataclass
class CreateLog:
    """What the ``POST /jobs`` requests sent while ``start_job`` ran came to.

    ``ids``: jobs the backend confirmed (201). ``unanswered``: requests answered 5xx, after which the backend
    may or may not hold a job (a gateway timeout, or our own server failing after the insert). ``started``: jobs
    whose start the backend accepted (2xx), so their status is known without asking.
    """

    ids: list[str] = field(default_factory=list)
    unanswered: list[LostCreate] = field(default_factory=list)
    started: set[str] = field(default_factory=set)


@contextmanager
def recording_created_jobs(connection: Connection, on_created: Callable[[str], None]) -> Iterator[CreateLog]:
    """Report every job this connection creates the moment the backend answers ``POST /jobs`` (and note starts).

    ``start_job`` is user code: it creates the job however it likes. Listening on the HTTP session is the only
    way to learn the new id before ``start_job`` returns, and so to survive a crash inside it.
    """
    log_ = CreateLog()

    def _hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        started = _started_job_id(response.request)
        if started is not None and 200 <= response.status_code < 300:  # the API says 202; any 2xx accepts
            log_.started.add(started)
        if not is_create_request(response.request):
            return
        if response.status_code >= 500:
            log_.unanswered.append(LostCreate(f"HTTP {response.status_code}", response.request.body))
            return
        job_id = response.headers.get("OpenEO-Identifier") if response.status_code == 201 else None
        if job_id:
            log_.ids.append(job_id)
            on_created(job_id)

    hooks = connection.session.hooks.setdefault("response", [])
    hooks.append(_hook)
    try:
        yield log_
    finally:
        hooks.remove(_hook)


def find_orphan(
    connection: Connection, lost: LostCreate, asked_at: float, *, held_ids: Callable[[], set[str]], label: str
) -> str | None:
    """The job a lost ``POST /jobs`` created, when the backend's listing shows exactly one that fits.

    Fits: status ``created`` (nobody started it), the posted title, created since we asked (with a minute of
    clock skew), and, read back one by one, the posted process graph. Anything less certain returns None.
    """
    try:
        posted = json.loads(lost.body) if lost.body else None
    except (TypeError, ValueError):
        posted = None
    if not isinstance(posted, dict):
        return None
    graph = (posted.get("process") or {}).get("process_graph")
    since = asked_at - CLOCK_SKEW_SECONDS
    try:
        listing = scan_jobs_created_since(
            connection, since, created_at=_created_at, page_limit=ORPHAN_SEARCH_LIMIT, max_pages=ORPHAN_SEARCH_PAGES
        )
    except Exception as exc:
        log.warning("%s: cannot list jobs to find the one a lost POST /jobs created: %s", label, exc)
        return None
    candidates = [
        job
        for job in listing
        if job.get("status") == OpenEOJobStatus.CREATED.value
        and job.get("title") == posted.get("title")
        and _epoch(job.get("created")) >= since
    ]
    matches = []
    for job in candidates[:ORPHAN_DESCRIBE_LIMIT]:
        try:
            described = connection.job(job["id"]).describe()
        except Exception:
            continue
        if (described.get("process") or {}).get("process_graph") == graph:
            matches.append(str(job["id"]))
    if len(matches) != 1:
        log.warning("%s: %d job(s) on the backend fit the lost POST /jobs; adopting none", label, len(matches))
        return None
    # Rows with the same title and graph (duplicates) exist: never adopt a job another row already holds.
    return None if matches[0] in held_ids() else matches[0]


def reaches_back_before(page: list[dict[str, Any]], since: float) -> bool:
    """Whether later pages can hold no job created since ``since``: this page is newest-first and its last job is
    older (:func:`~airflow_provider_openeo.wait._job_listing.newest_first_before`)."""
    return newest_first_before([_created_at(job) for job in page], since)


def _created_at(job: dict[str, Any]) -> float:
    return _epoch(job.get("created"))


def _epoch(timestamp: Any) -> float:
    """A backend's RFC 3339 timestamp as epoch seconds; unreadable ones count as long ago."""
    try:
        when = pd.Timestamp(timestamp)
    except (TypeError, ValueError):
        return 0.0
    if pd.isna(when):
        return 0.0
    if when.tzinfo is None:
        when = when.tz_localize("UTC")
    return when.timestamp()
