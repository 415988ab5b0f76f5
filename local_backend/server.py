"""Entry point of one local openEO backend process (runs ONLY under build/driver-venv's python).

    build/driver-venv/bin/python -m local_backend.server --port 8081 [--config '{"run_seconds": 3}']

openeo-driver's stock ``local_app`` is fixed to 127.0.0.1:8080 and runs gunicorn; this entry binds any
port (0 = pick a free one) with werkzeug's threaded server in ONE process, so all request threads share
the in-memory settings and counters and the process stops cleanly by PID. When the socket is bound it
writes ``--ready-file`` (JSON with url, port, pid) and prints ``LOCAL_BACKEND_READY {json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from local_backend.control import BackendState
from local_backend.store import JobStore

_log = logging.getLogger("local_backend.server")


class _LateApp:
    """Lets the socket be bound (and a free port learnt) before the app, whose OIDC issuer needs the port."""

    app: Any = None

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if self.app is None:
            start_response("503 Service Unavailable", [("Retry-After", "1"), ("Content-Length", "0")])
            return [b""]
        return self.app(environ, start_response)


def _watch_parent(parent_pid: int, stop: Any) -> None:
    """Stop when the launching process dies, so a killed test run leaves no server behind."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            _log.warning("parent process %s is gone; stopping", parent_pid)
            stop()
            return


def _parse_config(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    value = json.loads(text)
    if not isinstance(value, dict):
        raise SystemExit(f"--config must be a JSON object, got {type(value).__name__}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_backend.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--config", help="initial settings as JSON, or @file.json")
    parser.add_argument("--data-dir", help="jobs, results, static documents, signing key (default: a temp dir)")
    parser.add_argument("--ready-file", help="written with {url, port, pid} once the server accepts requests")
    parser.add_argument("--parent-pid", type=int, help="stop when this process is no longer our parent")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)

    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="local-backend-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    state = BackendState(_parse_config(args.config), data_dir, JobStore(data_dir / "jobs.jsonl"))

    late = _LateApp()
    server: BaseWSGIServer = make_server(args.host, args.port, late, threaded=True)
    port = server.server_port
    url = f"http://{args.host}:{port}"
    state.url, state.port = url, port

    def stop() -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    from local_backend.app import build_app  # after binding: a port clash fails before the slow import

    late.app = build_app(state, url, stop)
    signal.signal(signal.SIGTERM, lambda *_: stop())
    signal.signal(signal.SIGINT, lambda *_: stop())
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, stop), daemon=True).start()

    ready = {"url": url, "port": port, "pid": os.getpid(), "data_dir": str(data_dir)}
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        tmp.write_text(json.dumps(ready), encoding="utf-8")
        tmp.replace(args.ready_file)
    print(f"LOCAL_BACKEND_READY {json.dumps(ready)}", flush=True)
    server.serve_forever()
    # Every change is already on disk (the journal is appended per change); skip the slow interpreter
    # teardown of pandas/xarray so a stop takes milliseconds, not a second.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
