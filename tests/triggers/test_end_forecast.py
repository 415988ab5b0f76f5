"""The progress forecast that lets the status poller list right when a job is due to end (pure logic, no clock)."""

from __future__ import annotations

import pytest

from airflow_provider_openeo.triggers import _status_poller
from airflow_provider_openeo.triggers._end_forecast import EndForecast
from tests.triggers._fakes import FakeBackend


def running(progress: object) -> dict[str, object]:
    return {"status": "running", "progress": progress}


def test_two_readings_forecast_the_end_plus_a_margin():
    forecast = EndForecast(margin=0.25)
    forecast.observe("a", running(20.0), at=100.0)
    assert forecast.next_listing() is None  # one reading says nothing about the rate
    forecast.observe("a", running(40.0), at=105.0)
    assert forecast.next_listing() == pytest.approx(105.0 + 15.0 + 0.25)


def test_the_soonest_end_of_several_jobs_wins():
    forecast = EndForecast(margin=0.0)
    for job_id, rate in (("slow", 1.0), ("fast", 10.0)):
        forecast.observe(job_id, running(0.0), at=0.0)
        forecast.observe(job_id, running(5 * rate), at=5.0)
    assert forecast.next_listing() == pytest.approx(10.0)


@pytest.mark.parametrize(
    "second",
    [
        {"status": "running", "progress": 20.0},  # did not move: no rate
        {"status": "running"},  # backend reports none
        {"status": "running", "progress": None},
        {"status": "running", "progress": "50%"},
        {"status": "running", "progress": float("nan")},
        {"status": "running", "progress": True},
        {"status": "finished", "progress": 100},  # over: nothing to forecast
        {"status": "queued", "progress": 0},
    ],
)
def test_no_forecast_without_moving_progress_of_a_running_job(second):
    forecast = EndForecast()
    forecast.observe("a", running(20.0), at=0.0)
    forecast.observe("a", second, at=5.0)
    assert forecast.next_listing() is None


def test_progress_going_back_starts_the_readings_over():
    forecast = EndForecast(margin=0.0)
    forecast.observe("a", running(10.0), at=0.0)
    forecast.observe("a", running(50.0), at=4.0)
    forecast.observe("a", running(5.0), at=6.0)  # the backend restarted the job
    assert forecast.next_listing() is None
    forecast.observe("a", running(15.0), at=8.0)
    assert forecast.next_listing() == pytest.approx(8.0 + 85.0 / 5.0)


def test_each_job_pays_for_at_most_its_share_of_early_listings():
    forecast = EndForecast(margin=0.0, max_early_listings=2)
    forecast.observe("a", running(0.0), at=0.0)
    forecast.observe("a", running(50.0), at=5.0)
    forecast.observe("b", running(0.0), at=0.0)
    forecast.observe("b", running(10.0), at=5.0)
    for _ in range(2):  # the forecast of "a" is wrong twice (it keeps running, its progress stuck at 50)
        assert forecast.next_listing() == pytest.approx(10.0)
        forecast.listing_sent_early(10.0)
    # "a" has had its share; "b", never charged for those listings (they were not due for it), still has its own.
    assert forecast.next_listing() == pytest.approx(50.0)


def test_a_forgotten_job_is_no_longer_forecast():
    forecast = EndForecast()
    forecast.observe("a", running(0.0), at=0.0)
    forecast.observe("a", running(50.0), at=5.0)
    forecast.forget("a")
    assert forecast.next_listing() is None


def _poller_with(readings: dict[str, list[tuple[float, float]]], interval: float) -> _status_poller.StatusPoller:
    """A poller whose forecast holds these (time, progress) readings and whose one subscriber asked ``interval``."""
    poller = _status_poller.StatusPoller("c", FakeBackend().hook, loop=None)  # type: ignore[arg-type]
    poller._subscribers["a"] = {_status_poller.Subscription(poller, "a", interval)}
    for job_id, points in readings.items():
        for at, progress in points:
            poller._forecast.observe(job_id, running(progress), at=at)
    return poller


def test_the_poller_lists_early_for_a_forecast_end_before_its_next_regular_listing():
    poller = _poller_with({"a": [(0.0, 0.0), (5.0, 80.0)]}, interval=5.0)  # due at 6.25 + margin
    delay = poller._delay_after_listing(started=5.0)
    assert delay == pytest.approx(6.25 + poller._forecast.margin - 5.0)


def test_the_poller_keeps_its_interval_when_the_forecast_is_later_or_missing():
    assert _poller_with({"a": [(0.0, 0.0), (5.0, 10.0)]}, interval=5.0)._delay_after_listing(5.0) == 5.0
    assert _poller_with({}, interval=5.0)._delay_after_listing(5.0) == 5.0


def test_forecast_listings_are_never_closer_than_a_second_nor_a_fifth_of_the_interval():
    due_now = {"a": [(0.0, 0.0), (5.0, 99.9)]}  # due a moment after this listing
    assert _poller_with(due_now, interval=2.0)._delay_after_listing(started=5.0) == pytest.approx(1.0)
    assert _poller_with(due_now, interval=60.0)._delay_after_listing(started=5.0) == pytest.approx(12.0)
    # An interval shorter than the spacing: the regular listing comes first anyway.
    assert _poller_with(due_now, interval=0.5)._delay_after_listing(started=5.0) == pytest.approx(0.5)
