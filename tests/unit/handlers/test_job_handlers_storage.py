"""Result files are written completely or not at all, on local disk and on an fsspec object store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_openeo.handlers._result_storage import (
    TEMPORARY_MARKER,
    IncompleteDownloadError,
    as_storage_path,
    make_dirs,
    write_chunks_atomically,
    write_json_atomically,
)


@pytest.fixture
def memory_dir() -> Iterator[Any]:
    """A fresh directory on fsspec's in-memory filesystem, reached through Airflow's ObjectStoragePath."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem()
    attach("memory", fs=fs)
    directory = ObjectStoragePath(f"memory://storage-{uuid.uuid4().hex[:8]}/results/job_1")
    make_dirs(directory)
    yield directory
    if fs.exists(directory.path):
        fs.rm(directory.path, recursive=True)


@pytest.fixture(params=["local", "memory"])
def directory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return tmp_path
    return request.getfixturevalue("memory_dir")


def _names(directory: Any) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _chunks(total: int, size: int, *, fail_after: int | None = None) -> Iterator[bytes]:
    sent = 0
    index = 0
    while sent < total:
        if fail_after is not None and index == fail_after:
            raise ConnectionError("connection reset by peer")
        piece = bytes([index % 251]) * min(size, total - sent)
        sent += len(piece)
        index += 1
        yield piece


def test_streamed_file_lands_complete_with_no_leftovers(directory: Any) -> None:
    target = directory / "result.tif"
    written = write_chunks_atomically(target, _chunks(10_000, 1024), expected_size=10_000)
    assert written == 10_000
    assert target.read_bytes() == b"".join(_chunks(10_000, 1024))
    assert _names(directory) == ["result.tif"]


def test_interrupted_stream_leaves_no_file_that_looks_complete(directory: Any) -> None:
    target = directory / "result.tif"
    with pytest.raises(ConnectionError):
        write_chunks_atomically(target, _chunks(10_000, 1024, fail_after=3), expected_size=10_000)
    assert not target.exists()
    assert _names(directory) == []


def test_interrupted_rewrite_keeps_the_previous_complete_file(directory: Any) -> None:
    target = directory / "result.tif"
    write_chunks_atomically(target, [b"old complete content"])
    with pytest.raises(ConnectionError):
        write_chunks_atomically(target, _chunks(10_000, 1024, fail_after=2))
    assert target.read_bytes() == b"old complete content"
    assert _names(directory) == ["result.tif"]


def test_short_body_is_an_incomplete_download(directory: Any) -> None:
    target = directory / "result.tif"
    with pytest.raises(IncompleteDownloadError, match=r"4096 bytes.*announced 10000"):
        write_chunks_atomically(target, _chunks(4096, 1024), expected_size=10_000)
    assert _names(directory) == []


def test_a_killed_writer_leaves_only_a_hidden_partial_file_and_a_rerun_completes(directory: Any) -> None:
    """A SIGKILL cannot run cleanup: what it leaves must not carry the real name, and must not block a re-run."""
    target = directory / "result.tif"
    leftover = directory / f".result.tif{TEMPORARY_MARKER}deadbeef0000"
    with leftover.open("wb") as handle:
        handle.write(b"half")
    assert not target.exists()
    write_chunks_atomically(target, [b"complete"], expected_size=8)
    assert target.read_bytes() == b"complete"


def test_json_documents_are_written_atomically(directory: Any) -> None:
    target = directory / "job-results.json"
    write_json_atomically(target, {"assets": {"a.tif": {"href": "https://x/a.tif"}}, "t": "é"}, ensure_ascii=False)
    assert json.loads(target.read_text(encoding="utf-8"))["t"] == "é"
    assert _names(directory) == ["job-results.json"]


def test_storage_path_from_strings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import ObjectStoragePath

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # a process's working directory does not count: $AIRFLOW_HOME does
    assert as_storage_path("results") == tmp_path / "home" / "results"
    assert as_storage_path(tmp_path) == tmp_path
    remote = as_storage_path("s3://my_conn@bucket/results")
    assert isinstance(remote, ObjectStoragePath)
    assert (remote.protocol, remote.conn_id, remote.key) == ("s3", "my_conn", "results")
    given = ObjectStoragePath("memory://b/x")
    assert as_storage_path(given) is given


def test_resumable_partials_survive_the_sweep_of_leftover_temporaries(directory: Any) -> None:
    from airflow_provider_openeo.handlers._result_storage import (
        partial_path_for,
        remove_leftover_temporaries,
        remove_partials,
    )

    partial = partial_path_for(directory / "odd.part-name.tif")
    with partial.open("wb") as handle:
        handle.write(b"half")
    assert remove_leftover_temporaries(directory) == []
    assert remove_partials(directory) == [partial.name]
    assert not partial.exists()
