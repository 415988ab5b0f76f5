"""Test credentials every local backend accepts (shared by server and launcher; they guard nothing real).

Basic auth follows openeo-driver's dummy rule: a user name starting with a vowel takes ``<user>123``.
"""

from __future__ import annotations

BASIC_USER = "alice"
BASIC_PASSWORD = "alice123"
OTHER_BASIC_USER = "eve"  # a second user, for per-user isolation checks
OTHER_BASIC_PASSWORD = "eve123"

OIDC_PROVIDER_ID = "local"
OIDC_CLIENT_ID = "local-client"  # confidential client: client_credentials and refresh_token grants
OIDC_CLIENT_SECRET = "local-client-secret"
OIDC_PUBLIC_CLIENT_ID = "local-public-client"  # listed as the provider's default client (refresh_token grant)
OIDC_DEFAULT_SUBJECT = "oidc-user"  # "sub" of refresh tokens minted through the control API by default


def client_credentials_subject(client_id: str) -> str:
    """The user id a client-credentials token resolves to (Keycloak names service accounts this way)."""
    return f"service-account-{client_id}"


def valid_basic_auth(username: str, password: str) -> bool:
    """openeo-driver's dummy rule for vowel-initial users; other users are refused."""
    return bool(username) and username[0].lower() in "aeiou" and password == f"{username.lower()}123"
