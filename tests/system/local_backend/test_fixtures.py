"""The Airflow connection helper builds working connections for every auth method of the provider."""

from __future__ import annotations

import json
import os

import openeo
import pytest

from local_backend.launcher import BASIC_PASSWORD, BASIC_USER, LocalBackend
from tests.fixtures.local_backend import AUTH_METHODS, backend_conn_env, backend_connection


def _connect_like_the_hook(conn: dict) -> openeo.Connection:
    """What the provider's hook does with each auth method, with the plain openeo client."""
    extra = conn["extra"]
    connection = openeo.connect(conn["host"])
    method = extra["auth_method"]
    if method == "basic":
        return connection.authenticate_basic(conn["login"], conn["password"])
    if method == "oidc_client_credentials":
        return connection.authenticate_oidc_client_credentials(
            client_id=extra["client_id"], client_secret=extra["client_secret"], provider_id=extra["oidc_provider_id"]
        )
    if method == "oidc_refresh_token":
        return connection.authenticate_oidc_refresh_token(
            client_id=extra["client_id"],
            client_secret=extra["client_secret"],
            refresh_token=extra["refresh_token"],
            provider_id=extra["oidc_provider_id"],
        )
    if method == "access_token":
        return connection.authenticate_bearer_token(extra["access_token"])
    return connection


@pytest.mark.parametrize("auth_method", [m for m in AUTH_METHODS if m != "none"])
def test_every_auth_method_authenticates(openeo_backend: LocalBackend, auth_method: str) -> None:
    conn = backend_connection(openeo_backend, auth_method)
    assert conn["conn_type"] == "openeo"
    assert _connect_like_the_hook(conn).describe_account()["user_id"]


def test_production_backend_runs_the_test_per_profile(production_backend: LocalBackend) -> None:
    profile = production_backend.config()["profile"]
    assert profile in {"geopyspark", "aggregator", "fastapi"}
    conn = openeo.connect(production_backend.url).authenticate_basic(BASIC_USER, BASIC_PASSWORD)
    job = conn.load_collection("S2_FOOBAR").create_job()
    assert job.job_id.startswith(("vito-j-", "eodc-j-") if profile == "aggregator" else "j-")
    listed = [j["id"] for j in conn.list_jobs(limit=None)]
    assert job.job_id in listed


def test_conn_env(monkeypatch: pytest.MonkeyPatch, openeo_backend: LocalBackend) -> None:
    name = backend_conn_env(monkeypatch, "openeo_foo", openeo_backend, "basic", timeout=5)
    assert name == "AIRFLOW_CONN_OPENEO_FOO"
    value = json.loads(os.environ[name])
    assert value["host"] == openeo_backend.url
    assert value["extra"] == {"auth_method": "basic", "timeout": 5}
    with pytest.raises(ValueError, match="auth_method"):
        backend_connection(openeo_backend, "kerberos")
