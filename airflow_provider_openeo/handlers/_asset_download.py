"""Fetch one result asset so that no byte moves twice without need.

Production results are large and their links expire (signed URLs last hours on geopyspark's S3 proxy; the
issue reproduced three tries moving 120 MB for 60 MB of results without ever finishing). So, per asset:

- a file already complete under its name (size as ``file:size`` or the server's Content-Length, and the
  ``file:checksum`` where the STAC gives one) is kept;
- otherwise bytes go to the asset's stable partial file; a partial left by an earlier attempt or try continues
  with ``Range: bytes=N-`` (a server that ignores the Range starts it over);
- a stream that breaks off mid-file continues the same way, a bounded number of times, while it makes progress;
- an expired link (410 ``ResultLinkExpired``) asks the caller for the asset's fresh href (a re-read of the
  results document) and continues where the bytes stopped, a bounded number of times;
- only a file whose size and checksum are right is moved to its real name.

On object storage that cannot append, a partial is started over (that asset only).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from airflow_provider_openeo.exceptions import AssetChecksumError
from airflow_provider_openeo.handlers._asset_plan import PlannedAsset
from airflow_provider_openeo.handlers._result_storage import (
    IncompleteDownloadError,
    StoragePath,
    move_into_place,
    open_partial,
    partial_path_for,
    remove_quietly,
    sha256_of,
    size_of,
)
from airflow_provider_openeo.hooks._openeo.http import is_link_expired, is_range_not_satisfiable

if TYPE_CHECKING:
    import openeo

#: Most bytes asked of the connection per read. A stream that breaks off mid-read loses what that read had
#: gathered (urllib3 raises instead of returning it), so reads stay small: at most this much moves again.
MAX_NETWORK_READ = 64 * 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
#: Bytes as sent: a compressed answer's Content-Length and ranges would not be the file's.
_IDENTITY = {"Accept-Encoding": "identity"}
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    ConnectionError,
    IncompleteDownloadError,
)

Refresh = Callable[[PlannedAsset], PlannedAsset]


@dataclass
class AssetTransfer:
    """What fetching one asset took: bytes received, whether an existing file was kept, links renewed."""

    size: int
    received: int = 0
    kept: bool = False
    resumed_from: int = 0
    link_refreshes: int = 0
    restarts: int = 0


def _content_range(response: requests.Response) -> tuple[int, int | None] | None:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if not match:
        return None
    total = match.group(3)
    return int(match.group(1)), (None if total == "*" else int(total))


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


class AssetDownload:
    """One asset's fetch into ``target``; :meth:`run` returns an :class:`AssetTransfer`."""

    def __init__(
        self,
        connection: openeo.Connection,
        asset: PlannedAsset,
        target: StoragePath,
        *,
        refresh: Refresh,
        chunk_size: int,
        max_resumes: int = 3,
        max_link_refreshes: int = 3,
        log: logging.Logger | None = None,
    ) -> None:
        self.connection = connection
        self.asset = asset
        self.target = target
        self.partial = partial_path_for(target)
        self.refresh = refresh
        self.chunk_size = chunk_size
        self.max_resumes = max_resumes
        self.max_link_refreshes = max_link_refreshes
        self.log = log or logging.getLogger(__name__)
        self.transfer = AssetTransfer(size=0)

    # -- requests that renew an expired link ------------------------------------------------------------------

    def _request(self, method: str, headers: dict[str, str]) -> requests.Response:
        while True:
            try:
                if method == "head":
                    return self.connection.head(self.asset.href, headers=headers, allow_redirects=True)
                return self.connection.get(self.asset.href, stream=True, headers=headers)
            except Exception as error:
                if not is_link_expired(error) or self.transfer.link_refreshes >= self.max_link_refreshes:
                    raise
                self.transfer.link_refreshes += 1
                self.log.info("The link to asset %r expired; re-reading the results document", self.asset.key)
                self.asset = self.refresh(self.asset)

    # -- keeping a complete file ------------------------------------------------------------------------------

    def _announced_size(self) -> int | None:
        """``file:size``, else the Content-Length of a HEAD request (None when the server will not say)."""
        if self.asset.size is not None:
            return self.asset.size
        try:
            response = self._request("head", dict(_IDENTITY))
        except Exception as error:
            self.log.info("HEAD of asset %r failed (%s); fetching it again", self.asset.key, type(error).__name__)
            return None
        return _content_length(response)

    def _is_complete(self, path: StoragePath, size: int) -> bool:
        expected = self._announced_size()
        if expected is None or size != expected:
            return False
        return self.asset.sha256 is None or sha256_of(path) == self.asset.sha256

    # -- the transfer -----------------------------------------------------------------------------------------

    def run(self) -> AssetTransfer:
        existing = size_of(self.target)
        if existing is not None and self._is_complete(self.target, existing):
            self.transfer.kept, self.transfer.size = True, existing
            return self.transfer
        offset = size_of(self.partial) or 0
        self.transfer.resumed_from = offset
        resumes = 0
        while True:
            try:
                total = self._fetch_from(offset)
                expected = self.asset.size if self.asset.size is not None else total
                stored = size_of(self.partial) or 0
                if expected is not None and stored < expected:
                    raise IncompleteDownloadError(
                        f"asset {self.asset.key!r}: {stored} bytes stored, the server announced {expected}"
                    )
                break
            except _NETWORK_ERRORS as error:
                now = size_of(self.partial) or 0
                if now <= offset or resumes >= self.max_resumes:
                    raise
                resumes += 1
                # the exception's text may hold the signed URL: its type says enough
                self.log.info(
                    "Download of asset %r broke off at byte %d (%s); continuing",
                    self.asset.key,
                    now,
                    type(error).__name__,
                )
                offset = now
        self._finish(expected)
        return self.transfer

    def _fetch_from(self, offset: int) -> int | None:
        """Stream the bytes from ``offset`` on into the partial file; return the asset's total size if known."""
        handle = None
        if offset:
            # asked before the request: a store that cannot append must not have the rest sent for nothing
            handle = open_partial(self.partial, append=True)
            if handle is None:
                self.transfer.restarts += 1
                self.log.info("The store cannot append: asset %r starts over", self.asset.key)
                remove_quietly(self.partial)
                offset = 0
        headers = dict(_IDENTITY)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            try:
                response = self._request("get", headers)
            except Exception as error:
                if offset and is_range_not_satisfiable(error):
                    # the partial already holds every byte (or more than the asset has): the checks decide
                    return self.asset.size if self.asset.size is not None else offset
                raise
            with response:
                start, total = 0, None
                if offset and response.status_code == 206:
                    content_range = _content_range(response)
                    if content_range is None or content_range[0] != offset:
                        # not the bytes asked for: drop the partial, so the next attempt starts clean
                        handle.close()
                        handle = None
                        remove_quietly(self.partial)
                        raise IncompleteDownloadError(f"asset {self.asset.key!r}: unexpected Content-Range")
                    start, total = content_range
                elif offset:
                    self.transfer.restarts += 1
                    self.log.info("The server ignored the Range for asset %r; starting it over", self.asset.key)
                    handle.close()
                    handle = None
                length = _content_length(response)
                if total is None and length is not None:
                    total = start + length
                if handle is None:
                    handle = open_partial(self.partial, append=False)
                for chunk in response.iter_content(chunk_size=min(self.chunk_size, MAX_NETWORK_READ)):
                    if chunk:
                        handle.write(chunk)
                        self.transfer.received += len(chunk)
                return total if total is not None else self.asset.size
        finally:
            if handle is not None:
                handle.close()

    def _finish(self, expected: int | None) -> None:
        size = size_of(self.partial) or 0
        if expected is not None and size != expected:
            if size > expected:
                remove_quietly(self.partial)
            raise IncompleteDownloadError(
                f"asset {self.asset.key!r}: {size} bytes stored, the server announced {expected}"
            )
        if self.asset.sha256 is not None and sha256_of(self.partial) != self.asset.sha256:
            remove_quietly(self.partial)
            raise AssetChecksumError(f"asset {self.asset.key!r}: the bytes do not match its file:checksum")
        move_into_place(self.partial, self.target)
        self.transfer.size = size


def download_asset(
    connection: openeo.Connection, asset: PlannedAsset, target: StoragePath, **options: Any
) -> AssetTransfer:
    """Fetch ``asset`` into ``target`` (see the module docstring); options as :class:`AssetDownload` takes."""
    return AssetDownload(connection, asset, target, **options).run()
