"""Where in a paged ``GET /jobs`` listing the watched jobs are, so a status read goes there first.

Why: openeo-geopyspark-driver pages its listing by number (``?limit=&page=``) and keeps months of old jobs, in an
order no public code defines (oldest first in our local ``geopyspark`` profile). Oldest first, the jobs a batch
watches sit on the last pages, behind thousands of old ones: a scan from the first page never reaches them within
its page budget, and every poll fell back to one ``GET /jobs/{id}`` per job (bench workload 7: 8.9 status reads
per job, MBJM's 8.6). In a stable order, though, a job stays on the page it was first listed on (new jobs come at
the end), so one page read per poll serves every watched job once that page is known.

Two pure pieces, learnt only from what the backend answers (unit-tested without a server):

- :func:`page_numbering`: a ``next`` link that differs from the request only by one whole-number query parameter,
  one higher, means pages are addressed by number: any page can then be asked for directly
  (:meth:`PageNumbering.url`). Cursor links (openeo-driver's ``after=``) are not numbered: no jump is made.
- :class:`LastPageSearch`: finds the last non-empty page of a numbered listing in about ``2 log2(pages)`` reads
  (doubling, then halving), which is where a stable oldest-first listing puts new jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

#: Pages a search for the last page reads at most (enough for ~2**16 pages of history).
MAX_SEARCH_PAGES = 26
#: How fast the search's page number grows before the end is passed: four times costs about ``log4(pages)``
#: reads to pass it plus ``log2(pages)`` to close in (8 for 50 pages), doubling ``2 log2(pages)`` (11).
SEARCH_GROWTH = 4


def _whole(value: str) -> int | None:
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class PageNumbering:
    """A listing addressed by page number: the URL without the number, and the number's parameter and base."""

    base_url: str
    """Scheme, host and path of the listing."""
    query: tuple[tuple[str, str], ...]
    """The other query parameters, as the backend's own ``next`` link had them (``limit`` among them)."""
    parameter: str
    first: int
    """The first page's number (0 or 1), i.e. the number of the page asked for without the parameter."""

    def url(self, number: int) -> str:
        """The URL of page ``number``."""
        query = urlencode([*self.query, (self.parameter, str(number))])
        return urlunsplit((*urlsplit(self.base_url)[:3], query, ""))

    def number_of(self, url: str) -> int | None:
        """The page number ``url`` asks for, if it is a page of this listing."""
        parts = urlsplit(url)
        if urlunsplit((*parts[:3], "", "")) != self.base_url:
            return None
        values = dict(parse_qsl(parts.query, keep_blank_values=True))
        raw = values.get(self.parameter)
        return self.first if raw is None else _whole(raw)


def page_numbering(request_url: str, next_href: str) -> PageNumbering | None:
    """The numbering of a listing whose page at ``request_url`` linked to ``next_href``, or None when the link is no
    page number one higher than the request's (a cursor, another path, other parameters changed)."""
    nxt = urljoin(request_url, next_href)
    current, following = urlsplit(request_url), urlsplit(nxt)
    if current[:3] != following[:3]:
        return None
    asked = dict(parse_qsl(current.query, keep_blank_values=True))
    linked = parse_qsl(following.query, keep_blank_values=True)
    linked_map = dict(linked)
    if len(linked_map) != len(linked):
        return None  # a repeated parameter: not a plain page number
    changed = [key for key, value in linked_map.items() if asked.get(key) != value]
    unexplained = [key for key in asked if key not in linked_map]
    if len(changed) != 1 or unexplained:
        return None
    parameter = changed[0]
    to = _whole(linked_map[parameter])
    if to is None:
        return None
    if parameter in asked:
        at = _whole(asked[parameter])
        if at is None or to != at + 1:
            return None
        first = None
    else:
        if to not in (1, 2):  # the first page, numbered 0 or 1, links to the page after it
            return None
        first = to - 1
    query = tuple((key, value) for key, value in linked if key != parameter)
    base_url = urlunsplit((*following[:3], "", ""))
    if first is None:
        first = 0  # only the first page's link tells the base; a later page's does not need it to jump
    return PageNumbering(base_url, query, parameter, first)


class LastPageSearch:
    """The search for a numbered listing's last non-empty page: grow the page number :data:`SEARCH_GROWTH`-fold
    while pages go on, then halve the gap between the last page that went on and the first that was empty.

    :meth:`next_page` says which page to read next (None: done or out of reads), :meth:`saw` what it showed.
    ``last`` is the answer once found. Pure: the hook does the reading.
    """

    def __init__(self, *, known: int, first: int = 0, max_reads: int = MAX_SEARCH_PAGES) -> None:
        self.low = known
        """The highest page seen to hold jobs and link on (or the known page to start from)."""
        self.high: int | None = None
        """The lowest page seen empty (past the end)."""
        self.first = first
        self.last: int | None = None
        self.reads = 0
        self.max_reads = max_reads

    def next_page(self) -> int | None:
        if self.last is not None or self.reads >= self.max_reads:
            return None
        if self.high is None:
            return self.first + SEARCH_GROWTH * max(1, self.low - self.first)
        if self.high - self.low <= 1:
            self.last = self.low
            return None
        return (self.low + self.high) // 2

    def saw(self, number: int, *, entries: int, has_next: bool) -> None:
        """Page ``number`` listed ``entries`` jobs and did (not) link on."""
        self.reads += 1
        if entries == 0:
            self.high = number if self.high is None else min(self.high, number)
        elif has_next:
            self.low = max(self.low, number)
        else:
            self.last = number
