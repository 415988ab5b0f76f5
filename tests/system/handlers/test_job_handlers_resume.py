"""Downloads resume per asset against a real local backend: kept files, ``Range`` continuations, expiring links.

The issue's reproduction: 3 x 20 MB assets, signed links shorter than a download, a stream that breaks off.
The measure is the bytes the server sent (its counter) against the bytes of the results.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openeo
import pytest

from airflow_provider_openeo.handlers._asset_download import MAX_NETWORK_READ
from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler, ResultDownloadError
from airflow_provider_openeo.hooks.openeo import OpenEOHook
from local_backend.launcher import LocalBackend
from tests.fixtures.local_backend import backend_conn_env
from tests.system.handlers.test_job_handlers_backend import _run_job

CONN_ID = "openeo_resume"
MB = 1_000_000
ASSET_ROUTES = ("GET /jobs/{job_id}/results/assets/",)


@pytest.fixture
def conn(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> openeo.Connection:
    backend_conn_env(monkeypatch, CONN_ID, openeo_backend)
    return OpenEOHook(CONN_ID).get_conn()


def _asset_bytes_sent(backend: LocalBackend) -> int:
    return sum(size for key, size in backend.bytes_sent().items() if key.startswith(ASSET_ROUTES))


def _results_size(job: openeo.BatchJob) -> int:
    return sum(asset["file:size"] for asset in job.get_results().get_metadata()["assets"].values())


def _assert_matches_checksums(job: openeo.BatchJob, job_dir: Any) -> None:
    for name, asset in job.get_results().get_metadata()["assets"].items():
        data = (job_dir / name).read_bytes()
        assert len(data) == asset["file:size"], name
        assert asset["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest(), name


def test_retried_download_of_large_assets_with_expiring_links_moves_each_byte_about_once(
    conn: openeo.Connection, openeo_backend: LocalBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """3 x 20 MB at 25 MB/s (0.8 s each) with links valid 0.6 s; result_2.tif breaks off at 5 MB once.

    Try 1 stores result.tif, renews result_2.tif's expired link, loses the stream at 5 MB and (allowed no
    immediate continuation) fails. Try 2 keeps result.tif (size and checksum), continues result_2.tif from
    5 MB, renews result_3.tif's expired link and completes.
    """
    openeo_backend.configure(
        result_assets=3,
        result_size=20 * MB,
        asset_checksums=True,
        signed_url_lifetime=0.6,
        faults=[
            {"path": r"/results/assets/", "bytes_per_second": 25 * MB},
            {"path": r"result_2\.tif", "truncate_after": 5 * MB, "times": 1},
        ],
    )
    job = _run_job(conn)
    caplog.set_level(logging.INFO)
    openeo_backend.reset_stats()

    with pytest.raises(ResultDownloadError, match=r"IncompleteRead|Connection broken"):
        OpenEOJobHandler(tmp_path, resume_attempts=0).on_job_done({}, job, None, job.describe())
    first_try = _asset_bytes_sent(openeo_backend)
    result = OpenEOJobHandler(tmp_path).on_job_done({}, job, None, job.describe())

    moved = _asset_bytes_sent(openeo_backend)
    openeo_backend.configure(signed_url_lifetime=None, faults=[])
    size = _results_size(job)
    print(f"bytes moved {moved} for {size} bytes of results: {moved / size:.4f}x (first try {first_try})")
    assert result["results_state"] == "downloaded"
    assert size > 60 * MB
    assert moved <= 1.1 * size
    assert 25 * MB <= first_try < 26 * MB  # result.json, result.tif, 5 MB of result_2.tif
    job_dir = tmp_path / f"job_{job.job_id}"
    _assert_matches_checksums(job, job_dir)
    assert not [p.name for p in job_dir.iterdir() if p.name.startswith(".")]
    messages = [r.getMessage() for r in caplog.records]
    assert any("Kept asset 'result.tif'" in m for m in messages)
    (resumed,) = [m for m in messages if "result_2.tif" in m and "continued from byte" in m]
    # a read cut short loses at most one small read's bytes
    assert 5 * MB - MAX_NETWORK_READ <= int(re.search(r"continued from byte (\d+)", resumed).group(1)) <= 5 * MB
    assert sum("link to asset" in m and "expired" in m for m in messages) >= 2
    assert openeo_backend.stats()["GET /jobs/{job_id}/results"] >= 4  # two tries, and a re-read per expiry


def test_a_broken_stream_continues_at_once_with_range(
    conn: openeo.Connection, openeo_backend: LocalBackend, tmp_path: Path
) -> None:
    openeo_backend.configure(result_size=3 * MB, faults=[{"path": r"result\.tif", "truncate_after": MB, "times": 2}])
    job = _run_job(conn)
    openeo_backend.reset_stats()

    OpenEOJobHandler(tmp_path).on_job_done({}, job, None, job.describe())

    assert (tmp_path / f"job_{job.job_id}" / "result.tif").stat().st_size == 3 * MB
    assert openeo_backend.fault_stats() == {"truncate": 2}
    # no byte twice but those of the two reads the cuts interrupted
    assert _results_size(job) <= _asset_bytes_sent(openeo_backend) <= _results_size(job) + 2 * MAX_NETWORK_READ
    assert openeo_backend.stats()["GET /jobs/{job_id}/results/assets/{filename}"] == 1 + 3


def test_a_rerun_keeps_complete_assets_without_moving_them(
    conn: openeo.Connection, openeo_backend: LocalBackend, tmp_path: Path
) -> None:
    """Without file:checksum the size decides; the backend's file:size is enough (no HEAD, no GET)."""
    openeo_backend.configure(result_assets=2, result_size=MB)
    job = _run_job(conn)
    handler = OpenEOJobHandler(tmp_path)
    handler.on_job_done({}, job, None, job.describe())
    openeo_backend.reset_stats()

    handler.on_job_done({}, job, None, job.describe())

    assert _asset_bytes_sent(openeo_backend) == 0
    assert not any("/assets/" in key for key in openeo_backend.stats())


def test_a_corrupted_complete_file_is_fetched_again(
    conn: openeo.Connection, openeo_backend: LocalBackend, tmp_path: Path
) -> None:
    openeo_backend.configure(result_size=MB, asset_checksums=True)
    job = _run_job(conn)
    handler = OpenEOJobHandler(tmp_path)
    handler.on_job_done({}, job, None, job.describe())
    tif = tmp_path / f"job_{job.job_id}" / "result.tif"
    tif.write_bytes(b"X" * MB)  # same size, other bytes
    openeo_backend.reset_stats()

    handler.on_job_done({}, job, None, job.describe())

    _assert_matches_checksums(job, tif.parent)
    assert _asset_bytes_sent(openeo_backend) == MB


@pytest.fixture
def memory_root(request: pytest.FixtureRequest) -> Iterator[Any]:
    """An object-storage root_dir: fsspec memory that appends, or (param "no-append") one that cannot."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    class NoAppendMemoryFileSystem(MemoryFileSystem):
        cachable = False

        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            if "a" in mode:
                raise NotImplementedError("this store cannot append")
            return super()._open(path, mode, **kwargs)

    conn_id = "noappend" if request.param == "no-append" else None
    fs = NoAppendMemoryFileSystem() if conn_id else MemoryFileSystem()
    attach("memory", conn_id=conn_id, fs=fs)
    prefix = f"{conn_id}@" if conn_id else ""
    root = ObjectStoragePath(f"memory://{prefix}resume-{uuid.uuid4().hex[:8]}/batch")
    yield root
    fs.rm(root.path, recursive=True)


@pytest.mark.parametrize("memory_root", ["append", "no-append"], indirect=True)
def test_object_storage_resumes_where_it_can_and_restarts_only_that_asset_where_not(
    conn: openeo.Connection, openeo_backend: LocalBackend, memory_root: Any
) -> None:
    openeo_backend.configure(
        result_assets=3,
        result_size=2 * MB,
        asset_checksums=True,
        faults=[{"path": r"result_2\.tif", "truncate_after": MB, "times": 1}],
    )
    job = _run_job(conn)
    openeo_backend.reset_stats()

    with pytest.raises(ResultDownloadError):
        OpenEOJobHandler(memory_root, resume_attempts=0).on_job_done({}, job, None, job.describe())
    OpenEOJobHandler(memory_root).on_job_done({}, job, None, job.describe())

    job_dir = memory_root / f"job_{job.job_id}"
    _assert_matches_checksums(job, job_dir)
    assert not [p.name for p in job_dir.iterdir() if p.name.startswith(".")]
    moved, size = _asset_bytes_sent(openeo_backend), _results_size(job)
    # with append: each byte once (but an interrupted read's); without: result_2.tif's first MB again, that asset only
    again = 0 if memory_root.conn_id is None else MB
    assert size + again <= moved <= size + again + MAX_NETWORK_READ
