"""A renamed or refused asset is said on the row and in the task log, and the stored STAC names the files on disk."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airflow_provider_openeo.handlers._asset_plan import (
    ORIGINAL_KEY_FIELD,
    REFUSED_FIELD,
    AssetNote,
    PlannedAsset,
    expected_sha256,
    expected_size,
    plan_assets,
    stored_results_document,
)
from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.job_table.job_row import JobRowRef
from tests.unit.handlers.test_job_handlers_paths import _Job

HOSTILE_KEYS = ["..", "../../escape.txt", "/tmp/abs-escape.txt", "sub/../../up.txt"]


@pytest.fixture
def job_table(tmp_path: Path) -> Iterator[OpenEOJobDbHook]:
    hook = OpenEOJobDbHook(table="note_jobs", sqlite_path=tmp_path / "jobs.db")
    hook.initialize_from_df(pd.DataFrame({"year": [2020]}))
    yield hook
    hook.dispose()


def _row(hook: OpenEOJobDbHook, job_id: str) -> JobRowRef:
    assert hook.update_row(0, {"id": job_id, "status": "running", "backend_name": "local"})
    return JobRowRef(table=hook.table, row_id=0, sqlite_path=str(hook.sqlite_path))


def test_hostile_keys_are_noted_on_the_row_in_the_log_and_in_the_stored_document(
    tmp_path: Path, job_table: OpenEOJobDbHook, caplog: pytest.LogCaptureFixture
) -> None:
    assets = {key: (f"https://b.example/assets/{i}.txt", f"body {i}".encode()) for i, key in enumerate(HOSTILE_KEYS)}
    assets["result.tif"] = ("https://b.example/assets/result.tif", b"ordinary")
    job = _Job("j-hostile", assets)
    job.document["assets"]["local-file"] = {"href": "file:///etc/passwd", "type": "text/plain"}
    root = tmp_path / "root"
    caplog.set_level(logging.INFO)

    result = OpenEOJobHandler(root).on_job_done({}, job, _row(job_table, "j-hostile"), {"status": "finished"})

    job_dir = root / "job_j-hostile"
    on_disk = {p.name for p in job_dir.iterdir()}
    stac = root / "stac"  # the batch's STAC collection: the item names the files as on disk
    assert not [p for p in root.rglob("*") if p.is_file() and p.parent != job_dir and stac not in p.parents]
    item = json.loads((stac / "note_jobs" / "items" / "row_0.json").read_text())
    for key, asset in item["assets"].items():
        assert "/" not in key and not key.startswith(".")
        assert (stac / "note_jobs" / "items" / asset["href"]).resolve().parent == job_dir.resolve()
    # the row: stored, with a note naming every changed key, what it became and why
    row = job_table.get_row(0)
    assert (row["status"], row["results_state"]) == ("finished", "downloaded")
    note = row["error_message"]
    assert note.startswith("results stored with 5 asset note(s): ")
    for key in HOSTILE_KEYS:
        assert repr(key) in note
    assert "it climbs out of the job directory ('..')" in note
    assert "it is an absolute path" in note
    assert "asset 'local-file' refused: its href is no http(s) URL (scheme 'file')" in note
    assert "'result.tif'" not in note
    # the task log says the same, one line per asset
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("stored as" in w or "refused" in w for w in warnings) == 5
    # the stored STAC document: keys and hrefs are the names on disk; the server's keys only as data
    document = json.loads((job_dir / "job-results.json").read_text())
    assert set(document["assets"]) == on_disk - {"job-results.json", "job_j-hostile.json"}
    for name, entry in document["assets"].items():
        assert entry["href"] == name and (job_dir / name).is_file()
        assert "/" not in name and not name.startswith(".")
    originals = {entry.get(ORIGINAL_KEY_FIELD, name) for name, entry in document["assets"].items()}
    assert originals == {*HOSTILE_KEYS, "result.tif"}
    assert document[REFUSED_FIELD] == [{"key": "local-file", "reason": "its href is no http(s) URL (scheme 'file')"}]
    assert (job_dir / "result.tif").read_bytes() == b"ordinary"
    assert result["results_state"] == "downloaded"


def test_ordinary_results_keep_the_backends_document_and_an_empty_note(
    tmp_path: Path, job_table: OpenEOJobDbHook
) -> None:
    job = _Job("j-plain", {"result.tif": ("https://b.example/a/result.tif", b"x"), "openEO": ("https://b/c.nc", b"y")})
    OpenEOJobHandler(tmp_path).on_job_done({}, job, _row(job_table, "j-plain"), {"status": "finished"})
    assert job_table.get_row(0)["error_message"] is None
    assert json.loads((tmp_path / "job_j-plain" / "job-results.json").read_text()) == job.document
    assert (tmp_path / "job_j-plain" / "openEO-c.nc").read_bytes() == b"y"  # MBJM's name for a non-file key


@pytest.mark.parametrize(
    ("asset", "size", "sha256"),
    [
        ({"file:size": 10, "file:checksum": "1220" + "ab" * 32}, 10, "ab" * 32),
        ({"file:size": 10.0, "file:checksum": "1220" + "AB" * 32}, 10, "ab" * 32),
        ({"file:size": -1, "file:checksum": "1114" + "ab" * 20}, None, None),  # sha1: not checked
        ({"file:size": True, "file:checksum": "1220abc"}, None, None),
        ({"file:size": "10"}, None, None),
        ({}, None, None),
    ],
)
def test_size_and_checksum_are_read_only_when_well_formed(asset: dict[str, Any], size: Any, sha256: Any) -> None:
    assert (expected_size(asset), expected_sha256(asset)) == (size, sha256)


def test_a_name_taken_by_the_jobs_own_files_is_a_rename() -> None:
    planned, notes = plan_assets(
        {"job-results.json": {"href": "https://b/x.json"}, "a": "not an object", "b": {"href": ""}},
        ["job-results.json"],
    )
    assert planned == [PlannedAsset("job-results.json", "https://b/x.json", "job-results_1.json")]
    assert notes == [
        AssetNote(
            "job-results.json",
            "job-results_1.json",
            "the name 'job-results.json' was already taken by another file of the job",
        ),
        AssetNote("a", None, "its entry is not an object"),
        AssetNote("b", None, "it has no href"),
    ]
    stored = stored_results_document({"assets": {"job-results.json": {"href": "https://b/x.json"}}}, planned, notes)
    assert stored["assets"] == {
        "job-results_1.json": {"href": "job-results_1.json", ORIGINAL_KEY_FIELD: "job-results.json"}
    }


def test_an_asset_note_cannot_forge_log_lines() -> None:
    text = AssetNote("x\nERROR forged", "x_ERROR forged", "it holds control or invisible characters").describe()
    assert "\n" not in text
