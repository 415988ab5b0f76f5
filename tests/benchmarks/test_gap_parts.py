"""gap_parts reads Airflow's own JSON task and trigger logs and the backend's job timeline."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.gap_parts import gap_parts

EPOCH_2026 = 1767225600.0  # 2026-01-01T00:00:00Z


def _log(path: Path, events: list[tuple[int, str]]) -> None:
    path.write_text("\n".join(json.dumps({"timestamp": f"2026-01-01T00:00:{s:02d}Z", "event": e}) for s, e in events))


def test_a_rows_parts_from_its_logs_and_the_backends_times(tmp_path: Path) -> None:
    run = tmp_path / "dag_id=d/run_id=r"
    job_task = run / "task_id=g.run_foo.job/map_index=0"
    results_task = run / "task_id=g.run_foo.results/map_index=0"
    job_task.mkdir(parents=True)
    results_task.mkdir(parents=True)
    _log(job_task / "attempt=1.log", [(0, "::group::Pre Execute"), (1, "row 0: job j-ab on foo is queued")])
    _log(job_task / "attempt=1.log.trigger.1.log", [(39, "Trigger fired event")])
    _log(results_task / "attempt=1.log", [(40, "::group::Pre Execute"), (41, "failed")])
    _log(results_task / "attempt=2.log", [(50, "::group::Pre Execute"), (52, "stored")])  # the retry stored them
    jobs = {
        "foo": [
            {"id": "j-ab", "times": {"created": EPOCH_2026 + 1, "queued": EPOCH_2026 + 2, "finished": EPOCH_2026 + 37}}
        ]
    }
    assert gap_parts(tmp_path, "d", jobs) == {
        "rows": 1,
        "median_s": {"start": 1.0, "detect": 2.0, "results": 2.0, "stored_after_end": 15.0},
    }


def test_rows_whose_trigger_never_fired_are_left_out(tmp_path: Path) -> None:
    task = tmp_path / "dag_id=d/run_id=r/task_id=g.run_foo.job/map_index=0"
    task.mkdir(parents=True)
    _log(task / "attempt=1.log", [(0, "::group::Pre Execute"), (1, "row 0: job j-ab on foo is queued")])
    assert gap_parts(tmp_path, "d", {"foo": []}) == {"rows": 0}
