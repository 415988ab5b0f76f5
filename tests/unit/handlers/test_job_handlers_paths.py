"""Names from a remote server must never write outside the job directory (unit level, hostile inputs)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openeo.rest.job import ResultAsset

from airflow_provider_openeo.handlers._safe_paths import (
    UnsafePathError,
    asset_file_name,
    ensure_inside,
    reserve_names,
    safe_file_name,
    safe_job_token,
    unique_name,
)
from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler

HOSTILE_NAMES = [
    "../../x",
    "../../../../etc/passwd",
    "/etc/passwd",
    "/abs/path.tif",
    "C:\\Windows\\system32\\evil.dll",
    "C:evil.tif",
    "\\\\server\\share\\evil.tif",
    "..\\..\\evil.tif",
    "",
    ".",
    "..",
    "...",
    "   ",
    "a\x00b.tif",
    "line\nbreak\r.tif",
    "bell\x07.tif",
    "rtl\u202egpj.exe",
    "CON",
    "nul.tif",
    "x" * 400 + ".tif",
    "sub/dir/../../../up.tif",
]


def _assert_single_safe_component(name: str) -> None:
    assert name
    assert name not in (".", "..")
    assert "/" not in name and "\\" not in name and ":" not in name
    assert not name.startswith(".")
    assert all(ord(ch) >= 32 and ch not in "\x7f\u202e" for ch in name)
    assert len(name.encode("utf-8")) <= 200


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_become_one_safe_component(name: str) -> None:
    _assert_single_safe_component(safe_file_name(name, fallback="asset"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../x", "x"),
        ("/etc/passwd", "etc_passwd"),
        ("C:\\Windows\\x.dll", "C__Windows_x.dll"),
        ("", "asset"),
        ("..", "asset"),
        ("a\x00b.tif", "ab.tif"),
        ("CON", "_CON"),
        ("nul.tif", "_nul.tif"),
        ("sub/dir/b.tif", "sub_dir_b.tif"),
    ],
)
def test_sanitised_names_stay_readable(name: str, expected: str) -> None:
    assert safe_file_name(name, fallback="asset") == expected


@pytest.mark.parametrize(
    "name", ["openEO.tif", "result.json", "B04_2024-01-01.tif", "ok name.nc", "données.tif", "job-results.json"]
)
def test_ordinary_names_are_kept(name: str) -> None:
    assert safe_file_name(name, fallback="asset") == name


def test_long_names_keep_their_extension() -> None:
    name = safe_file_name("é" * 300 + ".tif", fallback="asset")
    assert name.endswith(".tif")
    assert len(name.encode("utf-8")) <= 200


def test_unique_name_dedups_case_insensitively_and_respects_reserved_names() -> None:
    taken = reserve_names(["job-results.json", "job_j-1.json"])
    assert [unique_name(n, taken) for n in ["a.tif", "A.tif", "a.tif", "job-results.json", "x", "x"]] == [
        "a.tif",
        "A_1.tif",
        "a_2.tif",
        "job-results_1.json",
        "x",
        "x_1",
    ]


@pytest.mark.parametrize("job_id", ["j-2403abc", "vito-j-24031a2b3c4d", "3f2a9c1e-1234-4a5b-9c8d-0123456789ab"])
def test_ordinary_job_ids_keep_mbjm_layout(job_id: str) -> None:
    assert safe_job_token(job_id) == job_id


@pytest.mark.parametrize("job_id", ["../x", "../../etc", "a/b", "a\\b", ".", "..", "", "/abs", "C:\\x", "j\x00"])
def test_hostile_job_ids_become_safe_tokens(job_id: str) -> None:
    token = safe_job_token(job_id)
    _assert_single_safe_component(f"job_{token}")
    assert token != job_id


def test_hostile_job_ids_that_sanitise_alike_stay_distinct() -> None:
    tokens = {safe_job_token(j) for j in ["x", "../x", "/x", "x/", "..\\x"]}
    assert len(tokens) == 5


@pytest.mark.parametrize(
    ("key", "href", "media_type"),
    [
        ("openEO.tif", "https://b.example/jobs/j-1/results/openEO.tif", "image/tiff; application=geotiff"),
        ("B02", "https://b.example/jobs/j-1/results/b02.tif?sig=abc", "image/tiff"),
        ("data", "https://b.example/jobs/j-1/results/a", "image/tiff; application=geotiff"),
        ("timeseries", "https://b.example/download/ts", "application/json"),
        ("result.json", "https://b.example/jobs/j-1/results/result.json", "application/json"),
    ],
)
def test_asset_names_match_what_mbjm_downloads_to(key: str, href: str, media_type: str) -> None:
    """MBJM saves an asset under openeo's ``ResultAsset`` file name; ordinary assets land at the same name."""
    expected = ResultAsset(job=None, key=key, href=href, metadata={"type": media_type})._make_filename()
    assert asset_file_name(key, href, media_type) == expected


@pytest.mark.parametrize(
    ("key", "href"),
    [
        ("../../evil.tif", "https://b.example/a/evil.tif"),
        ("..", "https://b.example/..%2F..%2Fetc%2Fpasswd"),
        ("", "https://b.example/"),
        ("/abs", "https://b.example/x/%2e%2e"),
    ],
)
def test_asset_names_from_hostile_keys_and_hrefs_are_safe(key: str, href: str) -> None:
    _assert_single_safe_component(asset_file_name(key, href, "image/tiff"))


def test_ensure_inside_accepts_children_and_refuses_escapes(tmp_path: Path) -> None:
    job_dir = tmp_path / "job_1"
    job_dir.mkdir()
    ensure_inside(job_dir, job_dir / "a.tif")
    for escape in [job_dir / ".." / "x", job_dir, tmp_path / "job_10" / "a", Path("/etc/passwd")]:
        with pytest.raises(UnsafePathError):
            ensure_inside(job_dir, escape)


def test_ensure_inside_follows_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    job_dir = tmp_path / "job_1"
    job_dir.mkdir()
    (job_dir / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        ensure_inside(job_dir, job_dir / "link" / "a.tif")


@pytest.fixture
def memory_root() -> Iterator[Any]:
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem()
    attach("memory", fs=fs)
    root = ObjectStoragePath(f"memory://test-{uuid.uuid4().hex[:8]}/results")
    yield root
    fs.rm(root.path, recursive=True) if fs.exists(root.path) else None


def test_ensure_inside_on_object_storage(memory_root: Any) -> None:
    from airflow.sdk import ObjectStoragePath

    job_dir = memory_root / "job_1"
    ensure_inside(job_dir, job_dir / "a.tif")
    with pytest.raises(UnsafePathError):
        ensure_inside(job_dir, job_dir / ".." / ".." / "other")
    with pytest.raises(UnsafePathError):
        ensure_inside(job_dir, ObjectStoragePath("file:///tmp/job_1/a.tif"))


# -- the handler with hostile names, on a minimal in-process job ----------------------------------------------


class _Response:
    status_code = 200

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.headers = {"Content-Length": str(len(body))}

    def close(self) -> None:
        return None

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        for start in range(0, len(self.body), chunk_size):
            yield self.body[start : start + chunk_size]


class _Connection:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requested: list[str] = []

    def get(self, href: str, stream: bool = False, headers: dict[str, str] | None = None) -> _Response:
        assert stream, "assets must be streamed"
        assert "Range" not in (headers or {}), "nothing to resume in these tests"
        self.requested.append(href)
        return _Response(self.files[href])


class _Results:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def get_metadata(self) -> dict[str, Any]:
        return self.document


class _Job:
    """Just what the handler touches on a ``BatchJob``: id, connection, results, metadata."""

    def __init__(self, job_id: str, assets: dict[str, tuple[str, bytes]]) -> None:
        self.job_id = job_id
        self.connection = _Connection({href: body for href, body in assets.values()})
        self.document = {"assets": {key: {"href": href, "type": "image/tiff"} for key, (href, _) in assets.items()}}

    def get_results(self) -> _Results:
        return _Results(self.document)

    def describe(self) -> dict[str, Any]:
        return {"id": self.job_id, "status": "finished", "usage": {}}


def _all_files(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, files in os.walk(root) for f in files]


@pytest.mark.parametrize("job_id", ["j-ordinary", "../../escape", "/abs/job", "C:\\job", ".."])
def test_handler_keeps_every_file_inside_the_job_dir(tmp_path: Path, job_id: str) -> None:
    assets = {name: (f"https://b.example/assets/{i}", f"asset {i}".encode()) for i, name in enumerate(HOSTILE_NAMES)}
    assets["openEO.tif"] = ("https://b.example/assets/openEO.tif", b"plain")
    assets["OPENEO.TIF"] = ("https://b.example/assets/upper", b"upper")
    assets["job-results.json"] = ("https://b.example/assets/fake-stac", b"not the STAC document")
    root = tmp_path / "root"
    root.mkdir()
    handler = OpenEOJobHandler(root)

    result = handler.on_job_done(None, _Job(job_id, assets), None, {"id": job_id, "status": "finished"})

    job_dir = Path(result["job_dir"])
    assert job_dir.parent == root
    _assert_single_safe_component(job_dir.name)
    files = _all_files(tmp_path)
    assert files, "nothing was written"
    assert all(f.parent == job_dir for f in files), files
    # every asset stored once, under its own name, with its own bytes; the two metadata files beside them
    stored = {f.name: f.read_bytes() for f in files}
    metadata_name = f"job_{safe_job_token(job_id)}.json"
    assert sorted(body for name, body in stored.items() if name not in ("job-results.json", metadata_name)) == sorted(
        body for _, body in assets.values()
    )
    assert stored["openEO.tif"] == b"plain"
    # the stored STAC document names the files as they are on disk; the server's keys are kept as data only
    document = json.loads(stored["job-results.json"])
    assert set(document["assets"]) == set(stored) - {"job-results.json", metadata_name}
    assert all(entry["href"] == name for name, entry in document["assets"].items())
    original_keys = {entry.get("openeo_provider:original_key", name) for name, entry in document["assets"].items()}
    assert original_keys == set(assets)
    assert json.loads(stored[metadata_name])["id"] == job_id
    assert set(result["files"]) == {str(f) for f in files}


def test_handler_refuses_a_root_escape_even_if_a_name_slips_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: with sanitising switched off, the containment check still stops the write."""
    from airflow_provider_openeo.handlers import _safe_paths

    monkeypatch.setattr(_safe_paths, "asset_file_name", lambda key, href, media_type: key)
    root = tmp_path / "root"
    root.mkdir()
    job = _Job("j-1", {"../../escaped.tif": ("https://b.example/a", b"x")})
    with pytest.raises(Exception, match="outside"):
        OpenEOJobHandler(root).download_job_results(job, OpenEOJobHandler(root).ensure_job_dir_exists("j-1"))
    assert not (tmp_path / "escaped.tif").exists()
    assert [f for f in _all_files(tmp_path) if "escaped" in f.name] == []


def test_media_type_extensions_match_openeo() -> None:
    from openeo.rest import job as openeo_job

    from airflow_provider_openeo.handlers import _safe_paths

    assert openeo_job._MEDIA_TYPE_EXTENSION_MAP == _safe_paths._MEDIA_TYPE_EXTENSIONS
