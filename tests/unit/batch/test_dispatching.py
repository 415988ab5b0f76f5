"""The dispatch rules as pure functions: free slots take rows, pins, cool-down, adaptive slots, giving up, ends."""

from __future__ import annotations

import pytest

from airflow_provider_openeo.batch.dispatching import (
    BASE_COOLDOWN_SECONDS,
    FAILURES_BEFORE_COOLDOWN,
    MAX_COOLDOWN_SECONDS,
    SHARE_SLACK,
    BackendHealth,
    Claim,
    Done,
    GiveUp,
    RunRow,
    StartFailure,
    Wait,
    backend_shares,
    cooldown_seconds,
    decide,
    done_backends,
    expected_shares,
    health_after_failure,
    health_after_success,
    instances_per_backend,
    leave_to_faster,
    pace_of,
    spare_indexes,
)

NOW = 1_000_000.0
BACKENDS = ("foo", "bar")


def ask(rows, backend="foo", slot="run_foo.job[0]", health=None, active=0, now=NOW, **kwargs):
    return decide(
        rows,
        backend=backend,
        slot=slot,
        health=health or BackendHealth(backend),
        active=active,
        now=now,
        recheck_seconds=5.0,
        eligible_backends=BACKENDS,
        **kwargs,
    )


def failing(name="foo", failures=FAILURES_BEFORE_COOLDOWN, since=NOW - 10, failure=StartFailure.UNAVAILABLE):
    health = BackendHealth(name)
    for i in range(failures):
        health = health_after_failure(health, failure, now=since + i, active=0, message="connection refused")
    return health


def test_a_free_slot_takes_the_first_free_row_in_table_order():
    rows = [RunRow(0, slot="run_bar.job[0]", settled=True), RunRow(1), RunRow(2)]
    assert ask(rows) == Claim(1)


def test_own_pinned_rows_come_before_free_ones_and_other_pins_are_left_alone():
    rows = [RunRow(0, backend_name="bar"), RunRow(1), RunRow(2, backend_name="foo")]
    assert ask(rows) == Claim(2)
    assert ask(rows, backend="bar", slot="run_bar.job[0]") == Claim(0)
    assert ask([RunRow(0, backend_name="bar")]) == Done("no row of this run is left for backend 'foo'")


def test_a_slot_that_holds_a_row_continues_with_it_whatever_else_holds():
    rows = [RunRow(0), RunRow(1, backend_name="foo", slot="run_foo.job[3]")]
    cooling = failing()
    assert ask(rows, slot="run_foo.job[3]", health=cooling) == Claim(1, held=True)


def test_nothing_left_but_rows_still_being_started_elsewhere_means_wait_not_done():
    rows = [RunRow(0, slot="run_bar.job[0]", settled=False)]
    decision = ask(rows)
    assert isinstance(decision, Wait) and decision.until == NOW + 5.0
    assert ask([RunRow(0, slot="run_bar.job[0]", settled=True)]) == Done("no row of this run is left for backend 'foo'")


def test_fewer_failures_than_the_threshold_do_not_stop_a_backend():
    health = failing(failures=FAILURES_BEFORE_COOLDOWN - 1)
    assert not health.cooling_down(NOW)
    assert ask([RunRow(0)], health=health) == Claim(0)


def test_a_failing_backend_cools_down_and_is_probed_after_it():
    health = failing(since=NOW)
    assert health.cooldown_until == NOW + FAILURES_BEFORE_COOLDOWN - 1 + BASE_COOLDOWN_SECONDS
    decision = ask([RunRow(0)], health=health, now=NOW + 5)
    assert isinstance(decision, Wait) and decision.until == health.cooldown_until
    assert "3 failed start(s) in a row" in decision.reason and "connection refused" in decision.reason
    assert ask([RunRow(0)], health=health, now=health.cooldown_until) == Claim(0), "the probe after the cool-down"


def test_the_cool_down_grows_while_the_backend_stays_bad_up_to_a_cap():
    assert [cooldown_seconds(n) for n in range(FAILURES_BEFORE_COOLDOWN, FAILURES_BEFORE_COOLDOWN + 4)] == [
        BASE_COOLDOWN_SECONDS * 2**i for i in range(4)
    ]
    assert cooldown_seconds(100) == MAX_COOLDOWN_SECONDS
    first = failing(since=NOW)
    again = health_after_failure(first, StartFailure.UNAVAILABLE, now=first.cooldown_until, active=0)
    assert again.cooldown_until - first.cooldown_until == 2 * BASE_COOLDOWN_SECONDS
    assert again.failing_since == NOW, "the streak keeps its start"


def test_one_success_ends_the_streak():
    healed = health_after_success(failing(), parallel_jobs=2)
    assert (healed.failures, healed.failing_since, healed.cooldown_until, healed.slot_limit) == (0, None, 0.0, None)
    assert ask([RunRow(0)], health=healed) == Claim(0)


def test_concurrent_job_limit_lowers_the_slots_instead_of_failing_rows_and_they_grow_back():
    health = health_after_failure(BackendHealth("foo"), StartFailure.LIMIT, now=NOW, active=2)
    assert health.slot_limit == 2 and health.cooling_down(NOW)
    rows = [RunRow(0), RunRow(1)]
    waiting = ask(rows, health=health, active=2, now=NOW + 1)
    assert isinstance(waiting, Wait) and "ConcurrentJobLimit" in waiting.reason
    assert waiting.until == NOW + 1 + 5.0, "looks again soon: a job of ours may end"
    assert ask(rows, health=health, active=1, now=NOW + 1) == Claim(0), "below the lowered limit"
    assert ask(rows, health=health, active=2, now=health.cooldown_until) == Claim(0), "a probe above it"
    grown = health_after_success(health, parallel_jobs=4)
    assert grown.slot_limit == 3
    assert health_after_success(grown, parallel_jobs=4).slot_limit is None, "back to the pool's slots"


def test_an_account_full_of_other_jobs_takes_none_of_ours_until_the_cool_down_ends():
    health = health_after_failure(BackendHealth("foo"), StartFailure.LIMIT, now=NOW, active=0)
    assert health.slot_limit == 0
    assert isinstance(ask([RunRow(0)], health=health, active=0, now=NOW + 1), Wait)
    assert ask([RunRow(0)], health=health, active=0, now=health.cooldown_until) == Claim(0)


def test_a_limit_never_rises_on_a_failure():
    health = health_after_failure(BackendHealth("foo"), StartFailure.LIMIT, now=NOW, active=1)
    assert health_after_failure(health, StartFailure.LIMIT, now=NOW + 1, active=3).slot_limit == 1


def test_pinned_rows_of_a_backend_failing_too_long_are_given_up_with_the_backend_named():
    health = failing_for("foo", 4000)
    all_health = {"foo": health, "bar": BackendHealth("bar")}
    rows = [RunRow(0, backend_name="foo"), RunRow(1)]
    decision = ask(rows, health=health, all_health=all_health, give_up_after=3600)
    assert isinstance(decision, GiveUp) and decision.row_id == 0
    assert "backend 'foo'" in decision.reason and "HTTP 503" in decision.reason and "'backend_name'" in decision.reason
    assert isinstance(ask(rows, health=health, all_health=all_health, give_up_after=None), Wait)
    assert isinstance(ask(rows, health=health, all_health=all_health, give_up_after=5000), Wait)


def failing_for(name: str, seconds: float) -> BackendHealth:
    """Failing since ``seconds`` ago, its last failure a second ago (so it cools down now)."""
    health = failing(name, since=NOW - seconds)
    return health_after_failure(health, StartFailure.UNAVAILABLE, now=NOW - 1, active=0, message="HTTP 503")


def test_free_rows_are_given_up_only_when_every_backend_has_failed_too_long():
    foo, bar = failing_for("foo", 4000), failing_for("bar", 4000)
    rows = [RunRow(0)]
    assert isinstance(
        ask(rows, health=foo, all_health={"foo": foo, "bar": BackendHealth("bar")}, give_up_after=60), Wait
    )
    decision = ask(rows, health=foo, all_health={"foo": foo, "bar": bar}, give_up_after=60)
    assert isinstance(decision, GiveUp) and "every backend keeps failing" in decision.reason


def test_shares_follow_slots_over_pace_and_a_backend_cooling_down_gets_none():
    slots = {"foo": 4, "bar": 4}
    assert backend_shares(slots, now=NOW) == {"foo": 0.5, "bar": 0.5}
    assert backend_shares(slots, paces={"foo": 30.0, "bar": 10.0}, now=NOW) == pytest.approx({"foo": 0.25, "bar": 0.75})
    down = {"foo": failing("foo"), "bar": BackendHealth("bar")}
    assert backend_shares(slots, paces={"foo": 1.0, "bar": 10.0}, all_health=down, now=NOW) == {"foo": 0, "bar": 1}


def test_a_backend_without_a_pace_counts_as_fast_as_the_fastest_and_all_down_falls_back_to_slots():
    assert backend_shares({"foo": 2, "bar": 2}, paces={"bar": 10.0}, now=NOW) == {"foo": 0.5, "bar": 0.5}
    down = {"foo": failing("foo"), "bar": failing("bar")}
    assert backend_shares({"foo": 3, "bar": 1}, all_health=down, now=NOW) == {"foo": 0.75, "bar": 0.25}


def test_a_backend_limited_by_concurrent_job_limit_counts_its_lowered_slots():
    limited = health_after_failure(BackendHealth("foo"), StartFailure.LIMIT, now=NOW - 1, active=1)
    shares = backend_shares({"foo": 4, "bar": 4}, all_health={"foo": limited}, now=NOW)
    assert shares == pytest.approx({"foo": 0.2, "bar": 0.8})


def test_shares_are_expected_only_when_every_backend_that_can_take_rows_has_a_pace():
    """A share guessed from the slots for a backend of unknown pace would cap a 3x faster one at half the rows."""
    slots = {"foo": 4, "bar": 4}
    assert expected_shares(slots, paces=None, now=NOW) is None
    assert expected_shares(slots, paces={"bar": 30.0}, now=NOW) is None, "foo's pace is unknown"
    shares = expected_shares(slots, paces={"foo": 90.0, "bar": 30.0}, now=NOW)
    assert shares == pytest.approx({"foo": 0.25, "bar": 0.75})
    down = {"foo": failing("foo"), "bar": BackendHealth("bar")}
    assert expected_shares(slots, paces={"bar": 30.0}, all_health=down, now=NOW) == {"foo": 0, "bar": 1}, (
        "a backend that takes no row now needs no pace"
    )
    all_down = {"foo": failing("foo"), "bar": failing("bar")}
    assert expected_shares(slots, paces={"foo": 9.0, "bar": 3.0}, all_health=all_down, now=NOW) is None


def test_without_shares_every_group_may_take_every_free_row_besides_its_pins():
    rows = [RunRow(i) for i in range(96)] + [RunRow("p", backend_name="foo")]
    assert instances_per_backend(rows, {"foo": 4, "bar": 4}, None) == {"foo": 97, "bar": 96}


def test_instances_cover_pins_the_share_with_slack_and_a_pool_more_never_more_than_the_rows():
    rows = [RunRow(i) for i in range(100)] + [RunRow(100, backend_name="foo"), RunRow(101, backend_name="bar")]
    sizes = instances_per_backend(rows, {"foo": 4, "bar": 2}, {"foo": 0.25, "bar": 0.75})
    assert sizes == {"foo": 1 + 32 + 4, "bar": 1 + 94 + 2}
    assert instances_per_backend(rows[:10], {"foo": 4, "bar": 2}, {"foo": 0.25, "bar": 0.75}) == {"foo": 8, "bar": 10}
    assert SHARE_SLACK == 1.25


@pytest.mark.parametrize("shares", [{"foo": 0.5, "bar": 0.5}, {"foo": 0.01, "bar": 0.99}, {"foo": 1.0, "bar": 0.0}])
@pytest.mark.parametrize("free", [1, 7, 128])
def test_the_groups_together_always_cover_every_row(shares, free):
    rows = [RunRow(i) for i in range(free)] + [RunRow("p", backend_name="bar")]
    sizes = instances_per_backend(rows, {"foo": 1, "bar": 1}, shares)
    assert sum(sizes.values()) >= len(rows)
    assert sizes["bar"] >= 2, "a pinned row and a probe at least, even with no share"


def test_a_backend_down_ends_once_the_working_backends_instances_are_all_taken():
    """Its free rows would wait for it alone: they go to the next run, where the working backends take them."""
    down = failing("foo")
    everyone = {"foo": down, "bar": BackendHealth("bar")}
    rows = [RunRow(0), RunRow(1, slot="run_bar.job[0]", settled=True)]
    decision = ask(rows, health=down, all_health=everyone, others_unused=0)
    assert isinstance(decision, Done) and decision.leaves_rows
    assert "the 1 free row(s) continue in the next run" in decision.reason
    assert isinstance(ask(rows, health=down, all_health=everyone, others_unused=1), Wait), "others may take it"
    assert isinstance(ask(rows, health=down, all_health=everyone, others_unused=None), Wait), "not known"


def test_a_backend_down_keeps_waiting_for_its_pinned_rows_or_when_no_backend_works():
    down = failing("foo")
    pinned = [RunRow(0, backend_name="foo")]
    assert isinstance(ask(pinned, health=down, all_health={"foo": down}, others_unused=0), Wait)
    both = {"foo": down, "bar": failing("bar")}
    assert isinstance(ask([RunRow(0)], health=down, all_health=both, others_unused=0), Wait)
    assert isinstance(ask([RunRow(0)], health=failing("foo", failures=1), others_unused=0), Claim), "not down yet"


@pytest.mark.parametrize(
    ("rows", "done"),
    [
        ([RunRow(0, slot="s", settled=True)], ["foo", "bar"]),
        ([RunRow(0, slot="s", settled=True), RunRow(1, backend_name="bar")], ["foo"]),
        ([RunRow(0, slot="s", settled=True), RunRow(1)], []),
        ([RunRow(0, slot="s", settled=False)], []),
    ],
)
def test_done_backends_are_those_nothing_is_left_for_now_or_later(rows, done):
    assert done_backends(rows, BACKENDS) == done


def test_a_slow_backend_leaves_the_last_rows_to_a_faster_one_that_ends_them_all_sooner():
    """bar runs a job in 30 s, foo in 90 s: while foo runs one, bar's 4 slots (half-way through a job each) end
    4 x floor(90/30 - 0.5) = 8 new ones."""
    paces, slots = {"foo": 90.0, "bar": 30.0}, {"foo": 4, "bar": 4}
    assert leave_to_faster("foo", 8, paces, slots)
    assert not leave_to_faster("foo", 9, paces, slots), "more rows than bar ends meanwhile: foo helps"
    assert not leave_to_faster("bar", 1, paces, slots), "the fast backend never waits"
    assert not leave_to_faster("foo", 1, {"bar": 30.0}, slots), "no history of foo: no guess"
    assert not leave_to_faster("foo", 1, {"foo": 44.0, "bar": 30.0}, slots), "near-equal backends share the end"
    rows, live = [RunRow(i) for i in range(8)], {"foo": 4, "bar": 4}
    decision = ask(rows, paces=paces, slots=slots, live=live)
    assert isinstance(decision, Wait) and "faster backends" in decision.reason
    assert decision.until == NOW + 90.0, "asked again when the answer changes, at the latest after a slow job"
    assert ask([*rows, RunRow(8)], paces=paces, slots=slots, live=live) == Claim(0)
    assert ask([RunRow(0, backend_name="foo")], paces=paces, slots=slots, live=live) == Claim(0), "its own rows"
    assert ask(rows, paces=paces, slots=slots, live={"foo": 4, "bar": 0}) == Claim(0), "bar runs nothing: no wait"


def test_a_cooling_backend_counts_no_slots_for_leaving_rows_to_it():
    paces, slots = {"foo": 90.0, "bar": 30.0}, {"foo": 4, "bar": 4}
    bar_down = failing("bar", since=NOW - 5)
    all_health = {"foo": BackendHealth("foo"), "bar": bar_down}
    decision = ask([RunRow(0)], paces=paces, slots=slots, all_health=all_health, live={"bar": 4})
    assert decision == Claim(0)


def test_pace_is_the_median_of_recent_job_times():
    assert pace_of([30.0, 32.0, 100.0]) == 32.0
    assert pace_of([30.0, 40.0]) == 35.0
    assert pace_of([]) is None and pace_of([0.0, -1.0]) is None


def test_spare_instances_are_those_beyond_the_rows_a_backend_may_still_have_to_take():
    def own(slot: str) -> bool:
        return slot.startswith("foo[")

    rows = [
        RunRow(0, slot="foo[0]", settled=True),
        RunRow(1, slot="bar[0]", settled=True),
        RunRow(2, slot="bar[1]", settled=False),  # being started on bar: a failed start gives it back
        RunRow(3, slot="foo[1]", settled=False),  # being started here: its own instance takes it again
        RunRow(4),
        RunRow(5, backend_name="bar"),  # pinned elsewhere: never foo's
        RunRow(6, backend_name="foo"),
    ]
    unused = [2, 3, 4, 5, 6, 7, 8]
    # foo may still take rows 2, 4 and 6; one more instance per slot of margin
    assert spare_indexes(rows, "foo", own=own, unused=unused, margin=1) == [6, 7, 8]
    assert spare_indexes(rows, "foo", own=own, unused=unused, margin=4) == []
    assert spare_indexes([RunRow(0, slot="foo[0]", settled=True)], "foo", own=own, unused=[1, 2], margin=0) == [1, 2]


def test_once_every_pace_is_known_a_group_keeps_only_its_share_of_the_free_rows():
    """A group sized for every row on a new table shrinks to what the run now shows the backend takes."""

    def own(slot: str) -> bool:
        return slot.startswith("foo[")

    rows = [RunRow(i) for i in range(80)] + [RunRow("p", backend_name="foo"), RunRow("b", slot="bar[0]", settled=True)]
    unused = list(range(1, 97))
    # 1 pinned row + ceil(80 x 0.25 x 1.25) = 25 free rows + 4 instances of margin: the 30 lowest stay
    assert spare_indexes(rows, "foo", own=own, unused=unused, margin=4, share=0.25) == unused[30:]
    assert spare_indexes(rows, "foo", own=own, unused=unused, margin=4, share=None) == unused[85:]
    assert spare_indexes(rows, "foo", own=own, unused=unused, margin=4, share=0.0) == unused[5:]
