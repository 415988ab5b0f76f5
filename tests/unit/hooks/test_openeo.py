"""Unit tests of OpenEOHook's pieces: connection parsing, tokens, the retry policy, test_connection, errors.

Network behaviour is exercised over real HTTP (a scripted loopback server) so urllib3's retry logic runs for real.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from airflow.sdk import Connection
from openeo.rest import OpenEoApiError, OpenEoApiPlainError

from airflow_provider_openeo.exceptions import (
    OpenEOApiRequestError,
    OpenEOAuthError,
    OpenEOConfigurationError,
    OpenEOJobNotFoundError,
    OpenEOTransientError,
)
from airflow_provider_openeo.hooks._openeo.auth import BearerToken, StaticTokenSource, jwt_expiry
from airflow_provider_openeo.hooks._openeo.http import (
    parse_retry_after,
    redact,
    safe_retry,
    translate_openeo_error,
)
from airflow_provider_openeo.hooks.openeo import (
    AuthMethod,
    OpenEOConnectionSettings,
    OpenEOHook,
    openeo_connection_from_airflow,
)
from tests.system.hooks._openeo_scripted import Reply, ScriptedServer

FAST_RETRY = {"total": 3, "backoff_factor": 0.01, "backoff_max": 0.05}


def _jwt(claims: dict) -> str:
    def enc(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{enc({'alg': 'none'})}.{enc(claims)}.sig"


def _conn(**kwargs: object) -> Connection:
    extra = kwargs.pop("extra", None)
    return Connection(
        conn_id=str(kwargs.pop("conn_id", "oe")),
        conn_type="openeo",
        extra=json.dumps(extra) if extra is not None else None,
        **kwargs,  # type: ignore[arg-type]
    )


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "openeo", **fields}))


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer().serve_openeo().start()
    yield server
    server.stop()


# -- connection settings --------------------------------------------------------------------------------------


class TestSettings:
    def test_default_auth_method_follows_login(self) -> None:
        with_login = OpenEOConnectionSettings.from_airflow(_conn(host="https://x.org", login="a", password="pw"))
        anonymous = OpenEOConnectionSettings.from_airflow(_conn(host="https://x.org"))
        assert with_login.auth_method is AuthMethod.BASIC
        assert anonymous.auth_method is AuthMethod.NONE

    @pytest.mark.parametrize(
        ("host", "port", "schema", "expected"),
        [
            ("https://openeo.example.org/openeo/", None, None, "https://openeo.example.org/openeo"),
            ("http://127.0.0.1", 8080, None, "http://127.0.0.1:8080"),
            ("http://127.0.0.1:9000/api", 8080, None, "http://127.0.0.1:9000/api"),
            ("openeo.example.org", 8443, "openeo/1.2", "https://openeo.example.org:8443/openeo/1.2"),
        ],
    )
    def test_backend_url(self, host: str, port: int | None, schema: str | None, expected: str) -> None:
        settings = OpenEOConnectionSettings.from_airflow(_conn(host=host, port=port, schema=schema))
        assert settings.url == expected

    def test_uri_form_connection(self) -> None:
        conn = Connection.from_uri(
            "openeo://alice:alice123@openeo.example.org:8443/openeo?auth_method=basic", conn_id="uri"
        )
        settings = OpenEOConnectionSettings.from_airflow(conn)
        assert (settings.url, settings.username, settings.auth_method) == (
            "https://openeo.example.org:8443/openeo",
            "alice",
            AuthMethod.BASIC,
        )

    def test_uri_round_trip_keeps_the_settings(self) -> None:
        """The API server's "Test" button passes the form through a connection URI; nothing may change."""
        original = _conn(
            host="http://127.0.0.1:8080/openeo",
            extra={"auth_method": "oidc_refresh_token", "client_id": "c", "refresh_token": "r/t+x", "timeout": 12.5},
        )
        round_tripped = Connection.from_uri(original.get_uri(), conn_id="oe")
        assert OpenEOConnectionSettings.from_airflow(round_tripped) == OpenEOConnectionSettings.from_airflow(original)

    def test_legacy_prefixed_extra_fields_are_read(self) -> None:
        conn = _conn(
            host="https://x.org",
            extra={
                "extra__openeo__auth_method": "oidc_client_credentials",
                "extra__openeo__client_id": "cid",
                "extra__openeo__client_secret": "csecret",
            },
        )
        settings = OpenEOConnectionSettings.from_airflow(conn)
        assert (settings.auth_method, settings.client_id, settings.client_secret) == (
            AuthMethod.OIDC_CLIENT_CREDENTIALS,
            "cid",
            "csecret",
        )

    @pytest.mark.parametrize(
        ("fields", "needle"),
        [
            ({"host": ""}, "host is empty"),
            ({"host": "ftp://x.org"}, "not an http(s) URL"),
            ({"host": "https://bob:hunter2@x.org"}, "not in the host URL"),
            ({"host": "https://x.org", "extra": {"auth_method": "device"}}, "unknown auth_method 'device'"),
            ({"host": "https://x.org", "extra": {"auth_method": "basic"}}, "needs login (user name), password"),
            (
                {"host": "https://x.org", "extra": {"auth_method": "oidc_client_credentials", "client_id": "c"}},
                "needs client_secret",
            ),
            ({"host": "https://x.org", "extra": {"auth_method": "oidc_refresh_token"}}, "client_id, refresh_token"),
            ({"host": "https://x.org", "extra": {"auth_method": "access_token"}}, "needs access_token"),
            ({"host": "https://x.org", "extra": {"timeout": "soon"}}, "timeout 'soon' is not a number"),
            ({"host": "https://x.org", "extra": {"timeout": -1}}, "timeout must be a positive number"),
        ],
    )
    def test_bad_connections_name_the_field(self, fields: dict, needle: str) -> None:
        with pytest.raises(OpenEOConfigurationError, match="connection 'oe'") as info:
            OpenEOConnectionSettings.from_airflow(_conn(**fields))
        assert needle in str(info.value)
        assert "hunter2" not in str(info.value)

    def test_access_token_from_password_field(self) -> None:
        conn = _conn(host="https://x.org", password="oidc/egi/abc", extra={"auth_method": "access_token"})
        assert OpenEOConnectionSettings.from_airflow(conn).access_token == "oidc/egi/abc"

    def test_repr_holds_no_secret(self) -> None:
        settings = OpenEOConnectionSettings.from_airflow(
            _conn(
                host="https://x.org",
                login="u",
                password="pw-secret-1",
                extra={
                    "auth_method": "oidc_refresh_token",
                    "client_id": "c",
                    "client_secret": "cs-secret-2",
                    "refresh_token": "rt-secret-3",
                    "access_token": "at-secret-4",
                },
            )
        )
        text = repr(settings)
        for secret in ("pw-secret-1", "cs-secret-2", "rt-secret-3", "at-secret-4"):
            assert secret not in text
            assert secret in settings.secrets


# -- tokens -----------------------------------------------------------------------------------------------------


class TestTokens:
    def test_jwt_expiry(self) -> None:
        assert jwt_expiry(_jwt({"exp": 1_900_000_000})) == 1_900_000_000
        assert jwt_expiry("opaque-token") is None
        assert jwt_expiry("a.b.c") is None
        assert jwt_expiry(_jwt({"exp": "soon"})) is None

    def test_renewal_margin_scales_with_lifetime(self) -> None:
        hour = BearerToken(bearer="b", expires_at=3600.0, obtained_at=0.0)
        assert not hour.renewal_due(now=3539.0)
        assert hour.renewal_due(now=3541.0)  # a minute early, not 20 % (720 s) early
        short = BearerToken(bearer="b", expires_at=10.0, obtained_at=0.0)
        assert not short.renewal_due(now=7.9)
        assert short.renewal_due(now=8.1)  # 20 % of 10 s
        unknown = BearerToken(bearer="b", expires_at=None, obtained_at=0.0)
        assert not unknown.renewal_due(now=1e12)
        assert "bearer-secret" not in repr(BearerToken(bearer="bearer-secret"))

    def test_expired_static_token_is_refused_clearly(self) -> None:
        source = StaticTokenSource("oidc/egi/" + _jwt({"exp": time.time() - 10}))
        with pytest.raises(OpenEOAuthError, match=r"expired at .* cannot be renewed"):
            source.fetch(None, timeout=1)  # type: ignore[arg-type]
        assert not source.renewable


# -- retry policy over real HTTP --------------------------------------------------------------------------------


class TestRetryPolicy:
    def _session(self) -> requests.Session:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(max_retries=safe_retry(**FAST_RETRY))
        session.mount("http://", adapter)
        return session

    def test_get_is_retried_on_5xx_and_429(self, scripted: ScriptedServer) -> None:
        scripted.routes[("GET", "/x")] = [Reply(503), Reply(429, headers={"Retry-After": "0"}), Reply(500), Reply()]
        assert self._session().get(f"{scripted.url}/x", timeout=5).status_code == 200
        assert scripted.count("GET", "/x") == 4

    def test_get_gives_the_last_error_response_back_when_retries_run_out(self, scripted: ScriptedServer) -> None:
        scripted.routes[("GET", "/x")] = Reply(502, {"code": "Busy", "message": "try later"})
        response = self._session().get(f"{scripted.url}/x", timeout=5)
        assert response.status_code == 502 and response.json()["code"] == "Busy"
        assert scripted.count("GET", "/x") == 4  # first try + 3 retries

    def test_get_is_retried_after_a_dropped_connection(self, scripted: ScriptedServer) -> None:
        scripted.routes[("GET", "/x")] = [Reply(drop=True), Reply()]
        assert self._session().get(f"{scripted.url}/x", timeout=5).status_code == 200
        assert scripted.count("GET", "/x") == 2

    @pytest.mark.parametrize("reply", [Reply(503), Reply(500), Reply(429), Reply(drop=True)])
    def test_post_is_never_resent(self, scripted: ScriptedServer, reply: Reply) -> None:
        scripted.routes[("POST", "/jobs")] = [reply, Reply(201)]
        try:
            response = self._session().post(f"{scripted.url}/jobs", json={}, timeout=5)
            assert response.status_code == reply.status
        except requests.ConnectionError:
            assert reply.drop
        assert scripted.count("POST", "/jobs") == 1

    def test_delete_is_retried(self, scripted: ScriptedServer) -> None:
        scripted.routes[("DELETE", "/jobs/j/results")] = [Reply(503), Reply(204)]
        assert self._session().delete(f"{scripted.url}/jobs/j/results", timeout=5).status_code == 204
        assert scripted.count("DELETE", "/jobs/j/results") == 2

    def test_post_that_could_not_connect_is_retried_as_it_never_left(self, caplog: pytest.LogCaptureFixture) -> None:
        """urllib3 counts a refused connection as a connect error: safe to retry for any method."""
        with caplog.at_level(logging.WARNING, logger="urllib3"), pytest.raises(requests.ConnectionError):
            self._session().post(f"http://127.0.0.1:{_free_port()}/jobs", json={}, timeout=5)
        retries = [r for r in caplog.records if "Retrying" in r.getMessage() and "NewConnectionError" in r.getMessage()]
        assert len(retries) == 3

    def test_retry_after_parsing(self) -> None:
        assert parse_retry_after("7") == 7.0
        assert parse_retry_after(None) is None
        assert parse_retry_after("garbage") is None
        assert parse_retry_after("Thu, 01 Jan 2037 00:00:10 GMT", now=2114380800.0) == pytest.approx(10.0)


# -- the hook against the scripted server -----------------------------------------------------------------------


class TestHook:
    def test_basic_login_and_job_url(self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
        _set_conn(monkeypatch, "oe_basic", host=scripted.url, login="alice", password="alice123")
        hook = OpenEOHook("oe_basic")
        connection = hook.get_conn()
        assert hook.get_conn() is connection  # cached per hook
        assert connection.describe_account()["user_id"] == "alice"
        assert scripted.auth_headers("GET", "/openeo/1.2/me") == ["Bearer basic//tok-basic"]
        assert hook.backend_url == scripted.url
        assert hook.job_url("j-1/../x") == f"{scripted.url}/openeo/1.2/jobs/j-1%2F..%2Fx"
        assert repr(hook) == "OpenEOHook(openeo_conn_id='oe_basic')"
        assert "alice123" not in repr(connection) and "tok-basic" not in repr(connection)

    def test_job_url_without_logging_in(self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
        _set_conn(monkeypatch, "oe_anon", host=scripted.url)
        assert OpenEOHook("oe_anon").job_url("j-2") == f"{scripted.url}/openeo/1.2/jobs/j-2"
        assert scripted.count("GET", "/openeo/1.2/credentials/basic") == 0

    def test_oidc_client_credentials_renews_ahead_of_expiry(
        self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        issued: list[str] = []

        def token(seen: object) -> Reply:
            issued.append(f"at-{len(issued)}")
            return Reply(body={"access_token": issued[-1], "token_type": "Bearer", "expires_in": 1.0})

        scripted.routes[("POST", "/idp/token")] = token
        _set_conn(
            monkeypatch,
            "oe_cc",
            host=scripted.url,
            extra={"auth_method": "oidc_client_credentials", "client_id": "cid", "client_secret": "csecret"},
        )
        connection = OpenEOHook("oe_cc").get_conn()
        connection.describe_account()
        time.sleep(0.85)  # inside the last 20 % of the 1 s lifetime
        connection.describe_account()
        assert scripted.auth_headers("GET", "/openeo/1.2/me") == ["Bearer oidc/idp/at-0", "Bearer oidc/idp/at-1"]
        form = scripted.seen[[s.path for s in scripted.seen].index("/idp/token")].body.decode()
        assert "grant_type=client_credentials" in form and "scope=openid" in form

    def test_failed_early_renewal_keeps_the_valid_token(
        self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        scripted.routes[("POST", "/idp/token")] = [
            Reply(body={"access_token": "at-0", "token_type": "Bearer", "expires_in": 5.0}),
            Reply(400, {"error": "invalid_client", "error_description": "client disabled"}),
        ]
        extra = {"auth_method": "oidc_client_credentials", "client_id": "cid", "client_secret": "csecret"}
        _set_conn(monkeypatch, "oe_idp_down", host=scripted.url, extra=extra)
        connection = OpenEOHook("oe_idp_down", retry=safe_retry(**FAST_RETRY)).get_conn()
        time.sleep(4.1)  # renewal due (last 20 %), token still valid for 0.9 s: slack for a loaded machine
        with caplog.at_level(logging.WARNING):
            assert connection.describe_account()["user_id"] == "alice"
        assert "early token renewal failed" in caplog.text
        assert scripted.auth_headers("GET", "/openeo/1.2/me") == ["Bearer oidc/idp/at-0"]
        time.sleep(1.0)  # now expired: a failing renewal must surface
        with pytest.raises(OpenEOAuthError, match="HTTP 400 invalid_client client disabled"):
            connection.describe_account()

    def test_token_invalid_triggers_one_renewal(
        self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        tokens = iter(["first", "second"])
        scripted.routes[("POST", "/idp/token")] = lambda seen: Reply(
            body={"access_token": next(tokens), "token_type": "Bearer", "refresh_token": "rotated-rt"}
        )
        scripted.routes[("GET", "/openeo/1.2/me")] = lambda seen: (
            Reply(body={"user_id": "u"})
            if seen.headers.get("Authorization") == "Bearer oidc/idp/second"
            else Reply(403, {"code": "TokenInvalid", "message": "expired"})
        )
        _set_conn(
            monkeypatch,
            "oe_rt",
            host=scripted.url,
            extra={"auth_method": "oidc_refresh_token", "client_id": "cid", "refresh_token": "rt-original"},
        )
        connection = OpenEOHook("oe_rt").get_conn()
        assert connection.describe_account() == {"user_id": "u"}
        bodies = [s.body.decode() for s in scripted.seen if s.path == "/idp/token"]
        assert "refresh_token=rt-original" in bodies[0] and "refresh_token=rotated-rt" in bodies[1]

    def test_basic_token_is_renewed_on_token_invalid(
        self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """openeo itself only renews OIDC tokens; a long batch on basic auth must survive an expired token too."""
        scripted.routes[("GET", "/openeo/1.2/me")] = [
            Reply(401, {"code": "TokenInvalid", "message": "expired"}),
            Reply(body={"user_id": "alice"}),
        ]
        _set_conn(monkeypatch, "oe_b2", host=scripted.url, login="alice", password="alice123")
        assert OpenEOHook("oe_b2").get_conn().describe_account() == {"user_id": "alice"}
        assert scripted.count("GET", "/openeo/1.2/credentials/basic") == 2

    def test_create_job_is_sent_once_when_its_answer_is_lost(
        self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        scripted.routes[("POST", "/openeo/1.2/jobs")] = [Reply(drop=True), Reply(201)]
        _set_conn(monkeypatch, "oe_post", host=scripted.url, login="alice", password="alice123")
        hook = OpenEOHook("oe_post", retry=safe_retry(**FAST_RETRY), auto_validate=False)
        with pytest.raises(OpenEOTransientError, match="create job failed"), hook.translated_errors("create job"):
            hook.get_conn().create_job({"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}})
        assert scripted.count("POST", "/openeo/1.2/jobs") == 1


# -- test_connection --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def plain_http_server() -> Iterator[str]:
    """Python's own http.server: answers HTTP, but is no openEO API."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class TestTestConnection:
    def test_unreachable_port(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _set_conn(monkeypatch, "oe_down", host=f"http://127.0.0.1:{_free_port()}")
        ok, message = OpenEOHook("oe_down").test_connection()
        assert not ok
        assert message.startswith("Cannot reach http://127.0.0.1:") and "refused" in message

    def test_not_an_openeo_api(self, plain_http_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
        _set_conn(monkeypatch, "oe_plain", host=plain_http_server)
        ok, message = OpenEOHook("oe_plain").test_connection()
        assert not ok
        assert "is not an openEO API" in message and "text/html" in message

    def test_bad_password(self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
        _set_conn(monkeypatch, "oe_badpw", host=scripted.url, login="alice", password="wrong-pass")
        ok, message = OpenEOHook("oe_badpw").test_connection()
        assert not ok
        assert "authentication (basic) failed" in message and "CredentialsInvalid" in message
        assert "wrong-pass" not in message

    def test_bad_client_secret(self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
        scripted.routes[("POST", "/idp/token")] = Reply(
            401, {"error": "invalid_client", "error_description": "Bad client secret."}
        )
        extra = {"auth_method": "oidc_client_credentials", "client_id": "cid", "client_secret": "nope-secret"}
        _set_conn(monkeypatch, "oe_badcs", host=scripted.url, extra=extra)
        ok, message = OpenEOHook("oe_badcs").test_connection()
        assert not ok and "invalid_client" in message and "nope-secret" not in message

    def test_success_names_backend_and_version(self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
        _set_conn(monkeypatch, "oe_ok", host=scripted.url, login="alice", password="alice123")
        ok, message = OpenEOHook("oe_ok").test_connection()
        assert ok, message
        assert "Scripted openEO (openEO API 1.2.0, backend 9.9)" in message and "Alice" in message

    def test_bad_connection_definition(self, monkeypatch: pytest.MonkeyPatch) -> None:
        _set_conn(monkeypatch, "oe_bad", host="https://x.org", extra={"auth_method": "browser"})
        ok, message = OpenEOHook("oe_bad").test_connection()
        assert not ok and "unknown auth_method 'browser'" in message


# -- error translation and secrecy ------------------------------------------------------------------------------


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "code", "job_id", "expected"),
        [
            (404, "JobNotFound", "j-1", OpenEOJobNotFoundError),
            (429, "TooManyRequests", None, OpenEOTransientError),
            (503, "ServiceUnavailable", None, OpenEOTransientError),
            (403, "TokenInvalid", None, OpenEOAuthError),
            (400, "ProcessGraphInvalid", None, OpenEOApiRequestError),
        ],
    )
    def test_api_errors_map_to_types_and_keep_openeo_info(
        self, status: int, code: str, job_id: str | None, expected: type
    ) -> None:
        exc = OpenEoApiError(http_status_code=status, code=code, message="told by backend")
        error = translate_openeo_error(exc, action="GET /jobs/j-1", job_id=job_id)
        assert isinstance(error, expected)
        assert (error.http_status, error.code) == (status, code)
        assert f"[{status}] {code}: told by backend" in str(error)

    def test_plain_error_body_is_shortened(self) -> None:
        error = translate_openeo_error(
            OpenEoApiPlainError("<html>" + "x" * 1000, http_status_code=502), action="GET /jobs"
        )
        assert isinstance(error, OpenEOTransientError) and len(str(error)) < 400

    def test_connection_error_is_transient(self) -> None:
        error = translate_openeo_error(requests.ConnectionError("boom"), action="GET /")
        assert isinstance(error, OpenEOTransientError)

    def test_secrets_are_scrubbed(self) -> None:
        exc = OpenEoApiError(http_status_code=400, code="Bad", message="token oidc/x/SECRETTOKEN was odd")
        error = translate_openeo_error(exc, action="x", secrets=["SECRETTOKEN"])
        assert "SECRETTOKEN" not in str(error) and "SECRETTOKEN" not in repr(error)
        assert "SECRETTOKEN" not in (error.api_message or "")
        assert redact("a pw123456 b", ["pw123456"]) == "a *** b"

    def test_no_secret_in_logs_of_a_full_login(
        self, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        scripted.routes[("POST", "/idp/token")] = Reply(
            body={"access_token": "AT-abcdef-123", "token_type": "Bearer", "expires_in": 300}
        )
        extra = {"auth_method": "oidc_client_credentials", "client_id": "cid", "client_secret": "CS-zyx-987"}
        _set_conn(monkeypatch, "oe_log", host=scripted.url, extra=extra)
        with caplog.at_level(logging.DEBUG):
            OpenEOHook("oe_log").get_conn().describe_account()
        assert "oidc_client_credentials token obtained" in caplog.text
        for secret in ("AT-abcdef-123", "CS-zyx-987"):
            assert secret not in caplog.text

    def test_factory_reports_unreachable_backend_as_transient(self) -> None:
        conn = _conn(host=f"http://127.0.0.1:{_free_port()}", login="alice", password="alice123")
        with pytest.raises(OpenEOTransientError, match="Connection refused") as info:
            openeo_connection_from_airflow(conn, retry=safe_retry(**FAST_RETRY), secret_callback=None)
        assert "alice123" not in str(info.value)
