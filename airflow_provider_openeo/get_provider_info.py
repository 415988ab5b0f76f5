"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_openeo.version import __version__
from airflow_provider_openeo.wait._job_gone import (
    DEFAULT_GONE_POLLS,
    DEFAULT_GONE_SECONDS,
    GONE_POLLS_FIELD,
    GONE_SECONDS_FIELD,
)

_SECRET = {"type": ["string", "null"], "format": "password"}
_TEXT = {"type": ["string", "null"]}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-openeo",
        "name": "openEO",
        "description": "Run batches of `openEO <https://openeo.org>`__ jobs across several openEO backends.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "openEO",
                "external-doc-url": "https://openeo.org",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "openEO",
                "python-modules": [
                    "airflow_provider_openeo.hooks.openeo",
                    "airflow_provider_openeo.hooks.job_db",
                ],
            }
        ],
        "operators": [{"integration-name": "openEO", "python-modules": ["airflow_provider_openeo.operators.openeo"]}],
        "sensors": [{"integration-name": "openEO", "python-modules": ["airflow_provider_openeo.sensors.openeo"]}],
        "triggers": [{"integration-name": "openEO", "python-modules": ["airflow_provider_openeo.triggers.openeo"]}],
        "extra-links": ["airflow_provider_openeo.links.openeo.OpenEOJobLink"],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_openeo.hooks.openeo.OpenEOHook",
                "hook-name": "openEO",
                "connection-type": "openeo",
                "conn-fields": {
                    "auth_method": {
                        "label": "Authentication",
                        "description": (
                            "How workers authenticate; none of these needs a browser. A connection defined "
                            "without it (environment variable, URI) uses basic when a login is set, else none."
                        ),
                        "schema": {
                            "type": ["string", "null"],
                            "default": "basic",
                            "enum": [
                                "none",
                                "basic",
                                "oidc_client_credentials",
                                "oidc_refresh_token",
                                "access_token",
                            ],
                        },
                    },
                    "oidc_provider_id": {
                        "label": "OIDC provider id",
                        "description": "As listed by the backend's /credentials/oidc; empty takes its default.",
                        "schema": _TEXT,
                    },
                    "client_id": {"label": "OIDC client id", "schema": _TEXT},
                    "client_secret": {"label": "OIDC client secret", "schema": _SECRET},
                    "refresh_token": {"label": "OIDC refresh token", "schema": _SECRET},
                    "access_token": {
                        "label": "Access token",
                        "description": "A bearer token used as is (for example 'basic//...' or 'oidc/<provider>/...').",
                        "schema": _SECRET,
                    },
                    "timeout": {
                        "label": "Request timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 60},
                    },
                    GONE_POLLS_FIELD: {
                        "label": "404s before a job counts as gone",
                        "description": (
                            "A job answering 404 (JobNotFound) counts as gone after this many 404s in a row over "
                            "at least 'job_gone_seconds' while the backend answers otherwise, or when a complete "
                            "job listing confirms it. Federated backends answer 404 during partial outages."
                        ),
                        "schema": {"type": ["integer", "null"], "default": DEFAULT_GONE_POLLS},
                    },
                    GONE_SECONDS_FIELD: {
                        "label": "Seconds of 404s before a job counts as gone",
                        "schema": {"type": ["number", "null"], "default": DEFAULT_GONE_SECONDS},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"host": "Backend URL", "login": "User name (basic auth)"},
                    "placeholders": {"host": "https://openeo.dataspace.copernicus.eu"},
                },
            }
        ],
    }
