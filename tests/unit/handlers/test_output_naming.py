"""Output naming: a rule over the row for where its files land and what they are called; hostile names refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_openeo.batch.task_groups import openeo_job_batch
from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from airflow_provider_openeo.handlers.output_naming import OutputNaming, OutputNamingError
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.job_table.job_row import JobRowRef
from tests.unit.handlers.test_job_handlers_paths import _Job

ASSETS = {"openEO.tif": ("https://b.example/a/openEO.tif", b"raster"), "openEO.json": ("https://b/m.json", b"{}")}


@pytest.fixture
def rows(tmp_path: Path) -> Iterator[OpenEOJobDbHook]:
    hook = OpenEOJobDbHook(table="named", sqlite_path=tmp_path / "jobs.db")
    hook.initialize_from_df(pd.DataFrame({"tile": ["31UFS", "../../etc", "31UGS"], "year": [2024, 2024, None]}))
    yield hook
    hook.dispose()


def row_with_job(hook: OpenEOJobDbHook, row_id: int, job_id: str) -> JobRowRef:
    assert hook.update_row(row_id, {"id": job_id, "status": "running", "backend_name": "foo"})
    return JobRowRef(table=hook.table, row_id=row_id, sqlite_path=str(hook.sqlite_path))


def test_files_land_where_the_rule_says_under_the_names_it_gives(tmp_path: Path, rows: OpenEOJobDbHook):
    handler = OpenEOJobHandler(
        tmp_path / "root", output_dir="tiles/{tile}/{year}", asset_name="ndvi_{tile}_{year}{ext}"
    )
    result = handler.on_job_done({}, _Job("j-1", ASSETS), row_with_job(rows, 0, "j-1"), {"status": "finished"})

    job_dir = tmp_path / "root" / "tiles" / "31UFS" / "2024"
    assert result["job_dir"] == str(job_dir)
    assert sorted(p.name for p in job_dir.iterdir()) == [
        "job-results.json", "job_j-1.json", "ndvi_31UFS_2024.json", "ndvi_31UFS_2024.tif",
    ]  # fmt: skip
    assert (job_dir / "ndvi_31UFS_2024.tif").read_bytes() == b"raster"
    document = json.loads((job_dir / "job-results.json").read_text())
    assert sorted(document["assets"]) == ["ndvi_31UFS_2024.json", "ndvi_31UFS_2024.tif"], "names as on disk"
    assert rows.get_row(0)["results_state"] == "downloaded"
    # the STAC item points at the renamed files
    item = json.loads(Path(result["stac_item"]).read_text())
    tif = (Path(result["stac_item"]).parent / item["assets"]["openEO.tif"]["href"]).resolve()
    assert tif == (job_dir / "ndvi_31UFS_2024.tif").resolve()


def test_a_callable_rule_gets_the_row(tmp_path: Path, rows: OpenEOJobDbHook):
    def by_tile(row):
        return f"{row['tile'][:3]}/{row['job_id']}"

    handler = OpenEOJobHandler(tmp_path, output_dir=by_tile)
    result = handler.on_job_done({}, _Job("j-2", ASSETS), row_with_job(rows, 2, "j-2"), {"status": "finished"})
    assert result["job_dir"] == str(tmp_path / "31U" / "j-2")


@pytest.mark.parametrize(
    ("row_id", "rule", "text"),
    [
        (1, "tiles/{tile}", r"row 1: output_dir 'tiles/\{tile\}' gave 'tiles/../../etc', refused: '..': it climbs out"),
        (2, "{tile}/{year}", r"row 2: output_dir .* needs field 'year', which the row does not have \(or has empty\)"),
        (0, "{tile}/{season}", r"row 0: output_dir .* needs field 'season'"),
    ],
)
def test_a_row_whose_values_make_an_unsafe_name_is_refused_and_says_why(
    tmp_path: Path, rows: OpenEOJobDbHook, row_id: int, rule: str, text: str
):
    handler = OpenEOJobHandler(tmp_path / "root", output_dir=rule)
    with pytest.raises(AirflowFailException, match=text):
        handler.on_job_done({}, _Job("j-3", ASSETS), row_with_job(rows, row_id, "j-3"), {"status": "finished"})
    row = rows.get_row(row_id)
    assert row["results_state"] == "failed" and row["error_message"].startswith(f"row {row_id}: output_dir")
    assert not (tmp_path / "root").exists() or not any(p.is_file() for p in (tmp_path / "root").rglob("*"))
    assert not list(tmp_path.parent.glob("etc")), "nothing written outside root_dir"


def test_an_asset_name_rule_that_gives_every_asset_one_name_keeps_them_apart(tmp_path: Path, rows: OpenEOJobDbHook):
    handler = OpenEOJobHandler(tmp_path, asset_name="{tile}.tif")
    result = handler.on_job_done({}, _Job("j-4", ASSETS), row_with_job(rows, 0, "j-4"), {"status": "finished"})
    assert sorted(Path(f).name for f in result["files"])[:2] == ["31UFS.tif", "31UFS_1.tif"]
    assert "asset_name gave '31UFS.tif', already taken by another file" in rows.get_row(0)["error_message"]


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"output_dir": "tiles/{tile"}, "is not a valid format string"),
        ({"output_dir": "tiles/{}"}, "name every field"),
        ({"output_dir": "/data/{tile}"}, "is an absolute path"),
        ({"output_dir": "../{tile}"}, r"climbs out of root_dir \('..'\)"),
        ({"output_dir": "  "}, "must not be empty"),
        ({"output_dir": 3}, "must be a format string or a callable"),
        ({"asset_name": "sub/{name}"}, "names a sub-directory; use output_dir"),
    ],
)
def test_malformed_rules_are_refused_when_the_dag_is_parsed(kwargs, text):
    with pytest.raises(OutputNamingError, match=text):
        OutputNaming(**kwargs)


def test_rule_fields_are_checked_against_a_frame_source_at_parse_time():
    source = pd.DataFrame({"tile": ["a"], "year": [2024]})
    with DAG("naming_fields", schedule=None), pytest.raises(OutputNamingError, match=r"names \['season'\]"):
        openeo_job_batch(
            backends={"foo": {"parallel_jobs": 1}},
            job_source=source,
            start_job=lambda row, connection, **kwargs: None,
            output_dir="{tile}/{season}",
        )
    with DAG("naming_fields_ok", schedule=None):
        openeo_job_batch(
            backends={"foo": {"parallel_jobs": 1}},
            job_source=source,
            start_job=lambda row, connection, **kwargs: None,
            output_dir="{tile}/{year}/{job_id}",
            asset_name="{tile}_{stem}{ext}",
        )
