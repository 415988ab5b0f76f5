"""Result assets as production backends serve them: several large files, signed links that expire, checksums.

- ``result_assets`` raster assets of ``result_size`` bytes each (``result.tif``, ``result_2.tif``, ...), so a
  test can move tens of megabytes; the first keeps the bytes it always had.
- ``signed_url_lifetime``: asset hrefs (and the results' canonical link) carry ``expires`` and a signature,
  openeo-driver's own URL layout; an expired link answers 410 ``ResultLinkExpired``, like openeo-driver and
  the S3 proxy of openeo-geopyspark-driver. Off (None) by default: today's never-expiring links.
- ``asset_checksums``: every asset of the results document carries ``file:checksum`` (multihash sha2-256,
  hex ``1220...``); openeo-driver already adds ``file:size``.

Downloads (signed or not) are openeo-driver's own ``send_from_directory``, which honours ``Range`` (206 with
``Content-Range``). Driver venv only (imports openeo-driver).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
from openeo_driver.errors import CredentialsInvalidException, ResultLinkExpiredException
from openeo_driver.urlsigning import UrlSigner

RASTER_MEDIA_TYPE = "image/tiff; application=geotiff"
CHECKSUMS_FILE = ".checksums.json"
#: multihash prefix of sha2-256: function code 0x12, digest length 0x20.
SHA2_256_MULTIHASH_PREFIX = "1220"
_RESULTS_ENDPOINTS = frozenset({"list_job_results", "list_job_results_signed"})


def raster_names(count: int) -> list[str]:
    """``result.tif`` (the name a single-asset job always had), then ``result_2.tif`` ... ``result_{count}.tif``."""
    return ["result.tif", *(f"result_{i}.tif" for i in range(2, count + 1))]


def _chain_bytes(seed: bytes, size: int) -> bytes:
    """The original filler: a sha256 chain (slow for large sizes, kept so ``result.tif`` keeps its bytes)."""
    stream = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(stream) < size:
        stream.extend(block)
        block = hashlib.sha256(block).digest()
    return bytes(stream[:size])


def raster_bytes(job_id: str, index: int, size: int) -> bytes:
    """Deterministic per job and asset: a little-endian TIFF signature and first-IFD offset, then filler."""
    body = max(0, size - 8)
    # the first asset keeps its historic bytes; the others are fast for tens of megabytes
    filler = _chain_bytes(job_id.encode(), body) if index == 0 else random.Random(f"{job_id}/{index}").randbytes(body)
    return b"II*\x00" + (8).to_bytes(4, "little") + filler


def multihash_sha256(data: bytes) -> str:
    return SHA2_256_MULTIHASH_PREFIX + hashlib.sha256(data).hexdigest()


def write_checksums(out_dir: Path, sums: dict[str, str]) -> None:
    """A hidden sidecar (never served: downloads are limited to the listed assets) with each asset's checksum."""
    tmp = out_dir / f"{CHECKSUMS_FILE}.tmp"
    tmp.write_text(json.dumps(sums), encoding="utf-8")
    tmp.replace(out_dir / CHECKSUMS_FILE)


class LocalUrlSigner(UrlSigner):
    """openeo-driver's URL signer with the lifetime read from the live settings.

    Differences, each for a reason: falsy while ``signed_url_lifetime`` is None, so openeo-driver's own ``if
    signer`` checks keep building today's unsigned links; expiry with millisecond resolution (a test can use a
    lifetime of a second without rounding making it anything from 0 to 1 s); HMAC-SHA256 instead of MD5 over
    the concatenated parts.
    """

    def __init__(self, key: bytes, lifetime: Callable[[], float | None]) -> None:
        super().__init__(secret="", expiration=None)
        self._key = key
        self._lifetime = lifetime

    def __bool__(self) -> bool:
        return self._lifetime() is not None

    def get_expires(self, now: float | None = None) -> str | None:  # type: ignore[override]
        lifetime = self._lifetime()
        if lifetime is None:
            return None
        return f"{(time.time() if now is None else now) + lifetime:.3f}"

    def _sign_with_secret(self, *token_key_parts: str) -> str:
        message = "\x1f".join(str(part) for part in token_key_parts).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    @staticmethod
    def _check(expected: str, signature: str, expires: Any) -> None:
        if not hmac.compare_digest(expected, str(signature or "")):
            raise CredentialsInvalidException()
        if expires in (None, "None"):
            return
        try:
            deadline = float(expires)
        except ValueError:
            raise CredentialsInvalidException() from None
        if deadline < time.time():
            raise ResultLinkExpiredException()

    def verify_job_asset(self, signature: str, job_id: str, user_id: str, filename: str, expires: Any) -> None:
        self._check(self.sign_job_asset(job_id, user_id, filename, expires), signature, expires)

    def verify_job_results(self, signature: str, job_id: str, user_id: str, expires: Any) -> None:
        self._check(self.sign_job_results(job_id, user_id, expires), signature, expires)

    def verify_job_item(self, signature: str, job_id: str, user_id: str, item_id: str, expires: Any) -> None:
        self._check(self.sign_job_item(job_id, user_id, item_id, expires), signature, expires)


def add_checksums(app: flask.Flask, results_root: Path, settings: Callable[[], dict[str, Any]]) -> None:
    """With ``asset_checksums`` on, put ``file:checksum`` into the assets of every results document.

    openeo-driver builds asset objects from a fixed list of fields, so the checksum is added to its answer.
    """

    @app.after_request
    def _add(response: flask.Response) -> flask.Response:
        endpoint = (flask.request.endpoint or "").rpartition(".")[2]
        if endpoint not in _RESULTS_ENDPOINTS or response.status_code != 200 or not settings()["asset_checksums"]:
            return response
        job_id = (flask.request.view_args or {}).get("job_id", "")
        sidecar = results_root / job_id / CHECKSUMS_FILE
        if not job_id or not sidecar.is_file():
            return response
        sums = json.loads(sidecar.read_text(encoding="utf-8"))
        document = response.get_json()
        for name, asset in (document.get("assets") or {}).items():
            if name in sums:
                asset["file:checksum"] = sums[name]
        response.set_data(json.dumps(document))
        return response


__all__ = [
    "RASTER_MEDIA_TYPE",
    "LocalUrlSigner",
    "add_checksums",
    "multihash_sha256",
    "raster_bytes",
    "raster_names",
    "write_checksums",
]
