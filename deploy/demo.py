"""``make demo``: two local openEO backends, a real Airflow, and the process-based example DAG, in one command.

What a newcomer would otherwise do by hand, in order: start backends ``foo`` and ``bar`` (local openEO servers
on free loopback ports), configure and start Airflow 3.3 in ``build/demo/airflow-home`` (LocalExecutor, SQLite),
create pools and connections from ``deploy/demo_config.json``, publish the example's user-defined process on
``foo``, trigger ``example_openeo_process_based`` through the REST API with its Params, show progress, and
summarise. Airflow and the backends keep running afterwards so the UI can be browsed; ``make demo-stop``
(``python -m deploy.demo --stop``) stops them by PID. ``--stop-after`` stops them at the end, Ctrl-C at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import psutil
import requests

from deploy.live_airflow import (
    REPO_ROOT,
    AirflowSettings,
    LiveAirflow,
    LiveAirflowError,
    ProcessRegistry,
    free_port,
    port_is_free,
)
from local_backend.settings import SettingsError, validate_settings

DAG_ID = "example_openeo_process_based"
BACKEND_NAMES = ("foo", "bar")  # the example DAGs use connections and pools openeo_foo / openeo_bar
DEMO_DIR = REPO_ROOT / "build" / "demo"
DEFAULT_CONFIG = Path(__file__).resolve().with_name("demo_config.json")
UDP_NAME = "ndvi_timeseries"
UDP_FILE = REPO_ROOT / "example_dags" / "udp" / f"{UDP_NAME}.json"
DONE_STATUSES = frozenset({"finished", "error", "canceled", "start_failed", "skipped"})
ACTIVE_STATUSES = frozenset({"queued_for_start", "created", "queued", "running"})
_CONFIG_KEYS = {"rows", "params", "backends", "poll_interval", "api_port", "airflow_parallelism", "timeout"}
_BACKEND_LINE = re.compile(
    r"local openEO backend '(?P<name>[^']+)' (?:\(\w+ profile\) )?at (?P<url>http://[\d.]+:\d+) \(pid (?P<pid>\d+)"
)


class DemoConfigError(ValueError):
    """The demo's config file has a missing, unknown or invalid entry; the message names it."""


# -- configuration -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """What ``deploy/demo_config.json`` says, checked. ``params`` are the DAG's Params, ``end`` included."""

    rows: int
    params: dict[str, str]
    parallel_jobs: int
    backend_settings: dict[str, dict[str, Any]]
    poll_interval: float = 1.0
    api_port: int | None = 8080
    airflow_parallelism: int = 4
    timeout: float = 1800.0


def load_config(path: Path = DEFAULT_CONFIG, **overrides: Any) -> DemoConfig:
    """Read and check a config file; ``overrides`` replace top-level keys (``rows=10``, ``api_port=None``)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DemoConfigError(f"cannot read demo config {path}: {exc}") from None
    except ValueError as exc:
        raise DemoConfigError(f"demo config {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise DemoConfigError(f"demo config {path}: expected a JSON object at the top")
    return parse_config({**raw, **overrides}, where=str(path))


def _number(where: str, key: str, value: Any, *, minimum: float, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise DemoConfigError(f"{where}: {key!r} must be {kind} >= {minimum}, got {value!r}")
    return value


def parse_config(raw: Mapping[str, Any], where: str = "demo config") -> DemoConfig:
    """Check every entry and derive the Params; the error names the entry (``backends.bar.run_seconds``)."""
    unknown = sorted(set(raw) - _CONFIG_KEYS)
    if unknown:
        raise DemoConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(_CONFIG_KEYS)}")
    params = dict(raw.get("params") or {})
    bad_params = sorted(set(params) - {"start", "end", "frequency"})
    if bad_params:
        raise DemoConfigError(f"{where}: params: unknown {bad_params}; the DAG's Params are start, end, frequency")
    params.setdefault("start", "2024-01-01")
    params.setdefault("frequency", "D")
    rows = raw.get("rows")
    if "end" in params and rows is not None:
        raise DemoConfigError(f"{where}: give either 'rows' or 'params.end', not both")
    try:
        params, rows = _with_end(params, rows)
    except ValueError as exc:
        raise DemoConfigError(f"{where}: params: {exc}") from None
    backends = raw.get("backends")
    if not isinstance(backends, dict) or set(backends) != set(BACKEND_NAMES):
        raise DemoConfigError(
            f"{where}: 'backends' must have exactly the entries {list(BACKEND_NAMES)} (the example DAG's "
            f"connections openeo_foo / openeo_bar), got {sorted(backends) if isinstance(backends, dict) else backends}"
        )
    parallel: dict[str, int] = {}
    settings: dict[str, dict[str, Any]] = {}
    for name in BACKEND_NAMES:
        entry = backends[name]
        if not isinstance(entry, dict):
            raise DemoConfigError(f"{where}: backends.{name} must be an object, got {entry!r}")
        entry = dict(entry)
        parallel[name] = _number(where, f"backends.{name}.parallel_jobs", entry.pop("parallel_jobs", 2), minimum=1,
                                 integer=True)  # fmt: skip
        try:  # the rest are local backend settings (durations, faults): check them before anything starts
            validate_settings({**entry, "name": name})
        except SettingsError as exc:
            raise DemoConfigError(f"{where}: backends.{name}: {exc}") from None
        settings[name] = {**entry, "name": name}
    if len(set(parallel.values())) != 1:
        # The example DAG reads one OPENEO_EXAMPLE_PARALLEL_JOBS for both backends; pools with other slot counts
        # than the DAG's plan assumes would work but spread rows unevenly.
        raise DemoConfigError(
            f"{where}: backends.*.parallel_jobs must be equal for the example DAG (one OPENEO_EXAMPLE_PARALLEL_JOBS), "
            f"got {parallel}"
        )
    api_port = raw.get("api_port", 8080)
    if api_port is not None:
        _number(where, "api_port", api_port, minimum=1, integer=True)
    return DemoConfig(
        rows=rows,
        params=params,
        parallel_jobs=next(iter(parallel.values())),
        backend_settings=settings,
        poll_interval=float(_number(where, "poll_interval", raw.get("poll_interval", 1.0), minimum=0.1)),
        api_port=api_port,
        airflow_parallelism=_number(
            where, "airflow_parallelism", raw.get("airflow_parallelism", 4), minimum=1, integer=True
        ),
        timeout=float(_number(where, "timeout", raw.get("timeout", 1800.0), minimum=10)),
    )


def _with_end(params: dict[str, str], rows: Any) -> tuple[dict[str, str], int]:
    """Complete the Params so that the DAG's ``date_windows`` makes exactly ``rows`` rows (or count them)."""
    import pandas as pd

    start = pd.Timestamp(params["start"])
    if "end" in params:
        starts = pd.date_range(start, pd.Timestamp(params["end"]), freq=params["frequency"], inclusive="left")
        if len(starts) == 0:
            raise ValueError(f"no windows between start {params['start']} and end {params['end']}")
        return params, len(starts)
    rows = 50 if rows is None else rows
    if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= 2000:
        raise ValueError(f"'rows' must be an integer in 1..2000, got {rows!r}")
    # The DAG's windows start at the first date on the frequency's grid at or after ``start`` (MS: the 1st).
    edges = pd.date_range(start, periods=rows + 1, freq=params["frequency"])
    return {**params, "start": f"{start:%Y-%m-%d}", "end": f"{edges[-1]:%Y-%m-%d}"}, rows


# -- the local backends ------------------------------------------------------------------------------------------


@dataclass
class DemoBackend:
    """A local backend run by ``python -m local_backend.launcher`` in a process of its own (outlives this one)."""

    name: str
    url: str
    pid: int

    def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = requests.request(method, f"{self.url}/_control{path}", timeout=30, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the backend holds: what really ran there, whatever the job table says."""
        return self._control("GET", "/jobs")["jobs"]

    def publish_process(self, name: str, definition: Mapping[str, Any]) -> str:
        """Serve a process definition (a UDP) on the backend; its URL, the namespace the DAG uses."""
        return self._control("PUT", f"/processes/{name}", data=json.dumps(definition).encode("utf-8"))["url"]


def start_backend_process(
    registry: ProcessRegistry, name: str, settings: Mapping[str, Any], logs: Path
) -> tuple[str, Path]:
    """Launch one backend (free port) without waiting; returns the registry name and the launcher's log."""
    log = logs / f"backend-{name}.log"
    command = [
        sys.executable, "-m", "local_backend.launcher", "--port", "0", "--name", name,
        "--config", json.dumps({k: v for k, v in settings.items() if k != "name"}),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    registry.spawn(f"backend-{name}", command, env=env, cwd=REPO_ROOT, log=log)
    return f"backend-{name}", log


def wait_backend(registry: ProcessRegistry, process_name: str, log: Path, *, timeout: float = 180.0) -> DemoBackend:
    """Until the launcher prints the backend's URL (it waits for the server itself)."""
    record = next(r for r in registry.records() if r.name == process_name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        match = _BACKEND_LINE.search(text)
        if match:
            return DemoBackend(name=match["name"], url=match["url"], pid=record.pid)
        if not _pid_alive(record.pid):
            raise LiveAirflowError(f"local backend launcher {process_name} exited (log {log}):\n{text[-3000:]}")
        time.sleep(0.2)
    raise LiveAirflowError(f"local backend {process_name} not up after {timeout:.0f} s (log {log})")


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- progress and summary ----------------------------------------------------------------------------------------


def progress_by_backend(table: Any) -> dict[str, dict[str, int]]:
    """Per backend: rows ``total``, ``done`` (a final status) and ``active`` (a job queued or running)."""
    out: dict[str, dict[str, int]] = {}
    if table is None or not len(table):
        return out
    for backend, rows in table.groupby(table["backend_name"].fillna("(unassigned)")):
        status = rows["status"].fillna("not_started")
        out[str(backend)] = {
            "total": len(rows),
            "done": int(status.isin(DONE_STATUSES).sum()),
            "active": int(status.isin(ACTIVE_STATUSES).sum()),
        }
    return out


def progress_line(progress: Mapping[str, Mapping[str, int]], run_state: str, elapsed: float) -> str:
    if not progress:
        parts = ["loading rows"]
    else:
        parts = [f"{name} {p['done']}/{p['total']} done, {p['active']} active" for name, p in sorted(progress.items())]
    return f"[{elapsed:5.0f} s] run {run_state}: " + " | ".join(parts)


@dataclass
class DemoReport:
    """What the demo found at the end; the test checks the same facts the summary prints."""

    run_id: str
    state: str
    run_seconds: float
    startup_seconds: float
    counts: dict[str, dict[str, int]]
    table: Any
    backend_jobs: dict[str, list[dict[str, Any]]]
    task_instances: list[dict[str, Any]]
    results_dir: Path
    job_db: Path
    ui_url: str
    login_user: str | None
    password_file: Path | None
    still_running: bool
    #: name -> (PID, start time) of every process the demo started, as its PID file had them at the end
    processes: dict[str, tuple[int, float]] = field(default_factory=dict)


def status_counts(table: Any) -> dict[str, dict[str, int]]:
    """``backend -> status -> rows`` from the job table."""
    counts: dict[str, dict[str, int]] = {}
    if table is None or not len(table):
        return counts
    for (backend, status), rows in table.groupby(
        [table["backend_name"].fillna("(unassigned)"), table["status"].fillna("not_started")]
    ):
        counts.setdefault(str(backend), {})[str(status)] = len(rows)
    return counts


def format_summary(report: DemoReport, *, password: str | None = None) -> str:
    statuses = sorted({s for per in report.counts.values() for s in per})
    header = f"  {'backend':<10}" + "".join(f"{s:>12}" for s in statuses) + f"{'jobs on backend':>18}"
    lines = [
        "",
        f"Demo run {report.run_id} of {DAG_ID}: {report.state.upper()} in {report.run_seconds:.0f} s "
        f"(start-up {report.startup_seconds:.0f} s)",
        header,
    ]
    for backend in sorted(report.counts):
        per = report.counts[backend]
        on_backend = len(report.backend_jobs.get(backend, []))
        lines.append(f"  {backend:<10}" + "".join(f"{per.get(s, 0):>12}" for s in statuses) + f"{on_backend:>18}")
    lines += [
        f"Results:    {report.results_dir}/job_<id>/ (assets, job-results.json, job_<id>.json)",
        f"Job table:  {report.job_db} (SQLite, table {DAG_ID})",
        f"Airflow UI: {report.ui_url}",
        f"Batch view: {report.ui_url.split('/dags/', 1)[0]}/openeo/batches/{DAG_ID}/{DAG_ID} (Browse > openEO batches)",
    ]
    if report.login_user:
        secret = f"password {password}" if password else f"password in {report.password_file}"
        lines.append(f"            login {report.login_user}, {secret}")
    if report.still_running:
        lines.append("Airflow and both backends keep running: `make demo-stop` stops them.")
    else:
        lines.append("Airflow and both backends are stopped.")
    return "\n".join(lines)


# -- the demo ----------------------------------------------------------------------------------------------------


class Demo:
    """One demo deployment in ``workdir``: its processes, its Airflow, its job table and results."""

    def __init__(self, config: DemoConfig, workdir: Path = DEMO_DIR, *, out: TextIO = sys.stdout) -> None:
        self.config = config
        self.workdir = Path(workdir).resolve()
        self.out = out
        self.registry = ProcessRegistry(self.workdir / "processes.json")
        self.logs = self.workdir / "logs"
        self.results_root = self.workdir / "results"
        self.job_db = self.workdir / "openeo_jobs.db"
        self.backends: dict[str, DemoBackend] = {}
        self._env: dict[str, str] = {}
        self._airflow: LiveAirflow | None = None

    @property
    def airflow(self) -> LiveAirflow:
        if self._airflow is None:
            raise RuntimeError("the demo has not been started")
        return self._airflow

    def _make_airflow(self) -> LiveAirflow:
        port = self.config.api_port
        if port is not None and not port_is_free(port):
            self.say(f"port {port} is busy; the Airflow UI gets a free port instead")
            port = free_port()
        return LiveAirflow(
            self.workdir / "airflow-home",
            AirflowSettings(
                api_port=port,
                parallelism=self.config.airflow_parallelism,
                paused_at_creation=True,  # only the demo's DAG runs; the others wait, paused, in the UI
                env=self._env,
            ),
            registry=self.registry,
        )

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    @property
    def results_dir(self) -> Path:
        return self.results_root / DAG_ID

    def _fresh_workdir(self) -> None:
        """Empty the work directory (a fresh job table: the rows run again), refusing one the demo did not make."""
        marker = self.workdir / ".make-demo"
        if self.workdir.exists() and any(self.workdir.iterdir()) and not marker.exists():
            raise LiveAirflowError(f"{self.workdir} exists and is not a demo work directory; choose another --workdir")
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.logs.mkdir(parents=True)
        marker.touch()

    def start(self) -> float:
        """Backends and Airflow up, pools and connections made, the UDP published; returns the seconds it took."""
        started = time.monotonic()
        stopped = stop_demo(self.workdir)
        if stopped:
            self.say(f"stopped the previous demo's processes: {', '.join(stopped)}")
        self._fresh_workdir()
        self._airflow = self._make_airflow()
        self.say(f"starting local openEO backends {' and '.join(BACKEND_NAMES)} ...")
        launching = {
            name: start_backend_process(self.registry, name, self.config.backend_settings[name], self.logs)
            for name in BACKEND_NAMES
        }
        self.say(f"preparing Airflow in {self.airflow.home} (airflow db migrate) ...")
        self.airflow.prepare()
        for name, (process_name, log) in launching.items():
            self.backends[name] = wait_backend(self.registry, process_name, log)
            self.say(f"  backend {name}: {self.backends[name].url}")
        udp_url = self.backends["foo"].publish_process(UDP_NAME, json.loads(UDP_FILE.read_text(encoding="utf-8")))
        self._env.update(
            {
                "OPENEO_EXAMPLE_UDP_URL": udp_url,
                "OPENEO_EXAMPLE_RESULTS_DIR": str(self.results_root),
                "OPENEO_EXAMPLE_SQLITE_PATH": str(self.job_db),
                "OPENEO_EXAMPLE_POLL_INTERVAL": str(self.config.poll_interval),
                "OPENEO_EXAMPLE_PARALLEL_JOBS": str(self.config.parallel_jobs),
            }
        )
        self.say("starting Airflow: scheduler, triggerer, dag-processor, api-server ...")
        self.airflow.start_for_local_backends(
            {name: backend.url for name, backend in self.backends.items()},
            parallel_jobs=self.config.parallel_jobs,
            description="local openEO backend (make demo)",
        )
        seconds = time.monotonic() - started
        self.say(f"Airflow is up at {self.airflow.url} ({seconds:.0f} s)")
        return seconds

    def run(self, startup_seconds: float, *, still_running: bool) -> DemoReport:
        """Trigger the DAG with the configured Params, show progress until the run ends, and report."""
        from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

        db = OpenEOJobDbHook(table=DAG_ID, sqlite_path=str(self.job_db))
        self.say(f"triggering {DAG_ID} with Params {self.config.params} ({self.config.rows} rows) ...")
        run_id = self.airflow.trigger_dag(DAG_ID, self.config.params, note="make demo")
        started = time.monotonic()
        show = _ProgressPrinter(self.out)

        def on_progress(run: dict[str, Any]) -> None:
            table = None
            with contextlib.suppress(Exception):  # the table appears when the init task has run
                table = db.read() if db.exists() else None
            show(progress_line(progress_by_backend(table), run.get("state", "?"), time.monotonic() - started))

        final = self.airflow.wait_for_run(
            DAG_ID, run_id, timeout=self.config.timeout, interval=1.0, on_progress=on_progress
        )
        run_seconds = time.monotonic() - started
        show.finish()
        table = db.read() if db.exists() else None
        db.dispose()
        login = self.airflow.login
        return DemoReport(
            run_id=run_id,
            state=final["state"],
            run_seconds=run_seconds,
            startup_seconds=startup_seconds,
            counts=status_counts(table),
            table=table,
            backend_jobs={name: backend.jobs() for name, backend in self.backends.items()},
            task_instances=self.airflow.task_instances(DAG_ID, run_id),
            results_dir=self.results_dir,
            job_db=self.job_db,
            ui_url=f"{self.airflow.url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}",
            login_user=login[0] if login else None,
            password_file=self.airflow.password_file if login else None,
            still_running=still_running,
        )

    def stop(self) -> list[str]:
        return self.registry.stop()


class _ProgressPrinter:
    """One updating line on a terminal; elsewhere (CI logs, tests) a line per change, at most every 5 s."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.last = ""
        self.last_at = 0.0
        self.width = 0

    def __call__(self, line: str) -> None:
        if self.tty:
            self.width = max(self.width, len(line))
            self.out.write("\r" + line.ljust(self.width))
            self.out.flush()
            return
        state = line.split("] ", 1)[-1]
        if state != self.last and time.monotonic() - self.last_at >= 5.0:
            print(line, file=self.out, flush=True)
            self.last, self.last_at = state, time.monotonic()

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def stop_demo(workdir: Path = DEMO_DIR) -> list[str]:
    """Stop every process a demo in ``workdir`` recorded (``make demo-stop``); returns their names."""
    return ProcessRegistry(Path(workdir) / "processes.json").stop()


def run_demo(config: DemoConfig, workdir: Path = DEMO_DIR, *, stop_after: bool, out: TextIO = sys.stdout) -> DemoReport:
    """The whole demo. Stops everything on any error or Ctrl-C; with ``stop_after`` also at the end."""
    demo = Demo(config, workdir, out=out)
    keep = False
    try:
        startup = demo.start()
        report = demo.run(startup, still_running=not stop_after)
        report.processes = {r.name: (r.pid, r.create_time) for r in demo.registry.records()}
        keep = not stop_after
        return report
    finally:
        if not keep:
            demo.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="demo config (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=DEMO_DIR, help="where everything lives (%(default)s)")
    parser.add_argument("--rows", type=int, help="override the config's number of rows")
    parser.add_argument("--stop-after", action="store_true", help="stop Airflow and the backends at the end")
    parser.add_argument("--stop", action="store_true", help="only stop a demo left running (make demo-stop)")
    args = parser.parse_args(argv)
    if args.stop:
        stopped = stop_demo(args.workdir)
        print(f"stopped: {', '.join(stopped)}" if stopped else "no demo processes were running")
        return 0
    try:
        config = load_config(args.config, **({"rows": args.rows} if args.rows is not None else {}))
    except DemoConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.environ["AIRFLOW_HOME"] = str(Path(args.workdir).resolve() / "airflow-home")  # for our own job-table reads
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` cleans up like Ctrl-C
    # A shell starts background jobs with SIGINT ignored, and Python keeps that: Ctrl-C/`kill -INT` must still stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    wall = time.monotonic()
    try:
        report = run_demo(config, args.workdir, stop_after=args.stop_after)
    except KeyboardInterrupt:
        print("\ninterrupted: every demo process is stopped", file=sys.stderr)
        return 130
    except (LiveAirflowError, requests.RequestException) as exc:
        print(f"\ndemo failed (every demo process is stopped): {exc}", file=sys.stderr)
        return 1
    password = None
    if report.login_user and sys.stdout.isatty():  # shown to the person at the terminal, never to a log file
        password = json.loads(report.password_file.read_text(encoding="utf-8"))[report.login_user]
    print(format_summary(report, password=password))
    print(f"Wall time of `make demo`: {time.monotonic() - wall:.0f} s")
    return 0 if report.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
