"""The StatsD listener that gives the bench Airflow's own scheduler loop time, fed by a real StatsD client."""

from __future__ import annotations

import time

import statsd

from benchmarks.scheduler_loop import LOOP_TIMER, PREFIX, StatsdTimers, own_cpu_seconds, with_cpu


def _wait_for(timers: StatsdTimers, loops: int) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        summary = timers.summary()
        if summary["loops"] >= loops:
            return summary
        time.sleep(0.05)
    raise AssertionError(f"only {timers.summary()} arrived")


def test_loop_durations_sent_as_airflow_sends_them_are_summarised():
    with StatsdTimers() as timers:
        env = timers.airflow_env()
        assert env["AIRFLOW__METRICS__STATSD_ON"] == "True" and env["AIRFLOW__METRICS__STATSD_PORT"] == str(timers.port)
        client = statsd.StatsClient("127.0.0.1", timers.port, prefix=PREFIX)
        for ms in [10, 20, 30, 40, 1000]:
            client.timing(LOOP_TIMER, ms)
        client.timing("scheduler.other_timer", 5)  # not asked for: ignored
        client.incr("scheduler.heartbeat")  # a counter: ignored
        summary = _wait_for(timers, 5)
        assert summary == {"loops": 5, "median_ms": 30.0, "p95_ms": 1000.0, "max_ms": 1000.0}
        timers.reset()
        assert timers.summary() == {"loops": 0}


def test_the_scheduler_cpu_per_loop_counts_the_process_itself():
    """CPU time is read from the process (here this one, made busy for a moment) and spread over the loops."""
    import os

    before = own_cpu_seconds(os.getpid())
    spin_until = time.process_time() + 0.2
    while time.process_time() < spin_until:
        pass
    spent = own_cpu_seconds(os.getpid()) - before
    assert spent >= 0.15
    summary = with_cpu({"loops": 4, "median_ms": 30.0}, spent)
    assert summary["cpu_s"] == round(spent, 1) and summary["cpu_ms_per_loop"] == round(1000 * spent / 4, 1)
    assert with_cpu({"loops": 0}, spent) == {"loops": 0}  # no loop seen: nothing to divide
    assert own_cpu_seconds(None) is None
