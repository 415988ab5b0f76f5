"""The benchmark rig: two local openEO backends and one live Airflow running ``benchmarks/dags``.

Both contenders meet the same backends in the same run: our DAG through the live Airflow (LocalExecutor, SQLite,
real scheduler and triggerer), MBJM's ``run_jobs`` in this process. Figures come from the backends' own job
timelines and request counters (``benchmarks.metrics``), and from process memory sampled with psutil.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.scheduler_loop import StatsdTimers, own_cpu_seconds, with_cpu
from deploy.live_airflow import REPO_ROOT, AirflowSettings, LiveAirflow
from local_backend.launcher import LocalBackend, start_local_backend

BENCH_DAGS = Path(__file__).resolve().with_name("dags")


@dataclass
class MemorySampler:
    """Peak resident memory of Airflow's services while a run goes on, sampled in a background thread.

    ``scheduler`` and ``triggerer`` count the service's own process; ``workers`` is the largest sum over the
    scheduler's descendants (LocalExecutor workers and their task processes) seen at one instant; the
    triggerer's descendants (its trigger runner) are added to ``triggerer``.
    """

    airflow: LiveAirflow
    interval: float = 0.5
    peaks_mb: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> dict[str, float]:
        sample: dict[str, float] = {}
        for name in ("scheduler", "triggerer"):
            pid = self.airflow.pid(name)
            if pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                children = root.children(recursive=True)
                own = _rss_mb([root])
                if name == "scheduler":
                    sample["scheduler"] = own
                    sample["workers"] = _rss_mb(children)
                else:
                    sample["triggerer"] = own + _rss_mb(children)
        return sample

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for key, value in self._sample().items():
                self.peaks_mb[key] = max(self.peaks_mb.get(key, 0.0), value)

    @contextlib.contextmanager
    def running(self) -> Iterator[MemorySampler]:
        thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)


def _rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return round(total / 2**20, 1)


class BenchRig:
    """Backends ``foo`` and ``bar`` plus a live Airflow in ``workdir``; one instance per ``make bench``."""

    backend_names = ("foo", "bar")

    def __init__(
        self,
        workdir: Path,
        *,
        parallel_jobs: int,
        poll_interval: float,
        parallelism: int = 6,
        airflow_env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.parallel_jobs = parallel_jobs
        self.poll_interval = poll_interval
        self.backends: dict[str, LocalBackend] = {}
        # Airflow's StatsD metrics come here: each run reports the scheduler's loop time while it ran.
        self.timers = StatsdTimers()
        config = {
            "work_dir": str(self.workdir / "ours"),
            "poll_interval": poll_interval,
            "parallel_jobs": dict.fromkeys(self.backend_names, parallel_jobs),
        }
        pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        self.airflow = LiveAirflow(
            self.workdir / "airflow-home",
            AirflowSettings(
                dags_folder=BENCH_DAGS,
                parallelism=parallelism,
                paused_at_creation=True,
                all_admins=True,
                env={
                    "OPENEO_BENCH": json.dumps(config),
                    "PYTHONPATH": pythonpath,
                    **self.timers.airflow_env(),
                    **dict(airflow_env or {}),
                },
            ),
        )

    def start(self) -> None:
        self.timers.start()
        (self.workdir / "ours").mkdir(parents=True, exist_ok=True)
        for name in self.backend_names:
            self.backends[name] = start_local_backend(name=name)  # job durations come with each row
        self.airflow.prepare()
        self.airflow.start_for_local_backends(
            {name: backend.url for name, backend in self.backends.items()}, parallel_jobs=self.parallel_jobs
        )
        self.warm_up()

    def warm_up(self) -> None:
        """One no-op task, so that no measured run pays the scheduler's one-off first-task cost (see the DAG)."""
        self.airflow.wait_for_dag("bench_warmup")
        run_id = self.airflow.trigger_dag("bench_warmup", {})
        run = self.airflow.wait_for_run("bench_warmup", run_id, timeout=300, interval=1.0)
        if run["state"] != "success":
            raise RuntimeError(f"the warm-up run ended {run['state']}: see {self.airflow.logs}")

    def stop(self) -> None:
        self.airflow.stop()
        for backend in self.backends.values():
            backend.stop()
        self.timers.stop()

    def __enter__(self) -> BenchRig:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset_counters(self) -> None:
        for backend in self.backends.values():
            backend.reset_stats()

    def run_ours(
        self, dag_id: str, *, rows: int, tag: str, timeout: float, profile: str = "standard"
    ) -> dict[str, Any]:
        """Trigger one benchmark DAG run and wait for it; wall time, job ids and statuses from its job table."""
        from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

        self.airflow.wait_for_dag(dag_id)
        with self.scheduler_measured() as scheduler_loop, MemorySampler(self.airflow).running() as memory:
            started = time.time()
            run_id = self.airflow.trigger_dag(dag_id, {"rows": rows, "tag": tag, "profile": profile})
            run = self.airflow.wait_for_run(dag_id, run_id, timeout=timeout, interval=2.0)
            runs = self._wait_for_chained_runs(dag_id, timeout=timeout)
        # Airflow's own end of the last run, not when this client's 2 s poll noticed it (MBJM's wall is exact too).
        wall = max(_epoch(r["end_date"]) for r in runs) - started
        db = OpenEOJobDbHook(table=dag_id, sqlite_path=str(self.workdir / "ours" / f"{dag_id}.db"))
        try:
            table = db.read()
        finally:
            db.dispose()
        return {
            "state": run["state"],
            "wall_s": wall,
            "job_ids": set(table["id"].dropna()),
            "statuses": table["status"].value_counts().to_dict(),
            "peak_rss_mb": dict(memory.peaks_mb),
            "scheduler_loop": scheduler_loop,
            "run_id": run_id,
            "dag_runs": len(runs),
        }

    @contextlib.contextmanager
    def scheduler_measured(self) -> Iterator[dict[str, Any]]:
        """The scheduler's loop times (StatsD) and its own CPU seconds over the ``with`` block, filled into the dict
        it yields when the block ends."""
        self.timers.reset()
        before = own_cpu_seconds(self.airflow.pid("scheduler"))
        figures: dict[str, Any] = {}
        yield figures
        after = own_cpu_seconds(self.airflow.pid("scheduler"))
        cpu = after - before if before is not None and after is not None else None
        figures.update(with_cpu(self.timers.summary(), cpu))

    def _wait_for_chained_runs(self, dag_id: str, *, timeout: float) -> list[dict[str, Any]]:
        """Rows beyond ``max_map_length`` run in follow-up runs the batch triggers itself: wait for all of them.

        Each benchmark DAG runs once per ``make bench``, so every run of ``dag_id`` belongs to this batch.
        """
        deadline = time.monotonic() + timeout
        while True:
            runs = self.airflow.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]
            active = [r for r in runs if r["state"] not in ("success", "failed")]
            if not active:
                return runs
            remaining = max(1.0, deadline - time.monotonic())
            self.airflow.wait_for_run(dag_id, active[0]["dag_run_id"], timeout=remaining, interval=2.0)


def _epoch(stamp: str) -> float:
    """Epoch seconds of an ISO 8601 time as Airflow's REST API writes it."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
