"""gap_parts reads Airflow's own JSON task and trigger logs and the backend's job timeline."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.gap_parts import gap_parts

EPOCH_2026 = 1767225600.0  # 2026-01-01T00:00:00Z


def _log(path: Path, events: list[tuple[int, str]]) -> None:
    path.write_text("\n".join(json.dumps({"timestamp": f"2026-01-01T00:00:{s:02d}Z", "event": e}) for s, e in events))


def _row(run: Path, index: int, job_id: str, started: int, fired: int, results: tuple[int, int] | None) -> None:
    job_task = run / f"task_id=g.run_foo.job/map_index={index}"
    job_task.mkdir(parents=True)
    _log(
        job_task / "attempt=1.log",
        [(started, "::group::Pre Execute"), (started + 1, f"row {index}: job {job_id} on foo")],
    )
    _log(job_task / "attempt=1.log.trigger.1.log", [(fired, "Trigger fired event")])
    if results is not None:
        results_task = run / f"task_id=g.run_foo.results/map_index={index}"
        results_task.mkdir(parents=True)
        _log(results_task / "attempt=1.log", [(results[0] - 10, "::group::Pre Execute"), (results[0] - 9, "failed")])
        _log(results_task / "attempt=2.log", [(results[0], "::group::Pre Execute"), (results[1], "stored")])


def _job(job_id: str, created: int, queued: int, finished: int) -> dict[str, object]:
    times = {"created": EPOCH_2026 + created, "queued": EPOCH_2026 + queued, "finished": EPOCH_2026 + finished}
    return {"id": job_id, "times": times}


def test_a_rows_parts_from_its_logs_and_the_backends_times(tmp_path: Path) -> None:
    _row(tmp_path / "dag_id=d/run_id=r", 0, "j-ab", started=0, fired=39, results=(50, 52))  # the retry stored them
    assert gap_parts(tmp_path, "d", {"foo": [_job("j-ab", created=1, queued=2, finished=37)]}) == {
        "rows": 1,
        "median_s": {"start": 1.0, "detect": 2.0, "results": 2.0, "stored_after_end": 15.0},
    }


def test_each_idle_gap_is_split_into_detect_hand_over_and_start(tmp_path: Path) -> None:
    run = tmp_path / "dag_id=d/run_id=r"
    # One slot: j-a1 ends at 10, its trigger fires at 12; row 1's task begins at 13 and creates j-a2 at 14.
    _row(run, 0, "j-a1", started=0, fired=12, results=None)
    _row(run, 1, "j-a2", started=13, fired=40, results=None)
    jobs = [_job("j-a1", created=1, queued=1, finished=10), _job("j-a2", created=14, queued=14, finished=38)]
    figures = gap_parts(tmp_path, "d", {"foo": jobs})
    assert figures["median_s"]["hand_over"] == 1.0
    assert figures["gaps"]["count"] == 1
    assert figures["gaps"]["median_s"] == {"gap": 4.0, "detect": 2.0, "hand_over": 1.0, "start": 1.0}
    assert figures["gaps"]["slowest_5pct_mean_s"] == figures["gaps"]["p95_s"] == figures["gaps"]["median_s"]


def test_rows_whose_trigger_never_fired_are_left_out(tmp_path: Path) -> None:
    task = tmp_path / "dag_id=d/run_id=r/task_id=g.run_foo.job/map_index=0"
    task.mkdir(parents=True)
    _log(task / "attempt=1.log", [(0, "::group::Pre Execute"), (1, "row 0: job j-ab on foo is queued")])
    assert gap_parts(tmp_path, "d", {"foo": []}) == {"rows": 0}
