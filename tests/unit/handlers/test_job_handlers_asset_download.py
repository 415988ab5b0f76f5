"""One asset's resumable fetch (``_asset_download``) against servers that misbehave in ways the local one does not."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openeo.rest import OpenEoApiError

from airflow_provider_openeo.handlers._asset_download import AssetChecksumError, download_asset
from airflow_provider_openeo.handlers._asset_plan import PlannedAsset
from airflow_provider_openeo.handlers._result_storage import IncompleteDownloadError, partial_path_for

BODY = bytes(range(256)) * 40  # 10 240 bytes


class _Response:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status_code, self.body = status, body
        self.headers = {"Content-Length": str(len(body)), **headers}

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        for start in range(0, len(self.body), chunk_size):
            yield self.body[start : start + chunk_size]


class _Server:
    """Answers GETs of ``BODY`` the way it is told: honour Range, ignore it, lie about it, or expire links."""

    def __init__(self, *, ranges: str = "honour", expired: int = 0) -> None:
        self.ranges, self.expired = ranges, expired
        self.requests: list[dict[str, str]] = []

    def head(self, href: str, *, headers: dict[str, str], allow_redirects: bool) -> _Response:
        self.requests.append({"href": href, "method": "HEAD", **headers})
        return _Response(200, b"", {"Content-Length": str(len(BODY))})

    def get(self, href: str, *, stream: bool, headers: dict[str, str]) -> _Response:
        self.requests.append({"href": href, **headers})
        if self.expired:
            self.expired -= 1
            raise OpenEoApiError(http_status_code=410, code="ResultLinkExpired", message="expired")
        wanted = headers.get("Range")
        if wanted is None or self.ranges == "ignore":
            return _Response(200, BODY, {})
        start = int(wanted.removeprefix("bytes=").removesuffix("-"))
        if start >= len(BODY):
            raise OpenEoApiError(http_status_code=416, code="RangeNotSatisfiable", message="no")
        shown = 0 if self.ranges == "lie" else start
        return _Response(206, BODY[start:], {"Content-Range": f"bytes {shown}-{len(BODY) - 1}/{len(BODY)}"})


def _asset(**facts: Any) -> PlannedAsset:
    return PlannedAsset("data.bin", "https://b/data.bin?sig=1", "data.bin", **facts)


def _fetch(server: _Server, target: Path, asset: PlannedAsset | None = None, **options: Any) -> Any:
    refreshed = iter(range(1, 100))
    return download_asset(
        server,  # type: ignore[arg-type]
        asset or _asset(size=len(BODY)),
        target,
        refresh=lambda a: PlannedAsset(
            a.key, f"https://b/data.bin?sig={next(refreshed) + 1}", a.name, a.size, a.sha256
        ),
        chunk_size=1000,
        **options,
    )


def test_a_partial_file_continues_with_range(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    partial_path_for(target).write_bytes(BODY[:4000])
    server = _Server()
    transfer = _fetch(server, target)
    assert target.read_bytes() == BODY
    assert (transfer.received, transfer.resumed_from) == (len(BODY) - 4000, 4000)
    assert server.requests[0]["Range"] == "bytes=4000-"
    assert not partial_path_for(target).exists()


def test_a_server_ignoring_range_starts_the_file_over(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    partial_path_for(target).write_bytes(b"stale bytes")
    transfer = _fetch(_Server(ranges="ignore"), target)
    assert target.read_bytes() == BODY
    assert transfer.restarts == 1


def test_a_wrong_content_range_drops_the_partial(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    partial_path_for(target).write_bytes(BODY[:4000])
    with pytest.raises(IncompleteDownloadError, match="Content-Range"):
        _fetch(_Server(ranges="lie"), target)
    assert not partial_path_for(target).exists() and not target.exists()


def test_a_complete_partial_is_finished_on_416(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    partial_path_for(target).write_bytes(BODY)
    _fetch(_Server(), target, _asset(size=len(BODY), sha256=hashlib.sha256(BODY).hexdigest()))
    assert target.read_bytes() == BODY


def test_bytes_that_do_not_match_the_checksum_are_dropped(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    with pytest.raises(AssetChecksumError):
        _fetch(_Server(), target, _asset(size=len(BODY), sha256="00" * 32))
    assert not target.exists() and not partial_path_for(target).exists()


def test_expired_links_are_renewed_a_bounded_number_of_times(tmp_path: Path) -> None:
    server = _Server(expired=2)
    transfer = _fetch(server, tmp_path / "a.bin", max_link_refreshes=2)
    assert transfer.link_refreshes == 2
    assert [r["href"] for r in server.requests] == [
        "https://b/data.bin?sig=1",
        "https://b/data.bin?sig=2",
        "https://b/data.bin?sig=3",
    ]
    with pytest.raises(OpenEoApiError, match="expired"):
        _fetch(_Server(expired=3), tmp_path / "b.bin", max_link_refreshes=2)


def test_a_complete_file_is_kept_by_size_when_no_checksum_is_given(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(BODY)
    server = _Server()
    assert _fetch(server, target).kept
    assert server.requests == []


def test_without_file_size_a_head_request_says_whether_a_file_is_complete(tmp_path: Path) -> None:
    complete, short = tmp_path / "complete.bin", tmp_path / "short.bin"
    complete.write_bytes(BODY)
    short.write_bytes(BODY[:100])
    server = _Server()
    assert _fetch(server, complete, _asset()).kept
    assert [r.get("method") for r in server.requests] == ["HEAD"]
    assert not _fetch(server, short, _asset()).kept
    assert short.read_bytes() == BODY
