"""Hooks for an Airflow ``openeo`` connection: :class:`OpenEOHook` (tasks) and :class:`OpenEOAsyncHook` (triggers).

The connection's host is the backend URL; its fields choose one of five non-interactive auth methods (none,
basic, OIDC client credentials, OIDC refresh token, access token). The connection the hook returns renews its
token before expiry and retries only requests that are safe to repeat: a job creation is never sent twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import openeo
from airflow.sdk import BaseHook
from urllib3.util import Retry

from airflow_provider_openeo.exceptions import OpenEOProviderError
from airflow_provider_openeo.hooks._openeo.async_hook import OpenEOAsyncHook
from airflow_provider_openeo.hooks._openeo.auth import AuthMethod
from airflow_provider_openeo.hooks._openeo.connection import (
    ManagedConnection,
    connect_with_settings,
    openeo_connection_from_airflow,
)
from airflow_provider_openeo.hooks._openeo.http import safe_retry, translate_openeo_error
from airflow_provider_openeo.hooks._openeo.probe import probe_backend
from airflow_provider_openeo.hooks._openeo.settings import OpenEOConnectionSettings


class OpenEOHook(BaseHook):
    """An authenticated ``openeo.Connection`` for an Airflow ``openeo`` connection.

    :param openeo_conn_id: the Airflow connection id.
    :param timeout: per-request timeout in seconds (default: the connection's ``timeout`` field, else 60).
    :param retry: urllib3 retry policy for the session (default :func:`safe_retry`: idempotent requests only).
    :param auto_validate: openeo's process-graph validation before each job creation.
    """

    conn_name_attr = "openeo_conn_id"
    default_conn_name = "openeo_default"
    conn_type = "openeo"
    hook_name = "openEO"

    def __init__(
        self,
        openeo_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
        auto_validate: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.openeo_conn_id = openeo_conn_id
        self.timeout = timeout
        self.retry = retry
        self.auto_validate = auto_validate
        self._settings: OpenEOConnectionSettings | None = None
        self._connection: ManagedConnection | None = None
        self._api_root: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(openeo_conn_id={self.openeo_conn_id!r})"

    @property
    def settings(self) -> OpenEOConnectionSettings:
        """The validated connection (read once per hook)."""
        if self._settings is None:
            self._settings = OpenEOConnectionSettings.from_airflow(self.get_connection(self.openeo_conn_id))
        return self._settings

    @property
    def auth_method(self) -> AuthMethod:
        return self.settings.auth_method

    def get_conn(self) -> openeo.Connection:
        """The authenticated connection, opened on first use and then reused by this hook instance."""
        if self._connection is None:
            self._connection = connect_with_settings(
                self.settings,
                retry=self.retry if self.retry is not None else safe_retry(),
                timeout=self.timeout,
                auto_validate=self.auto_validate,
            )
            self._api_root = str(self._connection.root_url).rstrip("/")
            self.log.info(
                "Connected to openEO backend %s (API root %s, auth %s)",
                self.settings.url,
                self._api_root,
                self.settings.auth_method.value,
            )
        return self._connection

    @property
    def backend_url(self) -> str:
        """The backend root URL as the user gave it in the connection's host."""
        return self.settings.url

    @property
    def api_root(self) -> str:
        """The versioned API root the backend advertises (``/.well-known/openeo``); found without logging in."""
        if self._api_root is None:
            if self._connection is not None:
                self._api_root = str(self._connection.root_url).rstrip("/")
            else:
                discovered = ManagedConnection.version_discovery(
                    self.settings.url, timeout=self.timeout or self.settings.timeout, retry=safe_retry(total=2)
                )
                self._api_root = str(discovered).rstrip("/")
        return self._api_root

    def job_url(self, job_id: str) -> str:
        """The job's URL on the backend (``GET /jobs/{id}``), for links in the Airflow UI."""
        return f"{self.api_root}/jobs/{quote(str(job_id), safe='')}"

    def test_connection(self) -> tuple[bool, str]:
        """Answer the UI's "Test" button: unreachable host, not an openEO API, refused credentials, or success."""
        try:
            settings = self.settings
        except OpenEOProviderError as exc:
            return False, str(exc)
        return probe_backend(settings, timeout=min(self.timeout or 15.0, 15.0))

    def translate_error(self, exc: BaseException, *, action: str, job_id: str | None = None) -> OpenEOProviderError:
        """Our typed error for an openeo/requests exception, with this connection's secrets scrubbed."""
        secrets: tuple[str, ...] = self._settings.secrets if self._settings else ()
        if self._connection is not None:
            secrets = (*secrets, *self._connection.secrets())
        return translate_openeo_error(exc, action=action, job_id=job_id, secrets=secrets)

    @contextmanager
    def translated_errors(self, action: str, *, job_id: str | None = None) -> Iterator[None]:
        """``with hook.translated_errors("start job"): ...`` raises our typed errors instead of openeo's."""
        try:
            yield
        except OpenEOProviderError:
            raise
        except Exception as exc:
            raise self.translate_error(exc, action=action, job_id=job_id) from None


__all__ = [
    "AuthMethod",
    "ManagedConnection",
    "OpenEOAsyncHook",
    "OpenEOConnectionSettings",
    "OpenEOHook",
    "openeo_connection_from_airflow",
]
