"""load_job_source: every kind of job source ends in the same SQL table, loaded by row key on every run, so a
run adds the rows the table lacks and finds the ones it holds; bad sources change nothing."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa
from openeo.extra.job_management import create_job_db

from airflow_provider_openeo.batch.job_source import load_job_source
from airflow_provider_openeo.batch.row_keys import row_keys
from airflow_provider_openeo.hooks.job_db import JobDbInputError


def dates(*months: int) -> pd.DataFrame:
    """Rows as the process-based example computes them from its Params: one per month, positions as ids."""
    return pd.DataFrame(
        {
            "title": [f"NDVI 2024-{m:02d}" for m in months],
            "temporal_extent": [[f"2024-{m:02d}-01", f"2024-{m + 1:02d}-01"] for m in months],
        }
    )


def test_each_run_adds_its_new_rows_and_finds_the_ones_it_holds(job_db):
    """Params A, then B, then A again: B's rows are added after A's (their positions 0, 1 are not A's rows 0,
    1), A's second load adds nothing and leaves A's rows as they are, each load marks its rows as its run's."""
    first = load_job_source(dates(1, 2), job_db, run_key="d/a")
    assert first == {
        "table": job_db.table,
        "loaded": 2,
        "known": 0,
        "rows": 2,
        "source": "DataFrame",
        "scope": "source",
    }
    job_db.update_row(0, {"status": "finished", "id": "j-0"})

    second = load_job_source(dates(3, 4), job_db, run_key="d/b")
    assert (second["loaded"], second["known"]) == (2, 0)
    third = load_job_source(dates(1, 2), job_db, run_key="d/a2")
    assert (third["loaded"], third["known"]) == (0, 2)

    table = job_db.read()
    assert list(table.index) == [0, 1, 2, 3]
    assert list(table["title"]) == ["NDVI 2024-01", "NDVI 2024-02", "NDVI 2024-03", "NDVI 2024-04"]
    assert list(table["source_run"]) == ["d/a2", "d/a2", "d/b", "d/b"]
    assert (table.loc[0, "status"], table.loc[0, "id"]) == ("finished", "j-0"), "a known row keeps its state"
    assert table["row_key"].is_unique and list(table["row_key"][:2]) == row_keys(dates(1, 2))


def test_a_source_overlapping_the_table_adds_only_what_is_new(job_db):
    load_job_source(dates(1, 2), job_db, run_key="d/a")
    result = load_job_source(dates(2, 3), job_db, run_key="d/b")
    assert (result["loaded"], result["known"]) == (1, 1)
    table = job_db.read()
    assert list(table["title"]) == ["NDVI 2024-01", "NDVI 2024-02", "NDVI 2024-03"]
    assert list(table["source_run"]) == ["d/a", "d/b", "d/b"]


def test_a_concurrent_load_of_the_same_new_rows_never_doubles_them(job_db):
    """The unique index on row_key: a second insert of a key (another run loading the same rows at once) fails
    in the database, and the load tries again and finds the rows."""
    from tests.fixtures.databases import same_table

    load_job_source(dates(1), job_db, run_key="d/a")
    other = same_table(job_db)
    keys = row_keys(dates(5))
    other.initialize_from_df(dates(5).set_axis([7]).assign(row_key=keys), on_exists="append")
    with pytest.raises(sa.exc.IntegrityError):
        other.initialize_from_df(dates(5).set_axis([8]).assign(row_key=keys), on_exists="append")
    result = load_job_source(dates(5), job_db, run_key="d/b")
    assert (result["loaded"], result["known"]) == (0, 1)
    assert len(job_db.read()) == 2


def test_rows_of_a_table_made_before_keys_are_keyed_from_their_stored_values(job_db):
    """An existing deployment's table (no row_key yet, or keys cleared): the first load keys its rows from what
    they hold, so the same source finds them instead of adding every row again."""
    job_db.initialize_from_df(dates(1, 2))
    job_db.update_row(1, {"status": "finished"})
    result = load_job_source(dates(1, 2, 3), job_db, run_key="d/a")
    assert (result["loaded"], result["known"]) == (1, 2)
    table = job_db.read()
    assert list(table["status"]) == ["not_started", "finished", "not_started"]
    assert list(table["row_key"]) == row_keys(dates(1, 2, 3))


def test_a_changed_key_rule_keys_the_table_again(job_db):
    """``key_columns`` given later: the stored rows are keyed by the new rule, so nothing is added twice."""
    load_job_source(dates(1, 2), job_db, run_key="d/a")
    changed = dates(1, 2).assign(title=["January", "February"])  # only the title differs
    result = load_job_source(changed, job_db, run_key="d/b", key_columns=["temporal_extent"])
    assert (result["loaded"], result["known"]) == (0, 2)
    assert job_db.key_rule() == {"version": 1, "columns": ["temporal_extent"]}
    assert list(job_db.read()["title"]) == ["NDVI 2024-01", "NDVI 2024-02"], "known rows keep their values"


def test_mbjm_csv_file_keeps_its_states_and_is_found_again(job_db, tmp_path):
    path = tmp_path / "jobs.csv"
    create_job_db(path, df=pd.DataFrame({"year": [2020, 2021, 2022]}))
    frame = pd.read_csv(path, dtype={"id": str, "backend_name": str, "status": str})
    frame.loc[1, ["status", "id", "backend_name"]] = ["finished", "j-1", "foo"]
    frame.to_csv(path, index=False)

    result = load_job_source(path, job_db, run_key="d/1")
    assert result == {"table": job_db.table, "loaded": 3, "known": 0, "rows": 3, "source": str(path), "scope": "source"}
    table = job_db.read()
    assert list(table["year"]) == [2020, 2021, 2022]
    assert list(table["status"]) == ["not_started", "finished", "not_started"] and table.loc[1, "id"] == "j-1"

    job_db.update_row(0, {"status": "running", "id": "j-0"})
    again = load_job_source(path, job_db, run_key="d/2")  # the file still says row 0 is not_started
    assert (again["loaded"], again["known"]) == (0, 3)
    assert job_db.get_row(0)["status"] == "running", "the table, not the file, holds a known row's state"


def test_on_exists_skip_reads_a_source_into_a_new_table_only(job_db, tmp_path):
    path = tmp_path / "jobs.csv"
    create_job_db(path, df=pd.DataFrame({"year": [2020]}))
    assert load_job_source(path, job_db, on_exists="skip", run_key="d/1")["loaded"] == 1
    path.unlink()  # not read again
    again = load_job_source(path, job_db, on_exists="skip", run_key="d/2")
    assert again == {
        "table": job_db.table,
        "loaded": 0,
        "source": str(path),
        "skipped": "table exists",
        "scope": "table",
    }


def test_named_rows_keep_their_ids_and_a_changed_row_under_a_known_id_is_refused(job_db):
    def month_rows(context):
        return pd.DataFrame({"title": [f"{context['month']}-{i}" for i in range(2)]}).set_axis(
            [f"{context['month']}/{i}" for i in range(2)]
        )

    load_job_source(month_rows, job_db, context={"month": "jan"}, run_key="d/1")
    result = load_job_source(month_rows, job_db, context={"month": "feb"}, run_key="d/2")
    assert (result["loaded"], result["source"]) == (2, "month_rows")
    assert list(job_db.read().index) == ["jan/0", "jan/1", "feb/0", "feb/1"]
    changed = pd.DataFrame({"title": ["other"]}, index=["jan/0"])
    with pytest.raises(JobDbInputError, match=r"Row 'jan/0' of the job source is already in job table .*key_columns"):
        load_job_source(changed, job_db, run_key="d/3")
    assert len(job_db.read()) == 4
