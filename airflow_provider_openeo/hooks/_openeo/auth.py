"""Non-interactive token sources: how a worker or the triggerer gets (and gets again) an openEO bearer token.

openeo's own ``authenticate_oidc_*`` methods drop the token response's ``expires_in`` and post to the token
endpoint without a timeout, so a long batch can only notice an expired token by a failed request, and a hung
identity provider hangs the task. These sources keep the expiry, use timeouts, and are renewed ahead of expiry by
:class:`~airflow_provider_openeo.hooks._openeo.connection.ManagedConnection`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import requests
import requests.adapters
from openeo.rest import OpenEoApiPlainError
from openeo.rest.auth.auth import NullAuth
from requests.auth import HTTPBasicAuth
from urllib3.util import Retry

from airflow_provider_openeo.exceptions import OpenEOAuthError, OpenEOProviderError, OpenEOTransientError
from airflow_provider_openeo.hooks._openeo.http import (
    TRANSIENT_STATUSES,
    describe_api_error,
    redact,
    translate_openeo_error,
)

if TYPE_CHECKING:
    import openeo

    from airflow_provider_openeo.hooks._openeo.settings import OpenEOConnectionSettings

log = logging.getLogger(__name__)

# Renew when less than this share of the token's lifetime is left, but never earlier than MAX_MARGIN before expiry.
# A one-hour token is renewed a minute early; a 10 s test token 2 s early.
MARGIN_FRACTION = 0.2
MAX_MARGIN = 60.0


class AuthMethod(str, Enum):
    """How workers authenticate (the connection's ``auth_method``). None of them needs a browser or a person.

    A new method is added here: its value, the connection fields it needs (:data:`REQUIRED_FIELDS`), its
    :class:`TokenSource` and its case in :func:`token_source_for`.
    """

    NONE = "none"
    BASIC = "basic"
    OIDC_CLIENT_CREDENTIALS = "oidc_client_credentials"
    OIDC_REFRESH_TOKEN = "oidc_refresh_token"
    ACCESS_TOKEN = "access_token"


#: The settings each method cannot do without (attribute of the settings, and the field's name in the form).
REQUIRED_FIELDS: dict[AuthMethod, tuple[tuple[str, str], ...]] = {
    AuthMethod.BASIC: (("username", "login (user name)"), ("password", "password")),
    AuthMethod.OIDC_CLIENT_CREDENTIALS: (("client_id", "client_id"), ("client_secret", "client_secret")),
    AuthMethod.OIDC_REFRESH_TOKEN: (("client_id", "client_id"), ("refresh_token", "refresh_token")),
    AuthMethod.ACCESS_TOKEN: (("access_token", "access_token"),),
}


@dataclass(frozen=True)
class BearerToken:
    """A bearer value for ``Authorization: Bearer ...`` and when it stops working (epoch seconds, if known)."""

    bearer: str = field(repr=False)
    expires_at: float | None = None
    obtained_at: float = field(default_factory=time.time)
    secret_parts: tuple[str, ...] = field(default=(), repr=False)

    def renewal_due(self, now: float | None = None) -> bool:
        if self.expires_at is None:
            return False
        now = time.time() if now is None else now
        lifetime = max(0.0, self.expires_at - self.obtained_at)
        margin = min(MAX_MARGIN, MARGIN_FRACTION * lifetime)
        return now >= self.expires_at - margin

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at


class TokenSource(ABC):
    """Obtains a bearer token for one auth method."""

    method: AuthMethod
    #: False when a new token cannot be obtained without a person (a pasted access token).
    renewable: bool = True

    @abstractmethod
    def fetch(self, connection: openeo.Connection, *, timeout: float) -> BearerToken:
        """Get a fresh token. Raises OpenEOAuthError (credentials refused) or OpenEOTransientError."""

    def secrets(self) -> tuple[str, ...]:
        """Credentials this source currently holds (they may change, e.g. a rotated refresh token)."""
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method.value!r})"


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, without verifying it (the backend verifies; we only plan renewal)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


class BasicTokenSource(TokenSource):
    """openEO ``GET /credentials/basic``: trade user name and password for a bearer token."""

    method = AuthMethod.BASIC

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password

    def secrets(self) -> tuple[str, ...]:
        return (self._password,)

    def fetch(self, connection: openeo.Connection, *, timeout: float) -> BearerToken:
        action = f"basic authentication as {self._username!r} at {connection.root_url}"
        try:
            resp = connection.get(
                "/credentials/basic",
                auth=HTTPBasicAuth(self._username, self._password),
                expected_status=200,
                timeout=timeout,
            )
            token = resp.json()["access_token"]
        except OpenEoApiPlainError as exc:
            if exc.http_status_code in TRANSIENT_STATUSES:
                raise translate_openeo_error(exc, action=action, secrets=self.secrets()) from None
            raise OpenEOAuthError(
                redact(f"{action} failed: {describe_api_error(exc)}", self.secrets()),
                http_status=exc.http_status_code,
                code=getattr(exc, "code", None),
            ) from None
        except (KeyError, TypeError, ValueError):
            raise OpenEOAuthError(f"{action}: the answer holds no access_token.") from None
        except requests.RequestException as exc:
            raise translate_openeo_error(exc, action=action, secrets=self.secrets()) from None
        return BearerToken(bearer=f"basic//{token}", expires_at=jwt_expiry(token), secret_parts=(token,))


class StaticTokenSource(TokenSource):
    """A bearer token given as is. It cannot be renewed, so its expiry (if it is a JWT) is reported clearly."""

    method = AuthMethod.ACCESS_TOKEN
    renewable = False

    def __init__(self, bearer: str) -> None:
        self._bearer = bearer

    def secrets(self) -> tuple[str, ...]:
        return (self._bearer, self._bearer.rsplit("/", 1)[-1])

    def fetch(self, connection: openeo.Connection, *, timeout: float) -> BearerToken:
        token = BearerToken(
            bearer=self._bearer,
            expires_at=jwt_expiry(self._bearer.rsplit("/", 1)[-1]),
            secret_parts=self.secrets(),
        )
        if token.expired():
            raise OpenEOAuthError(
                f"The access token of this connection expired at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(token.expires_at))} and cannot be renewed "
                "without a person; use auth_method oidc_client_credentials or oidc_refresh_token for long runs."
            )
        return token


def _token_session() -> requests.Session:
    """A session for the identity provider: POST retried only when the server refused it outright."""
    retry = Retry(
        total=3,
        connect=3,
        read=0,
        status=3,
        other=0,
        allowed_methods=frozenset({"GET", "POST"}),
        status_forcelist=frozenset({429, 502, 503, 504}),
        backoff_factor=0.5,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _OidcTokenSource(TokenSource):
    """Shared part of the OIDC grants: find the provider through the backend, then the token endpoint."""

    def __init__(self, *, client_id: str, client_secret: str | None, provider_id: str | None) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._requested_provider = provider_id
        self._provider: dict[str, Any] | None = None
        self._token_endpoint: str | None = None
        self._session = _token_session()

    def secrets(self) -> tuple[str, ...]:
        return (self._client_secret,) if self._client_secret else ()

    @abstractmethod
    def _grant_data(self) -> dict[str, str]: ...

    def _on_token_response(self, data: dict[str, Any]) -> None:
        """Hook for grants that get something besides the access token back (a rotated refresh token)."""

    def _resolve_provider(self, connection: openeo.Connection, timeout: float) -> dict[str, Any]:
        if self._provider is not None:
            return self._provider
        action = f"listing OIDC providers at {connection.root_url}/credentials/oidc"
        try:
            # NullAuth: a stale bearer must not make this public listing fail (and recurse into renewal).
            listing = connection.get("/credentials/oidc", auth=NullAuth(), expected_status=200, timeout=timeout)
            providers = listing.json().get("providers", [])
        except (OpenEoApiPlainError, requests.RequestException) as exc:
            raise translate_openeo_error(exc, action=action, secrets=self.secrets()) from None
        except (AttributeError, ValueError):
            raise OpenEOAuthError(f"{action}: the answer is not an openEO provider list.") from None
        by_id = {p.get("id"): p for p in providers if isinstance(p, dict) and p.get("id")}
        if not by_id:
            raise OpenEOAuthError(f"{action}: the backend lists no OIDC providers.")
        if self._requested_provider:
            if self._requested_provider not in by_id:
                raise OpenEOAuthError(
                    f"OIDC provider {self._requested_provider!r} is not offered by {connection.root_url}; "
                    f"it offers: {', '.join(sorted(by_id))}."
                )
            self._provider = by_id[self._requested_provider]
        else:
            # Same choice as openeo's client: the backend's first (default) provider.
            self._provider = next(iter(by_id.values()))
        return self._provider

    def _resolve_token_endpoint(self, provider: dict[str, Any], timeout: float) -> str:
        if self._token_endpoint:
            return self._token_endpoint
        issuer = str(provider.get("issuer", "")).rstrip("/")
        discovery = f"{issuer}/.well-known/openid-configuration"
        try:
            resp = self._session.get(discovery, timeout=timeout)
        except requests.RequestException as exc:
            raise OpenEOTransientError(f"OIDC discovery at {discovery} failed: {type(exc).__name__}") from None
        if resp.status_code != 200:
            cls: type[OpenEOProviderError] = (
                OpenEOTransientError if resp.status_code in TRANSIENT_STATUSES else OpenEOAuthError
            )
            raise cls(f"OIDC discovery at {discovery} failed: HTTP {resp.status_code}", http_status=resp.status_code)
        try:
            endpoint = resp.json()["token_endpoint"]
        except (KeyError, TypeError, ValueError):
            raise OpenEOAuthError(f"OIDC discovery at {discovery} gave no token_endpoint.") from None
        self._token_endpoint = str(endpoint)
        return self._token_endpoint

    def fetch(self, connection: openeo.Connection, *, timeout: float) -> BearerToken:
        provider = self._resolve_provider(connection, timeout)
        endpoint = self._resolve_token_endpoint(provider, timeout)
        data = self._grant_data()
        grant = data["grant_type"]
        try:
            resp = self._session.post(endpoint, data=data, timeout=timeout)
        except requests.RequestException as exc:
            raise OpenEOTransientError(
                f"OIDC {grant} token request to {endpoint} failed: {type(exc).__name__}"
            ) from None
        body = _json_or_empty(resp)
        if resp.status_code != 200 or not body.get("access_token"):
            error = redact(
                f"{body.get('error', '')} {body.get('error_description', '')}".strip() or resp.reason or "",
                self.secrets(),
            )
            message = f"OIDC {grant} token request to {endpoint} failed: HTTP {resp.status_code} {error}"
            cls: type[OpenEOProviderError] = (
                OpenEOTransientError if resp.status_code in TRANSIENT_STATUSES else OpenEOAuthError
            )
            raise cls(message, http_status=resp.status_code, code=body.get("error") or None)
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise OpenEOAuthError(f"OIDC {grant} token request to {endpoint}: token type is not bearer.")
        self._on_token_response(body)
        access = str(body["access_token"])
        now = time.time()
        expires_at = _expires_at(body.get("expires_in"), now) or jwt_expiry(access)
        return BearerToken(
            bearer=f"oidc/{provider['id']}/{access}",
            expires_at=expires_at,
            obtained_at=now,
            secret_parts=(access,),
        )

    def _scope(self) -> str:
        scopes = {"openid"}
        if self._provider and isinstance(self._provider.get("scopes"), list):
            scopes.update(str(s) for s in self._provider["scopes"])
        return " ".join(sorted(scopes))


class OidcClientCredentialsTokenSource(_OidcTokenSource):
    """OIDC client credentials grant: a service account; renewal repeats the grant."""

    method = AuthMethod.OIDC_CLIENT_CREDENTIALS

    def _grant_data(self) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret or "",
            "scope": self._scope(),
        }


class OidcRefreshTokenSource(_OidcTokenSource):
    """OIDC refresh token grant. A rotated refresh token is kept in memory (never written anywhere)."""

    method = AuthMethod.OIDC_REFRESH_TOKEN

    def __init__(
        self, *, client_id: str, client_secret: str | None, provider_id: str | None, refresh_token: str
    ) -> None:
        super().__init__(client_id=client_id, client_secret=client_secret, provider_id=provider_id)
        self._refresh_token = refresh_token
        self._retired_tokens: list[str] = []

    def secrets(self) -> tuple[str, ...]:
        return (*super().secrets(), self._refresh_token, *self._retired_tokens)

    def _grant_data(self) -> dict[str, str]:
        data = {"grant_type": "refresh_token", "client_id": self._client_id, "refresh_token": self._refresh_token}
        if self._client_secret:
            data["client_secret"] = self._client_secret
        return data

    def _on_token_response(self, data: dict[str, Any]) -> None:
        rotated = data.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            self._retired_tokens.append(self._refresh_token)
            self._refresh_token = rotated


def _json_or_empty(resp: requests.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _expires_at(expires_in: object, now: float) -> float | None:
    if isinstance(expires_in, bool):
        return None
    try:
        seconds = float(expires_in)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return now + seconds if seconds > 0 else None


def token_source_for(settings: OpenEOConnectionSettings) -> TokenSource | None:
    """The token source a connection's settings ask for (None: anonymous access)."""
    method = settings.auth_method
    if method is AuthMethod.NONE:
        return None
    if method is AuthMethod.BASIC:
        return BasicTokenSource(settings.username or "", settings.password or "")
    if method is AuthMethod.ACCESS_TOKEN:
        return StaticTokenSource(settings.access_token or "")
    if method is AuthMethod.OIDC_CLIENT_CREDENTIALS:
        return OidcClientCredentialsTokenSource(
            client_id=settings.client_id or "",
            client_secret=settings.client_secret,
            provider_id=settings.provider_id,
        )
    return OidcRefreshTokenSource(
        client_id=settings.client_id or "",
        client_secret=settings.client_secret,
        provider_id=settings.provider_id,
        refresh_token=settings.refresh_token or "",
    )
