"""The read strategy on its own (pure): when a listing pays, how far a scan goes, how often a losing listing is
looked at again. Page sizes are the local backend's measured ones (100 entries: about 15-18 KB; fastapi's whole
history of 2,000 jobs with graphs: about 930 KB; one job document: about 250 bytes)."""

from __future__ import annotations

import pytest

from airflow_provider_openeo.hooks._openeo.read_strategy import (
    MAX_PROBE_GAP,
    MIN_PROBE_GAP,
    REQUEST_COST_BYTES,
    FirstPage,
    ReadStrategy,
)

PAGE = 18_000
WHOLE_HISTORY = 930_000


def _page(found: int, *, watched: int = 5, body: int = PAGE, entries: int = 100, has_next: bool = True) -> FirstPage:
    return FirstPage(watched=watched, found=found, body_bytes=body, entries=entries, limit=100, has_next=has_next)


def _per_job_polls(strategy: ReadStrategy, watched: int, polls: int) -> list[bool]:
    return [strategy.plan(watched).listing for _ in range(polls)]


def test_the_first_poll_looks_at_the_listing() -> None:
    plan = ReadStrategy().plan(5)
    assert plan.listing and not plan.look


def test_a_first_page_showing_the_watched_jobs_keeps_listing() -> None:
    strategy = ReadStrategy()
    strategy.listing_seen(_page(5))
    assert _per_job_polls(strategy, 5, 20) == [True] * 20
    assert strategy.listing_pays(2), "two job reads cost more than one page of 100 short entries"


def test_a_first_page_without_them_switches_to_per_job_reads() -> None:
    strategy = ReadStrategy()
    strategy.listing_seen(_page(0))
    assert not strategy.plan(5).listing


def test_a_listing_moving_the_whole_history_loses_to_a_few_job_reads_but_wins_for_many() -> None:
    strategy = ReadStrategy()
    strategy.listing_seen(_page(5, body=WHOLE_HISTORY, entries=2005, has_next=False))
    assert strategy.first_page is not None and strategy.first_page.limit_ignored
    assert not strategy.listing_pays(5)
    assert strategy.listing_pays(200), "200 requests saved are worth more than 930 KB"


def test_the_aggregators_cut_listing_is_recognised() -> None:
    page = _page(5, has_next=False)
    assert page.cut_without_next and not page.limit_ignored
    assert not _page(5, entries=40, has_next=False).cut_without_next


def test_looks_again_are_bounded_by_their_share_of_the_per_job_reads() -> None:
    strategy = ReadStrategy()
    strategy.listing_seen(_page(0))
    assert strategy.probe_gap(5) == MIN_PROBE_GAP  # a cheap page: the floor
    looks = []
    for poll in range(3 * (MIN_PROBE_GAP + 1)):
        if strategy.plan(5).listing:
            looks.append(poll)
            strategy.listing_seen(_page(0))  # the look shows the same: job by job again
    assert looks == [MIN_PROBE_GAP, 2 * MIN_PROBE_GAP + 1, 3 * MIN_PROBE_GAP + 2], "one look per gap of polls"

    huge = ReadStrategy()
    huge.listing_seen(_page(5, body=WHOLE_HISTORY, entries=2005, has_next=False))
    gap = huge.probe_gap(5)
    look_cost = REQUEST_COST_BYTES + WHOLE_HISTORY
    assert look_cost / gap <= 0.1 * 5 * huge.job_read_cost * 1.01, "looks cost at most a tenth of the reads"
    assert MIN_PROBE_GAP < gap < MAX_PROBE_GAP


def test_a_look_that_finds_most_watched_jobs_on_the_first_page_switches_back() -> None:
    strategy = ReadStrategy()
    strategy.listing_seen(_page(0))
    for _ in range(MIN_PROBE_GAP):
        assert not strategy.plan(5).listing
    plan = strategy.plan(5)
    assert plan.listing and plan.look
    strategy.listing_seen(_page(4))  # the order changed: newest first now
    assert strategy.plan(5).listing and not strategy.plan(5).look


def test_a_scan_goes_on_only_while_a_further_page_pays() -> None:
    strategy = ReadStrategy()
    # Page 1 found nothing: another page is not expected to find anything either.
    assert not strategy.next_page_pays(pages=1, found=0, missing=5, page_bytes=PAGE)
    # Productive pages go on while more is missing ...
    assert strategy.next_page_pays(pages=1, found=100, missing=200, page_bytes=PAGE)
    # ... but never for a job or two that a GET each reads for less than a page.
    assert not strategy.next_page_pays(pages=1, found=4, missing=1, page_bytes=PAGE)
    assert not strategy.next_page_pays(pages=2, found=0, missing=0, page_bytes=PAGE)


def test_the_cost_of_a_job_read_is_learnt() -> None:
    strategy = ReadStrategy(job_bytes=2_000)
    strategy.jobs_read(5, 5 * 250)
    assert strategy.job_bytes == 250
    strategy.jobs_read(1, 1_250)
    assert 250 < strategy.job_bytes < 1_250
    strategy.jobs_read(0, 0)
    assert strategy.job_read_cost == REQUEST_COST_BYTES + strategy.job_bytes


def test_a_refused_listing_means_job_reads_with_an_occasional_look() -> None:
    strategy = ReadStrategy()
    strategy.listing_failed(refused=True)
    polls = _per_job_polls(strategy, 5, MIN_PROBE_GAP + 1)
    assert polls == [False] * MIN_PROBE_GAP + [True]
    strategy.listing_seen(_page(5))
    assert not strategy.refused and strategy.plan(5).listing


def test_a_transient_failure_restarts_the_wait_before_the_next_look() -> None:
    strategy = ReadStrategy()
    strategy.listing_seen(_page(0))
    _per_job_polls(strategy, 5, MIN_PROBE_GAP)
    assert strategy.plan(5).look
    strategy.listing_failed(refused=False)
    assert not strategy.plan(5).listing and not strategy.refused


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ReadStrategy(probe_share=0)
    with pytest.raises(ValueError):
        ReadStrategy(min_probe_gap=5, max_probe_gap=4)


def test_describe_names_what_the_choice_rests_on() -> None:
    strategy = ReadStrategy()
    assert "not been looked at" in strategy.describe(5)
    strategy.listing_seen(_page(5, body=WHOLE_HISTORY, entries=2005, has_next=False))
    text = strategy.describe(5)
    assert "5 of 5" in text and "limit ignored" in text and "930.0 KB" in text


def test_one_strategy_per_connection_in_the_process() -> None:
    from airflow_provider_openeo.hooks._openeo.read_strategy import read_strategy_of
    from airflow_provider_openeo.triggers.openeo import _default_hook_factory

    assert read_strategy_of("a") is read_strategy_of("a") is not read_strategy_of("b")
    hook = _default_hook_factory("a")
    assert hook.read_strategy is read_strategy_of("a")  # type: ignore[attr-defined]


# -- rule 4: start where the watched jobs were --------------------------------------------------------------------


def test_a_look_that_had_to_search_for_its_page_is_repeated_correspondingly_rarely():
    near, far = ReadStrategy(), ReadStrategy()
    near.listing_seen(_page(0))
    far.listing_seen(FirstPage(5, 0, PAGE, 100, 100, True, reach_requests=12))
    assert far.probe_gap(5) > near.probe_gap(5)
    assert far.probe_gap(5) <= MAX_PROBE_GAP
    assert "after 12 request(s)" in far.describe(5)


def test_the_page_where_the_watched_jobs_were_found_is_remembered_until_they_are_not_there():
    strategy = ReadStrategy()
    assert strategy.resume_url is None
    strategy.page_found("https://openeo.example/jobs?limit=100&page=50")
    strategy.listing_seen(FirstPage(4, 4, 2_000, 12, 100, False, reach_requests=12))
    assert strategy.resume_url.endswith("page=50")
    assert strategy.plan(4).listing, "a small page showing every watched job pays for itself"
    strategy.page_found(None)
    assert strategy.resume_url is None
