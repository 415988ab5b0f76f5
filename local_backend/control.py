"""The control API under ``/_control`` (not openEO): settings, counters, server-side job list, tokens.

Tests, the demo and benchmarks steer a running server through it; no authentication, loopback only.
Also serves ``/_static/processes/{name}.json`` documents (remote process definitions for
ProcessBasedJobCreator, which fetches them client-side from a namespace URL).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask

from local_backend.credentials import BASIC_USER, OIDC_CLIENT_ID, OIDC_DEFAULT_SUBJECT
from local_backend.faults import FaultMiddleware, RequestStats
from local_backend.federation import Federation, UpstreamUnavailable
from local_backend.history import HistoryError, history_records
from local_backend.oidc import LocalOidcProvider
from local_backend.profiles import profile_of
from local_backend.settings import SettingsError, fault_rules, validate_settings
from local_backend.store import JobStore

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class BackendState:
    """Mutable state of one server: its settings (swapped whole on change), counters and stores."""

    def __init__(self, settings: dict[str, Any], data_dir: Path, store: JobStore) -> None:
        self.startup_settings = validate_settings(settings)
        self._settings = self.startup_settings
        self._lock = threading.Lock()
        self.data_dir = data_dir
        self.store = store
        self.stats = RequestStats()
        self.static_dir = data_dir / "static" / "processes"
        self.middleware: FaultMiddleware | None = None
        self.federation = Federation()
        self.url = ""
        self.port = 0

    def settings(self) -> dict[str, Any]:
        return self._settings

    def _apply(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        if self.middleware is not None:
            self.middleware.set_rules(fault_rules(settings), seed=settings["seed"])

    def update(self, updates: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._apply(validate_settings(updates, base=self._settings))
            return self._settings

    def reset(self) -> dict[str, Any]:
        """Start-up settings, and no upstream outage (a test's outage must not reach the next test)."""
        with self._lock:
            self._apply(self.startup_settings)
            self.federation.end_outages()
            return self._settings

    def seed_history(self, body: dict[str, Any]) -> dict[str, Any]:
        settings = self._settings
        records = history_records(
            body, default_user=BASIC_USER, job_id=lambda local_id: self.federation.job_id(local_id, settings)
        )
        self.store.put_many(records)
        created = [r.created for r in records]
        return {"count": len(records), "user": records[0].user_id, "oldest": min(created), "newest": max(created)}

    def start_outage(self, body: dict[str, Any]) -> dict[str, Any]:
        settings = self._settings
        if not profile_of(settings).federated:
            raise SettingsError(f"profile {settings['profile']!r} has no upstreams; outages need 'aggregator'")
        unknown = sorted(set(body) - {"upstream", "seconds"})
        if unknown:
            raise SettingsError(f"unknown key(s) {unknown}; known: upstream, seconds")
        upstream, seconds = body.get("upstream"), body.get("seconds")
        if upstream not in settings["upstreams"]:
            raise SettingsError(f"'upstream' must be one of {settings['upstreams']}, got {upstream!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise SettingsError(f"'seconds' must be a number > 0, got {seconds!r}")
        self.federation.start_outage(upstream, float(seconds))
        return {"outages": self.federation.outages()}

    def attach(self, middleware: FaultMiddleware) -> None:
        self.middleware = middleware
        self._apply(self._settings)


def job_view(record: Any, now: float) -> dict[str, Any]:
    return {
        "id": record.id,
        "user_id": record.user_id,
        "status": record.status(now),
        "title": record.title,
        "description": record.description,
        "job_options": record.job_options,
        "budget": record.budget,
        "start_count": record.start_count,
        "queue_seconds": record.queue_seconds,
        "run_seconds": record.run_seconds,
        "fail": record.fail,
        "fail_category": record.fail_category,
        "times": record.timeline(now),
    }


def _bad_request(message: str) -> flask.Response:
    response = flask.jsonify({"code": "BadRequest", "message": message})
    response.status_code = 400
    return response


def _json_body() -> dict[str, Any]:
    body = flask.request.get_json(silent=True)
    if body is None and flask.request.get_data():
        raise SettingsError("request body is not valid JSON")
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise SettingsError("request body must be a JSON object")
    return body


def control_blueprint(state: BackendState, oidc: LocalOidcProvider, shutdown: Callable[[], None]) -> flask.Blueprint:
    bp = flask.Blueprint("local_control", __name__)

    @bp.errorhandler(SettingsError)
    @bp.errorhandler(HistoryError)
    @bp.errorhandler(UpstreamUnavailable)  # a history seeded while every upstream is out
    def settings_error(exc: Exception) -> flask.Response:
        return _bad_request(str(exc))

    @bp.route("/_control/health", methods=["GET"])
    def health() -> flask.Response:
        settings = state.settings()
        return flask.jsonify({"name": settings["name"], "pid": os.getpid(), "port": state.port, "url": state.url})

    @bp.route("/_control/config", methods=["GET"])
    def get_config() -> flask.Response:
        return flask.jsonify(state.settings())

    @bp.route("/_control/config", methods=["POST", "PATCH"])
    def update_config() -> flask.Response:
        return flask.jsonify(state.update(_json_body()))

    @bp.route("/_control/config/reset", methods=["POST"])
    def reset_config() -> flask.Response:
        return flask.jsonify(state.reset())

    @bp.route("/_control/stats", methods=["GET"])
    def stats() -> flask.Response:
        return flask.jsonify(state.stats.snapshot())

    @bp.route("/_control/stats/reset", methods=["POST"])
    @bp.route("/_control/stats", methods=["DELETE"])
    def reset_stats() -> flask.Response:
        state.stats.reset()
        return flask.jsonify(state.stats.snapshot())

    @bp.route("/_control/jobs", methods=["GET"])
    def jobs() -> flask.Response:
        now = time.time()
        records = sorted(state.store.all(), key=lambda r: (r.created, r.id))
        return flask.jsonify({"now": now, "jobs": [job_view(r, now) for r in records]})

    @bp.route("/_control/history", methods=["POST"])
    def seed_history() -> flask.Response:
        return flask.jsonify(state.seed_history(_json_body()))

    @bp.route("/_control/outages", methods=["GET"])
    def outages() -> flask.Response:
        return flask.jsonify({"outages": state.federation.outages()})

    @bp.route("/_control/outages", methods=["POST"])
    def start_outage() -> flask.Response:
        return flask.jsonify(state.start_outage(_json_body()))

    @bp.route("/_control/outages", methods=["DELETE"])
    def end_outages() -> flask.Response:
        state.federation.end_outages()
        return flask.jsonify({"outages": state.federation.outages()})

    @bp.route("/_control/processes/<name>", methods=["PUT"])
    def put_process(name: str) -> flask.Response:
        if not _NAME.fullmatch(name):
            return _bad_request(f"process name {name!r} must match {_NAME.pattern}")
        state.static_dir.mkdir(parents=True, exist_ok=True)
        tmp = state.static_dir / f".{name}.tmp"
        tmp.write_bytes(flask.request.get_data())
        tmp.replace(state.static_dir / f"{name}.json")
        url = flask.url_for("local_static.process_definition", name=name, _external=True)
        return flask.jsonify({"name": name, "url": url})

    @bp.route("/_control/processes/<name>", methods=["DELETE"])
    def delete_process(name: str) -> flask.Response:
        if _NAME.fullmatch(name):
            (state.static_dir / f"{name}.json").unlink(missing_ok=True)
        return flask.Response(status=204)

    @bp.route("/_control/oidc/refresh_token", methods=["POST"])
    def refresh_token() -> flask.Response:
        body = _json_body()
        sub = str(body.get("sub") or OIDC_DEFAULT_SUBJECT)
        client_id = str(body.get("client_id") or OIDC_CLIENT_ID)
        return flask.jsonify({"refresh_token": oidc.mint_refresh_token(sub, client_id), "sub": sub})

    @bp.route("/_control/oidc/access_token", methods=["POST"])
    def access_token() -> flask.Response:
        body = _json_body()
        sub = str(body.get("sub") or OIDC_DEFAULT_SUBJECT)
        return flask.jsonify({**oidc.mint_access_token(sub), "sub": sub})

    @bp.route("/_control/shutdown", methods=["POST"])
    def shutdown_server() -> flask.Response:
        threading.Timer(0.05, shutdown).start()
        return flask.jsonify({"stopping": True})

    return bp


def static_blueprint(state: BackendState) -> flask.Blueprint:
    bp = flask.Blueprint("local_static", __name__)

    @bp.route("/_static/processes/<name>.json", methods=["GET"])
    def process_definition(name: str) -> flask.Response:
        path = state.static_dir / f"{name}.json"
        if not _NAME.fullmatch(name) or not path.is_file():
            response = flask.jsonify({"code": "NotFound", "message": f"No process definition {name!r}."})
            response.status_code = 404
            return response
        body = path.read_bytes()
        try:
            json.loads(body)
            mimetype = "application/json"
        except ValueError:
            mimetype = "text/plain"  # deliberately non-JSON documents, for error-path tests
        return flask.Response(body, mimetype=mimetype)

    return bp
