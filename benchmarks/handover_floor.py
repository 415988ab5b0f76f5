"""Workload 8: Airflow's own hand-over between two task instances of one pool, with no openEO in it.

Workloads 1, 6 and 7 split each idle gap on a backend into ``detect`` (the job ended -> its trigger fired), the
``hand_over`` (that trigger fired -> the next row's ``job`` task process began) and the next job's ``start``
(``benchmarks.gap_parts``). The hand-over is the part the provider does not run: the triggerer hands the event to its
database once a second, the scheduler notices the free pool slot in its next loop, the executor forks the next task.
This workload measures that part alone, so the provider's figure can be read against what Airflow itself costs on the
same machine, in the same rig, at the same time:

- ``idle``: instances of one mapped task share a pool; each defers to a trigger that sleeps a few seconds and ends its
  task right there (``TaskSuccessEvent``, as the provider's job trigger does), which frees the slot for the next one.
  Nothing else waits in the DAG run: the scheduler's loop is as short as it gets.
- ``N_waiting``: the same as a mapped task group of N instances, each with a downstream task waiting for it (the
  provider's ``job`` -> ``results``), so every scheduler loop re-reads and re-checks the run's task instances as it
  does for a run of the provider: 200 (400 task instances) is about what a 200-row run on two backends holds when the
  job table knows each backend's pace (516), 400 (800) what the same run holds on a new table.

Freed slots are taken in order: the ``i``-th trigger to fire frees the slot that the ``slots + i``-th instance to start
takes, so each hand-over is that start minus that fire (the same log lines ``gap_parts`` reads).
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from benchmarks.gap_parts import TASK_BEGAN, TRIGGER_FIRED, first_event, log_events
from benchmarks.metrics import percentile

POOL = "bench_handover"
#: Each instance's trigger sleeps between these many seconds: a spread, so that slots free one at a time as jobs' ends
#: do, at fractions of a second spread evenly too (:func:`hold_seconds`).
HOLD_SECONDS = (4.0, 8.0)
#: (instances, pool slots, whether each instance has a downstream task waiting for it) per variant.
VARIANTS: dict[str, tuple[int, int, bool]] = {
    "idle": (40, 4, False),
    "200_waiting": (200, 8, True),
    "400_waiting": (400, 8, True),
}
QUICK_VARIANTS: dict[str, tuple[int, int, bool]] = {"idle": (16, 4, False), "48_waiting": (48, 8, True)}


def hold_seconds(index: int) -> float:
    """Instance ``index``'s sleep, spread evenly over :data:`HOLD_SECONDS` (golden-ratio steps, the same every run).

    Not whole seconds: the triggerer's runner hands events over once a second, counted from when it created the
    trigger, so whole-second sleeps would all fire just before a hand-over and hide its wait, where a job's end falls
    anywhere in that second.
    """
    low, high = HOLD_SECONDS
    return round(low + (high - low) * ((index * 0.6180339887) % 1.0), 3)


class SleepThenSucceedTrigger(BaseTrigger):
    """Sleeps, then ends its task in the triggerer: the cheapest wait a deferred task can have."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {"seconds": self.seconds}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(self.seconds)
        yield TaskSuccessEvent()


class HoldSlotOperator(BaseOperator):
    """Holds a pool slot for :func:`hold_seconds` of its ``index`` without a worker: defers at once, its trigger
    ends it."""

    template_fields = ("index",)

    def __init__(self, *, index: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index

    def execute(self, context: Any) -> None:
        self.defer(trigger=SleepThenSucceedTrigger(hold_seconds(int(self.index))), method_name="execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> None:
        """Not reached: the trigger ends the task itself."""


def dag_id_of(waiting: bool) -> str:
    """The DAG of a variant: with a downstream task waiting per instance, or without."""
    return "bench_handover_waiting" if waiting else "bench_handover_idle"


def hand_overs(logs_dir: Path, run_id: str, *, waiting: bool, slots: int) -> list[float]:
    """Seconds from each trigger firing to the start of the instance that took the slot it freed."""
    task_id = "row.hold" if waiting else "hold"
    run_dir = logs_dir / f"dag_id={dag_id_of(waiting)}" / f"run_id={run_id}" / f"task_id={task_id}"
    starts, fires = [], []
    for log in run_dir.glob("map_index=*/attempt=1.log"):
        started = first_event(log_events(log), TASK_BEGAN)
        if started is not None:
            starts.append(started)
        for trigger_log in log.parent.glob(log.name + ".trigger.*.log"):
            fired = first_event(log_events(trigger_log), TRIGGER_FIRED)
            if fired is not None:
                fires.append(fired)
    starts.sort()
    fires.sort()
    return [start - fire for fire, start in zip(fires, starts[slots:], strict=False)]


def summary(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "median_s": round(statistics.median(seconds), 2),
        "mean_s": round(statistics.fmean(seconds), 2),
        "p95_s": round(percentile(seconds, 95), 2),
    }
