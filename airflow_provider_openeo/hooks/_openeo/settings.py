"""Read an Airflow ``openeo`` connection into validated settings, once, in one place.

The sync hook, the async hook (inside a trigger) and ``test_connection`` must interpret a connection identically,
so the parsing lives here and nowhere else. Secrets are kept out of ``repr`` so a logged settings object is safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_openeo.exceptions import OpenEOConfigurationError
from airflow_provider_openeo.hooks._openeo.auth import REQUIRED_FIELDS, AuthMethod
from airflow_provider_openeo.wait._job_gone import GonePolicy

if TYPE_CHECKING:
    from airflow.sdk import Connection

# The React UI stores declarative ``conn-fields`` under their bare names; older tooling used this prefix.
_LEGACY_PREFIX = "extra__openeo__"
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class OpenEOConnectionSettings:
    """Everything needed to open an authenticated openEO connection."""

    url: str
    auth_method: AuthMethod
    conn_id: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    provider_id: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    gone_policy: GonePolicy = field(default_factory=GonePolicy)
    """When a job that answers 404 counts as gone (extras ``job_gone_polls``, ``job_gone_seconds``)."""

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line, an exception text or a repr."""
        values = (self.password, self.client_secret, self.refresh_token, self.access_token)
        return tuple(v for v in values if v)

    @property
    def label(self) -> str:
        """How messages name this connection: its id when known, else its URL."""
        return f"connection {self.conn_id!r}" if self.conn_id else f"openEO backend {self.url}"

    @classmethod
    def from_airflow(cls, conn: Connection, *, extra: Mapping[str, Any] | None = None) -> OpenEOConnectionSettings:
        """Validate ``conn``.

        :param extra: the already decoded extra; the async hook passes ``await conn.aextra_dejson()`` so the
            synchronous ``extra_dejson`` (which talks to the supervisor to mask secrets) is never called from
            the triggerer's event loop.
        """
        conn_id = getattr(conn, "conn_id", None)
        extras = dict(conn.extra_dejson if extra is None else extra)
        label = f"connection {conn_id!r}" if conn_id else "openEO connection"

        def opt(name: str) -> str | None:
            value = extras.get(name)
            if value in (None, ""):
                value = extras.get(_LEGACY_PREFIX + name)
            if value in (None, ""):
                return None
            return str(value).strip() or None

        url = backend_url_from_connection(conn)
        method = _auth_method(opt("auth_method"), login=conn.login, label=label)
        settings = cls(
            url=url,
            auth_method=method,
            conn_id=conn_id,
            username=conn.login or None,
            password=conn.password or None,
            client_id=opt("client_id"),
            client_secret=opt("client_secret"),
            refresh_token=opt("refresh_token"),
            # A token pasted into the password field is accepted too: the form's password box is the obvious place.
            access_token=opt("access_token")
            or (conn.password if method is AuthMethod.ACCESS_TOKEN and conn.password else None),
            provider_id=opt("oidc_provider_id"),
            timeout=_timeout(extras.get("timeout", extras.get(_LEGACY_PREFIX + "timeout")), label=label),
            gone_policy=GonePolicy.from_extra(extras, label=label),
        )
        settings._require_fields(label)
        return settings

    def _require_fields(self, label: str) -> None:
        missing = [name for attr, name in REQUIRED_FIELDS.get(self.auth_method, ()) if not getattr(self, attr)]
        if missing:
            raise OpenEOConfigurationError(
                f"{label}: auth_method {self.auth_method.value!r} needs {', '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} empty."
            )


def _auth_method(raw: str | None, *, login: str | None, label: str) -> AuthMethod:
    if raw is None:
        return AuthMethod.BASIC if login else AuthMethod.NONE
    try:
        return AuthMethod(raw.lower())
    except ValueError:
        choices = ", ".join(m.value for m in AuthMethod)
        raise OpenEOConfigurationError(f"{label}: unknown auth_method {raw!r}; choose one of: {choices}.") from None


def _timeout(raw: object, *, label: str) -> float:
    if raw in (None, ""):
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OpenEOConfigurationError(f"{label}: timeout {raw!r} is not a number of seconds.") from None
    if not math.isfinite(value) or value <= 0:
        raise OpenEOConfigurationError(f"{label}: timeout must be a positive number of seconds, got {raw!r}.")
    return value


def backend_url_from_connection(conn: Connection) -> str:
    """The backend root URL the user gave.

    ``host`` normally holds the full URL (``https://openeo.example.org/openeo``). A connection written as a URI
    (``openeo://host:8080/openeo``) arrives split into host, port and schema (the path): they are reassembled,
    with ``https`` as openeo's own client assumes when no scheme is given.
    """
    conn_id = getattr(conn, "conn_id", None)
    host = (conn.host or "").strip()
    if not host:
        raise OpenEOConfigurationError(
            f"connection {conn_id!r}: host is empty; set it to the openEO backend URL "
            "(for example https://openeo.dataspace.copernicus.eu)."
        )
    if "://" not in host:
        path = (conn.schema or "").strip().strip("/")
        host = "https://" + host.rstrip("/") + (f"/{path}" if path else "")
    parts = urlsplit(host)
    if "@" in parts.netloc:
        # Checked first, and the URL is not echoed: it holds a credential.
        raise OpenEOConfigurationError(
            f"connection {conn_id!r}: put the user name and password in the login/password fields, not in the host URL."
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OpenEOConfigurationError(
            f"connection {conn_id!r}: host {host!r} is not an http(s) URL of an openEO backend."
        )
    netloc = parts.netloc
    if conn.port and parts.port is None:
        netloc = f"{netloc}:{conn.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, "")) or host
