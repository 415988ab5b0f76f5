"""Read a backend's ``GET /jobs`` listing from a worker (synchronous openeo client), page by page, bounded.

openeo's ``Connection.list_jobs`` reads one page. Production listings are paged (geopyspark's ``page``, openeo-driver's
``next`` links), come in no defined order, and may hold months of old jobs, so a worker that looks for one job in
them (a 404 to confirm, an orphan of a lost ``POST /jobs`` to find) follows ``next`` links on the same host up to a
page budget, and may stop early when the caller has seen enough. What the pages showed is summarised as a
:class:`~airflow_provider_openeo.wait._job_gone.JobListing`, the evidence :mod:`~airflow_provider_openeo.wait._job_gone`
weighs.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from openeo import Connection

from airflow_provider_openeo.hooks._openeo.listing_pages import LastPageSearch, PageNumbering, page_numbering
from airflow_provider_openeo.wait._job_gone import GoneJudge, GonePolicy, GoneVerdict, JobListing

log = logging.getLogger(__name__)

#: Jobs per page asked for, and pages read at most, in one scan (a backend may ignore ``limit``).
PAGE_LIMIT = 100
MAX_PAGES = 10

PageStop = Callable[[list[dict[str, Any]]], bool]
"""Called with each page's jobs; True ends the scan there (the caller has seen what it needs)."""


@dataclass(frozen=True)
class ListingScan:
    """The jobs one scan read (as listed), and what the scan says about the listing as a whole."""

    jobs: list[dict[str, Any]]
    listing: JobListing


def scan_jobs(
    connection: Connection,
    *,
    page_limit: int | None = None,
    max_pages: int | None = None,
    stop: PageStop | None = None,
    first_page: Any = None,
) -> ListingScan:
    """Read ``GET /jobs`` pages, following ``rel=next`` links under the connection's root URL; errors propagate.

    ``page_limit`` / ``max_pages`` default to :data:`PAGE_LIMIT` / :data:`MAX_PAGES` (read at call time).
    ``first_page``: the first page's body, when the caller has read it already (it counts as one of the pages).
    """
    page_limit = PAGE_LIMIT if page_limit is None else page_limit
    max_pages = MAX_PAGES if max_pages is None else max_pages
    root = str(connection.root_url).rstrip("/")
    url: str | None = "/jobs"
    params: dict[str, Any] | None = {"limit": page_limit}
    pages: list[Any] = []
    jobs: list[dict[str, Any]] = []
    seen: set[str] = set()
    has_next = False
    for _ in range(max_pages):
        if first_page is not None and not pages:
            body = first_page
        else:
            body = connection.get(url, params=params, expected_status=200).json()
        pages.append(body)
        page_jobs = _page_jobs(body)
        jobs.extend(page_jobs)
        href = _next_href(body)
        has_next = href is not None
        if href is None or (stop is not None and stop(page_jobs)):
            break
        absolute = urljoin(root + "/", href)
        if not (absolute == root or absolute.startswith(root + "/")) or absolute in seen:
            log.warning("openEO job listing: not following a next link outside %s or seen before", root)
            break
        seen.add(absolute)
        url, params = absolute, None
    return ListingScan(jobs, JobListing.from_pages(pages, limit=page_limit, has_next=has_next))


def scan_jobs_created_since(
    connection: Connection,
    since: float,
    *,
    created_at: Callable[[dict[str, Any]], float],
    page_limit: int,
    max_pages: int,
) -> list[dict[str, Any]]:
    """Listed jobs, among them every job created since ``since`` (epoch seconds) where the order allows, bounded.

    Newest first, new jobs are on the first pages: pages are read until one reaches back before ``since``. Oldest
    first, they are on the last pages: in a listing numbered by page (geopyspark's ``?page=``) the last page is
    found by a bounded search (:class:`~airflow_provider_openeo.hooks._openeo.listing_pages.LastPageSearch`) and
    pages are read back from it until one holds an older job. Behind a cursor (``next`` links only) the end is
    reached only through every page, and in no order at all a new job may be on any page: ``next`` links are
    followed from the first page. At most ``max_pages`` pages are read that way, plus the search's own reads.
    Errors propagate.
    """
    first_url = f"{str(connection.root_url).rstrip('/')}/jobs?limit={page_limit}"
    body = connection.get("/jobs", params={"limit": page_limit}, expected_status=200).json()
    first = _page_jobs(body)
    href = _next_href(body)
    times = [created_at(job) for job in first]
    if href is None or newest_first_before(times, since):
        return first
    numbering = page_numbering(first_url, urljoin(first_url, href)) if _oldest_first(times) else None
    last = _last_page(connection, numbering) if numbering is not None else None
    if numbering is None or last is None:
        stop = lambda page: newest_first_before([created_at(job) for job in page], since)  # noqa: E731
        return scan_jobs(connection, page_limit=page_limit, max_pages=max_pages, stop=stop, first_page=body).jobs
    jobs: list[dict[str, Any]] = []
    for number in range(last, max(numbering.first - 1, last - max_pages), -1):
        if number == numbering.first:
            page = first
        else:
            page = _page_jobs(connection.get(numbering.url(number), expected_status=200).json())
        jobs.extend(page)
        if any(created_at(job) < since for job in page):  # oldest first: every page before it is older still
            break
    return jobs


def newest_first_before(times: list[float], since: float) -> bool:
    """Whether a page in newest-first order (``created`` never increases) already reaches back before ``since``,
    so later pages can hold no job created since. In any other order nothing can be concluded."""
    if not times or any(later > earlier for earlier, later in itertools.pairwise(times)):
        return False
    return times[-1] < since


def _oldest_first(times: list[float]) -> bool:
    return len(times) > 1 and all(later >= earlier for earlier, later in itertools.pairwise(times))


def _last_page(connection: Connection, numbering: PageNumbering) -> int | None:
    """The number of a numbered listing's last non-empty page, or None when the bounded search did not find it."""
    search = LastPageSearch(known=numbering.first, first=numbering.first)
    while (number := search.next_page()) is not None:
        body = connection.get(numbering.url(number), expected_status=200).json()
        search.saw(number, entries=len(_page_jobs(body)), has_next=_next_href(body) is not None)
    if search.last is None:
        log.warning("openEO job listing: its last page was not found in %d reads", search.reads)
    return search.last


def _page_jobs(body: Any) -> list[dict[str, Any]]:
    return [job for job in (body.get("jobs") or []) if isinstance(job, dict)] if isinstance(body, dict) else []


def _next_href(body: Any) -> str | None:
    links = body.get("links") if isinstance(body, dict) else None
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "next" and isinstance(link.get("href"), str):
            return link["href"]
    return None


def confirm_gone(connection: Connection, job_id: str, *, judge: GoneJudge | None = None) -> GoneVerdict:
    """Weigh a 404 on ``job_id`` against the backend's listing, read now (one look, or one more for ``judge``).

    A fresh judge can only confirm through the listing rule (a complete listing without the job that shows other
    jobs of its backend); a judge carried across looks (a sensor's pokes) adds the window rule. A listing that
    cannot be read leaves the job unconfirmed: the backend is not demonstrably healthy.
    """
    judge = judge if judge is not None else GoneJudge(GonePolicy())
    try:
        scan = scan_jobs(connection, stop=lambda page: any(str(job.get("id")) == str(job_id) for job in page))
    except Exception as exc:  # unreadable listing: no evidence either way
        log.warning("openEO job %r answers 404 and the job listing cannot be read (%s)", job_id, exc)
        return judge.not_found(job_id, at=time.time(), listing=None)
    return judge.not_found(job_id, at=time.time(), listing=scan.listing)
