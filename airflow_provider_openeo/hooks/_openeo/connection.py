"""An ``openeo.Connection`` that keeps itself authenticated, and the factory that builds one from Airflow.

A batch runs for hours; access tokens live minutes. openeo's client renews an OIDC token only after the backend
rejected it (and never a basic-auth token). :class:`ManagedConnection` renews before expiry, before the request
that would fail, and still renews on ``401/403 TokenInvalid`` for tokens whose expiry it cannot know. Everything
else (API calls, ``BatchJob``, downloads) is openeo's own code, so user ``start_job`` callables work unchanged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import openeo
import requests
from openeo.rest import OpenEoApiPlainError, OpenEoClientException
from openeo.rest._connection import RestApiConnection
from openeo.rest.auth.auth import BearerAuth
from openeo.utils.version import ComparableVersion
from urllib3.util import Retry

from airflow_provider_openeo.exceptions import OpenEOProviderError
from airflow_provider_openeo.hooks._openeo.auth import BearerToken, TokenSource, token_source_for
from airflow_provider_openeo.hooks._openeo.http import TRANSIENT_STATUSES, safe_retry, translate_openeo_error
from airflow_provider_openeo.hooks._openeo.settings import OpenEOConnectionSettings

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

SecretCallback = Callable[[str], None]


def mask_in_airflow_logs(secret: str) -> None:
    """Register a secret with Airflow's log masker (task process and supervisor)."""
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


class ManagedConnection(openeo.Connection):
    """openeo Connection whose bearer token is renewed ahead of expiry and when the backend calls it invalid.

    Thread-safe: one renewal at a time; other threads wait for it and then use the new token.
    """

    def __init__(
        self,
        url: str,
        *,
        token_source: TokenSource | None,
        auth_timeout: float,
        secret_callback: SecretCallback | None = None,
        label: str = "",
        **kwargs: Any,
    ) -> None:
        # Set before openeo's __init__, which already sends requests (version discovery, capabilities).
        self._token_source = token_source
        self._token: BearerToken | None = None
        self._renew_lock = threading.RLock()
        self._in_renewal = threading.local()
        self._auth_timeout = auth_timeout
        self._secret_callback = secret_callback
        self._label = label or url
        self.renewals = 0
        super().__init__(url, **kwargs)

    @classmethod
    def version_discovery(
        cls,
        url: str,
        session: requests.Session | None = None,
        timeout: int | None = None,
        retry: Retry | dict | bool | None = None,
    ) -> str:
        """The API root named by ``{url}/.well-known/openeo``, or ``url`` itself when it has no such document.

        openeo falls back to ``url`` on any failure of this request. A 5xx, a 429 or a dropped connection there
        then sends every later request of the connection to the wrong root, and the first of them (the
        capabilities, the login) answers 404: a backend's passing hiccup would read as a broken connection and
        fail a task for good. Here only a definite answer falls back (a 4xx: ``url`` is an API root already, or
        a document without a usable version); a failure that may pass raises, and is a transient error.
        """
        try:
            response = RestApiConnection(url, session=session, retry=retry).get("/.well-known/openeo", timeout=timeout)
        except OpenEoApiPlainError as exc:
            if exc.http_status_code in TRANSIENT_STATUSES:
                raise
            return url
        try:
            versions = [v for v in response.json()["versions"] if isinstance(v, dict) and v.get("url")]
            usable = [v for v in versions if ComparableVersion(v["api_version"]) >= cls._MINIMUM_API_VERSION]
        except (ValueError, KeyError, TypeError):
            return url
        if not usable:
            return url
        production = [v for v in usable if v.get("production", True)] or usable
        return str(max(production, key=lambda v: ComparableVersion(v["api_version"]))["url"])

    # -- token life cycle ------------------------------------------------------------------------------------

    @property
    def auth_method(self) -> str:
        return self._token_source.method.value if self._token_source else "none"

    @property
    def token_expires_at(self) -> float | None:
        return self._token.expires_at if self._token else None

    def secrets(self) -> tuple[str, ...]:
        """Every credential this connection holds now (for scrubbing error texts)."""
        if self._token_source is None:
            return ()
        token_parts = (self._token.bearer, *self._token.secret_parts) if self._token else ()
        return (*self._token_source.secrets(), *token_parts)

    def renew_token(self, *, reason: str) -> BearerToken | None:
        """Obtain a new token now (raises OpenEOAuthError / OpenEOTransientError on failure)."""
        if self._token_source is None:
            return None
        with self._renew_lock:
            self._in_renewal.active = True
            try:
                token = self._token_source.fetch(self, timeout=self._auth_timeout)
            finally:
                self._in_renewal.active = False
            self._announce_secrets((*token.secret_parts, *self._token_source.secrets()))
            self._token = token
            self.auth = BearerAuth(bearer=token.bearer)
            self.renewals += 1
            log.info(
                "openEO %s: %s token obtained (%s)%s",
                self._label,
                self.auth_method,
                reason,
                _expiry_text(token.expires_at),
            )
            return token

    def token_due(self) -> bool:
        """Whether :meth:`ensure_token` would fetch a token now (cheap; lets async callers skip a thread hop)."""
        source = self._token_source
        if source is None:
            return False
        token = self._token
        return token is None or (source.renewable and token.renewal_due())

    def ensure_token(self) -> BearerToken | None:
        """The current token, renewed first when it is missing or close to expiry."""
        source = self._token_source
        if source is None:
            return None
        token = self._token
        if token is None or (source.renewable and token.renewal_due()):
            with self._renew_lock:
                token = self._token
                if token is None:
                    token = self.renew_token(reason="login")
                elif source.renewable and token.renewal_due():
                    try:
                        token = self.renew_token(reason="ahead of expiry")
                    except OpenEOProviderError as exc:
                        # Renewing early is a courtesy: while the old token still works, an identity provider
                        # hiccup must not fail the request. The next request tries again.
                        if token.expired():
                            raise
                        log.warning(
                            "openEO %s: early token renewal failed, using the current token until it expires: %s",
                            self._label,
                            exc,
                        )
        return token

    @property
    def bearer(self) -> str | None:
        """``Authorization: Bearer`` value for the async hook (after :meth:`ensure_token`)."""
        return self._token.bearer if self._token else None

    def _announce_secrets(self, values: Iterable[str]) -> None:
        if self._secret_callback is None:
            return
        for value in values:
            if value:
                self._secret_callback(value)

    # -- openeo.Connection overrides -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        headers: dict | None = None,
        auth: Any = None,
        check_error: bool = True,
        expected_status: Any = None,
        **kwargs: Any,
    ) -> requests.Response:
        # An explicit ``auth`` is a credentials exchange (or a deliberately anonymous call): no renewal first.
        if auth is None and not getattr(self._in_renewal, "active", False):
            self.ensure_token()
        return super().request(
            method=method,
            path=path,
            headers=headers,
            auth=auth,
            check_error=check_error,
            expected_status=expected_status,
            **kwargs,
        )

    def try_access_token_refresh(self, *, reason: str | None = None) -> bool:
        """Called by openeo on ``401/403 TokenInvalid``; renews any renewable token (openeo: only OIDC)."""
        source = self._token_source
        if source is None or not source.renewable or getattr(self._in_renewal, "active", False):
            return False
        try:
            self.renew_token(reason=reason or "token refused by the backend")
        except OpenEOProviderError as exc:
            log.warning("openEO %s: renewing the access token failed: %s", self._label, exc)
            return False
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} to {self.root_url!r} auth={self.auth_method}>"


def _expiry_text(expires_at: float | None) -> str:
    if expires_at is None:
        return ", expiry unknown: renewed when the backend refuses it"
    return f", valid for {max(0.0, expires_at - time.time()):.0f} s"


def openeo_connection_from_airflow(
    conn: Connection,
    *,
    extra: Mapping[str, Any] | None = None,
    retry: Retry | None = None,
    timeout: float | None = None,
    secret_callback: SecretCallback | None = mask_in_airflow_logs,
    authenticate: bool = True,
    auto_validate: bool = True,
) -> ManagedConnection:
    """Open an authenticated openEO connection for an Airflow ``openeo`` connection.

    Shared by the sync hook and (through ``asyncio.to_thread``) the async hook, so both authenticate alike.

    :param extra: decoded extra, when the caller already has it (the async hook decodes it without blocking).
    :param retry: urllib3 retry policy; default :func:`safe_retry` (never re-sends a POST the server may have seen).
    :param timeout: per-request timeout in seconds; default the connection's ``timeout`` field (60 s).
    :param secret_callback: told every credential and every new access token, to mask them in logs.
    :param authenticate: False skips the login (``test_connection`` probes the API first).
    :param auto_validate: openeo's process-graph validation before each job (one extra request per job).
    :raises OpenEOConfigurationError: the connection is incomplete.
    :raises OpenEOTransientError: the backend cannot be reached.
    :raises OpenEOAuthError: the credentials were refused.
    """
    settings = OpenEOConnectionSettings.from_airflow(conn, extra=extra)
    return connect_with_settings(
        settings,
        retry=retry,
        timeout=timeout,
        secret_callback=secret_callback,
        authenticate=authenticate,
        auto_validate=auto_validate,
    )


def connect_with_settings(
    settings: OpenEOConnectionSettings,
    *,
    retry: Retry | None = None,
    timeout: float | None = None,
    secret_callback: SecretCallback | None = mask_in_airflow_logs,
    authenticate: bool = True,
    auto_validate: bool = True,
) -> ManagedConnection:
    """:func:`openeo_connection_from_airflow` for already validated settings."""
    if secret_callback is not None:
        for secret in settings.secrets:
            secret_callback(secret)
    request_timeout = timeout if timeout is not None else settings.timeout
    try:
        connection = ManagedConnection(
            settings.url,
            token_source=token_source_for(settings),
            auth_timeout=request_timeout,
            secret_callback=secret_callback,
            label=settings.label,
            retry=retry if retry is not None else safe_retry(),
            default_timeout=request_timeout,  # type: ignore[arg-type]  # openeo annotates int; requests takes float
            auto_validate=auto_validate,
        )
        if authenticate:
            connection.ensure_token()
    except OpenEOProviderError:
        raise
    except (OpenEoApiPlainError, OpenEoClientException, requests.RequestException) as exc:
        raise translate_openeo_error(
            exc, action=f"connecting to {settings.url} ({settings.label})", secrets=settings.secrets
        ) from None
    return connection
