"""Signed, self-contained OIDC tokens (JWT, HS256) for the local OIDC provider.

Self-contained tokens need no token table: they survive a server restart (the signing key lives in the
data directory) and every thread can verify them without a lock. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any


class InvalidToken(ValueError):
    """Malformed, wrongly signed, of the wrong kind, or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(path: Path) -> bytes:
    """The signing key of one data directory, created on first use."""
    if path.exists():
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key.hex(), encoding="ascii")
    path.chmod(0o600)
    return key


class TokenSigner:
    def __init__(self, key: bytes, issuer: str) -> None:
        self._key = key
        self.issuer = issuer

    def _sign(self, claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def mint(self, kind: str, sub: str, client_id: str, lifetime: float | None = None) -> str:
        now = time.time()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "azp": client_id,
            "typ": kind,
            "iat": now,
            "jti": secrets.token_hex(8),
        }
        if lifetime is not None:
            claims["exp"] = now + lifetime
        return self._sign(claims)

    def verify(self, token: str, kind: str) -> dict[str, Any]:
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            signature_ok = hmac.compare_digest(expected, _unb64(signature))
            claims = json.loads(_unb64(payload)) if signature_ok else None
        except (ValueError, TypeError) as exc:
            raise InvalidToken(f"malformed token: {type(exc).__name__}") from None
        if not isinstance(claims, dict):
            raise InvalidToken("bad signature")
        if claims.get("typ") != kind or claims.get("iss") != self.issuer:
            raise InvalidToken(f"not a {kind} token of this issuer")
        if "exp" in claims and time.time() >= claims["exp"]:
            raise InvalidToken("expired")
        return claims
