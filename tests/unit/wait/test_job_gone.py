"""The rule deciding when a job that answers 404 is gone (pure: no server, time passed in)."""

from __future__ import annotations

import pytest

from airflow_provider_openeo.exceptions import OpenEOConfigurationError
from airflow_provider_openeo.wait._job_gone import (
    DEFAULT_GONE_POLLS,
    DEFAULT_GONE_SECONDS,
    GoneJudge,
    GonePolicy,
    JobListing,
    NotFoundStreak,
    federation_missing,
    upstream_named,
)

POLICY = GonePolicy(polls=3, seconds=60)


def listing(*ids: str, complete: bool = True, missing: list[str] | None = None) -> JobListing:
    page: dict = {"jobs": [{"id": i, "status": "running"} for i in ids]}
    if missing is not None:
        page["federation:missing"] = missing
    return JobListing.from_pages([page], limit=None if complete else len(ids), has_next=False)


# -- settings ----------------------------------------------------------------------------------------------------


def test_defaults_want_several_polls_over_minutes():
    policy = GonePolicy.from_extra({})
    assert (policy.polls, policy.seconds) == (DEFAULT_GONE_POLLS, DEFAULT_GONE_SECONDS)
    assert policy.polls >= 3 and policy.seconds >= 120


def test_extras_override_the_defaults():
    assert GonePolicy.from_extra({"job_gone_polls": "2", "job_gone_seconds": 0.5}) == GonePolicy(2, 0.5)
    assert GonePolicy.from_extra({"job_gone_polls": "", "job_gone_seconds": None}) == GonePolicy()


@pytest.mark.parametrize(
    "extra", [{"job_gone_polls": 0}, {"job_gone_polls": 1.5}, {"job_gone_seconds": -1}, {"job_gone_seconds": "x"}]
)
def test_bad_extras_name_the_fields(extra):
    with pytest.raises(OpenEOConfigurationError, match=r"job_gone_polls .* job_gone_seconds"):
        GonePolicy.from_extra(extra, label="connection 'c'")


# -- listings ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "limit", "has_next", "complete"),
    [
        (3, 100, False, True),  # a short last page, no next link: everything
        (100, 100, False, False),  # exactly `limit` and no next link: maybe cut (the aggregator drops next links)
        (100, 100, True, False),  # more pages not read
        (250, 100, False, True),  # `limit` ignored (openeo-fastapi): the whole history in one page
        (0, 100, False, True),
        (5, None, False, True),
    ],
)
def test_a_listing_is_complete_only_when_nothing_can_be_missing(count, limit, has_next, complete):
    page = {"jobs": [{"id": f"j-{i}"} for i in range(count)]}
    assert JobListing.from_pages([page], limit=limit, has_next=has_next).complete is complete


def test_no_pages_is_no_listing():
    assert not JobListing.from_pages([], limit=100, has_next=False).complete


def test_federation_missing_is_read_from_every_page():
    pages = [
        {"jobs": [{"id": "vito-1"}], "federation:missing": ["eodc"]},
        {"jobs": [{"id": "vito-2"}], "federation:missing": ["eodc", "sentinelhub"]},
    ]
    result = JobListing.from_pages(pages, limit=1, has_next=False)
    assert result.ids == {"vito-1", "vito-2"} and result.federated
    assert result.missing_upstreams == ("eodc", "sentinelhub")
    assert federation_missing({"jobs": []}) is None and federation_missing({"federation:missing": []}) == ()


def test_upstream_is_the_id_prefix_of_the_aggregator():
    assert upstream_named("eodc-abc-123", ["vito", "eodc"]) == "eodc"
    assert upstream_named("eodcx-1", ["eodc"]) is None
    assert upstream_named("j-123", []) is None


# -- the rule ----------------------------------------------------------------------------------------------------


def test_a_single_404_is_never_gone_on_its_own():
    judge = GoneJudge(GonePolicy(polls=1, seconds=0))
    verdict = judge.not_found("j-1", at=0, listing=None)
    assert not verdict.gone and "health is unknown" in verdict.reason
    assert judge.streaks == {}, "a 404 without proof of a healthy backend does not count"


def test_absent_from_a_complete_listing_with_other_jobs_is_gone_at_once():
    verdict = GoneJudge(POLICY).not_found("j-1", at=0, listing=listing("j-2", "j-3"))
    assert verdict.gone and "complete job listing" in verdict.reason and "2 other" in verdict.reason


@pytest.mark.parametrize(
    "seen",
    [listing(), listing("j-2", "j-3", complete=False)],
    ids=["empty-listing", "incomplete-listing"],
)
def test_a_listing_that_cannot_confirm_only_counts_towards_the_window(seen):
    judge = GoneJudge(POLICY)
    assert not judge.not_found("j-1", at=0, listing=seen).gone
    assert judge.streaks["j-1"].count == 1


def test_a_job_the_listing_shows_is_alive_whatever_its_get_says():
    judge = GoneJudge(GonePolicy(polls=1, seconds=0))
    judge.not_found("j-1", at=0, listing=listing(complete=False))
    verdict = judge.not_found("j-1", at=10, listing=listing("j-1", "j-2"))
    assert not verdict.gone and "still shows it" in verdict.reason and judge.streaks == {}


def test_window_needs_both_enough_404s_and_enough_time():
    judge = GoneJudge(POLICY)
    healthy = {"listing": None, "others_answered": True}
    assert not judge.not_found("j-1", at=0, **healthy).gone
    assert not judge.not_found("j-1", at=1, **healthy).gone
    assert not judge.not_found("j-1", at=2, **healthy).gone, "three 404s in 2 s are a blip, not a deletion"
    verdict = judge.not_found("j-1", at=61, **healthy)
    assert verdict.gone and "4 times over 61 s" in verdict.reason

    slow = GoneJudge(POLICY)
    assert not slow.not_found("j-1", at=0, **healthy).gone
    assert not slow.not_found("j-1", at=100, **healthy).gone, "two 404s, however far apart, are not enough"


def test_404s_while_the_backend_answers_nothing_else_do_not_count():
    judge = GoneJudge(POLICY)
    for at in range(0, 600, 30):
        assert not judge.not_found("j-1", at=at, listing=None, others_answered=False).gone


def test_seen_again_starts_the_count_over():
    judge = GoneJudge(POLICY)
    judge.not_found("j-1", at=0, listing=None, others_answered=True)
    judge.not_found("j-1", at=30, listing=None, others_answered=True)
    judge.seen("j-1")
    assert not judge.not_found("j-1", at=70, listing=None, others_answered=True).gone
    assert judge.streaks["j-1"].count == 1


def test_never_gone_while_federation_missing_names_its_upstream():
    judge = GoneJudge(GonePolicy(polls=1, seconds=0))
    outage = listing("vito-2", "vito-3", missing=["eodc"])  # complete, with other jobs: would confirm otherwise
    for at in range(0, 3600, 60):
        verdict = judge.not_found("eodc-1", at=at, listing=outage)
        assert not verdict.gone and "'eodc'" in verdict.reason and "federation:missing" in verdict.reason
    assert judge.streaks == {}
    # The upstream is back and the job is not in its listing: now a complete listing confirms it.
    assert judge.not_found("eodc-1", at=3600, listing=listing("vito-2", "eodc-7", missing=[])).gone


def test_a_federated_listing_confirms_only_with_jobs_of_the_same_upstream():
    judge = GoneJudge(POLICY)
    verdict = judge.not_found("eodc-1", at=0, listing=listing("vito-2", "vito-3", missing=[]))
    assert not verdict.gone, "jobs of another upstream say nothing about this one's"
    assert judge.not_found("eodc-1", at=1, listing=listing("vito-2", "eodc-3", missing=[])).gone


def test_the_streak_survives_a_json_round_trip():
    streak = NotFoundStreak(1.0, 61.0, 4)
    assert NotFoundStreak.from_dict(streak.to_dict()) == streak
    assert NotFoundStreak.from_dict({"first_at": "x"}) is None and NotFoundStreak.from_dict(None) is None
