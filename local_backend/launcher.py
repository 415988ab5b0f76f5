"""Start, steer and stop local openEO backends from the main virtualenv (stdlib + ``requests`` only).

    backend = start_local_backend(run_seconds=1)      # free port; waits until it answers
    conn = openeo.connect(backend.url).authenticate_basic(BASIC_USER, BASIC_PASSWORD)
    backend.configure(error_rate=1.0, endpoints=["GET /jobs/{job_id}"])
    backend.stop()

Each backend is a separate process running ``local_backend.server`` under build/driver-venv's python
(openeo-driver cannot live in the main venv). ``python -m local_backend.launcher --port 8081`` runs one
in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

import requests

from local_backend.credentials import (
    BASIC_PASSWORD,
    BASIC_USER,
    OIDC_CLIENT_ID,
    OIDC_CLIENT_SECRET,
    OIDC_DEFAULT_SUBJECT,
    OIDC_PROVIDER_ID,
    OIDC_PUBLIC_CLIENT_ID,
    OTHER_BASIC_PASSWORD,
    OTHER_BASIC_USER,
)
from local_backend.settings import DEFAULT_SETTINGS, SettingsError, job_path, validate_settings

__all__ = [
    "BASIC_PASSWORD",
    "BASIC_USER",
    "DEFAULT_SETTINGS",
    "OIDC_CLIENT_ID",
    "OIDC_CLIENT_SECRET",
    "OIDC_PROVIDER_ID",
    "OIDC_PUBLIC_CLIENT_ID",
    "OTHER_BASIC_PASSWORD",
    "OTHER_BASIC_USER",
    "LocalBackend",
    "LocalBackendError",
    "SettingsError",
    "ensure_driver_venv",
    "job_path",
    "start_local_backend",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build"
DRIVER_VENV = BUILD_DIR / "driver-venv"
RUN_ROOT = BUILD_DIR / "local-backends"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
_CONTROL_TIMEOUT = 30.0
_LOG_TAIL = 4000

_live: weakref.WeakSet[LocalBackend] = weakref.WeakSet()
_venv_lock = threading.Lock()


class LocalBackendError(RuntimeError):
    """A local backend failed to start, died, or refused a control request."""


def _driver_venv_complete(venv: Path) -> bool:
    """A cheap file-system check (importing openeo_driver takes seconds)."""
    site = list(venv.glob("lib/python3*/site-packages"))
    return (venv / "bin" / "python").exists() and any(
        (s / "openeo_driver" / "__init__.py").exists() and (s / "pkg_resources" / "__init__.py").exists() for s in site
    )


def ensure_driver_venv() -> Path:
    """The python of build/driver-venv, created (uv, else venv + pip) when missing or incomplete.

    ``LOCAL_BACKEND_PYTHON`` overrides the interpreter (for a venv kept elsewhere).
    """
    override = os.environ.get("LOCAL_BACKEND_PYTHON")
    if override:
        return Path(override)
    python = DRIVER_VENV / "bin" / "python"
    with _venv_lock:
        if _driver_venv_complete(DRIVER_VENV):
            return python
        uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
        if Path(uv).exists():
            commands = [
                [uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(DRIVER_VENV)],
                [
                    uv,
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    str(python),
                    "--prerelease=allow",
                    "-r",
                    str(REQUIREMENTS),
                ],
            ]
        else:
            commands = [
                [sys.executable, "-m", "venv", str(DRIVER_VENV)],
                [str(python), "-m", "pip", "install", "--quiet", "--pre", "-r", str(REQUIREMENTS)],
            ]
        for command in commands:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise LocalBackendError(
                    f"creating {DRIVER_VENV} failed: {' '.join(command)}\n{result.stderr[-_LOG_TAIL:]}"
                )
        (DRIVER_VENV / ".installed").touch()
        return python


def _tail(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL:]
    except OSError:
        return "<no log>"


class LocalBackend:
    """Handle on one running local backend process. Its repr shows name and URL, never credentials."""

    def __init__(
        self,
        *,
        name: str,
        port: int,
        run_dir: Path,
        python: Path,
        settings: dict[str, Any],
        cleanup: bool,
        startup_timeout: float,
    ) -> None:
        self.name = name
        self.port = port
        self.run_dir = run_dir
        self.data_dir = run_dir / "data"
        self.log_path = run_dir / "server.log"
        self._python = python
        self._startup_settings = settings
        self._settings = settings
        self._cleanup = cleanup
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen | None = None
        self._session = requests.Session()

    # -- process management ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Root URL to pass to ``openeo.connect`` (the client discovers the API version itself)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _launch(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ready_file = self.run_dir / "ready.json"
        ready_file.unlink(missing_ok=True)
        command = [
            str(self._python), "-W", "ignore", "-m", "local_backend.server",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--config", json.dumps(self._startup_settings),
            "--data-dir", str(self.data_dir),
            "--ready-file", str(ready_file),
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C in a terminal reaches the launcher, which stops us cleanly
            )
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalBackendError(
                    f"local backend {self.name!r} exited with code {self._process.returncode} during start-up "
                    f"(log {self.log_path}):\n{_tail(self.log_path)}"
                )
            if ready_file.exists():
                ready = json.loads(ready_file.read_text(encoding="utf-8"))
                self.port = int(ready["port"])
                health = self._request("GET", "/_control/health")
                if health.get("pid") != self._process.pid:
                    self._kill()
                    raise LocalBackendError(
                        f"port {self.port} answers for another process (pid {health.get('pid')}), not ours"
                    )
                return
            time.sleep(0.05)
        self._kill()
        raise LocalBackendError(
            f"local backend {self.name!r} not ready after {self._startup_timeout:.0f} s "
            f"(log {self.log_path}):\n{_tail(self.log_path)}"
        )

    def _kill(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server process (SIGTERM by PID, then SIGKILL after 10 s) and wait for it."""
        self._kill()
        self._process = None
        self._session.close()
        _live.discard(self)
        if self._cleanup:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port and data directory.

        Kept: jobs (with their wall-clock lifecycle), process definitions, OIDC tokens, and the settings
        as last configured. Lost: request counters and connections in flight.
        """
        self._kill()
        self._session.close()
        self._session = requests.Session()
        self._launch()
        self._settings = self._request("POST", "/_control/config", json=self._settings)
        _live.add(self)

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalBackend(name={self.name!r}, url={self.url!r}, pid={self.pid})"

    # -- control API -------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._session.request(method, self.url + path, timeout=_CONTROL_TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise LocalBackendError(f"control request {method} {path} to {self.name!r} failed: {exc}") from exc
        if response.status_code >= 400:
            raise LocalBackendError(
                f"control request {method} {path} to {self.name!r} answered {response.status_code}: {response.text}"
            )
        return response.json() if response.content else None

    def configure(self, **settings: Any) -> None:
        """Change settings at run time (merged into the current ones); see settings.DEFAULT_SETTINGS."""
        validate_settings(settings, base=self._settings)  # fail here, naming the key, before any request
        self._settings = self._request("POST", "/_control/config", json=settings)

    def config(self) -> dict[str, Any]:
        return self._request("GET", "/_control/config")

    def reset_config(self) -> None:
        """Back to the settings the server was started with (faults off, default durations, no limit), no outage."""
        self._settings = self._request("POST", "/_control/config/reset")

    def stats(self) -> dict[str, int]:
        """Requests received since the last reset, keyed ``"METHOD /path/{template}"``."""
        return self._request("GET", "/_control/stats")["requests"]

    def fault_stats(self) -> dict[str, int]:
        """Faults injected since the last reset, by kind: error, rate_limit, drop, latency, truncate."""
        return self._request("GET", "/_control/stats")["faults"]

    def bytes_sent(self) -> dict[str, int]:
        """Body bytes sent since the last reset, keyed like :meth:`stats` (asset downloads, listings, ...)."""
        return self._request("GET", "/_control/stats")["bytes_sent"]

    def reset_stats(self) -> None:
        self._request("POST", "/_control/stats/reset")

    def reset(self) -> None:
        """Start-up settings and zero counters: what a test gets from the ``openeo_backend`` fixture."""
        self.reset_config()
        self.reset_stats()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job of every user, oldest first: id, user_id, status, title, job_options, times (epoch s)."""
        return self._request("GET", "/_control/jobs")["jobs"]

    def seed_history(
        self, count: int, max_age_days: float = 90, *, user: str = BASIC_USER, seed: int | None = None
    ) -> dict[str, Any]:
        """Add ``count`` old, ended jobs of ``user`` (created over the last ``max_age_days``, at least two
        hours ago) in one go, like a production account's months of history; kept across ``restart()``.
        Returns ``{"count", "user", "oldest", "newest"}`` (epoch seconds)."""
        body = {"count": count, "max_age_days": max_age_days, "user": user, "seed": seed}
        return self._request("POST", "/_control/history", json=body)

    def upstream_outage(self, upstream: str, seconds: float) -> dict[str, float]:
        """Aggregator profile: ``upstream`` is unreachable for ``seconds`` from now (its jobs answer 404
        JobNotFound and leave listings, which name it under ``federation:missing``). Returns the
        outages in force, upstream -> seconds left. Ended by ``end_outages()`` or ``reset()``."""
        return self._request("POST", "/_control/outages", json={"upstream": upstream, "seconds": seconds})["outages"]

    def end_outages(self) -> None:
        self._request("DELETE", "/_control/outages")

    def add_process_definition(self, name: str, definition: dict[str, Any] | str) -> str:
        """Serve ``definition`` at ``{url}/_static/processes/{name}.json`` and return that URL.

        A dict is served as JSON; a str is served byte for byte (JSON or not, for error-path tests).
        """
        body = definition if isinstance(definition, str) else json.dumps(definition)
        return self._request("PUT", f"/_control/processes/{name}", data=body.encode("utf-8"))["url"]

    def remove_process_definition(self, name: str) -> None:
        self._request("DELETE", f"/_control/processes/{name}")

    def mint_refresh_token(self, sub: str = OIDC_DEFAULT_SUBJECT) -> str:
        """A refresh token for user ``sub`` (what an interactive login would have stored)."""
        return self._request("POST", "/_control/oidc/refresh_token", json={"sub": sub})["refresh_token"]

    def mint_access_token(self, sub: str = OIDC_DEFAULT_SUBJECT) -> str:
        """A bare OIDC access token; use it as bearer ``oidc/{OIDC_PROVIDER_ID}/{token}``."""
        return self._request("POST", "/_control/oidc/access_token", json={"sub": sub})["access_token"]


def start_local_backend(
    port: int | None = None,
    *,
    cleanup: bool = True,
    startup_timeout: float = 60.0,
    **settings: Any,
) -> LocalBackend:
    """Start a local backend and wait until it answers.

    ``port=None`` lets the server pick a free port itself (no race with other processes). ``settings``
    are the start-up settings (``name``, ``queue_seconds``, ``run_seconds``, ``max_concurrent_jobs``,
    faults, ...; see ``local_backend.settings``) and what ``reset_config()`` returns to. ``cleanup``
    removes the run directory (data and log) on ``stop()`` or a failed start (whose error message carries
    the log tail); ``cleanup=False`` keeps it for inspection.
    """
    checked = validate_settings(settings)
    python = ensure_driver_venv()
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    run_dir = RUN_ROOT / f"{checked['name']}-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    backend = LocalBackend(
        name=checked["name"],
        port=port or 0,
        run_dir=run_dir,
        python=python,
        settings=settings,
        cleanup=cleanup,
        startup_timeout=startup_timeout,
    )
    try:
        backend._launch()
    except LocalBackendError:
        if cleanup:  # the error message already carries the log tail
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    backend._settings = backend.config()
    _live.add(backend)
    return backend


@atexit.register
def _stop_all() -> None:
    for backend in list(_live):
        with contextlib.suppress(Exception):
            backend.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _process_argument(value: str) -> tuple[str, str]:
    """``NAME=FILE`` -> (name, the file's text), checked to be JSON so a typo fails before the server starts."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--process {value!r}: expected NAME=FILE")
    text = Path(path).read_text(encoding="utf-8")
    json.loads(text)
    return name, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_backend.launcher", description="Run a local openEO backend.")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--name", default="local")
    parser.add_argument("--config", default="{}", help="extra start-up settings as a JSON object")
    parser.add_argument("--profile", help="production server to imitate: geopyspark, aggregator, fastapi")
    parser.add_argument("--keep-data", action="store_true", help="keep jobs and log under build/local-backends")
    parser.add_argument(
        "--process",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="serve a process definition (a UDP's JSON) at /_static/processes/NAME.json; repeatable",
    )
    parser.add_argument(
        "--stop-with-parent",
        action="store_true",
        help="stop when the process that started this one ends, however it ends (make local-backend)",
    )
    args = parser.parse_args(argv)
    parent = os.getppid() if args.stop_with_parent else None
    try:
        processes = dict(_process_argument(value) for value in args.process)
        settings = {**json.loads(args.config), "name": args.name}
        if args.profile:
            settings["profile"] = args.profile
        backend = start_local_backend(args.port, cleanup=not args.keep_data, **settings)
    except (ValueError, OSError, LocalBackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"local openEO backend {backend.name!r} ({backend.config()['profile']} profile) at {backend.url} "
        f"(pid {backend.pid}, log {backend.log_path})"
    )
    print(f"  basic auth: {BASIC_USER} / {BASIC_PASSWORD}")
    print(f"  OIDC: provider {OIDC_PROVIDER_ID!r}, client {OIDC_CLIENT_ID!r} / {OIDC_CLIENT_SECRET!r}")
    print(f"  control API: {backend.url}/_control/config, /_control/stats, /_control/jobs")
    for name, definition in processes.items():
        print(f"  process {name!r}: {backend.add_process_definition(name, definition)}")
    print("Ctrl-C stops it" + (" (so does the end of the command that started it)." if parent else "."), flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops it as cleanly as Ctrl-C
    try:
        while backend.is_running():
            if parent is not None and os.getppid() != parent:  # `make local-backend` was killed: no Ctrl-C will come
                print("the command that started it is gone; stopping", file=sys.stderr)
                return 0
            time.sleep(0.5)
        print(f"server exited; log tail:\n{_tail(backend.log_path)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        backend.stop()


if __name__ == "__main__":
    sys.exit(main())
