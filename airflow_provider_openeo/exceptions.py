"""Typed errors of the provider, so callers decide by kind (retry later, give up on the row, fix the connection).

Every error the provider raises on purpose is here, under one base, :class:`OpenEOProviderError`::

    OpenEOProviderError
    ├── OpenEOConfigurationError (ValueError)   an Airflow connection is incomplete or contradictory
    ├── the backend's answers: OpenEOTransientError, OpenEOAuthError, OpenEOJobNotFoundError,
    │   OpenEOApiRequestError, OpenEONotAnOpenEOApiError
    ├── the batch's input (ValueError): JobSourceError, RowKeyError, TilingError, OutputNamingError,
    │   UnsafePathError, JobOptionsRefused
    ├── JobDbError: the job database (JobDbInputError (ValueError), UnsupportedColumnError, UnknownColumnError
    │   (KeyError), JobDbExistsError (FileExistsError), JobDbMissingError (LookupError), RowNotFoundError
    │   (KeyError), JobDbFileError)
    ├── one row's start: RowStartError, RowSkipped, BudgetReached, TransientStartError
    ├── storing results: ResultDownloadError (RuntimeError), IncompleteDownloadError (OSError),
    │   AssetChecksumError (ValueError)
    ├── BackendsUnusable: the batch's backends, checked once before any row
    └── PoolError, PoolCommandError: the Airflow pools standing in for ``parallel_jobs``

Each also subclasses the builtin a caller would naturally catch (in brackets), so code written against
MultiBackendJobManager's file databases, or catching ``ValueError`` for bad input, keeps working.

Every error keeps what the openEO backend said (HTTP status, openEO error ``code``, its message) because that is
what a user needs to act on, and never carries a credential: texts are built by the hooks from known fields and
scrubbed of the connection's secrets before an exception is raised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_openeo.batch.dispatching import StartFailure


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
        message: object = "",
        *,
        http_status: int | None = None,
        code: str | None = None,
        api_message: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = str(message)
        self.http_status = http_status
        self.code = code
        self.api_message = api_message
        self.url = url

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        if self.http_status is None and self.code is None:  # not an answer of the backend
            return f"{type(self).__name__}({self.message!r})"
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


# -- the batch's input ---------------------------------------------------------------------------------------------


class JobSourceError(OpenEOProviderError, ValueError):
    """The batch has nothing valid to load."""


class RowKeyError(OpenEOProviderError, ValueError):
    """A row of the job source cannot be keyed: the message names the row and the field."""


class TilingError(OpenEOProviderError, ValueError):
    """The area or the tiling cannot give rows."""


class OutputNamingError(OpenEOProviderError, ValueError):
    """A naming rule is malformed, or gives an unsafe or empty name for a row."""


class UnsafePathError(OpenEOProviderError, ValueError):
    """A computed path would leave the directory it must stay in."""


class JobOptionsRefused(OpenEOProviderError, ValueError):
    """The merged job options break the backend's processing parameters; the ``POST /jobs`` was never sent."""

    def __init__(self, label: str, backend: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"{label}: {'; '.join(problems)} (by GET /processing_parameters of backend {backend!r}); "
            "no job was created for this row"
        )


# -- the job database ----------------------------------------------------------------------------------------------


class JobDbError(OpenEOProviderError):
    """Base class of every error the job database raises deliberately."""


class JobDbInputError(JobDbError, ValueError):
    """Bad input (frame, value, column, file): nothing was written."""


class UnsupportedColumnError(JobDbInputError):
    """A column's dtype (or one of its values) cannot be stored and read back exactly."""


class UnknownColumnError(JobDbInputError, KeyError):
    """A column name that the job table does not have (shown as it is, not quoted as ``KeyError`` would)."""


class JobDbExistsError(JobDbError, FileExistsError):
    """The job table already exists and ``on_exists="error"`` was asked for."""


class JobDbMissingError(JobDbError, LookupError):
    """The job table does not exist (yet)."""


class RowNotFoundError(JobDbError, KeyError):
    """No row with the given row id."""


class JobDbFileError(JobDbInputError):
    """A job file (CSV, Parquet, GeoParquet) that is unreadable, truncated or corrupt."""


# -- one row's start -----------------------------------------------------------------------------------------------


class RowStartError(OpenEOProviderError):
    """The row cannot be started as it is; retrying will not help. The row records why."""


class RowSkipped(OpenEOProviderError):
    """``start_job`` returned None: MBJM's way of saying "no job for this row"."""


class BudgetReached(OpenEOProviderError):
    """The batch's ``max_costs`` leaves no room for this row's job; the row stays ``not_started`` and says so.

    ``reason`` is the budget's own words (without the row), for the other rows held back with it.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TransientStartError(OpenEOProviderError):
    """The backend could not take the job now (limits, overload, network); an Airflow retry may succeed.

    ``failure`` (a :class:`~airflow_provider_openeo.batch.dispatching.StartFailure`) says what it tells of the
    backend (the dispatch cools a failing backend down and sends the row elsewhere); None when it says nothing of
    the backend (another task was starting the row).
    """

    def __init__(self, message: str, *, failure: StartFailure | str | None = "unavailable") -> None:
        from airflow_provider_openeo.batch.dispatching import StartFailure

        super().__init__(message)
        self.failure = None if failure is None else StartFailure(failure)


# -- storing results -----------------------------------------------------------------------------------------------


class ResultDownloadError(OpenEOProviderError, RuntimeError):
    """The results of a finished job could not be stored; the row says ``results_state = failed``."""


class IncompleteDownloadError(OpenEOProviderError, OSError):
    """Fewer (or more) bytes arrived than the server announced."""


class AssetChecksumError(OpenEOProviderError, ValueError):
    """The downloaded bytes do not match the asset's ``file:checksum``; the partial file is dropped."""


# -- the batch's backends and pools --------------------------------------------------------------------------------


class BackendsUnusable(OpenEOProviderError):
    """One or more backends of the batch cannot be used as configured (the message says which and how to fix)."""


class PoolError(OpenEOProviderError):
    """A backend's pool is missing or has fewer slots than its ``parallel_jobs``."""


class PoolCommandError(PoolError):
    """Airflow's CLI refused (a metadata database not migrated yet, a bad config): its own message is kept."""
