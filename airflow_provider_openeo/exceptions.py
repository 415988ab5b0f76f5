"""Typed errors of the provider, so callers decide by kind (retry later, give up on the row, fix the connection).

Every error keeps what the openEO backend said (HTTP status, openEO error ``code``, its message) because that is
what a user needs to act on, and never carries a credential: texts are built by the hooks from known fields and
scrubbed of the connection's secrets before an exception is raised.
"""

from __future__ import annotations


class OpenEOProviderError(Exception):
    """Base of every error this provider raises on purpose.

    :param message: human-readable text (already free of secrets).
    :param http_status: HTTP status of the backend's answer, if there was one.
    :param code: openEO error code (for example ``JobNotFound``, ``TokenInvalid``), if the backend sent one.
    :param api_message: the backend's own error message, if any.
    :param url: the request URL (without credentials), if known.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        api_message: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.api_message = api_message
        self.url = url

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, http_status={self.http_status!r}, code={self.code!r})"


class OpenEOConfigurationError(OpenEOProviderError, ValueError):
    """The Airflow connection is incomplete or contradictory (no host, unknown auth method, missing field).

    Retrying cannot help; the message names the connection and the field to fix.
    """


class OpenEOTransientError(OpenEOProviderError):
    """The backend could not answer now (connection error, timeout, 429, 5xx) after bounded retries.

    ``retry_after`` holds the server's ``Retry-After`` in seconds when it sent one, so a poller can wait that long.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, http_status={self.http_status!r}, code={self.code!r}, "
            f"retry_after={self.retry_after!r})"
        )


class OpenEOAuthError(OpenEOProviderError):
    """Authentication failed, or a 401/403 persisted after the access token was renewed."""


class OpenEOJobNotFoundError(OpenEOProviderError):
    """The backend does not know the job (HTTP 404, typically openEO code ``JobNotFound``): it was deleted."""

    def __init__(self, message: str, *, job_id: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.job_id = job_id


class OpenEOApiRequestError(OpenEOProviderError):
    """The backend refused a request for a reason retrying will not fix (a 4xx other than 401/403/404/429)."""


class OpenEONotAnOpenEOApiError(OpenEOProviderError):
    """The host answered HTTP, but not as an openEO API (no capabilities document)."""


__all__ = [
    "OpenEOApiRequestError",
    "OpenEOAuthError",
    "OpenEOConfigurationError",
    "OpenEOJobNotFoundError",
    "OpenEONotAnOpenEOApiError",
    "OpenEOProviderError",
    "OpenEOTransientError",
]
