"""The end forecast (reported progress, else finished jobs' run times) that lets the status poller list right
when a job is due to end (pure logic, no clock)."""

from __future__ import annotations

import pytest

from airflow_provider_openeo.job_table.timestamps import rfc3339_from_epoch
from airflow_provider_openeo.triggers import _status_poller
from airflow_provider_openeo.triggers._end_forecast import (
    EARLY_QUANTILES,
    EndForecast,
    RunTimes,
    run_times_of,
    total_times_of,
)
from tests.unit.triggers._fakes import FakeBackend


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


def _delay(poller: _status_poller.StatusPoller, started: float) -> float:
    """Seconds from a regular read at ``started`` to the next read."""
    return poller._next_poll_at(started, started + poller.interval) - started


def test_the_poller_lists_early_for_a_forecast_end_before_its_next_regular_listing():
    poller = _poller_with({"a": [(0.0, 0.0), (5.0, 80.0)]}, interval=5.0)  # due at 6.25 + margin
    assert _delay(poller, 5.0) == pytest.approx(6.25 + poller._forecast.margin - 5.0)
    assert poller._due_early == {"a"}, "the early read is for the job due"


def test_the_poller_keeps_its_interval_when_the_forecast_is_later_or_missing():
    assert _delay(_poller_with({"a": [(0.0, 0.0), (5.0, 10.0)]}, interval=5.0), 5.0) == 5.0
    assert _delay(_poller_with({}, interval=5.0), 5.0) == 5.0


def test_after_an_early_read_the_regular_one_keeps_its_time():
    poller = _poller_with({"a": [(0.0, 0.0), (5.0, 80.0)]}, interval=5.0)
    # A read at 6.5 sends the progress forecast's two early reads (7.5, 8.5), which do not read every job: the
    # regular read stays due at 10, not 13.5.
    assert poller._next_poll_at(6.5, next_full=10.0) == pytest.approx(7.5)
    assert poller._next_poll_at(7.5, next_full=10.0) == pytest.approx(8.5)
    assert poller._next_poll_at(8.5, next_full=10.0) == pytest.approx(10.0)


def test_forecast_listings_are_never_closer_than_a_second_nor_a_fifth_of_the_interval():
    due_now = {"a": [(0.0, 0.0), (5.0, 99.9)]}  # due a moment after this listing
    assert _delay(_poller_with(due_now, interval=2.0), started=5.0) == pytest.approx(1.0)
    assert _delay(_poller_with(due_now, interval=60.0), started=5.0) == pytest.approx(12.0)
    # An interval shorter than the spacing: the regular listing comes first anyway.
    assert _delay(_poller_with(due_now, interval=0.5), started=5.0) == pytest.approx(0.5)


# -- without progress: the run times of the jobs already finished on the connection --------------------------------


def stamped(status: str, updated: float | None) -> dict[str, object]:
    """A listing entry as openeo-geopyspark-driver writes it: no progress, ``updated`` at each status change."""
    entry: dict[str, object] = {"status": status}
    if updated is not None:
        entry["updated"] = rfc3339_from_epoch(updated)
    return entry


def finish(forecast: EndForecast, job_id: str, started: float, ended: float) -> None:
    forecast.observe(job_id, stamped("running", started), at=started + 1.0)
    forecast.observe(job_id, stamped("finished", ended), at=ended + 2.0)


def test_finished_jobs_run_times_forecast_a_running_job_without_progress():
    forecast = EndForecast(margin=0.25, run_times=RunTimes(minimum=2))
    finish(forecast, "a", started=0.0, ended=30.0)
    forecast.observe("c", stamped("running", 40.0), at=42.0)
    assert forecast.next_listing() is None  # one run time could be an outlier
    finish(forecast, "b", started=5.0, ended=45.0)
    # The ladder's first rung, a quarter of the way from 30 s to 40 s, after the running job's own stamp (not after
    # the listing that saw it).
    assert EARLY_QUANTILES[0] == 0.25
    assert forecast.next_listing() == pytest.approx(40.0 + 32.5 + 0.25)


def test_without_stamps_the_listings_that_saw_the_changes_time_the_runs():
    forecast = EndForecast(margin=0.0, run_times=RunTimes(minimum=1))
    forecast.observe("a", {"status": "running"}, at=10.0)
    forecast.observe("a", {"status": "finished"}, at=25.0)
    forecast.observe("b", {"status": "running"}, at=30.0)
    assert forecast.next_listing() == pytest.approx(45.0)


def test_a_job_reporting_progress_is_forecast_from_it_alone():
    forecast = EndForecast(margin=0.0, run_times=RunTimes(minimum=1))
    finish(forecast, "a", started=0.0, ended=1.0)  # a short job of another batch on the same connection
    forecast.observe("b", {**running(0.0), "updated": rfc3339_from_epoch(200.0)}, at=200.0)
    # One reading gives no rate yet; the run times must not spend the job's early listings meanwhile.
    assert forecast.next_listing() is None
    forecast.observe("b", {**running(50.0), "updated": rfc3339_from_epoch(200.0)}, at=205.0)
    assert forecast.next_listing() == pytest.approx(210.0)


def test_only_finished_runs_count_and_only_the_recent_ones():
    times = RunTimes(maxlen=3, minimum=1)
    forecast = EndForecast(run_times=times)
    forecast.observe("err", stamped("running", 0.0), at=0.0)
    forecast.observe("err", stamped("error", 1.0), at=1.0)  # a failed job's run says nothing of a good one's
    forecast.observe("q", stamped("queued", 0.0), at=0.0)
    forecast.observe("q", stamped("finished", 9.0), at=9.0)  # never seen running: no start to count from
    assert len(times) == 0
    for seconds in (100.0, 10.0, 10.0, 10.0):
        times.add(seconds)
    assert times.typical() == 10.0


def test_run_time_quantiles_interpolate_between_samples():
    times = RunTimes(minimum=2)
    times.add(25.0)
    assert times.quantile(0.5) is None  # one sample could be an outlier
    for seconds in (31.0, 28.0, 26.0, 30.0):
        times.add(seconds)
    assert times.quantile(0.0) == 25.0 and times.quantile(1.0) == 31.0
    assert times.quantile(0.5) == 28.0  # the median
    assert times.quantile(0.9) == pytest.approx(30.0 + 0.6 * 1.0)  # 0.9 * 4 = 3.6: 60 % from 30 to 31


def test_a_job_without_progress_is_due_at_each_rung_of_its_ladder_once():
    """Run times of 25-31 s: a listing at the median catches the jobs that end by then; one at the 90 % quantile
    catches most of the rest well before the next regular listing; then the job waits for the regular ones."""
    forecast = EndForecast(margin=0.0, quantiles=(0.5, 0.9), run_times=RunTimes(minimum=2))
    for index, seconds in enumerate((25.0, 26.0, 28.0, 30.0, 31.0)):
        finish(forecast, f"done{index}", started=0.0, ended=seconds)
    forecast.observe("late", stamped("running", 100.0), at=101.0)
    assert forecast.next_listing() == pytest.approx(128.0)
    assert forecast.listing_sent_early(128.0) == ["late"]
    forecast.observe("late", stamped("running", 100.0), at=128.0)  # still running at the median
    assert forecast.next_listing() == pytest.approx(130.6)
    assert forecast.listing_sent_early(130.6) == ["late"]
    assert forecast.next_listing() is None


def test_an_early_listing_is_charged_only_to_the_jobs_due_by_then():
    forecast = EndForecast(margin=0.0, quantiles=(0.5,), run_times=RunTimes(minimum=1))
    finish(forecast, "done", started=0.0, ended=10.0)
    forecast.observe("soon", stamped("running", 0.0), at=1.0)
    forecast.observe("later", stamped("running", 5.0), at=6.0)
    assert forecast.listing_sent_early(10.0) == ["soon"]
    assert forecast.next_listing() == pytest.approx(15.0)


def test_quantiles_must_be_fractions():
    with pytest.raises(ValueError):
        EndForecast(quantiles=())
    with pytest.raises(ValueError):
        EndForecast(quantiles=(0.5, 1.5))


def test_a_job_running_past_the_typical_time_pays_for_at_most_its_early_listings():
    forecast = EndForecast(margin=0.0, max_early_listings=2, run_times=RunTimes(minimum=1))
    finish(forecast, "a", started=0.0, ended=10.0)
    forecast.observe("slow", stamped("running", 20.0), at=21.0)
    for at in [30.0 + rung for rung in range(len(EARLY_QUANTILES))]:  # one run time: every rung is due at 30
        assert forecast.next_listing() == pytest.approx(30.0)
        forecast.listing_sent_early(at)
        forecast.observe("slow", stamped("running", 20.0), at=at)
    assert forecast.next_listing() is None


def test_run_times_outlive_a_poller_of_the_same_connection():
    conn_id = "test-run-times-outlive-the-poller"
    first = _status_poller.StatusPoller(conn_id, FakeBackend().hook, loop=None)  # type: ignore[arg-type]
    for job_id, (start, end) in {"a": (0.0, 20.0), "b": (0.0, 20.0)}.items():
        finish(first._forecast, job_id, start, end)
    second = _status_poller.StatusPoller(conn_id, FakeBackend().hook, loop=None)  # type: ignore[arg-type]
    assert second._forecast.run_times is run_times_of(conn_id)
    assert second._forecast.run_times.typical() == 20.0
    other = _status_poller.StatusPoller(conn_id + "-other", FakeBackend().hook, loop=None)  # type: ignore[arg-type]
    assert other._forecast.run_times.typical() is None


# -- jobs not seen running: the times from creation to end ---------------------------------------------------------


def listed(status: str, created: float, updated: float) -> dict[str, object]:
    return {"status": status, "created": rfc3339_from_epoch(created), "updated": rfc3339_from_epoch(updated)}


def test_a_job_never_listed_while_it_ran_still_times_the_next_ones_from_their_creation():
    # With an interval longer than the jobs, a listing sees them queued, then finished: never running.
    forecast = EndForecast(margin=0.0, run_times=RunTimes(minimum=1), total_times=RunTimes(minimum=1))
    forecast.observe("a", listed("queued", 0.0, 0.0), at=1.0)
    forecast.observe("a", listed("finished", 0.0, 4.0), at=60.0)
    assert len(forecast.run_times) == 0 and forecast.total_times.typical() == 4.0
    forecast.observe("b", listed("queued", 100.0, 100.0), at=101.0)
    assert forecast.next_listing() == pytest.approx(104.0)


def test_a_running_job_is_timed_from_its_start_when_run_times_are_known_else_from_its_creation():
    forecast = EndForecast(margin=0.0, run_times=RunTimes(minimum=1), total_times=RunTimes(minimum=1))
    forecast.observe("a", listed("finished", 0.0, 10.0), at=11.0)  # total 10 s, no run time
    forecast.observe("b", listed("running", 20.0, 25.0), at=26.0)
    assert forecast.next_listing() == pytest.approx(30.0)  # created + 10
    forecast.observe("c", listed("running", 0.0, 2.0), at=3.0)
    forecast.observe("c", listed("finished", 0.0, 6.0), at=7.0)  # run time 4 s
    assert forecast.next_listing() == pytest.approx(29.0)  # b: running since 25 + 4


def test_times_from_creation_are_kept_per_connection():
    assert total_times_of("test-totals-a") is total_times_of("test-totals-a")
    assert total_times_of("test-totals-a") is not total_times_of("test-totals-b")
    poller = _status_poller.StatusPoller("test-totals-a", FakeBackend().hook, loop=None)  # type: ignore[arg-type]
    assert poller._forecast.total_times is total_times_of("test-totals-a")
