"""Page numbers learnt from a listing's ``next`` links, and the search for its last page (pure, no server)."""

from __future__ import annotations

import pytest

from airflow_provider_openeo.hooks._openeo.listing_pages import MAX_SEARCH_PAGES, LastPageSearch, page_numbering

ROOT = "https://openeo.example/openeo/1.2/jobs"


def test_a_first_page_linking_to_page_1_is_numbered_from_0():
    numbering = page_numbering(f"{ROOT}?limit=100", f"{ROOT}?limit=100&page=1")
    assert numbering is not None and (numbering.parameter, numbering.first) == ("page", 0)
    assert numbering.url(50) == f"{ROOT}?limit=100&page=50"
    assert numbering.number_of(f"{ROOT}?limit=100&page=7") == 7
    assert numbering.number_of(f"{ROOT}?limit=100") == 0
    assert numbering.number_of("https://other.example/jobs?page=7") is None


def test_a_relative_next_link_and_a_later_page_are_numbered_too():
    numbering = page_numbering(f"{ROOT}?limit=10&page=4", "/openeo/1.2/jobs?limit=10&page=5")
    assert numbering is not None and numbering.url(9) == f"{ROOT}?limit=10&page=9"
    assert page_numbering(f"{ROOT}?limit=10", f"{ROOT}?limit=10&page=2").first == 1


@pytest.mark.parametrize(
    ("request_url", "href"),
    [
        (f"{ROOT}?limit=100", f"{ROOT}?limit=100&after=1733000000.0_j-42"),  # a cursor (openeo-driver)
        (f"{ROOT}?limit=100&page=3", f"{ROOT}?limit=100&page=5"),  # not one higher
        (f"{ROOT}?limit=100", f"{ROOT}?limit=50&page=1"),  # two parameters changed
        (f"{ROOT}?limit=100&page=1", f"{ROOT}?page=2"),  # a parameter dropped
        (f"{ROOT}?limit=100", "https://elsewhere.example/openeo/1.2/jobs?limit=100&page=1"),  # another host
        (f"{ROOT}?limit=100", f"{ROOT}?limit=100&page=7"),  # the first page cannot link to page 7
        (f"{ROOT}?limit=100", f"{ROOT}?limit=100&page=1&page=2"),
    ],
)
def test_links_that_are_no_page_number_one_higher_give_no_numbering(request_url, href):
    assert page_numbering(request_url, href) is None


def _search(last: int, *, known: int = 0, first: int = 0) -> tuple[int | None, list[int]]:
    """Run the search against a listing whose pages ``first``..``last`` hold jobs."""
    search, read = LastPageSearch(known=known, first=first), []
    while (number := search.next_page()) is not None:
        read.append(number)
        search.saw(number, entries=10 if first <= number <= last else 0, has_next=number < last)
    return search.last, read


def test_the_search_grows_fourfold_then_halves():
    assert _search(50) == (50, [4, 16, 64, 40, 52, 46, 49, 50])
    assert _search(20) == (20, [4, 16, 64, 40, 28, 22, 19, 20])


@pytest.mark.parametrize("last", [0, 1, 2, 3, 4, 5, 7, 63, 64, 65, 999, 4_000])
def test_the_search_finds_any_last_page_in_about_one_and_a_half_log2_reads(last):
    found, read = _search(last)
    assert found == last
    assert len(read) <= 1.5 * max(2, last).bit_length() + 3


def test_the_search_starts_from_the_page_known_to_go_on_and_the_first_number():
    assert _search(9, known=8)[0] == 9
    assert _search(5, first=1, known=1)[0] == 5


def test_the_search_is_bounded():
    search = LastPageSearch(known=0, max_reads=3)
    pages = []
    while (number := search.next_page()) is not None:
        pages.append(number)
        search.saw(number, entries=10, has_next=True)  # a listing that never ends
    assert pages == [4, 16, 64] and search.last is None
    assert MAX_SEARCH_PAGES >= 1.5 * 16
