"""Which listing pages one status read fetches (``hooks/_listing_scan.py``), against an in-memory paged listing.

The fetch here serves ``?limit=&page=`` pages as the local backend's ``geopyspark`` profile does (numbered from 0,
a ``next`` link while more jobs follow) or, with ``cursor=True``, opaque cursor links; the real backend is met in
``test_read_strategy_local_backend.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from airflow_provider_openeo.hooks._openeo.listing_scan import STALE_RESUME_PAGES, ListingScan
from airflow_provider_openeo.hooks._openeo.read_strategy import ReadStrategy

ROOT = "https://openeo.example/openeo/1.2"
LIMIT = 10


class Listing:
    """``count`` jobs, oldest first, ids ``j0``.. (watched ones running, the others finished)."""

    def __init__(self, count: int, *, cursor: bool = False) -> None:
        self.ids = [f"j{i}" for i in range(count)]
        self.cursor = cursor
        self.read: list[int] = []

    async def fetch(self, url: str) -> tuple[Any, int]:
        query = parse_qs(urlsplit(url).query)
        if self.cursor:  # openeo-driver style: the next link names the last job shown
            after = query.get("after", [None])[0]
            page = 0 if after is None else (self.ids.index(after) + 1) // LIMIT
        else:
            page = int(query.get("page", ["0"])[0])
        self.read.append(page)
        shown = self.ids[page * LIMIT : (page + 1) * LIMIT]
        body: dict[str, Any] = {"jobs": [{"id": i, "status": "running"} for i in shown], "links": []}
        if len(self.ids) > (page + 1) * LIMIT:
            following = f"after={shown[-1]}" if self.cursor else f"page={page + 1}"
            body["links"].append({"rel": "next", "href": f"{ROOT}/jobs?limit={LIMIT}&{following}"})
        return body, 100 + 50 * len(shown)


def next_url(current: str, body: Any, seen: set[str]) -> str | None:
    for link in body.get("links", []):
        if link.get("rel") == "next":
            nxt = urljoin(current, link["href"])
            return None if nxt in seen else nxt
    return None


def scan(listing: Listing, strategy: ReadStrategy, wanted: set[str], *, unconfirmed: set[str] = frozenset()):
    listing.read.clear()
    runner = ListingScan(listing.fetch, next_url, strategy, listing_url=f"{ROOT}/jobs", page_limit=LIMIT, max_pages=10)
    return asyncio.run(runner.run(wanted, judged=wanted - unconfirmed, evidence=bool(unconfirmed)))


def test_watched_jobs_far_behind_the_first_page_are_found_by_a_search_then_read_from_their_page():
    listing, strategy = Listing(503), ReadStrategy()
    watched = {"j500", "j501", "j502"}
    found, summary = scan(listing, strategy, watched)
    assert set(found) == watched
    assert listing.read == [0, 4, 16, 64, 40, 52, 46, 49, 50]
    assert strategy.resume_url is not None and strategy.resume_url.endswith("page=50")
    assert strategy.first_page is not None and strategy.first_page.found == 3
    assert strategy.first_page.reach_requests == 9, "a look again costs the whole search (rule 3)"
    assert not summary.complete, "pages were skipped: an absence proves nothing"

    found, summary = scan(listing, strategy, watched)
    assert set(found) == watched and listing.read == [50], "one page per poll from then on"
    assert strategy.first_page.reach_requests == 1


def test_from_the_resumed_page_the_scan_goes_on_while_a_page_pays_and_new_jobs_come_at_the_end():
    listing, strategy = Listing(505), ReadStrategy(request_cost=100)
    scan(listing, strategy, {"j500", "j501"})
    listing.ids += [f"j{i}" for i in range(505, 512)]  # new jobs: page 50 fills up, page 51 begins
    found, _ = scan(listing, strategy, {"j501", "j510", "j511"})
    assert set(found) == {"j501", "j510", "j511"} and listing.read == [50, 51]


def test_a_resumed_page_without_the_watched_jobs_looks_one_page_on_then_starts_over():
    listing, strategy = Listing(503), ReadStrategy()
    scan(listing, strategy, {"j500"})
    found, _ = scan(listing, strategy, {"j3", "j4"})  # other jobs now, on the first page
    assert set(found) == {"j3", "j4"}
    assert listing.read == [50, 0], "page 50 is the last: nothing on, so back to the first page"
    assert strategy.resume_url is None, "the first page is the start again"
    listing.ids += [f"j{i}" for i in range(503, 530)]
    strategy.page_found(f"{ROOT}/jobs?limit={LIMIT}&page=48")
    found, _ = scan(listing, strategy, {"j525"})
    assert set(found) == {"j525"} and listing.read[:STALE_RESUME_PAGES] == [48, 49]


def test_an_unnumbered_listing_is_never_jumped_in():
    listing, strategy = Listing(503, cursor=True), ReadStrategy()
    found, _ = scan(listing, strategy, {"j500", "j501"})
    assert found == {} and listing.read == [0], "a cursor cannot be jumped: the first page alone, as before"
    assert strategy.resume_url is None and strategy.numbering is None


def test_evidence_for_a_404_starts_at_the_resumed_page_too():
    listing, strategy = Listing(503), ReadStrategy()
    scan(listing, strategy, {"j500", "j501"})
    found, summary = scan(listing, strategy, {"j500", "j501", "gone"}, unconfirmed={"gone"})
    assert set(found) == {"j500", "j501"} and listing.read == [50], "not 10 pages from the first"
    assert summary.ids >= {"j500", "j501"} and not summary.complete


def test_evidence_without_a_resume_point_reads_the_listing_from_the_start_to_its_end():
    listing, strategy = Listing(25), ReadStrategy()
    found, summary = scan(listing, strategy, {"j24", "gone"}, unconfirmed={"gone"})
    assert set(found) == {"j24"} and listing.read == [0, 1, 2]
    assert summary.complete and "gone" not in summary.ids


def test_a_resume_point_of_another_listing_is_never_requested():
    """The connection was pointed at another backend: what the old one taught must not send the token there."""
    listing, strategy = Listing(25), ReadStrategy()
    strategy.page_found("https://old-backend.example/openeo/1.2/jobs?limit=10&page=2")
    found, _ = scan(listing, strategy, {"j3"})
    assert set(found) == {"j3"} and listing.read == [0] and strategy.resume_url is None
