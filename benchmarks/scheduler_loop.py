"""The scheduler's loop time, as Airflow itself times it: its ``scheduler.scheduler_loop_duration`` StatsD timer.

A small UDP listener on loopback takes Airflow's StatsD packets (``[metrics] statsd_on``) and keeps the samples of
the timers asked for, so a workload can report how long each scheduler loop took while it ran: the loop's
length is the latency every DAG of a deployment sees, and it grows with the task instances a run holds.

The loop's length is wall time: on a busy machine it grows when the scheduler waits for a CPU as well as when
it has more to do. The scheduler process's own CPU time per loop (:func:`own_cpu_seconds`, workers and task
processes not counted) tells the two apart.

Standalone (to measure another checkout's bench with the same listener)::

    python -m benchmarks.scheduler_loop --port 8125 --seconds 600   # prints a JSON summary at the end
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

LOOP_TIMER = "scheduler.scheduler_loop_duration"
PREFIX = "airflow"


class StatsdTimers:
    """Collect StatsD timer samples (``name:value|ms``) sent to ``127.0.0.1:port``."""

    def __init__(self, names: Iterable[str] = (LOOP_TIMER,), port: int = 0) -> None:
        self._wanted = {f"{PREFIX}.{name}" for name in names}
        self._samples: dict[str, list[tuple[float, float]]] = {name: [] for name in self._wanted}
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", port))
        self._socket.settimeout(0.5)
        self.port = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="statsd-timers", daemon=True)

    def airflow_env(self) -> dict[str, str]:
        """What every Airflow process needs to send its metrics here."""
        return {
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(self.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": PREFIX,
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> StatsdTimers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self._socket.recv(65536)
            except (TimeoutError, OSError):
                continue
            for line in packet.decode("utf-8", "replace").splitlines():
                self._record(line)

    def _record(self, line: str) -> None:
        name, _, rest = line.partition(":")
        value, _, kind = rest.partition("|")
        if name not in self._wanted or not kind.startswith("ms"):
            return
        try:
            sample = float(value)
        except ValueError:
            return
        with self._lock:
            self._samples[name].append((time.time(), sample))

    def reset(self) -> None:
        with self._lock:
            for samples in self._samples.values():
                samples.clear()

    def summary(self, name: str = LOOP_TIMER, *, since: float = 0.0) -> dict[str, Any]:
        """``{"loops", "median_ms", "p95_ms", "max_ms"}`` of the samples since the last :meth:`reset` (and since
        epoch ``since``)."""
        with self._lock:
            samples = sorted(value for at, value in self._samples[f"{PREFIX}.{name}"] if at >= since)
        if not samples:
            return {"loops": 0}
        p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
        return {
            "loops": len(samples),
            "median_ms": round(statistics.median(samples), 1),
            "p95_ms": round(p95, 1),
            "max_ms": round(samples[-1], 1),
        }


def own_cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU seconds of process ``pid`` itself (its children not counted); None when it is gone."""
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


def with_cpu(summary: dict[str, Any], cpu_seconds: float | None) -> dict[str, Any]:
    """``summary`` plus the scheduler's CPU seconds over the same span and per loop."""
    if cpu_seconds is None or not summary.get("loops"):
        return summary
    return {
        **summary,
        "cpu_s": round(cpu_seconds, 1),
        "cpu_ms_per_loop": round(1000 * cpu_seconds / summary["loops"], 1),
    }


def scheduler_pid() -> int | None:
    """The main ``airflow scheduler`` process on this machine (not one of the executor's forks)."""
    found = []
    for process in psutil.process_iter(["pid", "ppid", "cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if "airflow scheduler" in cmdline or cmdline.endswith("airflow scheduler"):
            found.append(process.info)
    pids = {info["pid"] for info in found}
    roots = [info["pid"] for info in found if info["ppid"] not in pids]
    return roots[0] if len(roots) == 1 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8125)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--since-file", help="count only what happens once this file exists (it holds epoch seconds)")
    parser.add_argument("--until-file", help="stop early once this file exists")
    parser.add_argument("--scheduler-pid", type=int, help="count this process's CPU time (default: find it)")
    args = parser.parse_args()
    since_file = Path(args.since_file) if args.since_file else None
    until_file = Path(args.until_file) if args.until_file else None
    with StatsdTimers(port=args.port) as timers:
        pid = args.scheduler_pid
        cpu_at_start = None
        deadline = time.monotonic() + args.seconds
        cpu_at_end = None
        while time.monotonic() < deadline and not (until_file and until_file.exists()):
            pid = pid or scheduler_pid()  # the scheduler may start after the listener
            if pid is not None and cpu_at_start is None and (since_file is None or since_file.exists()):
                cpu_at_start = own_cpu_seconds(pid)
            elif cpu_at_start is not None:
                cpu_at_end = own_cpu_seconds(pid) or cpu_at_end  # the last reading before the scheduler stops
            time.sleep(0.5)
        since = float(since_file.read_text()) if since_file and since_file.exists() else 0.0
        cpu = cpu_at_end - cpu_at_start if cpu_at_start is not None and cpu_at_end is not None else None
        print(json.dumps(with_cpu(timers.summary(since=since), cpu)))


if __name__ == "__main__":
    main()
