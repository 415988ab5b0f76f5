"""Workload 8: Airflow's own hand-over, read from the same task and trigger logs as ``gap_parts``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from airflow.triggers.base import TaskSuccessEvent

from benchmarks.handover_floor import SleepThenSucceedTrigger, dag_id_of, hand_overs, hold_seconds, summary
from benchmarks.live import BENCH_DAGS
from benchmarks.report import render
from deploy.live_airflow import REPO_ROOT
from tests.unit.benchmarks.test_report import RUN


def _log(path: Path, events: list[tuple[float, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "\n".join(json.dumps({"timestamp": f"2026-01-01T00:00:{s:06.3f}Z", "event": e}) for s, e in events),
        encoding="utf-8",
    )


def _instance(task_dir: Path, index: int, started: float, fired: float | None) -> None:
    attempt = task_dir / f"map_index={index}" / "attempt=1.log"
    _log(attempt, [(started, "::group::Pre Execute"), (started + 0.1, "Pausing task as DEFERRED")])
    if fired is not None:
        _log(attempt.parent / "attempt=1.log.trigger.7.log", [(fired, "Trigger fired event")])


def test_each_freed_slot_is_paired_with_the_next_instance_to_start(tmp_path: Path) -> None:
    task_dir = tmp_path / f"dag_id={dag_id_of(True)}" / "run_id=r" / "task_id=row.hold"
    # Two slots: instances 0 and 1 start at once; 0's trigger fires at 5.0, 1's at 6.0; 2 starts at 5.4, 3 at 6.9.
    _instance(task_dir, 0, 0.0, 5.0)
    _instance(task_dir, 1, 0.1, 6.0)
    _instance(task_dir, 2, 5.4, 10.0)
    _instance(task_dir, 3, 6.9, None)  # still deferred when read: its start counts, it frees nothing yet
    seconds = hand_overs(tmp_path, "r", waiting=True, slots=2)
    assert [round(s, 3) for s in seconds] == [0.4, 0.9]
    assert summary(seconds) == {"count": 2, "median_s": 0.65, "mean_s": 0.65, "p95_s": 0.9}
    assert summary([]) == {"count": 0}


def test_the_trigger_sleeps_then_ends_its_task_in_the_triggerer() -> None:
    trigger = SleepThenSucceedTrigger(0.01)
    classpath, kwargs = trigger.serialize()
    assert classpath == "benchmarks.handover_floor.SleepThenSucceedTrigger" and kwargs == {"seconds": 0.01}

    async def first_event() -> object:
        return await anext(trigger.run())

    assert isinstance(asyncio.run(first_event()), TaskSuccessEvent)
    sleeps = [hold_seconds(i) for i in range(40)]
    assert all(4.0 <= s < 8.0 for s in sleeps)
    assert sleeps[:4] == [4.0, 6.472, 4.944, 7.416]  # no randomness: every run sleeps the same
    fractions = sorted(s % 1.0 for s in sleeps)  # where in the triggerer's second each one fires: all over it
    assert max(b - a for a, b in zip([0.0, *fractions], [*fractions, 1.0], strict=True)) < 0.1


def test_the_bench_dags_parse(tmp_path: Path) -> None:
    script = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(BENCH_DAGS)!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "print(sorted(bag.dag_ids))\n"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(REPO_ROOT),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "OPENEO_BENCH": json.dumps({"work_dir": str(tmp_path)}),
    }
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert dag_id_of(False) in done.stdout and dag_id_of(True) in done.stdout
    assert "bench_openeo_throughput" in done.stdout


def test_the_report_puts_airflows_hand_over_beside_ours() -> None:
    variant = {
        "instances": 40,
        "pool_slots": 4,
        "waiting_downstream": False,
        "hand_over": {"count": 36, "median_s": 0.32, "mean_s": 0.33, "p95_s": 0.43},
        "scheduler_loop": {"median_ms": 39.6, "cpu_ms_per_loop": 20.5},
    }
    measured = {"command": "make bench", "mode": "full", "date": "2026-12-07T19:40:00+00:00"}
    split = {"gap": 1.79, "detect": 0.27, "hand_over": 1.11, "start": 0.35}
    gaps = {"count": 192, "median_s": split, "p95_s": {**split, "hand_over": 3.47}, "slowest_5pct_mean_s": split}
    ours = {**RUN, "gap_parts": {"gaps": gaps}, "scheduler_loop": {"median_ms": 582.6, "cpu_ms_per_loop": 539.9}}
    results = {"handover": {"measured": measured, "idle": variant}, "throughput": {"measured": measured, "ours": ours}}
    text = render(results)
    assert "## 1d. Airflow's own hand-over (workload 8)" in text
    assert "| idle | 40 | 4 | no | 0.32 | 0.33 | 0.43 | 39.6 | 20.5 |" in text
    assert "| workload 1 (ours) | 1.11 | 3.47 | 582.6 | 539.9 | 2026-12-07T19:40:00+00:00 |" in text
