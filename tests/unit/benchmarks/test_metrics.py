from __future__ import annotations

import pytest

from benchmarks.metrics import JobSpan, assign_lanes, idle_gaps, requests_per_job, run_figures


def _span(job_id: str, created: float, started: float, ended: float, backend: str = "foo") -> JobSpan:
    return JobSpan(backend=backend, job_id=job_id, created=created, started=started, ended=ended)


def test_lanes_pair_each_job_with_the_slot_it_took_over():
    spans = [
        _span("a", 0, 0, 10),
        _span("b", 0, 0, 12),
        _span("c", 11, 11, 20),  # a's slot (a ended at 10)
        _span("d", 15, 15, 30),  # b's slot (b ended at 12)
    ]
    lanes = assign_lanes(spans)
    assert [[s.job_id for s in lane] for lane in lanes] == [["a", "c"], ["b", "d"]]
    assert sorted(idle_gaps(spans)) == [1.0, 3.0]


def test_run_figures_utilisation_and_ideal_makespan():
    spans = {
        "foo": [_span("a", 0, 0, 10), _span("c", 12, 12, 22)],
        "bar": [_span("b", 0, 0, 10, "bar"), _span("d", 14, 14, 24, "bar")],
    }
    figures = run_figures(spans, {"foo": 1, "bar": 1}, job_seconds=10, wall_seconds=31.5)
    assert (figures["makespan_s"], figures["job_span_s"]) == (31.5, 24)
    assert figures["ideal_makespan_s"] == 20
    assert figures["utilisation"] == pytest.approx(40 / 48, abs=1e-3)
    assert figures["idle_gap_median_s"] == 3.0


def test_requests_per_job_groups_by_kind():
    stats = {
        "foo": {"POST /jobs": 2, "POST /jobs/{job_id}/results": 2, "GET /jobs": 3, "GET /jobs/{job_id}": 1},
        "bar": {"GET /jobs/{job_id}/results/assets/{filename}": 2, "GET /credentials/basic": 1},
    }
    per_job = requests_per_job(stats, jobs=2)
    assert per_job["create"] == 1 and per_job["start"] == 1
    assert per_job["listing"] == 1.5 and per_job["status"] == 0.5
    assert per_job["assets"] == 1 and per_job["other"] == 0.5
    assert per_job["total"] == 5.5
