"""HTTP policy shared by the hooks: which requests may be retried, and how failures become typed errors.

Why a policy of our own instead of openeo's default: openeo's default ``Retry`` leaves out 500, raises
``requests.RetryError`` (losing the backend's openEO error code) when retries run out, and MBJM widens it to retry
``POST``, which can create a job twice when the answer to a create is lost. Here:

* ``GET``/``HEAD``/``OPTIONS``/``PUT``/``DELETE`` are retried on connection errors, read errors/timeouts, 429 and
  5xx, with exponential backoff and the server's ``Retry-After`` honoured (capped).
* ``POST``/``PATCH`` are retried only when the connection could not be established at all (urllib3 counts that as
  a *connect* error: the server never saw the request). A read error, a timeout or any status after a POST is
  returned to the caller, because the server may have acted on it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable
from typing import Any

import requests
from openeo.rest import OpenEoApiError, OpenEoApiPlainError, OpenEoClientException, OpenEoRestError
from urllib3.util import Retry

from airflow_provider_openeo.exceptions import (
    OpenEOApiRequestError,
    OpenEOAuthError,
    OpenEOJobNotFoundError,
    OpenEOProviderError,
    OpenEOTransientError,
)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
#: A signed result link past its expiry: openeo-driver and geopyspark's S3 proxy answer 410 ResultLinkExpired;
#: the cure is a fresh ``GET /jobs/{id}/results``, not a retry of the same URL.
LINK_EXPIRED_STATUS = 410
LINK_EXPIRED_CODE = "ResultLinkExpired"
#: An asset ``Range`` the server cannot serve (the partial file already holds every byte, or more).
RANGE_NOT_SATISFIABLE_STATUS = 416
DEFAULT_RETRY_TOTAL = 5
DEFAULT_BACKOFF_FACTOR = 1.0
DEFAULT_BACKOFF_MAX = 30.0
DEFAULT_RETRY_AFTER_MAX = 120
REDACTED = "***"


def safe_retry(
    *,
    total: int = DEFAULT_RETRY_TOTAL,
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
    backoff_max: float = DEFAULT_BACKOFF_MAX,
    retry_after_max: int = DEFAULT_RETRY_AFTER_MAX,
) -> Retry:
    """The urllib3 retry policy for an openEO API session (see the module docstring for the rules).

    ``raise_on_status=False`` hands the last 429/5xx response back to openeo, so the caller sees openeo's
    ``OpenEoApiError`` with the backend's error code instead of a bare ``RetryError``. ``other=0`` refuses
    retries for errors urllib3 cannot classify as "never sent" or "sent", which would otherwise apply to POST.
    """
    return Retry(
        total=total,
        connect=total,
        read=total,
        status=total,
        other=0,
        redirect=5,
        allowed_methods=IDEMPOTENT_METHODS,
        status_forcelist=TRANSIENT_STATUSES,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        backoff_jitter=min(backoff_factor, 1.0) / 2,
        respect_retry_after_header=True,
        retry_after_max=retry_after_max,
        raise_on_status=False,
    )


def no_retry() -> Retry:
    """For probes (``test_connection``) that must answer quickly instead of backing off for a minute."""
    return Retry(total=0, connect=0, read=0, status=0, other=0, redirect=5, raise_on_status=False)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every known secret (longest first, so a token inside a bearer string goes too) by ``***``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def connection_secrets(connection: Any) -> tuple[str, ...]:
    """Every credential an openEO connection holds now, for :func:`redact`: our hook's connections list them
    (``secrets()``); any other connection (a user's own, a test double) has none we know of."""
    secrets = getattr(connection, "secrets", None)
    try:
        return tuple(secrets()) if callable(secrets) else ()
    except Exception:
        return ()


def scrub(text: str, connection: Any) -> str:
    """``text`` without any credential of ``connection`` (error texts go to rows, logs and XCom)."""
    return redact(text, connection_secrets(connection))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - (time.time() if now is None else now))


def is_link_expired(exc: BaseException) -> bool:
    """True for the answer to an expired signed result link (410, or the openEO code on another status)."""
    if not isinstance(exc, OpenEoApiPlainError):
        return False
    return exc.http_status_code == LINK_EXPIRED_STATUS or getattr(exc, "code", None) == LINK_EXPIRED_CODE


def is_range_not_satisfiable(exc: BaseException) -> bool:
    return isinstance(exc, OpenEoApiPlainError) and exc.http_status_code == RANGE_NOT_SATISFIABLE_STATUS


def describe_api_error(exc: OpenEoApiPlainError) -> str:
    """``[status] code: message`` as openeo reports it; the pieces a user needs to act on.

    A non-openEO error body (an HTML error page of a proxy) has no code and is cut short.
    """
    code = getattr(exc, "code", None) or "no openEO error code"
    message = _shorten(str(getattr(exc, "message", None) or exc))
    return f"[{exc.http_status_code}] {code}: {message}"


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_for_status(
    status: int | None, text: str, *, job_id: str | None = None, retry_after: float | None = None, **common: Any
) -> OpenEOProviderError:
    """The one mapping of an openEO API answer's HTTP status to our error class (sync and async clients alike):
    404 for a job -> not found (the caller confirms it is gone), 429/5xx -> transient, 401/403 -> auth, else a
    request the backend refused."""
    if status == 404 and job_id is not None:
        return OpenEOJobNotFoundError(text, job_id=job_id, **common)
    if status in TRANSIENT_STATUSES:
        return OpenEOTransientError(text, retry_after=retry_after, **common)
    if status in AUTH_STATUSES:
        return OpenEOAuthError(text, **common)
    return OpenEOApiRequestError(text, **common)


def translate_openeo_error(
    exc: BaseException,
    *,
    action: str,
    job_id: str | None = None,
    secrets: Iterable[str] = (),
    retry_after: float | None = None,
) -> OpenEOProviderError:
    """Map an exception of openeo/requests to our hierarchy, keeping openeo's code/message/status in the text.

    :param action: what was being done, for the message (for example ``"GET /jobs/j-1"``).
    """
    secrets = tuple(secrets)
    if isinstance(exc, OpenEOProviderError):
        return exc
    if isinstance(exc, OpenEoApiPlainError):
        status = exc.http_status_code
        code = exc.code if isinstance(exc, OpenEoApiError) else None
        api_message = redact(_shorten(str(getattr(exc, "message", "") or "")), secrets)
        text = redact(f"{action} failed: {describe_api_error(exc)}", secrets)
        return error_for_status(
            status, text, job_id=job_id, retry_after=retry_after, http_status=status, code=code, api_message=api_message
        )
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return OpenEOTransientError(redact(f"{action} failed: {network_reason(exc)}", secrets))
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        # The answer broke off mid-way: the network again.
        return OpenEOTransientError(redact(f"{action} failed: {type(exc).__name__}: {exc}", secrets))
    if isinstance(exc, requests.RequestException):
        # A request that could not even be built or addressed (a NaN in a JSON body, a bad URL): no retry helps.
        return OpenEOProviderError(redact(f"{action} failed: {type(exc).__name__}: {exc}", secrets))
    if isinstance(exc, (OpenEoRestError, OpenEoClientException)):
        return OpenEOProviderError(redact(f"{action} failed: {exc}", secrets))
    return OpenEOProviderError(redact(f"{action} failed: {type(exc).__name__}: {exc}", secrets))


def network_reason(exc: BaseException) -> str:
    """A short reason for a network failure: the innermost cause is what users recognise (refused, timed out)."""
    inner: BaseException = exc
    seen: set[int] = set()
    while True:
        nxt = getattr(inner, "reason", None) or inner.__cause__ or inner.__context__
        if not isinstance(nxt, BaseException) or id(nxt) in seen:
            break
        seen.add(id(nxt))
        inner = nxt
    detail = str(inner)
    if "Errno" in detail and ":" in detail:
        detail = detail[detail.index("[Errno") :] if "[Errno" in detail else detail
    return f"{type(exc).__name__} ({detail})"
