"""``on_job_error``'s walk over log pages: ``next`` links followed, a failing page or a loop ending it (in-process;
against the local backend: tests/system/handlers/test_job_handlers_logs.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from openeo.rest import OpenEoApiError
from openeo.rest.models.general import LogsResponse

from airflow_provider_openeo.handlers._log_pages import next_href, read_log_pages


class _PagedJob:
    """A job whose first log page links to a second that cannot be read (or to itself, forever)."""

    job_id = "j-paged"

    def __init__(self, next_link: str, failing: bool) -> None:
        self.next_link, self.failing = next_link, failing
        self.connection = self

    def _page(self, offset: int) -> dict:
        entry = {"id": str(offset), "level": "error", "message": f"error {offset}"}
        return {"logs": [entry], "links": [{"rel": "next", "href": self.next_link}]}

    def logs(self, level: str) -> LogsResponse:
        return LogsResponse(self._page(0), log_level=level)

    def get(self, href: str, expected_status: int) -> Any:
        if self.failing:
            raise OpenEoApiError(http_status_code=503, code="ServiceUnavailable", message="try later")
        return SimpleNamespace(json=lambda: self._page(1))


def test_a_failing_later_page_keeps_the_entries_read() -> None:
    pages = read_log_pages(_PagedJob("https://b/logs?offset=0", failing=True), level="error")
    assert ([e["message"] for e in pages.entries], pages.pages, pages.truncated) == (["error 0"], 1, True)
    assert isinstance(pages.error, OpenEoApiError)


def test_a_next_link_that_loops_ends_the_walk() -> None:
    pages = read_log_pages(_PagedJob("https://b/logs?offset=0", failing=False), level="error", max_pages=20)
    assert pages.pages == 2  # the first page and its next, whose own next was read already
    assert not pages.truncated


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ([], None),
        ([{"rel": "self", "href": "https://b/x"}, {"rel": "next", "href": "https://b/y"}], "https://b/y"),
        ([{"rel": "next", "href": ""}], None),
        ([{"rel": "next"}], None),
    ],
)
def test_next_href(links: list[dict], expected: str | None) -> None:
    assert next_href(links) == expected
