"""load_job_source: every kind of job source ends in the same SQL table, loaded by row key on every run, so a
run adds the rows the table lacks and finds the ones it holds; bad sources change nothing."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from airflow_provider_openeo.batch.job_source import JobSourceError, load_job_source
from airflow_provider_openeo.batch.row_keys import RowKeyError
from airflow_provider_openeo.hooks.job_db import JobDbExistsError, JobDbInputError


def dates(*months: int) -> pd.DataFrame:
    """Rows as the process-based example computes them from its Params: one per month, positions as ids."""
    return pd.DataFrame(
        {
            "title": [f"NDVI 2024-{m:02d}" for m in months],
            "temporal_extent": [[f"2024-{m:02d}-01", f"2024-{m + 1:02d}-01"] for m in months],
        }
    )


def test_geoparquet_file_keeps_geometry_and_crs(sqlite_job_db, tmp_path):
    fields = gpd.GeoDataFrame({"title": ["a", "b"]}, geometry=[box(0, 0, 1, 1), box(2, 2, 3, 4)], crs="EPSG:32631")
    path = tmp_path / "fields.parquet"
    fields.to_parquet(path)
    assert load_job_source(str(path), sqlite_job_db)["loaded"] == 2
    table = sqlite_job_db.read()
    assert table.crs == fields.crs
    assert table.geometry.geom_equals_exact(fields.geometry, tolerance=0).all()
    moved = fields.assign(geometry=[box(0, 0, 1, 1), box(5, 5, 6, 6)])
    moved.to_parquet(path)
    assert load_job_source(str(path), sqlite_job_db)["loaded"] == 1, "a moved field is another job"


def test_existing_table_without_source(sqlite_job_db):
    with pytest.raises(JobSourceError, match=f"job table '{sqlite_job_db.table}' does not exist"):
        load_job_source(None, sqlite_job_db)
    load_job_source(pd.DataFrame({"year": [2020]}), sqlite_job_db)
    assert load_job_source(None, sqlite_job_db) == {
        "table": sqlite_job_db.table,
        "loaded": 0,
        "source": "existing table",
        "scope": "table",
    }


def test_on_exists_error_refuses_an_existing_table(sqlite_job_db):
    load_job_source(pd.DataFrame({"year": [2020]}), sqlite_job_db)
    with pytest.raises(JobDbExistsError):
        load_job_source(pd.DataFrame({"year": [2021]}), sqlite_job_db, on_exists="error")
    assert list(sqlite_job_db.read()["year"]) == [2020]


def test_callable_returning_something_else_is_refused(sqlite_job_db):
    with pytest.raises(JobSourceError, match="job_source callable returned list, expected a DataFrame"):
        load_job_source(lambda context: [1, 2], sqlite_job_db)
    assert not sqlite_job_db.exists()


def test_empty_source_is_refused(sqlite_job_db):
    with pytest.raises(JobSourceError, match=r"job table '.*': job_source \(DataFrame\) gave no rows"):
        load_job_source(pd.DataFrame({"year": []}), sqlite_job_db)
    assert not sqlite_job_db.exists()


def test_key_columns_must_tell_rows_apart(sqlite_job_db):
    frame = pd.DataFrame({"tile": ["a", "a"], "year": [2020, 2021]})
    with pytest.raises(RowKeyError, match=r"Rows 0 and 1 have the same values in key_columns \['tile'\]"):
        load_job_source(frame, sqlite_job_db, key_columns=["tile"])
    with pytest.raises(RowKeyError, match=r"key_columns: \['tile_id'\] not in the job source's columns"):
        load_job_source(frame, sqlite_job_db, key_columns=["tile_id"])
    assert not sqlite_job_db.exists()


def test_appending_the_same_rows_again_is_a_no_op(sqlite_job_db):
    """A retried init or a cleared run of a recurring batch recomputes its interval's rows: nothing changes."""

    def interval_rows(context):
        return pd.DataFrame(
            {"title": ["north", "south"], "temporal_extent": [["2024-01-01", "2024-01-08"]] * 2},
            index=[f"{field}/2024-01-01" for field in ("north", "south")],
        )

    load_job_source(interval_rows, sqlite_job_db, on_exists="append")
    sqlite_job_db.update_row("north/2024-01-01", {"status": "finished"})
    again = load_job_source(interval_rows, sqlite_job_db, on_exists="append")
    assert (again["loaded"], again["known"]) == (0, 2)
    table = sqlite_job_db.read()
    assert list(table.index) == ["north/2024-01-01", "south/2024-01-01"]
    assert table.loc["north/2024-01-01", "status"] == "finished"


def test_unknown_on_exists_is_refused(sqlite_job_db):
    with pytest.raises(ValueError, match="on_exists must be one of 'append', 'skip', 'error'"):
        load_job_source(dates(1), sqlite_job_db, on_exists="replace")


def test_bad_values_name_row_and_field(sqlite_job_db):
    frame = pd.DataFrame({"title": ["a", "b"], "extent": [None, object()]})
    with pytest.raises(RowKeyError, match=r"Row 1, field 'extent': cannot be part of the row's key"):
        load_job_source(frame, sqlite_job_db)


def test_positions_into_a_table_of_named_rows_are_refused_with_the_fix(sqlite_job_db):
    load_job_source(pd.DataFrame({"title": ["a"]}, index=["north"]), sqlite_job_db, run_key="d/1")
    with pytest.raises(JobDbInputError, match=r"names its rows by strings.*set_index"):
        load_job_source(pd.DataFrame({"title": ["b"]}), sqlite_job_db, run_key="d/2")
    assert list(sqlite_job_db.read().index) == ["north"]
