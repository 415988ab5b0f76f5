"""Basic auth and the local OIDC provider, end to end with the openeo client."""

from __future__ import annotations

import time

import openeo
import pytest
import requests
from openeo.rest import OpenEoApiError
from openeo.rest.auth.oidc import OidcException

from local_backend.launcher import (
    BASIC_USER,
    OIDC_CLIENT_ID,
    OIDC_CLIENT_SECRET,
    OIDC_PROVIDER_ID,
    LocalBackend,
)


def _client_credentials(backend: LocalBackend) -> openeo.Connection:
    return openeo.connect(backend.url).authenticate_oidc_client_credentials(
        client_id=OIDC_CLIENT_ID, client_secret=OIDC_CLIENT_SECRET, provider_id=OIDC_PROVIDER_ID
    )


def test_basic_auth_rule(openeo_backend: LocalBackend) -> None:
    conn = openeo.connect(openeo_backend.url).authenticate_basic(BASIC_USER, "alice123")
    assert conn.describe_account()["user_id"] == BASIC_USER
    with pytest.raises(OpenEoApiError) as err:
        openeo.connect(openeo_backend.url).authenticate_basic(BASIC_USER, "wrong")
    assert err.value.code == "CredentialsInvalid"


def test_oidc_provider_is_listed_and_discoverable(openeo_backend: LocalBackend) -> None:
    providers = requests.get(f"{openeo_backend.url}/openeo/1.2/credentials/oidc", timeout=10).json()["providers"]
    assert [p["id"] for p in providers] == [OIDC_PROVIDER_ID]
    issuer = providers[0]["issuer"]
    discovery = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    assert discovery["issuer"] == issuer
    assert set(discovery["grant_types_supported"]) == {"client_credentials", "refresh_token"}


def test_client_credentials(openeo_backend: LocalBackend) -> None:
    conn = _client_credentials(openeo_backend)
    assert conn.describe_account()["user_id"] == f"service-account-{OIDC_CLIENT_ID}"
    with pytest.raises(OidcException, match="invalid_client"):
        openeo.connect(openeo_backend.url).authenticate_oidc_client_credentials(
            client_id=OIDC_CLIENT_ID, client_secret="wrong", provider_id=OIDC_PROVIDER_ID
        )


def test_refresh_token_with_confidential_and_default_client(openeo_backend: LocalBackend) -> None:
    token = openeo_backend.mint_refresh_token(sub="rita")
    conn = openeo.connect(openeo_backend.url).authenticate_oidc_refresh_token(
        client_id=OIDC_CLIENT_ID, client_secret=OIDC_CLIENT_SECRET, refresh_token=token, provider_id=OIDC_PROVIDER_ID
    )
    assert conn.describe_account()["user_id"] == "rita"
    # Without a client id the openeo client takes the provider's default (public) client.
    conn = openeo.connect(openeo_backend.url).authenticate_oidc_refresh_token(
        refresh_token=token, provider_id=OIDC_PROVIDER_ID
    )
    assert conn.describe_account()["user_id"] == "rita"
    with pytest.raises(OidcException, match="invalid_grant"):
        openeo.connect(openeo_backend.url).authenticate_oidc_refresh_token(
            refresh_token=token + "x", provider_id=OIDC_PROVIDER_ID
        )


def test_expired_access_token_is_refused_and_the_client_refreshes(openeo_backend: LocalBackend) -> None:
    openeo_backend.configure(access_token_lifetime=0.5)
    conn = _client_credentials(openeo_backend)
    old_bearer = conn.auth.bearer
    assert conn.describe_account()["user_id"].startswith("service-account-")
    time.sleep(0.6)

    response = requests.get(conn.build_url("/me"), headers={"Authorization": f"Bearer {old_bearer}"}, timeout=10)
    assert (response.status_code, response.json()["code"]) == (403, "TokenInvalid")

    openeo_backend.configure(access_token_lifetime=300)  # the renewed token outlives the retry, however slow
    openeo_backend.reset_stats()
    assert conn.describe_account()["user_id"].startswith("service-account-")  # 403, new token, retry
    assert conn.auth.bearer != old_bearer
    assert openeo_backend.stats() == {"GET /me": 2, "POST /oidc/token": 1}


def test_refresh_token_connection_survives_expiry(openeo_backend: LocalBackend) -> None:
    openeo_backend.configure(access_token_lifetime=0.5)
    conn = openeo.connect(openeo_backend.url).authenticate_oidc_refresh_token(
        client_id=OIDC_CLIENT_ID,
        client_secret=OIDC_CLIENT_SECRET,
        refresh_token=openeo_backend.mint_refresh_token(sub="rita"),
        provider_id=OIDC_PROVIDER_ID,
    )
    job = conn.create_job({"sum": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}})
    time.sleep(0.6)
    openeo_backend.configure(access_token_lifetime=300)  # the renewed token outlives the retry, however slow
    assert job.status() == "created"


def test_bare_access_token(openeo_backend: LocalBackend) -> None:
    token = openeo_backend.mint_access_token(sub="tom")
    conn = openeo.connect(openeo_backend.url).authenticate_bearer_token(f"oidc/{OIDC_PROVIDER_ID}/{token}")
    assert conn.describe_account()["user_id"] == "tom"
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    conn = openeo.connect(openeo_backend.url).authenticate_bearer_token(f"oidc/{OIDC_PROVIDER_ID}/{forged}")
    with pytest.raises(OpenEoApiError) as err:
        conn.describe_account()
    assert err.value.code == "TokenInvalid"
