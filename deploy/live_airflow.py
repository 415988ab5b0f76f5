"""A real Airflow 3.3 on loopback: scheduler, triggerer, dag-processor and API server as separate processes.

``dag.test()`` runs task instances and triggers in one process; users run four services that talk through a
metadata database and the REST/execution APIs. This harness starts exactly that, for the end-to-end tests,
the benchmarks and ``make demo``::

    airflow = LiveAirflow(REPO / "build" / "my-home", AirflowSettings(env={"OPENEO_EXAMPLE_POLL_INTERVAL": "1"}))
    airflow.prepare()                       # config, password file, ``airflow db migrate``
    airflow.set_pools({"foo": {"conn_id": "openeo_foo", "parallel_jobs": 2}})
    airflow.start()                         # four processes, waits until /api/v2/monitor/health says healthy
    airflow.set_connection("openeo_foo", "openeo", host=url, login="alice", password=...)
    run_id = airflow.trigger_dag("example_openeo_process_based", {"start": "2024-01-01"})
    run = airflow.wait_for_run("example_openeo_process_based", run_id, timeout=300)
    airflow.stop()

Every process runs in its own process group with its log in ``AIRFLOW_HOME/logs/<name>.log`` and is recorded in
a PID file (:class:`ProcessRegistry`), so another shell can stop what this one started (``make demo-stop``).
Configuration goes through ``AIRFLOW__*`` environment variables given to each process: nothing secret is
written by the harness except the SimpleAuthManager password file, which Airflow itself requires.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # an Airflow dependency: portable process trees (task processes get their own process group)
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DAGS = REPO_ROOT / "example_dags"

#: Airflow CLI sub-commands of the services, by the name used in logs, the PID file and the health answer.
SERVICES: dict[str, tuple[list[str], str | None]] = {
    "scheduler": (["scheduler"], "scheduler"),
    "triggerer": (["triggerer"], "triggerer"),
    "dag-processor": (["dag-processor"], "dag_processor"),
    "api-server": (["api-server"], None),
}
DEFAULT_SERVICES = tuple(SERVICES)
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
_LOG_TAIL = 3000
_HTTP_TIMEOUT = 30.0


class LiveAirflowError(RuntimeError):
    """A service failed to start or died, a CLI call failed, or the REST API refused a request."""


class ApiError(LiveAirflowError):
    """The REST API answered with an unexpected status (``status``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# -- processes -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRecord:
    """One started process; ``create_time`` tells it apart from a later process that reuses the PID."""

    name: str
    pid: int
    create_time: float
    log: str


class ProcessRegistry:
    """A PID file listing the processes a harness started, rewritten on every change.

    It lets ``make demo-stop`` (another shell, another Python process) stop exactly what ``make demo`` started,
    by PID, and nothing else: a record whose PID now belongs to a younger process is ignored.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def records(self) -> list[ProcessRecord]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise LiveAirflowError(f"PID file {self.path} is unreadable: {exc}") from exc
        return [ProcessRecord(**item) for item in raw.get("processes", [])]

    def _write(self, records: Sequence[ProcessRecord]) -> None:
        if not records:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"processes": [r.__dict__ for r in records]}, indent=2), encoding="utf-8")
        tmp.replace(self.path)

    def spawn(
        self, name: str, command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path
    ) -> subprocess.Popen:
        """Start ``command`` in a new session (its own process group), output appended to ``log``, and record it."""
        if any(r.name == name for r in self.records()):
            raise LiveAirflowError(f"a process named {name!r} is already recorded in {self.path}")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal must not reach it; we stop it by PID
            )
        try:
            created = psutil.Process(process.pid).create_time()
        except psutil.NoSuchProcess:  # died at once: keep a record anyway so the caller sees the log
            created = 0.0
        self._write([*self.records(), ProcessRecord(name, process.pid, created, str(log))])
        return process

    def forget(self, name: str) -> None:
        self._write([r for r in self.records() if r.name != name])

    def stop(self, names: Iterable[str] | None = None, *, grace: float = 20.0) -> list[str]:
        """SIGTERM each recorded process group, SIGKILL whatever of the trees is left after ``grace`` seconds.

        The trees include descendants that left the group (Airflow runs each task in a process group of its
        own). Returns the names of the processes that were still running.
        """
        wanted = set(names) if names is not None else None
        chosen = [r for r in self.records() if wanted is None or r.name in wanted]
        roots = {r.name: p for r in chosen if (p := _live_process(r)) is not None}
        tree = _with_descendants(roots.values())
        for process in roots.values():
            _signal_group(process, signal.SIGTERM)
        _, alive = psutil.wait_procs(list(roots.values()), timeout=grace)
        tree |= _with_descendants(alive)
        for process in tree:
            with contextlib.suppress(psutil.Error):
                if process.is_running():
                    process.kill()
        psutil.wait_procs(list(tree), timeout=10)
        self._write([r for r in self.records() if r not in chosen])
        return sorted(roots)


def _live_process(record: ProcessRecord) -> psutil.Process | None:
    try:
        process = psutil.Process(record.pid)
        if record.create_time and abs(process.create_time() - record.create_time) > 1.0:
            return None  # the PID was reused by another process
        return process if process.status() != psutil.STATUS_ZOMBIE else None
    except psutil.NoSuchProcess:
        return None


def _with_descendants(processes: Iterable[psutil.Process]) -> set[psutil.Process]:
    found: set[psutil.Process] = set()
    for process in processes:
        found.add(process)
        with contextlib.suppress(psutil.Error):
            found.update(process.children(recursive=True))
    return found


def _signal_group(process: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)


def free_port() -> int:
    """A TCP port free on loopback right now (the API server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _tail(path: Path | str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL:]
    except OSError:
        return "<no log>"


# -- Airflow ---------------------------------------------------------------------------------------------------


@dataclass
class AirflowSettings:
    """How the live Airflow is configured; defaults suit a 2-core machine and fast tests.

    :param database_url: SQLAlchemy URL of the metadata database; None: SQLite file ``AIRFLOW_HOME/airflow.db``.
    :param executor: ``LocalExecutor`` (default) or e.g. ``CeleryExecutor`` (then put broker/result backend
        settings into ``env`` and name the worker processes in ``extra_services``).
    :param api_port: the API server's port; None: a free one.
    :param all_admins: no login at all (``simple_auth_manager_all_admins``); default: user ``admin_user``
        with a generated password kept in ``AIRFLOW_HOME/simple_auth_manager_passwords.json``.
    :param paused_at_creation: False (the default here) runs every DAG as soon as it is parsed, which starts
        the scheduled examples too; True keeps them paused, and :meth:`LiveAirflow.trigger_dag` unpauses only the
        DAG it triggers (the demo and the tests: nothing else competes for the pools).
    :param services: which of :data:`SERVICES` to start.
    :param extra_services: more processes as ``name -> airflow CLI arguments``, e.g.
        ``{"celery-worker-1": ["celery", "worker", "--concurrency", "1"]}``.
    :param preload_openeo: write ``config/airflow_local_settings.py`` importing
        :mod:`airflow_provider_openeo.preload`, as the README recommends for deployments: task processes fork
        with pandas and the openEO client already loaded. False measures Airflow without it.
    :param env: more environment for every process (``OPENEO_EXAMPLE_*``, ``AIRFLOW__*`` overrides).
    :param service_env: more environment for one process only, by service name (on top of ``env``): e.g. a
        distinct :data:`HOSTNAME_ENV` per Celery worker. :meth:`celery` fills it in.
    """

    database_url: str | None = None
    executor: str = "LocalExecutor"
    dags_folder: Path = EXAMPLE_DAGS
    parallelism: int = 4
    api_port: int | None = None
    all_admins: bool = False
    admin_user: str = "admin"
    paused_at_creation: bool = False
    services: tuple[str, ...] = DEFAULT_SERVICES
    extra_services: Mapping[str, Sequence[str]] = field(default_factory=dict)
    min_file_process_interval: int = 120
    preload_openeo: bool = True
    env: Mapping[str, str] = field(default_factory=dict)
    service_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def celery(
        cls,
        *,
        database_url: str,
        broker_url: str,
        result_backend: str,
        workers: int = 2,
        concurrency: int = 1,
        queue: str = "default",
        env: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> AirflowSettings:
        """A CeleryExecutor deployment: ``workers`` worker processes named ``celery-worker-<n>`` on ``queue``.

        Several workers on one machine must not share what one worker per machine may take for itself: each
        gets its own Celery node name, PID file and (through :func:`service_hostname`) the hostname Airflow
        records on its task instances, so a test can tell which worker ran what. Workers do not serve logs
        (the default log-server port would clash between them; the API server reads the shared log folder).
        The metadata database must be one every process reaches (PostgreSQL): SQLite cannot serve the
        Celery result backend nor several workers. ``queue`` becomes ``[operators] default_queue``: a
        queue of its own keeps other deployments on the same broker from taking this one's tasks.
        """
        if workers < 1 or concurrency < 1:
            raise ValueError(f"workers and concurrency must be >= 1, got {workers} and {concurrency}")
        names = [f"celery-worker-{n}" for n in range(1, workers + 1)]
        extra_services = {
            name: [
                "celery", "worker", "--queues", queue, "--concurrency", str(concurrency),
                "--celery-hostname", f"{name}@%h", "--pid", f"{name}.pid", "--skip-serve-logs",
                "--without-mingle", "--without-gossip",
            ]
            for name in names
        }  # fmt: skip
        celery_env = {
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.service_hostname",
        }
        return cls(
            database_url=database_url,
            executor="CeleryExecutor",
            extra_services={**extra_services, **dict(settings.pop("extra_services", {}))},
            service_env={name: {HOSTNAME_ENV: name} for name in names},
            env={**celery_env, **dict(env or {})},
            **settings,
        )


#: Set per process (``AirflowSettings.service_env``), read by :func:`service_hostname`.
HOSTNAME_ENV = "LIVE_AIRFLOW_HOSTNAME"


def service_hostname() -> str:
    """``[core] hostname_callable`` that tells apart several workers on one machine (else the FQDN).

    Airflow records this name on every task instance a worker runs; with two workers on loopback both would
    otherwise report the same FQDN.
    """
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


class LiveAirflow:
    """One Airflow deployment in ``home`` (its AIRFLOW_HOME): configure, start, drive through the REST API, stop."""

    def __init__(
        self,
        home: Path,
        settings: AirflowSettings | None = None,
        *,
        registry: ProcessRegistry | None = None,
        python: Path | None = None,
    ) -> None:
        self.home = Path(home).resolve()
        self.settings = settings or AirflowSettings()
        unknown = set(self.settings.services) - set(SERVICES)
        if unknown:
            raise ValueError(f"services: unknown {sorted(unknown)}; known: {sorted(SERVICES)}")
        self.registry = registry or ProcessRegistry(self.home / "processes.json")
        self.python = Path(python or sys.executable)
        self.port = self.settings.api_port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password_file = self.home / "simple_auth_manager_passwords.json"
        self.logs = self.home / "logs"
        self._processes: dict[str, subprocess.Popen] = {}
        self._session = requests.Session()
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"LiveAirflow(home={str(self.home)!r}, url={self.url!r}, running={sorted(self._processes)})"

    # -- configuration ---------------------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return self.settings.database_url or f"sqlite:///{self.home / 'airflow.db'}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of every Airflow process: the caller's, minus its Airflow settings, plus ours."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "OPENEO_EXAMPLE_"))
        }
        s = self.settings
        ours = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": s.executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(s.dags_folder).resolve()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(s.paused_at_creation),
            "AIRFLOW__CORE__PARALLELISM": str(s.parallelism),
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(s.all_admins),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.admin_user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.password_file),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(s.min_file_process_interval),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__PARSING_CLEANUP_INTERVAL": "30",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # The task supervisor sleeps up to this long in select() when a task process ends without a last
            # socket event: with the default 5 s, one workload in five held its executor slot 5 s too long.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs),
            "PYTHONUNBUFFERED": "1",
        }
        return {**base, **ours, **dict(s.env)}

    @property
    def login(self) -> tuple[str, str] | None:
        """The UI/API user and password (None when every visitor is admin)."""
        if self.settings.all_admins:
            return None
        return self.settings.admin_user, self._password()

    def _password(self) -> str:
        try:
            return json.loads(self.password_file.read_text(encoding="utf-8"))[self.settings.admin_user]
        except (OSError, ValueError, KeyError) as exc:
            raise LiveAirflowError(f"no password for {self.settings.admin_user!r} in {self.password_file}") from exc

    def prepare(self, *, timeout: float = 300.0) -> LiveAirflow:
        """Create AIRFLOW_HOME, the admin's password (kept across runs) and the metadata database's schema."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        if not self.settings.all_admins:
            self._ensure_password()
        self._write_local_settings()
        self.cli("db", "migrate", timeout=timeout)
        return self

    def _write_local_settings(self) -> None:
        from airflow_provider_openeo.preload import LOCAL_SETTINGS_LINE

        local_settings = self.home / "config" / "airflow_local_settings.py"
        if self.settings.preload_openeo:
            local_settings.parent.mkdir(parents=True, exist_ok=True)
            local_settings.write_text(LOCAL_SETTINGS_LINE, encoding="utf-8")
        else:
            local_settings.unlink(missing_ok=True)

    def _ensure_password(self) -> None:
        try:
            passwords = json.loads(self.password_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            passwords = {}
        if self.settings.admin_user not in passwords:
            passwords[self.settings.admin_user] = secrets.token_urlsafe(12)
            # SimpleAuthManager reads plain-text passwords from this file: keep it private to the user.
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(passwords, out)

    def cli(self, *args: str, timeout: float = 300.0) -> str:
        """Run ``airflow ARGS`` against this deployment's configuration; its output, or an error with the tail."""
        return self._run([str(self.python.with_name("airflow")), *args], timeout=timeout)

    def _run(self, command: list[str], *, timeout: float) -> str:
        result = subprocess.run(
            command, env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-_LOG_TAIL:]
            raise LiveAirflowError(f"{' '.join(command[:4])} failed with code {result.returncode}:\n{output}")
        return result.stdout

    def set_pools(self, backends: Mapping[str, Mapping[str, Any]], *, timeout: float = 120.0) -> Path:
        """Pools ``openeo_<backend>`` through the provider's own CLI, as a deployment would; returns its JSON file."""
        path = self.home / "backends.json"
        path.write_text(json.dumps(backends, indent=2), encoding="utf-8")
        self._run([str(self.python), "-m", "airflow_provider_openeo.pools", str(path)], timeout=timeout)
        return path

    # -- services --------------------------------------------------------------------------------------------
    def _commands(self) -> dict[str, list[str]]:
        airflow = str(self.python.with_name("airflow"))
        commands = {name: [airflow, *SERVICES[name][0]] for name in self.settings.services}
        commands.update({name: [airflow, *args] for name, args in self.settings.extra_services.items()})
        return commands

    def start(self, *, wait: bool = True, timeout: float = 240.0) -> LiveAirflow:
        """Start every service and wait until the API server reports them healthy; on failure stop them all.

        ``wait=False`` returns at once (do other set-up while they boot, then call :meth:`wait_healthy`).
        """
        if not self.settings.all_admins:
            self._ensure_password()
        try:
            for name in self._commands():
                self.start_service(name, wait=False)
            if wait:
                self.wait_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_for_local_backends(
        self, urls: Mapping[str, str], *, parallel_jobs: int, description: str | None = None
    ) -> LiveAirflow:
        """Start every service wired to local openEO backends ``{name: url}``, as the demo, the tests and the
        bench need: pool ``openeo_<name>`` with ``parallel_jobs`` slots (made while the services boot) and
        connection ``openeo_<name>`` (the local backends' basic-auth user)."""
        from local_backend.credentials import BASIC_PASSWORD, BASIC_USER

        self.start(wait=False)
        self.set_pools({name: {"conn_id": f"openeo_{name}", "parallel_jobs": parallel_jobs} for name in urls})
        self.wait_healthy()
        for name, url in urls.items():
            self.set_connection(
                f"openeo_{name}",
                "openeo",
                host=url,
                login=BASIC_USER,
                password=BASIC_PASSWORD,
                extra={"auth_method": "basic"},
                description=description,
            )
        return self

    def start_service(self, name: str, *, wait: bool = True, timeout: float = 120.0) -> int:
        """Start one service (again, after :meth:`kill_service`); returns its PID."""
        command = self._commands().get(name)
        if command is None:
            raise ValueError(f"unknown service {name!r}; configured: {sorted(self._commands())}")
        if name in self._processes and self._processes[name].poll() is None:
            raise LiveAirflowError(f"service {name!r} is already running (pid {self._processes[name].pid})")
        self.registry.forget(name)
        env = {**self.env, **dict(self.settings.service_env.get(name, {}))}
        process = self.registry.spawn(name, command, env=env, cwd=self.home, log=self.logs / f"{name}.log")
        self._processes[name] = process
        if wait:
            self.wait_healthy(timeout=timeout)
        return process.pid

    def kill_service(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to one service's process group (fault tests: ``kill -9`` the triggerer mid-batch)."""
        process = self._processes.get(name)
        if process is None:
            raise ValueError(f"service {name!r} was not started here")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def wait_for_log(self, name: str, text: str, *, timeout: float = 120.0) -> None:
        """Until ``text`` appears in a service's log (a Celery worker's ``ready.``); an error if it dies first."""
        log = self.logs / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if log.exists() and text in log.read_text(encoding="utf-8", errors="replace"):
                return
            time.sleep(0.5)
        raise LiveAirflowError(f"{name} did not log {text!r} within {timeout:.0f} s (log {log}):\n{_tail(log)}")

    def pid(self, name: str) -> int | None:
        process = self._processes.get(name)
        return process.pid if process is not None and process.poll() is None else None

    def _check_alive(self) -> None:
        for name, process in self._processes.items():
            if process.poll() is not None:
                log = self.logs / f"{name}.log"
                raise LiveAirflowError(f"{name} exited with code {process.returncode} (log {log}):\n{_tail(log)}")

    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health`` (no login needed)."""
        answer = self._session.get(f"{self.url}/api/v2/monitor/health", timeout=_HTTP_TIMEOUT)
        answer.raise_for_status()
        return answer.json()

    def wait_healthy(self, *, timeout: float = 240.0) -> dict[str, Any]:
        """Until the API server answers and each started scheduler/triggerer/dag-processor has a fresh heartbeat."""
        expected = [SERVICES[n][1] for n in self._processes if n in SERVICES and SERVICES[n][1]]
        deadline = time.monotonic() + timeout
        last: Any = "no answer"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                last = self.health()
                if all((last.get(key) or {}).get("status") == "healthy" for key in expected):
                    return last
            except requests.RequestException as exc:
                last = exc
            time.sleep(1.0)
        raise LiveAirflowError(f"Airflow at {self.url} not healthy after {timeout:.0f} s: {last}")

    def stop(self, *, grace: float = 20.0) -> list[str]:
        """Stop every process this deployment started (and their children), by PID; returns those still running."""
        stopped = self.registry.stop(self._commands(), grace=grace)
        self._processes.clear()
        self._session.close()
        self._session = requests.Session()
        self._token = None
        return stopped

    def __enter__(self) -> LiveAirflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST API --------------------------------------------------------------------------------------------
    def token(self) -> str | None:
        """A JWT from ``POST /auth/token`` as the admin (None with ``all_admins``); cached until refused."""
        if self.settings.all_admins:
            return None
        if self._token is None:
            user, password = self.login or ("", "")
            answer = self._session.post(
                f"{self.url}/auth/token", json={"username": user, "password": password}, timeout=_HTTP_TIMEOUT
            )
            if answer.status_code not in (200, 201):
                raise LiveAirflowError(f"login as {user!r} refused: {answer.status_code} {answer.text[:300]}")
            self._token = answer.json()["access_token"]
        return self._token

    def api(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        ok: Iterable[int] = (200, 201, 204),
    ) -> Any:
        """Call ``/api/v2{path}`` as the admin; the decoded answer, or an error naming the call and the answer."""
        accepted = set(ok)
        answer: requests.Response | None = None
        for _attempt in range(2):  # a second try after a 401: the token expired
            token = self.token()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            answer = self._session.request(
                method, f"{self.url}/api/v2{path}", json=json_body, params=params, headers=headers,
                timeout=_HTTP_TIMEOUT,
            )  # fmt: skip
            if answer.status_code != 401:
                break
            self._token = None
        assert answer is not None
        if answer.status_code not in accepted:
            raise ApiError(f"{method} {path} answered {answer.status_code}: {answer.text[:500]}", answer.status_code)
        return answer.json() if answer.content else None

    def set_connection(
        self,
        conn_id: str,
        conn_type: str,
        *,
        host: str | None = None,
        login: str | None = None,
        password: str | None = None,
        port: int | None = None,
        schema: str | None = None,
        extra: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        """Create or overwrite a connection through the REST API (stored in the metadata DB, shown in the UI)."""
        body = {
            "connection_id": conn_id,
            "conn_type": conn_type,
            "host": host,
            "login": login,
            "password": password,
            "port": port,
            "schema": schema,
            "extra": json.dumps(dict(extra)) if extra is not None else None,
            "description": description,
        }
        try:
            answer = self.api(
                "PATCH",
                "/connections",
                json_body={"actions": [{"action": "create", "entities": [body], "action_on_existence": "overwrite"}]},
            )
        except ApiError as exc:  # a 422 echoes the request, password included: keep the answer out of the message
            raise LiveAirflowError(f"connection {conn_id!r} was not saved: HTTP {exc.status}") from None
        errors = (answer or {}).get("create", {}).get("errors") or []
        if errors:  # the answer may echo the request: name the connection, not its fields
            raise LiveAirflowError(f"connection {conn_id!r} was not saved ({len(errors)} error(s))")

    def wait_for_dag(self, dag_id: str, *, timeout: float = 180.0) -> dict[str, Any]:
        """Until the dag-processor has parsed ``dag_id``; unpauses it. Import errors end the wait early."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                dag = self.api("GET", f"/dags/{dag_id}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                errors = self.api("GET", "/importErrors", params={"limit": 100}).get("import_errors", [])
                if errors:
                    details = "\n".join(f"{e.get('filename')}: {str(e.get('stack_trace'))[-800:]}" for e in errors)
                    raise LiveAirflowError(f"DAG {dag_id!r} not loaded; import errors:\n{details}") from None
                time.sleep(1.0)
                continue
            if dag.get("is_paused"):
                dag = self.api("PATCH", f"/dags/{dag_id}", json_body={"is_paused": False})
            return dag
        raise LiveAirflowError(f"DAG {dag_id!r} not parsed after {timeout:.0f} s (log {self.logs}/dag-processor.log)")

    def trigger_dag(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, *, note: str | None = None, timeout: float = 180.0
    ) -> str:
        """Trigger a run the way the UI's trigger form does (logical date now, Params as ``conf``); its run id."""
        self.wait_for_dag(dag_id, timeout=timeout)
        body: dict[str, Any] = {
            "conf": dict(conf or {}),
            "logical_date": dt.datetime.now(dt.timezone.utc).isoformat(),
            "data_interval_start": None,
            "data_interval_end": None,
            "partition_key": None,
        }
        if note:
            body["note"] = note
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json_body=body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float = 600.0,
        interval: float = 1.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Until the run succeeds or fails; ``on_progress(run)`` after every poll. Returns the final run record."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            run = self.dag_run(dag_id, run_id)
            if on_progress is not None:
                on_progress(run)
            if run.get("state") in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() >= deadline:
                states = _count(ti.get("state") for ti in self.task_instances(dag_id, run_id))
                raise LiveAirflowError(
                    f"run {run_id!r} of {dag_id!r} still {run.get('state')} after {timeout:.0f} s; tasks: {states}"
                )
            time.sleep(interval)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run (mapped ones with ``map_index`` and ``rendered_map_index``), all pages."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": len(found), "order_by": "id"},  # a total order: pages never overlap
            )
            found.extend(page["task_instances"])
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return sorted(found, key=lambda ti: (ti["task_id"], ti["map_index"]))


def _count(values: Iterable[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts
