"""A minimal OIDC provider served by the local backend itself under ``/oidc`` (driver venv only).

Enough for the openeo client's non-interactive flows: discovery, a token endpoint with the
``client_credentials`` and ``refresh_token`` grants, and userinfo. Access tokens expire after the
``access_token_lifetime`` setting, so a client must refresh to keep working.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import flask

from local_backend.credentials import (
    OIDC_CLIENT_ID,
    OIDC_CLIENT_SECRET,
    OIDC_PUBLIC_CLIENT_ID,
    client_credentials_subject,
)
from local_backend.oidc_tokens import InvalidToken, TokenSigner

ACCESS, REFRESH = "access", "refresh"


def _oauth_error(status: int, error: str, description: str) -> flask.Response:
    response = flask.jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response


def _client_from_request(req: flask.Request) -> tuple[str | None, str | None]:
    """client_secret_basic (Authorization header) or client_secret_post (form fields)."""
    header = req.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return client_id, secret
        except (binascii.Error, UnicodeDecodeError):
            return None, None
    return req.form.get("client_id"), req.form.get("client_secret")


class LocalOidcProvider:
    """Token logic; the Flask view functions in ``blueprint`` are thin wrappers around it."""

    def __init__(self, signer: TokenSigner, settings: Callable[[], dict[str, Any]]) -> None:
        self.signer = signer
        self._settings = settings

    @property
    def issuer(self) -> str:
        return self.signer.issuer

    def access_token_response(self, sub: str, client_id: str, refresh_token: str | None = None) -> dict[str, Any]:
        lifetime = float(self._settings()["access_token_lifetime"])
        body: dict[str, Any] = {
            "access_token": self.signer.mint(ACCESS, sub, client_id, lifetime),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": "openid",
        }
        if refresh_token:
            body["refresh_token"] = refresh_token
        return body

    def mint_refresh_token(self, sub: str, client_id: str = OIDC_CLIENT_ID) -> str:
        return self.signer.mint(REFRESH, sub, client_id)

    def mint_access_token(self, sub: str, client_id: str = OIDC_CLIENT_ID) -> dict[str, Any]:
        return self.access_token_response(sub, client_id)

    def userinfo(self, access_token: str) -> dict[str, Any]:
        """Raises InvalidToken for an unknown, forged or expired token."""
        claims = self.signer.verify(access_token, ACCESS)
        return {"sub": claims["sub"], "name": claims["sub"], "preferred_username": claims["sub"]}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/auth",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/certs",
            "grant_types_supported": ["client_credentials", "refresh_token"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["HS256"],
            "scopes_supported": ["openid"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        }

    def token(self, req: flask.Request) -> flask.Response:
        client_id, secret = _client_from_request(req)
        grant = req.form.get("grant_type")
        if client_id not in (OIDC_CLIENT_ID, OIDC_PUBLIC_CLIENT_ID):
            return _oauth_error(401, "invalid_client", f"Unknown client {client_id!r}.")
        if client_id == OIDC_CLIENT_ID and secret != OIDC_CLIENT_SECRET:
            return _oauth_error(401, "invalid_client", "Bad client secret.")
        if grant == "client_credentials":
            if client_id != OIDC_CLIENT_ID:
                return _oauth_error(400, "unauthorized_client", "A public client cannot use client_credentials.")
            return flask.jsonify(self.access_token_response(client_credentials_subject(client_id), client_id))
        if grant == "refresh_token":
            refresh_token = req.form.get("refresh_token", "")
            try:
                claims = self.signer.verify(refresh_token, REFRESH)
            except InvalidToken as exc:
                return _oauth_error(400, "invalid_grant", f"Refresh token rejected: {exc}.")
            return flask.jsonify(self.access_token_response(claims["sub"], client_id, refresh_token))
        return _oauth_error(400, "unsupported_grant_type", f"Grant type {grant!r} is not supported here.")

    def blueprint(self) -> flask.Blueprint:
        bp = flask.Blueprint("local_oidc", __name__)

        @bp.route("/.well-known/openid-configuration", methods=["GET"])
        def discovery() -> flask.Response:
            return flask.jsonify(self.discovery())

        @bp.route("/token", methods=["POST"])
        def token() -> flask.Response:
            return self.token(flask.request)

        @bp.route("/userinfo", methods=["GET", "POST"])
        def userinfo() -> flask.Response:
            header = flask.request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                return _oauth_error(401, "invalid_token", "Bearer token required.")
            try:
                return flask.jsonify(self.userinfo(header[7:]))
            except InvalidToken as exc:
                response = _oauth_error(401, "invalid_token", str(exc))
                response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
                return response

        @bp.route("/certs", methods=["GET"])
        def certs() -> flask.Response:
            # HS256 tokens are verified by the backend itself; there is no public key to publish.
            return flask.jsonify({"keys": []})

        return bp
