"""OpenEOJobDbHook: MBJM's JobDatabaseInterface and our row-level API, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from airflow_provider_openeo.hooks._job_db.columns import RESERVED_COLUMNS
from airflow_provider_openeo.hooks.job_db import (
    JobDbExistsError,
    JobDbInputError,
    JobDbMissingError,
    OpenEOJobDbHook,
    RowNotFoundError,
    UnknownColumnError,
)
from airflow_provider_openeo.job_table.job_status import RowStatus
from airflow_provider_openeo.job_table.timestamps import epoch_from_rfc3339, rfc3339_from_epoch
from airflow_provider_openeo.start.job_starting import STALE_CLAIM_SECONDS, claim_holder, claim_values
from tests.fixtures.databases import same_table


def _frame(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"year": list(range(2000, 2000 + n)), "title": [f"job {i}" for i in range(n)]})


def test_fresh_hook_does_not_exist_and_says_how_to_create(job_db: OpenEOJobDbHook) -> None:
    assert job_db.exists() is False
    with pytest.raises(JobDbMissingError, match=r"initialize_from_df\(\) or import_file\(\)"):
        job_db.read()


def test_initialize_adds_mbjm_and_reserved_columns(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame())
    df = job_db.read()
    assert list(df.columns) == ["year", "title", *(c.name for c in RESERVED_COLUMNS)]
    assert df["status"].tolist() == ["not_started"] * 5
    assert df["attempt"].tolist() == [0] * 5
    assert df["job_history"].tolist() == [[]] * 5
    assert df["costs"].dtype == "float64"
    assert df["id"].isna().all()
    assert job_db.exists()


def test_on_exists_error_skip_append(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(3))
    with pytest.raises(JobDbExistsError, match=job_db.table):
        job_db.initialize_from_df(_frame(3))
    assert job_db.initialize_from_df(_frame(9), on_exists="skip") is job_db
    assert len(job_db.read()) == 3
    more = _frame(2)
    more.index = [10, 11]
    job_db.initialize_from_df(more, on_exists="append")
    assert job_db.row_ids() == [0, 1, 2, 10, 11]
    with pytest.raises(JobDbInputError, match=r"\[10, 11\] already exist"):
        job_db.initialize_from_df(more, on_exists="append")
    with pytest.raises(ValueError, match="on_exists='overwrite'"):
        job_db.initialize_from_df(more, on_exists="overwrite")


def test_persist_merges_subset_and_inserts_new_rows(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(4))
    subset = job_db.get_by_indices([1, 3]).copy()
    subset.loc[1, "status"] = "running"
    subset.loc[3, "id"] = "j-3"
    job_db.persist(subset)
    new = pd.DataFrame({"year": [2099], "title": ["late"], "status": ["created"]}, index=[7])
    job_db.persist(new)
    df = job_db.read()
    assert df["status"].tolist() == ["not_started", "running", "not_started", "not_started", "created"]
    assert df.loc[3, "id"] == "j-3"
    assert df.loc[7, "title"] == "late" and df.loc[7, "attempt"] == 0
    job_db.persist(df.iloc[0:0])  # MBJM persists empty selections: a no-op
    assert len(job_db.read()) == 5


def test_persist_adds_new_columns_like_mbjm_usage_metrics(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(3))
    active = job_db.get_by_status(["not_started"]).copy()
    active["input_pixel"] = None
    active.loc[0, "input_pixel"] = "1.5 mega-pixel"
    job_db.persist(active)
    assert job_db.read()["input_pixel"].tolist() == ["1.5 mega-pixel", None, None]
    other = same_table(job_db)
    assert other.get_row(0)["input_pixel"] == "1.5 mega-pixel"


def test_count_and_get_by_status(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(6))
    job_db.update_row(0, {"status": "running"})
    job_db.update_row(1, {"status": RowStatus.FINISHED})
    job_db.update_row(2, {"status": "running"})
    assert job_db.count_by_status() == {"not_started": 3, "running": 2, "finished": 1}
    assert job_db.count_by_status(["running", "error"]) == {"running": 2}
    assert job_db.get_by_status(["running"]).index.tolist() == [0, 2]
    assert job_db.get_by_status(["not_started"], max=2).index.tolist() == [3, 4]
    assert job_db.get_by_status(["error"]).empty
    assert job_db.row_ids(statuses=["running", "finished"]) == [0, 1, 2]


def test_get_by_indices_skips_unknown(job_db: OpenEOJobDbHook, caplog) -> None:
    job_db.initialize_from_df(_frame(3))
    got = job_db.get_by_indices([2, 0, 99])
    assert got.index.tolist() == [0, 2]
    assert "99" in caplog.text


def test_update_row_and_compare_and_set(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(2))
    before = job_db.get_row(0)["updated_at"]
    assert job_db.update_row(0, {"status": "created", "id": "j-1"}, expected={"status": "not_started"})
    assert not job_db.update_row(0, {"status": "queued"}, expected={"status": "not_started"})
    assert job_db.update_row(0, {"status": "queued"}, expected={"status": "created", "backend_name": None})
    row = job_db.get_row(0)
    assert (row["status"], row["id"]) == ("queued", "j-1")
    assert row["updated_at"] > before
    assert job_db.get_row(1)["status"] == "not_started"


def test_update_row_rejects_bad_input_and_writes_nothing(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(2))
    before = job_db.read()
    with pytest.raises(UnknownColumnError, match=r"Row 0: .*no column\(s\) \['nope'\]"):
        job_db.update_row(0, {"status": "running", "nope": 1})
    with pytest.raises(JobDbInputError, match=r"Row 0, column 'status': unknown value 'runing'"):
        job_db.update_row(0, {"status": "runing"})
    with pytest.raises(JobDbInputError, match=r"Row 0, column 'year': expected an integer"):
        job_db.update_row(0, {"status": "running", "year": "soon"})
    with pytest.raises(JobDbInputError, match=r"Row 1, column 'backend_status': unknown value 'done'"):
        job_db.update_row(1, {"backend_status": "done"})
    with pytest.raises(JobDbInputError, match=r"column 'updated_at': set by the job database"):
        job_db.update_row(1, {"updated_at": "2020"})
    with pytest.raises(JobDbInputError, match=r"column 'attempt': must be a non-negative integer"):
        job_db.update_row(1, {"attempt": -1})
    with pytest.raises(JobDbInputError, match=r"column 'job_history': must be a list of dicts"):
        job_db.update_row(1, {"job_history": [1, 2]})
    with pytest.raises(RowNotFoundError, match=r"Row 42 does not exist"):
        job_db.update_row(42, {"status": "running"})
    with pytest.raises(JobDbInputError, match=r"row ids are integers"):
        job_db.update_row("0", {"status": "running"})
    pd.testing.assert_frame_equal(job_db.read(), before)


def test_get_row_missing_names_row(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(1))
    with pytest.raises(RowNotFoundError, match=rf"Row 5 does not exist in the job table '{job_db.table}'"):
        job_db.get_row(5)
    with pytest.raises(KeyError):
        job_db.get_row(5)


def _claim(job_db: OpenEOJobDbHook, row_id: Any, owner: str, now: float | None = None) -> bool:
    """The package's one claim rule (the starter's and the dispatch's) on this table."""
    values = job_db.get_row(row_id)
    if claim_holder(values, owner, now):
        return False
    return job_db.update_row(row_id, claim_values(owner), expected={"claimed_by": values.get("claimed_by")})


def test_one_claim_rule_keeps_a_row_for_its_owner_until_stale(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(2))
    assert _claim(job_db, 0, "task-a")
    assert not _claim(job_db, 0, "task-b")
    assert _claim(job_db, 0, "task-a")  # a retry of the same owner keeps it
    claimed_at = job_db.get_row(0)["claimed_at"]
    assert claimed_at == rfc3339_from_epoch(epoch_from_rfc3339(claimed_at))  # the table's one timestamp format
    later = epoch_from_rfc3339(claimed_at) + STALE_CLAIM_SECONDS + 1
    assert _claim(job_db, 0, "task-b", now=later)  # a dead task's claim is taken over
    assert job_db.get_row(0)["claimed_by"] == "task-b"
    # Two claimers that read the same free row: the compare-and-set lets one through.
    assert job_db.update_row(1, claim_values("x"), expected={"claimed_by": None})
    assert not job_db.update_row(1, claim_values("y"), expected={"claimed_by": None})
    with pytest.raises(RowNotFoundError):
        _claim(job_db, 9, "x")


def test_string_row_ids_keep_order_and_name(job_db: OpenEOJobDbHook) -> None:
    frame = _frame(3)
    frame.index = pd.Index(["zulu", "alpha", "mike"], name="tile")
    job_db.initialize_from_df(frame)
    df = job_db.read()
    assert df.index.tolist() == ["zulu", "alpha", "mike"] and df.index.name == "tile"
    assert _claim(job_db, "alpha", "w")
    assert job_db.get_by_indices(["mike"]).index.tolist() == ["mike"]


def _sql_columns(hook: OpenEOJobDbHook) -> set[str]:
    """The table's columns as the database has them (reading through a hook would add missing ones)."""
    with sa.create_engine(hook.get_conn().url).connect() as connection:
        return {column["name"] for column in sa.inspect(connection).get_columns(hook.table)}


def test_migration_adds_a_new_reserved_column(job_db: OpenEOJobDbHook, monkeypatch) -> None:
    """A table made before a reserved column existed gets it on open (ALTER TABLE), with its default."""
    import airflow_provider_openeo.hooks._job_db.schema as schema_module
    import airflow_provider_openeo.hooks.job_db as hook_module

    older = tuple(c for c in RESERVED_COLUMNS if c.name not in ("attempt", "results_state"))
    monkeypatch.setattr(schema_module, "RESERVED_COLUMNS", older)
    job_db.initialize_from_df(_frame(2))
    assert "attempt" not in _sql_columns(job_db)
    monkeypatch.undo()
    assert hook_module.RESERVED_COLUMNS == RESERVED_COLUMNS
    reopened = same_table(job_db)
    df = reopened.read()
    assert df["attempt"].tolist() == [0, 0] and df["results_state"].tolist() == [None, None]
    assert reopened.update_row(1, {"attempt": 2, "results_state": "downloaded"})
    assert same_table(job_db).get_row(1)["attempt"] == 2


def test_drop_removes_table_and_schema(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(2))
    job_db.drop()
    assert not job_db.exists()
    with sa.create_engine(job_db.get_conn().url).connect() as connection:
        assert not sa.inspect(connection).has_table(job_db.table)
    job_db.drop()  # idempotent


def test_schema_side_table_is_plain_json(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(1))
    with job_db.get_conn().connect() as connection:
        text = connection.execute(
            sa.text("SELECT meta FROM openeo_job_db_meta WHERE table_name = :t"), {"t": job_db.table}
        ).scalar_one()
    meta = json.loads(text)
    assert meta["index"]["kind"] == "int"
    assert [c["name"] for c in meta["columns"]][:2] == ["year", "title"]


WEIRD_NAMES = ['x"; DROP TABLE t; --', "select", "with space", "ümlaut €", "order", "a'b", "CamelCase"]


def test_any_column_name_is_quoted_never_injected(job_db: OpenEOJobDbHook) -> None:
    frame = pd.DataFrame({name: [i, i + 1] for i, name in enumerate(WEIRD_NAMES[:4])})
    job_db.initialize_from_df(frame)
    later = pd.DataFrame({name: ["v", "w"] for name in WEIRD_NAMES[4:]})
    job_db.persist(later)  # new columns: ALTER TABLE with the same quoting
    job_db.update_row(1, {WEIRD_NAMES[0]: 42}, expected={WEIRD_NAMES[5]: "w"})
    df = same_table(job_db).read()
    assert list(df.columns[: len(WEIRD_NAMES)]) != WEIRD_NAMES  # reserved columns come between
    assert df[WEIRD_NAMES[0]].tolist() == [0, 42]
    assert all(df[name].tolist() == ["v", "w"] for name in WEIRD_NAMES[4:])
    assert job_db.count_by_status() == {"not_started": 2}


def test_a_table_made_before_row_keys_gains_them_on_first_use(job_db: OpenEOJobDbHook, monkeypatch) -> None:
    """An existing deployment's table: ``row_key`` and ``source_run`` are added when it is opened, the unique
    index when its rows are first keyed; the same source then finds every row instead of adding it again."""
    import airflow_provider_openeo.hooks._job_db.schema as schema_module
    from airflow_provider_openeo.batch.job_source import load_job_source

    older = tuple(c for c in RESERVED_COLUMNS if c.name not in ("row_key", "source_run"))
    monkeypatch.setattr(schema_module, "RESERVED_COLUMNS", older)
    job_db.initialize_from_df(_frame(3).assign(status=["not_started"] * 2 + ["finished"], id=[None, None, "j-2"]))
    assert "row_key" not in _sql_columns(job_db)
    monkeypatch.undo()

    reopened = same_table(job_db)
    result = load_job_source(_frame(4), reopened, run_key="dag/run_1")

    assert (result["loaded"], result["known"]) == (1, 3)
    df = same_table(job_db).read()
    assert df.index.tolist() == [0, 1, 2, 3] and df["row_key"].is_unique
    assert df["source_run"].tolist() == ["dag/run_1"] * 4
    assert (df.loc[2, "status"], df.loc[2, "id"]) == ("finished", "j-2")
    with sa.create_engine(job_db.get_conn().url).connect() as connection:
        indexes = {ix["name"]: ix for ix in sa.inspect(connection).get_indexes(job_db.table)}
    assert indexes[f"ix_{job_db.table}_row_key"]["unique"]


def test_row_keys_are_unique_and_rows_without_a_key_many(job_db: OpenEOJobDbHook) -> None:
    job_db.initialize_from_df(_frame(3))
    job_db.set_row_keys({0: "k0", 1: "k1"}, {"version": 1, "columns": None})
    assert job_db.keyed_rows() == ({"k0": 0, "k1": 1}, [2])
    assert job_db.key_rule() == {"version": 1, "columns": None}
    job_db.set_row_keys({0: "k1", 1: "k0"}, {"version": 1, "columns": None})  # swapped: never clash halfway
    assert job_db.keyed_rows()[0] == {"k1": 0, "k0": 1}
    with pytest.raises(sa.exc.IntegrityError):
        job_db.set_row_keys({2: "k0"}, {"version": 1, "columns": None})
    assert job_db.keyed_rows() == ({"k1": 0, "k0": 1}, [2]), "nothing written"
    job_db.persist(_frame(5).iloc[3:])  # MBJM's own persist adds rows without a key
    assert job_db.keyed_rows()[1] == [2, 3, 4]
    job_db.mark_source_run([0, 4], "dag/run_2")
    assert job_db.read()["source_run"].tolist() == ["dag/run_2", None, None, None, "dag/run_2"]
    assert job_db.max_int_row_id() == 4
