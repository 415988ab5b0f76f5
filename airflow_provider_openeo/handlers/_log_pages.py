"""Read every page of a job's logs: backends may answer ``GET /jobs/{id}/logs`` in pages with ``rel=next`` links.

openeo's ``BatchJob.logs()`` returns the first page only, so the error a user needs may sit on page two. The
walk is bounded (pages and entries): a backend whose ``next`` links never end, or loop, cannot keep a task busy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openeo.rest.models.general import LogsResponse

if TYPE_CHECKING:
    import openeo

MAX_LOG_PAGES = 20
MAX_LOG_ENTRIES = 10_000


@dataclass
class LogPages:
    """Entries of the pages read, how many pages, whether a ``next`` link was left unfollowed (and why not)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
    truncated: bool = False
    #: A later page that could not be read: the entries before it are kept.
    error: BaseException | None = None


def next_href(links: Iterable[Any]) -> str | None:
    """The href of the first ``rel=next`` link (openeo ``Link`` objects or plain dicts)."""
    for link in links or ():
        rel = link.get("rel") if isinstance(link, Mapping) else getattr(link, "rel", None)
        href = link.get("href") if isinstance(link, Mapping) else getattr(link, "href", None)
        if rel == "next" and isinstance(href, str) and href:
            return href
    return None


def read_log_pages(
    job: openeo.BatchJob,
    *,
    level: str,
    max_pages: int = MAX_LOG_PAGES,
    max_entries: int = MAX_LOG_ENTRIES,
) -> LogPages:
    """Entries of ``level`` and above, following ``next`` links up to ``max_pages`` pages / ``max_entries``.

    A failing first page raises; a failing later page ends the walk with what was read (``error`` set).
    """
    result = LogPages()
    page: LogsResponse = job.logs(level=level)
    seen: set[str] = set()
    while True:
        result.pages += 1
        result.entries.extend(dict(entry) for entry in page)
        href = next_href(page.links)
        if href is None or href in seen:
            break
        if result.pages >= max_pages or len(result.entries) >= max_entries:
            result.truncated = True
            break
        seen.add(href)
        try:
            data = job.connection.get(href, expected_status=200).json()
            page = LogsResponse(response_data=data, log_level=level, connection=job.connection)
        except Exception as error:
            result.truncated, result.error = True, error
            break
    if len(result.entries) > max_entries:
        result.entries, result.truncated = result.entries[:max_entries], True
    return result
