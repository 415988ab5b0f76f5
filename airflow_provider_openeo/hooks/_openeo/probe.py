"""The UI's "Test" button: tell a user which of the three usual mistakes they made, in one sentence.

The checks run in order, each answering one question: can the host be reached at all; is it an openEO API
(``/.well-known/openeo`` and a capabilities document); are the credentials accepted (a login plus ``GET /me``).
No retries and short timeouts: a person is waiting for the answer.
"""

from __future__ import annotations

from typing import Any

import requests
import requests.adapters

from airflow_provider_openeo.exceptions import (
    OpenEOAuthError,
    OpenEOConfigurationError,
    OpenEOProviderError,
    OpenEOTransientError,
)
from airflow_provider_openeo.hooks._openeo.auth import AuthMethod
from airflow_provider_openeo.hooks._openeo.connection import connect_with_settings
from airflow_provider_openeo.hooks._openeo.http import network_reason, no_retry, redact
from airflow_provider_openeo.hooks._openeo.settings import OpenEOConnectionSettings

PROBE_TIMEOUT = 15.0


def probe_backend(settings: OpenEOConnectionSettings, *, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """``(ok, message)`` for ``test_connection``; the message never holds a secret."""
    timeout = min(timeout, settings.timeout)
    try:
        ok, message = _probe(settings, timeout)
    except OpenEOProviderError as exc:
        ok, message = False, str(exc)
    return ok, redact(message, settings.secrets)


def _probe(settings: OpenEOConnectionSettings, timeout: float) -> tuple[bool, str]:
    url = settings.url
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=no_retry())
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    with session:
        try:
            well_known = session.get(f"{url}/.well-known/openeo", timeout=timeout)
        except requests.RequestException as exc:
            return False, (f"Cannot reach {url}: {network_reason(exc)}. Check the URL and that the backend is running.")
        api_root = _api_root_from_well_known(well_known) or url
        try:
            capabilities_response = session.get(f"{api_root}/", timeout=timeout)
        except requests.RequestException as exc:
            return False, f"Cannot reach the openEO API at {api_root}: {network_reason(exc)}."
    capabilities = _json_object(capabilities_response)
    if capabilities is None or "api_version" not in capabilities or "endpoints" not in capabilities:
        content_type = capabilities_response.headers.get("Content-Type", "no content type")
        return False, (
            f"{url} answers HTTP, but is not an openEO API: GET {api_root}/ gave HTTP "
            f"{capabilities_response.status_code} ({content_type.split(';')[0]}) without an openEO capabilities "
            "document. Check the URL (it often needs a path such as /openeo or /openeo/1.2)."
        )
    title = capabilities.get("title") or capabilities.get("id") or "openEO backend"
    described = (
        f"{title} (openEO API {capabilities.get('api_version')}"
        + (f", backend {capabilities['backend_version']}" if capabilities.get("backend_version") else "")
        + f") at {api_root}"
    )
    if settings.auth_method is AuthMethod.NONE:
        return True, f"Connected to {described}; no authentication configured (anonymous access)."
    return _probe_auth(settings, timeout, described)


def _probe_auth(settings: OpenEOConnectionSettings, timeout: float, described: str) -> tuple[bool, str]:
    method = settings.auth_method.value
    try:
        connection = connect_with_settings(settings, retry=no_retry(), timeout=timeout, auto_validate=False)
    except OpenEOAuthError as exc:
        return False, f"Reached {described}, but authentication ({method}) failed: {exc}"
    except OpenEOConfigurationError as exc:
        return False, str(exc)
    except OpenEOTransientError as exc:
        return False, f"Reached {described}, but logging in ({method}) failed for now: {exc}"
    try:
        account = connection.describe_account()
    except Exception as exc:
        status = getattr(exc, "http_status_code", None)
        if status in (401, 403):
            code = getattr(exc, "code", None) or "refused"
            return False, f"Reached {described}, but the backend refused the {method} token ({status} {code})."
        return True, f"Connected to {described}; authenticated ({method}); account details unavailable."
    user = account.get("name") or account.get("user_id") or "unknown user"
    return True, f"Connected to {described}; authenticated as {user} ({method})."


def _api_root_from_well_known(response: requests.Response) -> str | None:
    """The URL of the newest production API version a ``/.well-known/openeo`` lists (as openeo's client picks)."""
    document = _json_object(response) if response.status_code == 200 else None
    versions = document.get("versions") if document else None
    if not isinstance(versions, list):
        return None
    usable = [v for v in versions if isinstance(v, dict) and isinstance(v.get("url"), str) and v.get("api_version")]
    usable = [v for v in usable if _version_tuple(str(v["api_version"])) >= (1, 0, 0)]
    if not usable:
        return None
    production = [v for v in usable if v.get("production", True)] or usable
    best = max(production, key=lambda v: _version_tuple(str(v["api_version"])))
    return str(best["url"]).rstrip("/")


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
