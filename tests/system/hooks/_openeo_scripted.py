"""A scripted HTTP server on loopback for fast, exact unit tests of the openEO hooks.

Why not requests_mock/aioresponses: they replace the transport, so urllib3's retry logic (the thing under test:
which methods are re-sent after a 503 or a dropped connection) never runs. This server speaks real HTTP on a
free port, answers from a table of routes, and records every request. The real openEO behaviour is tested
against the local openeo-driver backend in ``test_openeo_local_backend.py``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the socket without answering (a lost response)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Seen], Reply]


class ScriptedServer:
    """Routes are ``(METHOD, path) -> Reply | handler | list of those`` (a list is consumed one per request)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Any] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                seen = Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
                reply = server._reply(seen)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                payload = (
                    b""
                    if reply.body is None
                    else (reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode())
                )
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _reply(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            route = self.routes.get((seen.method, seen.path))
            if isinstance(route, list):
                route = route.pop(0) if len(route) > 1 else route[0]
        if route is None:
            return Reply(404, {"code": "NotFound", "message": f"no route {seen.method} {seen.path}"})
        return route(seen) if callable(route) else route

    def count(self, method: str, path: str) -> int:
        return Counter((s.method, s.path) for s in self.seen)[(method, path)]

    # -- a minimal openEO API ---------------------------------------------------------------------------------

    def serve_openeo(self, *, title: str = "Scripted openEO", basic_token: str = "tok-basic") -> ScriptedServer:
        """Well-known document, capabilities, basic auth (alice/alice123), an OIDC provider, ``/me``."""
        api = f"{self.url}/openeo/1.2"
        self.routes[("GET", "/.well-known/openeo")] = Reply(
            body={"versions": [{"url": api, "api_version": "1.2.0", "production": True}]}
        )
        self.routes[("GET", "/openeo/1.2/")] = Reply(
            body={
                "api_version": "1.2.0",
                "backend_version": "9.9",
                "stac_version": "1.0.0",
                "id": "scripted",
                "title": title,
                "description": "scripted test server",
                "endpoints": [
                    {"path": "/credentials/basic", "methods": ["GET"]},
                    {"path": "/credentials/oidc", "methods": ["GET"]},
                    {"path": "/jobs", "methods": ["GET", "POST"]},
                    {"path": "/jobs/{job_id}", "methods": ["GET", "DELETE"]},
                    {"path": "/jobs/{job_id}/results", "methods": ["GET", "POST", "DELETE"]},
                    {"path": "/me", "methods": ["GET"]},
                ],
                "links": [],
            }
        )

        def basic(seen: Seen) -> Reply:
            import base64

            header = seen.headers.get("Authorization", "")
            if header == "Basic " + base64.b64encode(b"alice:alice123").decode():
                return Reply(body={"access_token": basic_token})
            return Reply(403, {"code": "CredentialsInvalid", "message": "Credentials are not correct."})

        self.routes[("GET", "/openeo/1.2/credentials/basic")] = basic
        self.routes[("GET", "/openeo/1.2/credentials/oidc")] = Reply(
            body={"providers": [{"id": "idp", "issuer": f"{self.url}/idp", "title": "IdP", "scopes": ["openid"]}]}
        )
        self.routes[("GET", "/idp/.well-known/openid-configuration")] = Reply(
            body={"issuer": f"{self.url}/idp", "token_endpoint": f"{self.url}/idp/token"}
        )
        self.routes[("GET", "/openeo/1.2/me")] = lambda seen: Reply(body={"user_id": "alice", "name": "Alice"})
        return self

    def auth_headers(self, method: str, path: str) -> list[str]:
        return [s.headers.get("Authorization", "") for s in self.seen if (s.method, s.path) == (method, path)]
