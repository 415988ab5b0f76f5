"""The benchmark report and timeline are generated: check them on a small, hand-made results record."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.metrics import JobSpan
from benchmarks.report import measured_in, render
from benchmarks.run import airflow_setting_env
from benchmarks.timeline import lanes_of_run, plot_timelines

RUN = {
    "jobs": 8,
    "makespan_s": 80.0,
    "job_span_s": 70.0,
    "ideal_makespan_s": 60.0,
    "utilisation": 0.857,
    "idle_gap_median_s": 4.0,
    "idle_gap_p95_s": 9.0,
    "requests_per_job": {"create": 1.0, "status": 0.0, "listing": 1.5, "total": 6.0},
}
QUICK = {"command": "make bench BENCH_ARGS=--quick", "mode": "quick", "date": "2026-11-25T01:16:22+00:00"}
RESULTS = {
    **QUICK,
    "throughput": {
        "measured": {**QUICK, "commit": "abc1234"},
        "ours": RUN,
        "mbjm_poll5": {**RUN, "makespan_s": 75.0, "requests_per_job": {**RUN["requests_per_job"], "status": 7.0}},
        "ratios": {"makespan_vs_mbjm_poll5": 0.933, "status_requests_vs_mbjm_poll5": 0.214},
    },
    "trigger_memory": {
        "measured": {"command": "make bench", "mode": "full", "date": "2026-11-26T03:00:00+00:00", "commit": "def5678"},
        "deferred_jobs": 5000,
        "rss_before_mb": 80,
        "rss_waiting_mb": 155,
        "mb_per_1000_deferred": 15,
    },
}


def test_report_states_each_target_with_its_verdict():
    text = render(RESULTS)
    quick = "2026-11-25T01:16:22+00:00"
    assert f"| slot utilisation (ours) | >= 0.85 | 0.857 | met | {quick} |" in text
    assert f"| makespan / MBJM poll_sleep=5 | <= 1.0 | 0.933 | met | {quick} |" in text
    assert "| makespan / MBJM poll_sleep=60 | <= 0.5 | None |" not in text  # None is rendered empty
    assert f"| makespan / MBJM poll_sleep=60 | <= 0.5 |  | not measured | {quick} |" in text
    assert "| triggerer MB per 1,000 deferred jobs | < 100 | 15 | met | 2026-11-26T03:00:00+00:00 |" in text
    assert "| ours (live Airflow) | 8 | 80.0 | 70.0 | 60.0 | 0.857 | 4.0 | 9.0 |" in text


def test_a_missed_target_is_marked():
    results = {**RESULTS, "throughput": {**RESULTS["throughput"], "ours": {**RUN, "idle_gap_median_s": 12.5}}}
    assert "| median idle gap (ours) | <= 5 s | 12.5 | **missed** |" in render(results)


def test_each_section_names_the_run_its_figures_come_from():
    """A partial run (``--only``) keeps the other workloads' figures: the report must not pass them off as its own."""
    text = render(RESULTS)
    quick = "Measured by `make bench BENCH_ARGS=--quick` (quick mode), 2026-11-25T01:16:22+00:00, commit abc1234."
    assert quick in text
    assert "Measured by `make bench` (full mode), 2026-11-26T03:00:00+00:00, commit def5678. Triggerer memory" in text


def test_timeline_has_one_lane_per_slot_and_writes_a_png(tmp_path: Path):
    spans = {
        "foo": [JobSpan("foo", "a", 0, 1, 11), JobSpan("foo", "b", 0, 1, 12), JobSpan("foo", "c", 13, 14, 24)],
        "bar": [JobSpan("bar", "d", 0, 1, 11)],
    }
    assert [(label, [s.job_id for s in lane]) for label, lane in lanes_of_run(spans)] == [
        ("bar #1", ["d"]),
        ("foo #1", ["a"]),
        ("foo #2", ["b", "c"]),  # c takes the slot freed last before it started
    ]
    png = plot_timelines({"ours": spans, "mbjm": spans}, tmp_path / "timeline.png", title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_airflow_settings_given_to_the_bench_are_named():
    assert airflow_setting_env(["scheduler.scheduler_idle_sleep_time=0.25"]) == {
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25"
    }
    with pytest.raises(ValueError, match=r"SECTION\.KEY=VALUE"):
        airflow_setting_env(["scheduler_idle_sleep_time=0.25"])
    tuned = {"airflow_settings": {"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25"}}
    section = {"measured": {**QUICK, **tuned}}
    assert measured_in(section).endswith("Airflow settings AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.25")


def test_the_idle_gaps_split_into_their_parts_are_tabled():
    split = {"gap": 3.0, "detect": 1.0, "hand_over": 1.5, "start": 0.5}
    gaps = {"count": 40, "median_s": split, "p95_s": {**split, "gap": 8.0}, "slowest_5pct_mean_s": split}
    ours = {**RUN, "gap_parts": {"rows": 8, "median_s": {"detect": 1.0}, "gaps": gaps}}
    text = render({**RESULTS, "throughput": {**RESULTS["throughput"], "ours": ours}})
    assert "Our 40 idle gaps, each split" in text
    assert "| p95 | 8.0 | 1.0 | 1.5 | 0.5 |" in text


def test_the_no_progress_workload_is_reported_against_its_targets():
    section = {
        "measured": {**QUICK, "commit": "abc1234"},
        "backend_profile": "geopyspark",
        "history_jobs_per_backend": 5000,
        "ours": {**RUN, "listing_bytes_per_request": 2345},
        "mbjm_poll5": {**RUN, "requests_per_job": {**RUN["requests_per_job"], "status": 7.0}},
        "ratios": {"makespan_vs_mbjm_poll5": 0.96, "idle_gap_median_vs_mbjm_poll5": 1.2},
    }
    report = render({**RESULTS, "production": section})
    assert "## 1c. Backends that report no progress (workload 7)" in report
    assert "`geopyspark` profile" in report and "5,000 old jobs" in report
    assert "| ours (live Airflow) | 8 | 80.0 | 70.0 | 0.857 | 4.0 | 9.0 | 1.5 | 2345 |" in report
    assert "| no-progress backends: makespan / MBJM poll_sleep=5 | <= 0.97 | 0.96 | met |" in report
    assert "| no-progress backends: median idle gap / MBJM poll_sleep=5 | <= 1.0 | 1.2 | **missed** |" in report
