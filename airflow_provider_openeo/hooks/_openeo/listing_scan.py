"""One status read's walk through a backend's ``GET /jobs`` pages: where to start, when to go on, when to jump.

The async hook fetches; this module decides which page comes next, following the read strategy
(:mod:`~airflow_provider_openeo.hooks._openeo.read_strategy`, rules 2 and 4):

1. start at the page where the watched jobs were last found (the strategy's ``resume_url``), else the first page;
2. from there follow ``next`` links while another page is expected to pay for itself, or, as evidence for the 404s
   of unconfirmed jobs (:mod:`airflow_provider_openeo.wait._job_gone`), until every id is seen or no page is left;
3. a resumed page that shows none of the watched jobs is stale: one more page on (new jobs come at the end), then the
   first page, as a scan without a resume point would;
4. a first page that shows none of them, in a listing numbered by page, sends a search for the last page
   (:class:`~airflow_provider_openeo.hooks._openeo.listing_pages.LastPageSearch`), where a stable oldest-first order
   puts new jobs, then back one page at a time while the previous page keeps showing watched jobs and another page pays.

Whatever was read is summarised as a :class:`~airflow_provider_openeo.wait._job_gone.JobListing`; it is *complete* only
when it ran from the first page through every ``next`` link to the end (a resumed or searched scan skipped pages,
so a job's absence from it proves nothing). What the start page showed is reported to the strategy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from airflow_provider_openeo.hooks._openeo.listing_pages import LastPageSearch, page_numbering
from airflow_provider_openeo.hooks._openeo.read_strategy import FirstPage, ReadStrategy
from airflow_provider_openeo.wait._job_gone import JobListing

Fetch = Callable[[str], Awaitable[tuple[Any, int]]]
"""Reads one listing page by its full URL: (decoded body, bytes)."""
NextUrl = Callable[[str, Any, set[str]], "str | None"]
"""The next page's URL from a page's URL and body, None when there is none to follow (seen, another host)."""

#: Pages read past a resumed page that shows none of the watched jobs, before starting over at the first page.
STALE_RESUME_PAGES = 2


@dataclass
class _Page:
    url: str
    jobs: list[dict[str, Any]]
    body: Any
    size: int
    next_url: str | None
    links_next: bool
    request: int
    """The scan's request count once this page was read (1 for the first read)."""
    number: int | None = None


def _links_next(body: Any) -> bool:
    links = body.get("links") if isinstance(body, dict) else None
    return isinstance(links, list) and any(isinstance(link, dict) and link.get("rel") == "next" for link in links)


class ListingScan:
    """The pages one status read fetched, and the watched jobs they listed with a status."""

    def __init__(
        self,
        fetch: Fetch,
        next_url: NextUrl,
        strategy: ReadStrategy,
        *,
        listing_url: str,
        page_limit: int,
        max_pages: int,
    ) -> None:
        self._fetch = fetch
        self._next_url = next_url
        self.strategy = strategy
        self.listing_url = listing_url
        self.first_url = f"{listing_url}?{urlencode({'limit': page_limit})}"
        self.page_limit = page_limit
        self.max_pages = max_pages
        self.pages: list[_Page] = []
        self.found: dict[str, dict[str, Any]] = {}
        self._seen_urls: set[str] = set()
        self._skipped = False
        """Pages were jumped over or the scan did not start at the first page: the listing is not complete."""
        self._first_run: list[_Page] = []

    # -- reading -----------------------------------------------------------------------------------------------

    async def _read(self, url: str, wanted: set[str]) -> _Page:
        self._seen_urls.add(url)
        body, size = await self._fetch(url)
        jobs = body.get("jobs") if isinstance(body, dict) else None
        jobs = [job for job in jobs if isinstance(job, dict)] if isinstance(jobs, list) else []
        for job in jobs:
            job_id = job.get("id")
            if job_id in wanted and job.get("status"):
                self.found[job_id] = job
        next_url = self._next_url(url, body, self._seen_urls)
        if next_url is not None and self.strategy.numbering is None:  # a link the hook follows (same host)
            self.strategy.numbering = page_numbering(url, next_url)
        numbering = self.strategy.numbering
        page = _Page(url, jobs, body, size, next_url, next_url is not None or _links_next(body), len(self.pages) + 1)
        page.number = numbering.number_of(url) if numbering is not None else None
        self.pages.append(page)
        return page

    def _shown(self, page: _Page, ids: set[str]) -> int:
        return sum(1 for job in page.jobs if job.get("id") in ids and job.get("status"))

    async def _forward(self, url: str, wanted: set[str], judged: set[str], *, evidence: bool, resumed: bool) -> None:
        """Rules 2 and 3: pages from ``url`` on while they pay (or evidence wants them), within the page budget."""
        run: list[_Page] = []
        while len(self.pages) < self.max_pages:
            page = await self._read(url, wanted)
            run.append(page)
            if wanted.issubset(self.found) or page.next_url is None:
                break
            shown = sum(self._shown(p, judged) for p in run)
            if resumed and judged and not shown:
                if len(run) >= STALE_RESUME_PAGES:
                    break
            elif not evidence:
                missing = len(wanted) - len(self.found)
                mean_bytes = sum(p.size for p in run) / len(run)
                found = sum(self._shown(p, wanted) for p in run)
                if not self.strategy.next_page_pays(
                    pages=len(run), found=found, missing=missing, page_bytes=mean_bytes
                ):
                    break
            url = page.next_url
        if not resumed:
            self._first_run = run

    async def _search_last(self, wanted: set[str], judged: set[str]) -> None:
        """Rule 4: find the last page of a numbered listing, then step back while earlier pages show watched jobs."""
        numbering = self.strategy.numbering
        first = self.pages[-1]
        if numbering is None or first.number is None:
            return
        self._skipped = True
        search = LastPageSearch(known=first.number, first=numbering.first)
        read: dict[int, _Page] = {first.number: first}
        while (number := search.next_page()) is not None:
            page = await self._read(numbering.url(number), wanted)
            read[number] = page
            search.saw(number, entries=len(page.jobs), has_next=page.links_next)
            if wanted.issubset(self.found):
                break
        holding = sorted(n for n, page in read.items() if self._shown(page, judged))
        if not holding:
            return
        number, stepped = holding[0] - 1, 0
        while number >= numbering.first and number not in read and not wanted.issubset(self.found):
            missing = len(wanted) - len(self.found)
            shown = sum(self._shown(read[n], wanted) for n in holding)
            mean_bytes = sum(read[n].size for n in holding) / len(holding)
            if stepped >= self.max_pages or not self.strategy.next_page_pays(
                pages=len(holding), found=shown, missing=missing, page_bytes=mean_bytes
            ):
                break
            page = read[number] = await self._read(numbering.url(number), wanted)
            stepped += 1
            if not self._shown(page, judged):
                break
            holding.insert(0, number)
            number -= 1

    # -- the scan ----------------------------------------------------------------------------------------------

    async def run(self, wanted: set[str], *, judged: set[str], evidence: bool) -> tuple[dict[str, Any], JobListing]:
        """Read pages for ``wanted`` (``judged``: those whose presence teaches the strategy; the others answered
        404); return the jobs found (as listed) and the listing's summary."""
        resume = self.strategy.resume_url
        numbering = self.strategy.numbering
        if resume is not None and urlsplit(resume)[:3] != urlsplit(self.listing_url)[:3]:
            # Learnt from another listing (the connection now points elsewhere): never send the token there.
            self.strategy.page_found(resume := None)
        if numbering is not None and numbering.base_url != self.listing_url:
            self.strategy.numbering = None
        if resume is not None:
            self._skipped = True
            await self._forward(resume, wanted, judged, evidence=evidence, resumed=True)
            if not judged or any(self._shown(page, judged) for page in self.pages):
                return self._finish(judged)
        if not wanted.issubset(self.found):
            start = len(self.pages)
            self._skipped = False if start == 0 else self._skipped
            await self._forward(self.first_url, wanted, judged, evidence=evidence, resumed=False)
            run = self.pages[start:]
            if judged and run and not any(self._shown(page, judged) for page in run) and run[-1].next_url:
                await self._search_last(wanted, judged)
        return self._finish(judged)

    def _finish(self, judged: set[str]) -> tuple[dict[str, Any], JobListing]:
        if judged:
            holding = [page for page in self.pages if self._shown(page, judged)]
            if holding:
                start = min(holding, key=lambda p: (p.number is None, p.number or 0, p.request))
            else:
                start = self._first_run[0] if self._first_run else self.pages[0]
            self.strategy.listing_seen(
                FirstPage(
                    len(judged),
                    self._shown(start, judged),
                    start.size,
                    len(start.jobs),
                    self.page_limit,
                    start.links_next,
                    reach_requests=start.request if holding else len(self.pages),
                )
            )
            self.strategy.page_found(None if not holding or start.url == self.first_url else start.url)
        last = self.pages[-1] if self.pages else None
        listing = JobListing.from_pages(
            [page.body for page in self.pages], limit=self.page_limit, has_next=bool(last and last.links_next)
        )
        if self._skipped and listing.complete:
            listing = dataclasses.replace(listing, complete=False)
        return self.found, listing
