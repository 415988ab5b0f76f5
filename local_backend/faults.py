"""WSGI middleware that counts requests and injects faults (5xx, 429, latency, dropped connections).

It sits in front of the whole Flask app, so it sees every request exactly as a client sent it (including
``/.well-known/openeo`` and asset downloads) and can fault any of them without the openEO code knowing.
Only the standard library is used: unit tests run it in the main virtualenv.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from local_backend.transfer import close_client_socket, shaped_body

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]

_API_PREFIX = re.compile(r"^/openeo(?:/[0-9][0-9.]*)?(?=/|$)")
_HTTP_REASONS = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def api_relative_path(path: str) -> str:
    """``/openeo/1.2/jobs/j-1`` -> ``/jobs/j-1``: counters and selectors ignore the API version prefix."""
    return _API_PREFIX.sub("", path) or "/"


class RequestStats:
    """Thread-safe counters: requests and body bytes sent, keyed ``"METHOD /template"``; faults by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._bytes_sent: Counter[str] = Counter()

    def count_request(self, key: str) -> None:
        with self._lock:
            self._requests[key] += 1

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def count_bytes(self, key: str, size: int) -> None:
        with self._lock:
            self._bytes_sent[key] += size

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(sorted(self._requests.items())),
                "faults": dict(sorted(self._faults.items())),
                "total": sum(self._requests.values()),
                "bytes_sent": dict(sorted(self._bytes_sent.items())),
            }

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._bytes_sent.clear()


class _Rule:
    """One validated fault rule plus how often it may still fire."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self.remaining: int | None = spec["times"]
        self._path = re.compile(spec["path"]) if spec["path"] else None

    def matches(self, method: str, template: str, path: str) -> bool:
        spec = self.spec
        if self.remaining is not None and self.remaining <= 0:
            return False
        if spec["methods"] and method not in spec["methods"]:
            return False
        if spec["endpoints"] and f"{method} {template}" not in spec["endpoints"]:
            return False
        return not (self._path and not (self._path.search(template) or self._path.search(path)))

    @property
    def does_anything(self) -> bool:
        s = self.spec
        shapes = s["truncate_after"] is not None or s["bytes_per_second"] is not None
        return bool(s["latency"] or s["error_rate"] or s["rate_limit_rate"] or s["drop_rate"] or shapes)


@dataclasses.dataclass
class _Shaping:
    """How the body of one real answer travels: its pace, and the rule that may cut it."""

    bytes_per_second: int | None = None
    cut_rule: _Rule | None = None


class FaultMiddleware:
    """Wraps a WSGI app; ``set_rules`` swaps the active rules at run time (thread-safe)."""

    def __init__(
        self,
        app: WsgiApp,
        *,
        stats: RequestStats,
        template_of: Callable[[dict], str] | None = None,
        excluded_prefixes: tuple[str, ...] = ("/_control/",),
    ) -> None:
        self.app = app
        self.stats = stats
        self._template_of = template_of or (lambda environ: api_relative_path(environ.get("PATH_INFO", "/")))
        self._excluded = excluded_prefixes
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._random = random.Random()

    def set_rules(self, rules: Iterable[Mapping[str, Any]], seed: int | None = None) -> None:
        active = [_Rule(r) for r in rules]
        with self._lock:
            self._rules = [r for r in active if r.does_anything]
            self._random = random.Random(seed)

    def _decide(self, method: str, template: str, path: str) -> tuple[float, str | None, dict[str, Any], _Shaping]:
        """Total added latency, the fault to answer with (None, "drop", "rate_limit", "error"), and how the
        body of a real answer travels (the first rule setting ``bytes_per_second`` / ``truncate_after`` wins).

        A rule that cuts bodies is spent by its cuts, not by the requests it saw: an answer shorter than
        ``truncate_after`` (an error, a 410) leaves it armed for the next one.
        """
        latency = 0.0
        shaping = _Shaping()
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, template, path):
                    continue
                spec = rule.spec
                roll = self._random.random()
                fault = None
                if roll < spec["drop_rate"]:
                    fault = "drop"
                elif roll < spec["drop_rate"] + spec["rate_limit_rate"]:
                    fault = "rate_limit"
                elif roll < spec["drop_rate"] + spec["rate_limit_rate"] + spec["error_rate"]:
                    fault = "error"
                cuts = spec["truncate_after"] is not None
                paces = spec["bytes_per_second"] is not None
                if fault or spec["latency"] or (paces and not cuts):
                    latency += spec["latency"]
                    if rule.remaining is not None:
                        rule.remaining -= 1
                if paces and shaping.bytes_per_second is None:
                    shaping.bytes_per_second = spec["bytes_per_second"]
                if cuts and shaping.cut_rule is None:
                    shaping.cut_rule = rule
                if fault:
                    return latency, fault, spec, shaping
        return latency, None, {}, shaping

    def _claim_cut(self, rule: _Rule) -> bool:
        """Whether ``rule`` may still cut a body (and count it), atomically: it may have run out meanwhile."""
        with self._lock:
            if rule.remaining is not None:
                if rule.remaining <= 0:
                    return False
                rule.remaining -= 1
        self.stats.count_fault("truncate")
        return True

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path.startswith(self._excluded):
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        template = self._template_of(environ)
        key = f"{method} {template}"
        self.stats.count_request(key)
        latency, fault, spec, shaping = self._decide(method, template, api_relative_path(path))
        if latency:
            self.stats.count_fault("latency")
            time.sleep(latency)
        if fault is None:
            cut_rule = shaping.cut_rule
            return shaped_body(
                self.app(environ, start_response),
                environ,
                count=lambda size: self.stats.count_bytes(key, size),
                truncate_after=None if cut_rule is None else cut_rule.spec["truncate_after"],
                bytes_per_second=shaping.bytes_per_second,
                claim_truncate=(lambda: self._claim_cut(cut_rule)) if cut_rule is not None else (lambda: False),
            )
        if spec["after"]:
            # The backend really does the work (e.g. creates the job) and only the answer is lost:
            # the case that makes blind retries of POST /jobs create duplicates.
            self._run_and_discard(environ)
        self.stats.count_fault(fault)
        if fault == "drop":
            return self._drop(environ, start_response)
        if fault == "rate_limit":
            retry_after = spec["retry_after"]
            headers = [("Retry-After", str(int(retry_after) if float(retry_after).is_integer() else retry_after))]
            return self._error(start_response, 429, "TooManyRequests", "Injected fault: too many requests.", headers)
        status = spec["error_status"]
        if status == 404:
            return self._error(start_response, 404, "JobNotFound", "Injected fault: the job does not exist.")
        code = "ServiceUnavailable" if status == 503 else "Internal"
        return self._error(start_response, status, code, f"Injected fault: server error {status}.")

    def _run_and_discard(self, environ: dict) -> None:
        result = self.app(environ, lambda status, headers, exc_info=None: lambda data: None)
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close:
                close()

    @staticmethod
    def _error(
        start_response: Callable, status: int, code: str, message: str, headers: list | None = None
    ) -> list[bytes]:
        body = json.dumps({"id": uuid.uuid4().hex, "code": code, "message": message}).encode()
        reason = _HTTP_REASONS.get(status, "Error")
        start_response(
            f"{status} {reason}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(headers or [])],
        )
        return [body]

    @staticmethod
    def _drop(environ: dict, start_response: Callable) -> list[bytes]:
        """Close the client's socket without a byte of answer.

        werkzeug exposes the connection as ``werkzeug.socket`` (gunicorn as ``gunicorn.socket``); after a
        shutdown the server's own write fails with a connection error, which it treats as a client that
        went away, so nothing else is sent and nothing is logged as a crash.
        """
        if not close_client_socket(environ):
            raise ConnectionAbortedError("injected dropped connection (no socket in WSGI environ)")
        start_response("500 Dropped", [("Content-Length", "0")])
        return [b""]
