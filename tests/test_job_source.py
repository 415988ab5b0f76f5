"""load_job_source: every kind of job source ends in the same SQL table; bad sources change nothing."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
from openeo.extra.job_management import create_job_db
from shapely.geometry import box

from airflow_provider_openeo.hooks.job_db import JobDbError, JobDbExistsError
from airflow_provider_openeo.job_source import JobSourceError, load_job_source


def test_dataframe_loads_once_then_skips(sqlite_job_db):
    frame = pd.DataFrame({"year": [2020, 2021]})
    assert load_job_source(frame, sqlite_job_db) == {"table": sqlite_job_db.table, "loaded": 2, "source": "DataFrame"}
    again = load_job_source(pd.DataFrame({"year": [1999]}), sqlite_job_db)
    assert again["loaded"] == 0 and again["skipped"] == "table exists"
    assert list(sqlite_job_db.read()["year"]) == [2020, 2021]


def test_mbjm_csv_file(sqlite_job_db, tmp_path):
    path = tmp_path / "jobs.csv"
    create_job_db(path, df=pd.DataFrame({"year": [2020, 2021, 2022]}))
    result = load_job_source(path, sqlite_job_db)
    assert result == {"table": sqlite_job_db.table, "loaded": 3, "source": str(path)}
    table = sqlite_job_db.read()
    assert list(table["year"]) == [2020, 2021, 2022] and set(table["status"]) == {"not_started"}


def test_geoparquet_file_keeps_geometry_and_crs(sqlite_job_db, tmp_path):
    fields = gpd.GeoDataFrame({"title": ["a", "b"]}, geometry=[box(0, 0, 1, 1), box(2, 2, 3, 4)], crs="EPSG:32631")
    path = tmp_path / "fields.parquet"
    fields.to_parquet(path)
    assert load_job_source(str(path), sqlite_job_db)["loaded"] == 2
    table = sqlite_job_db.read()
    assert table.crs == fields.crs
    assert table.geometry.geom_equals_exact(fields.geometry, tolerance=0).all()


def test_callable_gets_the_context_and_appends(sqlite_job_db):
    def month_rows(context):
        return pd.DataFrame({"title": [f"{context['month']}-{i}" for i in range(2)]}).set_axis(
            [f"{context['month']}/{i}" for i in range(2)]
        )

    load_job_source(month_rows, sqlite_job_db, on_exists="append", context={"month": "jan"})
    result = load_job_source(month_rows, sqlite_job_db, on_exists="append", context={"month": "feb"})
    assert result == {"table": sqlite_job_db.table, "loaded": 2, "source": "month_rows"}
    assert list(sqlite_job_db.read().index) == ["jan/0", "jan/1", "feb/0", "feb/1"]


def test_appending_duplicate_row_ids_changes_nothing(sqlite_job_db):
    load_job_source(pd.DataFrame({"title": ["a"]}, index=["r1"]), sqlite_job_db)
    with pytest.raises(JobDbError, match="r1"):
        load_job_source(pd.DataFrame({"title": ["b", "c"]}, index=["r2", "r1"]), sqlite_job_db, on_exists="append")
    assert list(sqlite_job_db.read().index) == ["r1"]


def test_existing_table_without_source(sqlite_job_db):
    with pytest.raises(JobSourceError, match=f"job table '{sqlite_job_db.table}' does not exist"):
        load_job_source(None, sqlite_job_db)
    load_job_source(pd.DataFrame({"year": [2020]}), sqlite_job_db)
    assert load_job_source(None, sqlite_job_db) == {
        "table": sqlite_job_db.table,
        "loaded": 0,
        "source": "existing table",
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
    assert again == {
        "table": sqlite_job_db.table,
        "loaded": 0,
        "source": "interval_rows",
        "skipped": "rows already loaded",
    }
    table = sqlite_job_db.read()
    assert list(table.index) == ["north/2024-01-01", "south/2024-01-01"]
    assert table.loc["north/2024-01-01", "status"] == "finished"
