"""MBJM's exchange files: import what ``create_job_db`` writes, export what MBJM's databases open."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from openeo.extra.job_management import CsvJobDatabase, ParquetJobDatabase, create_job_db

from airflow_provider_openeo.hooks._job_db.columns import RESERVED
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from tests.fixtures.databases import same_table, unique_table_name

SUFFIXES = [".csv", ".parquet", ".geoparquet"]


def _source(geo: bool) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "year": [2019, 2020, 2021, 2022],
            "title": ["a", "b, with comma", 'c "quoted"', "d"],
            "threshold": rng.random(4),
        }
    )
    if not geo:
        return df
    geometry = [shapely.Polygon(rng.random((3, 2)) * 10).convex_hull for _ in range(4)]
    return gpd.GeoDataFrame(df, geometry=geometry, crs="EPSG:4326")


def _mbjm_file(tmp_path, suffix: str, geo: bool):
    path = tmp_path / f"mbjm{suffix}"
    mbjm_db = create_job_db(path, _source(geo))
    return path, mbjm_db.read()


@pytest.mark.parametrize("geo", [False, True], ids=["plain", "geo"])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_import_file_written_by_create_job_db(job_db: OpenEOJobDbHook, tmp_path, suffix: str, geo: bool) -> None:
    path, as_mbjm_reads_it = _mbjm_file(tmp_path, suffix, geo)
    job_db.import_file(path)
    ours = same_table(job_db).read()
    # nothing lost: the user's columns come back with MBJM's values and dtypes; MBJM's own columns with the
    # same values in the dtypes MBJM declares (its Parquet file stores the all-empty ``costs`` as nulls of type
    # object, we keep MBJM's declared float64)
    user = [c for c in as_mbjm_reads_it.columns if c not in RESERVED]
    # (pandas' default CSV float parser, which MBJM uses, can be one ulp off; ours parses floats exactly)
    exact = suffix != ".csv"
    pd.testing.assert_frame_equal(ours[user], as_mbjm_reads_it[user], check_exact=exact, rtol=1e-15)
    for name in as_mbjm_reads_it.columns.difference(user):
        theirs = [None if pd.isna(v) else v for v in as_mbjm_reads_it[name]]
        assert [None if pd.isna(v) else v for v in ours[name]] == theirs, name
    if geo:
        assert isinstance(ours, gpd.GeoDataFrame)
        # MBJM's own CSV writer rounds WKT; we keep exactly what MBJM reads back (Parquet: the source itself)
        expected = as_mbjm_reads_it.geometry if suffix == ".csv" else _source(True).geometry
        assert all(shapely.equals_exact(a, b, tolerance=0) for a, b in zip(ours.geometry, expected, strict=True))
        if suffix != ".csv":  # CSV carries no CRS, in MBJM neither
            assert ours.crs == "EPSG:4326"
    assert ours["status"].tolist() == ["not_started"] * 4


@pytest.mark.parametrize("geo", [False, True], ids=["plain", "geo"])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_export_opens_in_mbjm_and_round_trips(job_db: OpenEOJobDbHook, tmp_path, suffix: str, geo: bool) -> None:
    source = _source(geo)
    job_db.initialize_from_df(source)
    job_db.update_row(1, {"status": "finished", "id": "j-1", "cpu": "1.5 cpu-seconds", "costs": 0.25})
    job_db.update_row(
        2, {"job_history": [{"id": "j-0", "backend_name": "foo", "status": "error", "ended_at": "2024-01-01T00Z"}]}
    )
    ours = job_db.read()
    path = job_db.export(tmp_path / f"export{suffix}")

    mbjm_db = CsvJobDatabase(path) if suffix == ".csv" else ParquetJobDatabase(path)
    mbjm = mbjm_db.read()
    assert mbjm_db.count_by_status() == {"not_started": 3, "finished": 1}
    assert mbjm.loc[1, "id"] == "j-1" and mbjm.loc[1, "cpu"] == "1.5 cpu-seconds" and mbjm.loc[1, "costs"] == 0.25
    exact = suffix != ".csv"  # MBJM reads CSV floats with pandas' default parser: up to one ulp off
    pd.testing.assert_frame_equal(
        mbjm[source.columns].drop(columns="geometry", errors="ignore"),
        source.drop(columns="geometry", errors="ignore"),
        check_exact=exact,
        rtol=1e-15,
    )
    if geo:
        assert isinstance(mbjm, gpd.GeoDataFrame)
        assert all(shapely.equals_exact(a, b, tolerance=0) for a, b in zip(mbjm.geometry, source.geometry, strict=True))

    again = OpenEOJobDbHook(table=unique_table_name(), sqlite_path=tmp_path / "again.db").import_file(path)
    back = again.read()
    if suffix == ".csv":  # CSV keeps values, not types or CRS: compare what it can carry
        assert back.loc[2, "job_history"] == ours.loc[2, "job_history"]
        carried = ["year", "title", "threshold", "status", "id", "cpu", "costs", "attempt", "updated_at"]
        pd.testing.assert_frame_equal(back[carried], ours[carried], check_exact=True)
    else:  # Parquet carries everything: the round trip is exact (updated_at included)
        pd.testing.assert_frame_equal(back, ours, check_exact=True)


def test_parquet_export_keeps_every_dtype(job_db: OpenEOJobDbHook, tmp_path) -> None:
    from tests.system.hooks.test_job_db_dtypes import _all_dtypes

    df = _all_dtypes()
    job_db.initialize_from_df(df)
    path = job_db.export(tmp_path / "all.parquet")
    again = OpenEOJobDbHook(table=unique_table_name(), sqlite_path=tmp_path / "again.db").import_file(path)
    pd.testing.assert_frame_equal(again.read(), job_db.read(), check_exact=True)


def test_csv_export_with_string_ids_needs_index_col(job_db: OpenEOJobDbHook, tmp_path) -> None:
    df = pd.DataFrame({"year": [1, 2]}, index=pd.Index(["t1", "t2"], name="tile"))
    job_db.initialize_from_df(df)
    path = job_db.export(tmp_path / "tiles.csv")
    assert path.read_text().splitlines()[0].startswith("tile,year,")
    again = OpenEOJobDbHook(table=unique_table_name(), sqlite_path=tmp_path / "again.db")
    again.import_file(path, index_col="tile")
    assert again.row_ids() == ["t1", "t2"]


def test_export_is_atomic_and_leaves_no_temporary_files(job_db: OpenEOJobDbHook, tmp_path) -> None:
    job_db.initialize_from_df(_source(False))
    job_db.export(tmp_path / "out.csv")
    job_db.export(tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
