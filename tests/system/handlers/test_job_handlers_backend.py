"""The job handlers against a real openEO HTTP server (the local backend) and a real SQLite job table."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openeo
import pandas as pd
import pytest
from openeo.extra.job_management._manager import _format_usage_stat
from openeo.extra.job_management._thread_worker import _JobDownloadTask

from airflow_provider_openeo.handlers._result_storage import TEMPORARY_MARKER
from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler, ResultDownloadError
from airflow_provider_openeo.hooks._openeo.http import no_retry
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.hooks.openeo import OpenEOHook
from airflow_provider_openeo.job_table.job_row import JobRowRef
from local_backend.launcher import BASIC_PASSWORD, LocalBackend
from tests.fixtures.local_backend import backend_conn_env
from tests.stac_checks import assert_validates_offline

CONN_ID = "openeo_handlers"
TERMINAL = {"finished", "error", "canceled"}


@pytest.fixture
def conn(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> openeo.Connection:
    """The connection tasks get in production: through the hook, from an Airflow connection."""
    backend_conn_env(monkeypatch, CONN_ID, openeo_backend)
    return OpenEOHook(CONN_ID).get_conn()


@pytest.fixture
def job_table(tmp_path: Path) -> Iterator[OpenEOJobDbHook]:
    hook = OpenEOJobDbHook(table="handler_jobs", sqlite_path=tmp_path / "jobs.db")
    hook.initialize_from_df(pd.DataFrame({"year": [2020, 2021, 2022]}))
    yield hook
    hook.dispose()


def _row(hook: OpenEOJobDbHook, row_id: int, job_id: str) -> JobRowRef:
    """A row that holds ``job_id``, as the start operator leaves it."""
    assert hook.update_row(row_id, {"id": job_id, "status": "running", "backend_name": "local"})
    return JobRowRef(table=hook.table, row_id=row_id, sqlite_path=str(hook.sqlite_path))


def _run_job(conn: openeo.Connection, *, wait_for: set[str] = TERMINAL, **options: Any) -> openeo.BatchJob:
    local = {"queue_seconds": 0, "run_seconds": 0.2, **options}
    job = conn.load_collection("S2_FOOBAR", bands=["B02"]).create_job(
        title=f"handler test {uuid.uuid4().hex[:6]}", job_options={"local_backend": local}
    )
    job.start()
    deadline = time.monotonic() + 30
    while job.status() not in wait_for:
        assert time.monotonic() < deadline, f"job {job.job_id} did not reach {wait_for}"
        time.sleep(0.05)
    return job


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def _assert_no_secret(conn: openeo.Connection, *texts: Any) -> None:
    bearer = conn.auth.bearer
    for text in texts:
        dumped = text if isinstance(text, (str, bytes)) else json.dumps(text, default=str)
        needle_pw = BASIC_PASSWORD.encode() if isinstance(dumped, bytes) else BASIC_PASSWORD
        needle_bearer = bearer.encode() if isinstance(dumped, bytes) else bearer
        assert needle_pw not in dumped
        assert needle_bearer not in dumped


def test_finished_job_lands_in_the_same_files_as_mbjm_downloads(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path
) -> None:
    job = _run_job(conn)
    row = _row(job_table, 1, job.job_id)
    handler = OpenEOJobHandler(tmp_path / "ours")

    result = handler.on_job_done({}, job, row, {"id": job.job_id, "status": "finished"})

    job_dir = tmp_path / "ours" / f"job_{job.job_id}"
    ours = _files(job_dir)
    assert sorted(ours) == ["job-results.json", f"job_{job.job_id}.json", "result.json", "result.tif"]
    # MBJM's own download task, run on the same job, writes the same names with the same bytes.
    mbjm_dir = tmp_path / "mbjm" / f"job_{job.job_id}"
    _JobDownloadTask(
        job_id=job.job_id, df_idx=1, root_url=conn.root_url, bearer_token=conn.auth.bearer, download_dir=mbjm_dir
    ).execute()
    assert ours == _files(mbjm_dir)
    # The contents are the backend's: a raster whose checksum the backend published, its STAC document.
    assert json.loads(ours["job-results.json"]) == job.get_results().get_metadata()
    assert json.loads(ours[f"job_{job.job_id}.json"])["status"] == "finished"
    assert ours["result.tif"][:4] == b"II*\x00"

    assert {**result, "files": sorted(result["files"])} == {
        "job_id": job.job_id,
        "status": "finished",
        "job_dir": str(job_dir),
        "files": sorted(str(job_dir / name) for name in ours),
        "results_state": "downloaded",
        "row_updated": True,
        "stac_collection": str(tmp_path / "ours" / "stac" / "handler_jobs" / "collection.json"),
        "stac_item": str(tmp_path / "ours" / "stac" / "handler_jobs" / "items" / "row_1.json"),
    }
    json.dumps(result)
    _assert_no_secret(conn, result, *ours.values())
    # The row's STAC item: the stored files as its assets, with the backend's fields; the collection validates.
    collection = assert_validates_offline(result["stac_collection"])
    (item,) = collection.get_items()
    assert item.properties["openeo_provider:job_id"] == job.job_id
    assert {key: Path(asset.get_absolute_href()) for key, asset in item.assets.items()} == {
        "result.tif": job_dir / "result.tif",
        "result.json": job_dir / "result.json",
    }
    assert item.assets["result.tif"].media_type == job.get_results().get_metadata()["assets"]["result.tif"]["type"]
    _assert_no_secret(conn, Path(result["stac_item"]).read_bytes(), Path(result["stac_collection"]).read_bytes())


def test_finished_row_gets_status_usage_and_costs_as_mbjm_writes_them(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path
) -> None:
    job = _run_job(conn, run_seconds=0.5)
    row = _row(job_table, 0, job.job_id)
    OpenEOJobHandler(tmp_path).on_job_done({}, job, row, {"id": job.job_id, "status": "finished"})

    metadata = job.describe()
    stored = job_table.get_row(0)
    assert stored["status"] == "finished"
    assert stored["backend_status"] == "finished"
    assert stored["results_state"] == "downloaded"
    assert stored["error_message"] is None
    assert set(metadata["usage"]) == {"cpu", "memory", "duration", "input_pixel", "sentinelhub"}
    for column in metadata["usage"]:  # every key a column, as MBJM 0.53 has it
        assert stored[column] == _format_usage_stat(metadata, column)
    assert stored["cpu"].endswith(" cpu-seconds")
    assert stored["costs"] == pytest.approx(metadata["costs"])
    assert isinstance(stored["costs"], float)
    _assert_no_secret(conn, stored)
    # the other rows are untouched
    assert job_table.get_row(2)["status"] == "not_started"


def test_usage_comes_from_the_backend_when_the_status_report_lacks_it(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path
) -> None:
    """A status event built from the shared ``GET /jobs`` listing may carry no usage: one describe fills it in."""
    job = _run_job(conn)
    row = _row(job_table, 0, job.job_id)
    OpenEOJobHandler(tmp_path, download_results=False).on_job_done({}, job, row, {"status": "finished"})
    assert job_table.get_row(0)["cpu"].endswith("cpu-seconds")


def test_results_go_to_object_storage(conn: openeo.Connection, job_table: OpenEOJobDbHook) -> None:
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem()
    attach("memory", fs=fs)
    root = ObjectStoragePath(f"memory://results-{uuid.uuid4().hex[:8]}/batch")
    job = _run_job(conn)
    row = _row(job_table, 0, job.job_id)
    try:
        result = OpenEOJobHandler(root).on_job_done({}, job, row, {"id": job.job_id, "status": "finished"})
        job_dir = root / f"job_{job.job_id}"
        names = sorted(p.name for p in job_dir.iterdir())
        assert names == ["job-results.json", f"job_{job.job_id}.json", "result.json", "result.tif"]
        tif = (job_dir / "result.tif").read_bytes()
        assert len(tif) == 2048 and tif[:4] == b"II*\x00"
        assert json.loads((job_dir / "result.json").read_bytes())["job_id"] == job.job_id
        assert result["job_dir"] == str(job_dir)
        assert all(f.startswith("memory://") for f in result["files"])
        assert job_table.get_row(0)["results_state"] == "downloaded"
    finally:
        fs.rm(root.path, recursive=True)


def test_download_results_false_writes_only_metadata(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path, openeo_backend: LocalBackend
) -> None:
    job = _run_job(conn)
    row = _row(job_table, 0, job.job_id)
    openeo_backend.reset_stats()
    result = OpenEOJobHandler(tmp_path, download_results=False, stac_collection=False).on_job_done(
        {}, job, row, {"id": job.job_id, "status": "finished", "usage": {}}
    )
    assert sorted(_files(tmp_path / f"job_{job.job_id}")) == [f"job_{job.job_id}.json"]
    assert result["results_state"] == "skipped"
    assert job_table.get_row(0)["results_state"] == "skipped"
    assert not any("results" in key for key in openeo_backend.stats()), openeo_backend.stats()


def test_without_download_the_stac_item_points_at_the_backends_hrefs(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path, openeo_backend: LocalBackend
) -> None:
    job = _run_job(conn)
    row = _row(job_table, 0, job.job_id)
    openeo_backend.reset_stats()
    result = OpenEOJobHandler(tmp_path, download_results=False).on_job_done(
        {}, job, row, {"id": job.job_id, "status": "finished", "usage": {}}
    )
    assert sorted(_files(tmp_path / f"job_{job.job_id}")) == [f"job_{job.job_id}.json"], "no asset downloaded"
    stats = openeo_backend.stats()
    assert {key: count for key, count in stats.items() if "results" in key} == {"GET /jobs/{job_id}/results": 1}
    (item,) = assert_validates_offline(result["stac_collection"]).get_items()
    hrefs = {key: asset["href"] for key, asset in job.get_results().get_metadata()["assets"].items()}
    assert {key: asset.href for key, asset in item.assets.items()} == hrefs
    assert all(href.startswith(openeo_backend.url) for href in hrefs.values())
    assert conn.get(hrefs["result.tif"], stream=True).content[:2] == b"II", "the backend's href opens"


def test_error_job_writes_error_logs_to_file_task_log_and_row(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = _run_job(conn, fail=True, fail_message="Out of memory in tile 7\nTraceback (most recent call last): ...")
    row = _row(job_table, 0, job.job_id)
    caplog.set_level(logging.INFO)

    result = OpenEOJobHandler(tmp_path).on_job_error({}, job, row, {"id": job.job_id, "status": "error"})

    job_dir = tmp_path / f"job_{job.job_id}"
    errors = json.loads((job_dir / f"job_{job.job_id}_errors.json").read_text())
    assert errors == [dict(e) for e in job.logs(level="error")]
    assert [e["code"] for e in errors] == ["LocalBackendFailure"]
    error_lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("[LocalBackendFailure] Out of memory in tile 7" in line and job.job_id in line for line in error_lines)
    stored = job_table.get_row(0)
    assert stored["status"] == "error"
    assert stored["backend_status"] == "error"
    assert stored["error_message"] == "Out of memory in tile 7"
    assert stored["cpu"] == _format_usage_stat(job.describe(), "cpu")
    assert result["error_message"] == "Out of memory in tile 7"
    assert result["files"] == [
        str(job_dir / f"job_{job.job_id}_errors.json"),
        str(job_dir / f"job_{job.job_id}.json"),
    ]
    json.dumps(result)


def test_canceled_job_is_recorded(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = _run_job(conn, run_seconds=60, wait_for={"running"})
    job.stop()
    while job.status() != "canceled":
        time.sleep(0.05)
    row = _row(job_table, 0, job.job_id)
    caplog.set_level(logging.INFO)

    result = OpenEOJobHandler(tmp_path).on_job_cancel({}, job, row, job.describe())

    assert result == {"job_id": job.job_id, "status": "canceled", "row_updated": True}
    stored = job_table.get_row(0)
    assert (stored["status"], stored["backend_status"]) == ("canceled", "canceled")
    assert f"openEO job {job.job_id} was canceled" in caplog.text
    assert not (tmp_path / f"job_{job.job_id}").exists()


def test_stale_handler_never_overwrites_a_newer_jobs_row(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old_job = _run_job(conn, fail=True)
    row = _row(job_table, 0, "j-newer-job")
    before = job_table.get_row(0)
    caplog.set_level(logging.WARNING)

    result = OpenEOJobHandler(tmp_path).on_job_error({}, old_job, row, {"id": old_job.job_id, "status": "error"})

    assert result["row_updated"] is False
    after = job_table.get_row(0)
    assert {k: v for k, v in after.items() if k in before and k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }
    # usage keys first seen may have added (empty) columns to the table, never values to the row
    assert all(after[k] is None for k in set(after) - set(before))
    assert "no longer holds openEO job" in caplog.text


class _DropsAfterFirstChunk(OpenEOJobHandler):
    """Streams the real response but loses the connection after one chunk, like a network cut mid-file."""

    def download_asset(self, job: openeo.BatchJob, asset: Any, target: Any) -> Any:
        connection = job.connection
        original = connection.get

        def get(url: str, **kwargs: Any) -> Any:
            response = original(url, **kwargs)
            real_iter = response.iter_content

            def cut(chunk_size: int = 1) -> Iterator[bytes]:
                chunks = real_iter(chunk_size=chunk_size)
                yield next(chunks)
                raise ConnectionError("Connection broken: IncompleteRead(256 bytes read)")

            response.iter_content = cut
            return response

        connection.get = get  # type: ignore[method-assign]
        try:
            return super().download_asset(job, asset, target)
        finally:
            del connection.get


def test_interrupted_download_leaves_no_complete_looking_file_and_a_rerun_completes(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path, openeo_backend: LocalBackend
) -> None:
    job = _run_job(conn)
    row = _row(job_table, 0, job.job_id)
    job_dir = tmp_path / f"job_{job.job_id}"

    with pytest.raises(ResultDownloadError, match=r"downloading results of openEO job .* failed"):
        _DropsAfterFirstChunk(tmp_path, chunk_size=256, resume_attempts=2).on_job_done({}, job, row, job.describe())

    # each cut continued at once (with Range) while it made progress: result.json (267 bytes) completed, then
    # result.tif ran out of attempts. No STAC document, no metadata, no incomplete file under a real name:
    # only the hidden partial file a retry continues.
    assert sorted((p.name, p.stat().st_size) for p in job_dir.iterdir()) == [
        (".result.tif.partial", 3 * 256),
        ("result.json", 267),
    ]
    stored = job_table.get_row(0)
    assert (stored["status"], stored["results_state"]) == ("finished", "failed")
    assert "IncompleteRead" in stored["error_message"]
    openeo_backend.reset_stats()

    result = OpenEOJobHandler(tmp_path).on_job_done({}, job, row, job.describe())

    # the retry kept result.json and moved only the bytes of result.tif the first try did not get
    assert openeo_backend.bytes_sent()["GET /jobs/{job_id}/results/assets/{filename}"] == 2048 - 3 * 256
    assert sorted(_files(job_dir)) == ["job-results.json", f"job_{job.job_id}.json", "result.json", "result.tif"]
    href = job.get_results().get_metadata()["assets"]["result.tif"]["href"]
    assert (job_dir / "result.tif").read_bytes() == conn.get(href).content
    assert not any(TEMPORARY_MARKER in p.name or p.name.endswith(".partial") for p in job_dir.iterdir())
    stored = job_table.get_row(0)
    assert (stored["results_state"], stored["error_message"]) == ("downloaded", None)
    assert result["results_state"] == "downloaded"


def test_server_refusing_an_asset_marks_the_download_failed(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path, openeo_backend: LocalBackend
) -> None:
    # The production retry policy would retry the 503 with back-off (~30 s); the outcome is the same without.
    job = OpenEOHook(CONN_ID, retry=no_retry()).get_conn().job(_run_job(conn).job_id)
    row = _row(job_table, 0, job.job_id)
    openeo_backend.configure(faults=[{"error_rate": 1.0, "error_status": 503, "path": r"result\.tif"}])

    with pytest.raises(ResultDownloadError, match="503"):
        OpenEOJobHandler(tmp_path).on_job_done({}, job, row, job.describe())

    job_dir = tmp_path / f"job_{job.job_id}"
    assert not (job_dir / "result.tif").exists()
    assert not (job_dir / f"job_{job.job_id}.json").exists()
    stored = job_table.get_row(0)
    assert stored["results_state"] == "failed"
    assert "503" in stored["error_message"]
    _assert_no_secret(conn, stored)


def test_error_job_whose_logs_cannot_be_fetched_is_still_recorded(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path, openeo_backend: LocalBackend
) -> None:
    job = OpenEOHook(CONN_ID, retry=no_retry()).get_conn().job(_run_job(conn, fail=True).job_id)
    row = _row(job_table, 0, job.job_id)
    openeo_backend.configure(faults=[{"error_rate": 1.0, "endpoints": ["GET /jobs/{job_id}/logs"]}])

    result = OpenEOJobHandler(tmp_path).on_job_error({}, job, row, {"id": job.job_id, "status": "error"})

    job_dir = tmp_path / f"job_{job.job_id}"
    assert sorted(_files(job_dir)) == [f"job_{job.job_id}.json"]
    stored = job_table.get_row(0)
    assert stored["status"] == "error"
    assert (
        stored["error_message"]
        == f"openEO job {job.job_id} ended with status error; its error logs could not be fetched"
    )
    assert result["error_message"] == stored["error_message"]


def test_a_row_run_again_that_ends_in_error_leaves_the_collection(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path
) -> None:
    handler = OpenEOJobHandler(tmp_path)
    first = _run_job(conn)
    done = handler.on_job_done({}, first, _row(job_table, 0, first.job_id), {"id": first.job_id, "status": "finished"})
    other = _run_job(conn)
    handler.on_job_done({}, other, _row(job_table, 1, other.job_id), {"id": other.job_id, "status": "finished"})
    assert sorted(i.id for i in assert_validates_offline(done["stac_collection"]).get_items()) == ["row_0", "row_1"]

    again = _run_job(conn, fail=True, fail_message="boom")  # row 0 run again: its new job fails
    handler.on_job_error({}, again, _row(job_table, 0, again.job_id), {"id": again.job_id, "status": "error"})
    (item,) = assert_validates_offline(done["stac_collection"]).get_items()
    assert item.id == "row_1", "one item per finished row: row 0 is in error now"
    assert not Path(done["stac_item"]).exists()


def test_an_errored_job_whose_row_the_naming_rule_refuses_still_records_the_error(
    conn: openeo.Connection, job_table: OpenEOJobDbHook, tmp_path: Path
) -> None:
    job = _run_job(conn, fail=True, fail_message="Out of memory")
    handler = OpenEOJobHandler(tmp_path, output_dir=lambda row: "..")
    handler.on_job_error({}, job, _row(job_table, 0, job.job_id), {"id": job.job_id, "status": "error"})
    row = job_table.get_row(0)
    assert (row["status"], row["error_message"]) == ("error", "Out of memory")
    assert (tmp_path / f"job_{job.job_id}" / f"job_{job.job_id}_errors.json").is_file(), "in the default directory"
