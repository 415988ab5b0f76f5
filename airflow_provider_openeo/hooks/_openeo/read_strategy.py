"""How to read one backend's job statuses most cheaply: listing pages or one ``GET /jobs/{id}`` per job.

Why this is learnt and not fixed: a ``GET /jobs`` listing reads every watched job in one request only when they
are on its first page. Production servers differ exactly there (issue 11, DESIGN.md section 10): openeo-driver lists
newest first, geopyspark's order is undefined (oldest first here) behind months of old jobs, the aggregator honours
``limit`` but never links a next page, openeo-fastapi ignores ``limit`` and sends every job with its process graph.
Scanning pages until every watched job is seen then costs more requests than reading each job (measured: 15
requests per poll for 5 jobs), or moves the whole history every poll (785 KB for 5 jobs). So the hook asks this
class, per backend and per poll, what the backend's own answers say is cheaper.

The cost model, in bytes-equivalent (the constants below are its only knobs):

- a request costs :data:`REQUEST_COST_BYTES` plus its body: its round trip, headers, the backend's authentication
  and registry look-up. Large enough that requests dominate (the figure the issue counts, and what a backend's
  rate limits count), small enough that a listing moving hundreds of KB per job it finds still loses;
- reading one job costs a request plus that job's document (:data:`DEFAULT_JOB_BYTES` until measured);
- a listing page costs a request plus its body, and saves one job read for every watched job it shows.

The rules:

1. **List when the first page pays**: as last seen, the listing's first page showed a share of the watched jobs;
   list when that share of today's watched jobs, read one by one, would cost more than the page. Before anything
   is known, list (one look decides). A listing that finds most watched jobs on its first page therefore switches
   the backend back to listings at once.
2. **Scan no further than it pays**: page k+1 is fetched only when the pages so far found enough watched jobs per
   page that another page is expected to save more than it costs. That implies never fetching a page that costs
   more than reading the still missing jobs one by one (it cannot save more than they cost).
3. **Look again, bounded**: while per-job reads are the better deal, the listing's first page is read again after
   a number of polls chosen so that these looks cost at most :data:`PROBE_SHARE` of the per-job reads made in the
   meantime (never more often than every :data:`MIN_PROBE_GAP` polls, at least every :data:`MAX_PROBE_GAP`): an
   order or a history may change, and a look at a huge listing (``limit`` ignored) is made correspondingly rarely.
4. **Start where they were**: a listing's order is stable (new jobs at the end oldest first, at the start newest
   first), so the page where the watched jobs were last found is read first (:attr:`ReadStrategy.resume_url`), and
   the scan goes on from there. Oldest first, over months of history, that is one request per poll instead of a
   scan that never reaches them. The hook falls back to the first page when that page no longer shows them, and,
   when the first page shows none of them and pages are numbered, looks for the last page
   (:mod:`~airflow_provider_openeo.hooks._openeo.listing_pages`); the requests that took count in the cost of a look
   (rule 3).

Pure and clock-free (polls are counted, not timed), so it is unit-tested on its own. One instance serves each async
hook; the triggerer's hooks take theirs from :func:`read_strategy_of`, one per connection for the life of the process,
so what a backend taught outlives the status poller that learnt it (a poller stops whenever no job of its connection
is watched; without this memory every new one would pay a first look, the whole history on openeo-fastapi).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from airflow_provider_openeo.hooks._openeo.listing_pages import PageNumbering

#: What one request costs beyond its body, in bytes-equivalent (round trip, headers, authentication, look-up).
REQUEST_COST_BYTES = 32_000
#: A job document's size until this backend's own have been measured (full form: may carry a process graph).
DEFAULT_JOB_BYTES = 2_000
#: Weight of one poll's mean job document size in the running estimate (documents grow with usage and costs).
JOB_BYTES_WEIGHT = 0.2
#: Looks at a listing that lost to per-job reads may cost at most this share of the per-job reads meanwhile.
PROBE_SHARE = 0.1
#: Per-job polls between two looks at such a listing: at least this many ...
MIN_PROBE_GAP = 10
#: ... and at most this many, however large the listing (it may have been cleaned up meanwhile).
MAX_PROBE_GAP = 1_000


@dataclass(frozen=True)
class FirstPage:
    """What the first page of one ``GET /jobs`` listing showed of the jobs watched at the time."""

    watched: int
    """Watched jobs asked about."""
    found: int
    """Of those, listed with a status on this page."""
    body_bytes: int
    entries: int
    """Jobs on the page, watched or not."""
    limit: int
    has_next: bool
    reach_requests: int = 1
    """Requests the look took to reach this page: 1 for the first page, more when the watched jobs were looked
    for further on (:mod:`~airflow_provider_openeo.hooks._openeo.listing_pages`); what a look again costs."""

    @property
    def found_share(self) -> float:
        return self.found / self.watched if self.watched > 0 else 0.0

    @property
    def limit_ignored(self) -> bool:
        """More jobs than asked for: the backend sends its whole listing at once (openeo-fastapi)."""
        return self.entries > self.limit

    @property
    def cut_without_next(self) -> bool:
        """Exactly ``limit`` jobs and no link on: more may exist that cannot be paged to (the aggregator)."""
        return self.entries == self.limit and not self.has_next

    def describe(self) -> str:
        shape = "limit ignored" if self.limit_ignored else "cut at limit, no next link" if self.cut_without_next else ""
        where = "first page" if self.reach_requests <= 1 else f"page found after {self.reach_requests} request(s)"
        return (
            f"its {where} showed {self.found} of {self.watched} watched job(s) in {self.body_bytes / 1000:.1f} KB "
            f"({self.entries} job(s){', ' + shape if shape else ''})"
        )


@dataclass(frozen=True)
class ReadPlan:
    """One poll's choice: whether to start with a listing, and why (for the log)."""

    listing: bool
    reason: str
    look: bool = False
    """A listing sent to look again (rule 3), not counted on: if it fails, the jobs are read one by one."""


class ReadStrategy:
    """The cheapest way to read one backend's job statuses, learnt from what its listings and job reads cost.

    The hook calls :meth:`plan` once per poll, :meth:`next_page_pays` before each further page of a listing it
    sends by choice, and reports what it saw with :meth:`listing_seen`, :meth:`listing_failed` and
    :meth:`jobs_read`.
    """

    def __init__(
        self,
        *,
        request_cost: float = REQUEST_COST_BYTES,
        job_bytes: float = DEFAULT_JOB_BYTES,
        probe_share: float = PROBE_SHARE,
        min_probe_gap: int = MIN_PROBE_GAP,
        max_probe_gap: int = MAX_PROBE_GAP,
    ) -> None:
        if request_cost <= 0 or job_bytes < 0 or not 0 < probe_share <= 1 or not 0 <= min_probe_gap <= max_probe_gap:
            raise ValueError("request_cost > 0, job_bytes >= 0, 0 < probe_share <= 1, 0 <= min <= max probe gap")
        self.request_cost = float(request_cost)
        self.job_bytes = float(job_bytes)
        self.probe_share = probe_share
        self.min_probe_gap = min_probe_gap
        self.max_probe_gap = max_probe_gap
        self.first_page: FirstPage | None = None
        """The listing's first page at the last look (None: never looked, or the listing was refused)."""
        self.refused = False
        """The backend refused the last listing (no ``GET /jobs``, a 4xx): per-job reads until the next look."""
        self.polls_since_look = 0
        """Polls read job by job since the listing was last looked at."""
        self.resume_url: str | None = None
        """Rule 4: the listing page where the watched jobs were last found (None: the first page)."""
        self.numbering: PageNumbering | None = None
        """How the listing's pages are numbered, when its ``next`` links say so: pages can then be jumped to."""
        self._job_bytes_measured = False

    # -- costs -------------------------------------------------------------------------------------------------

    @property
    def job_read_cost(self) -> float:
        """What reading one job by ``GET /jobs/{id}`` costs."""
        return self.request_cost + self.job_bytes

    def page_cost(self, body_bytes: float) -> float:
        return self.request_cost + body_bytes

    def listing_pays(self, watched: int) -> bool:
        """Rule 1: the first page, as last seen, would save more job reads than it costs for ``watched`` jobs."""
        if self.refused:
            return False
        page = self.first_page
        if page is None:
            return True
        expected = min(page.found_share * watched, page.entries)
        return expected * self.job_read_cost > self.page_cost(page.body_bytes)

    def probe_gap(self, watched: int) -> int:
        """Rule 3: per-job polls before the listing is looked at again."""
        page = self.first_page
        look = self.page_cost(page.body_bytes if page else 0.0) + (page.reach_requests - 1 if page else 0) * (
            self.request_cost
        )
        per_poll = max(watched, 1) * self.job_read_cost
        return min(self.max_probe_gap, max(self.min_probe_gap, math.ceil(look / (self.probe_share * per_poll))))

    # -- decisions ---------------------------------------------------------------------------------------------

    def plan(self, watched: int) -> ReadPlan:
        """Whether this poll of ``watched`` jobs starts with a listing (counts the per-job polls for rule 3)."""
        if self.first_page is None and not self.refused:
            return ReadPlan(True, "first look at the listing")
        if self.listing_pays(watched):
            return ReadPlan(True, "the listing's first page pays for itself")
        if self.polls_since_look >= self.probe_gap(watched):
            return ReadPlan(True, f"a look at the listing after {self.polls_since_look} polls read job by job", True)
        self.polls_since_look += 1
        return ReadPlan(False, "per-job reads are cheaper than the listing")

    def next_page_pays(self, *, pages: int, found: int, missing: int, page_bytes: float) -> bool:
        """Rule 2: fetch another page after ``pages`` pages that found ``found`` watched jobs, ``missing`` still
        unseen, the pages ``page_bytes`` long on average?"""
        if missing <= 0 or pages <= 0:
            return False
        expected = min(float(missing), found / pages)
        return expected * self.job_read_cost > self.page_cost(page_bytes)

    # -- observations ------------------------------------------------------------------------------------------

    def listing_seen(self, page: FirstPage) -> None:
        """A listing's first page was read (by choice or as evidence for a 404): the latest word on the listing."""
        self.first_page = page
        self.refused = False
        self.polls_since_look = 0

    def page_found(self, url: str | None) -> None:
        """Rule 4: the watched jobs were (None: were not) found from the page at ``url`` on; start there next time."""
        self.resume_url = url

    def listing_failed(self, *, refused: bool) -> None:
        """A listing could not be read: ``refused`` (a 4xx, no endpoint) means per-job reads until the next look;
        a transient failure only restarts the wait before the next look."""
        self.refused = self.refused or refused
        self.polls_since_look = 0

    def jobs_read(self, count: int, body_bytes: int) -> None:
        """``count`` job documents were read, ``body_bytes`` in all: refine the cost of a job read."""
        if count <= 0:
            return
        mean = body_bytes / count
        if self._job_bytes_measured:
            self.job_bytes += JOB_BYTES_WEIGHT * (mean - self.job_bytes)
        else:
            self.job_bytes, self._job_bytes_measured = mean, True

    def describe(self, watched: int) -> str:
        """The state behind the choice, for the log when it changes."""
        if self.refused:
            return "the backend refused its job listing"
        if self.first_page is None:
            return "its job listing has not been looked at yet"
        return (
            f"{self.first_page.describe()}; a job read costs {self.job_read_cost / 1000:.1f} KB-equivalent "
            f"({self.request_cost / 1000:.0f} of it for the request); a listing that loses is looked at again after "
            f"{self.probe_gap(watched)} polls read job by job"
        )


_STRATEGIES: dict[str, ReadStrategy] = {}


def read_strategy_of(conn_id: str) -> ReadStrategy:
    """The read strategy of connection ``conn_id`` in this process (the triggerer), made on first use. A connection
    pointed at another backend relearns at its next look (the first one that answers differently)."""
    return _STRATEGIES.setdefault(conn_id, ReadStrategy())
