"""Bad input: each gets a clear error naming what is wrong, and nothing in the job database changes."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_openeo.hooks.job_db import (
    JobDbFileError,
    JobDbInputError,
    OpenEOJobDbHook,
    UnsupportedColumnError,
)


@pytest.fixture
def populated(job_db: OpenEOJobDbHook) -> tuple[OpenEOJobDbHook, pd.DataFrame]:
    job_db.initialize_from_df(pd.DataFrame({"year": [2020, 2021, 2022], "title": ["a", "b", "c"]}))
    return job_db, job_db.read()


def _unchanged(hook: OpenEOJobDbHook, before: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(hook.read(), before)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"a": []}), r"initialize_from_df: the frame has no rows"),
        (pd.DataFrame({"a": [1, 2, 3]}, index=[4, 4, 5]), r"duplicate row ids \(index values\) 4"),
        (pd.DataFrame({"a": [1, 2]}, index=["x", "x"]), r"duplicate row ids \(index values\) 'x'"),
        (pd.DataFrame({"status": ["not_started", "finsihed"]}), r"Row 1, column 'status': unknown value 'finsihed'"),
        (pd.DataFrame({"a": [1], "A": [2]}), r"Column names 'a' and 'A' differ only in case"),
        (pd.DataFrame({"_oe_row_id": [1]}), r"Column name '_oe_row_id' is used internally"),
        (pd.DataFrame({"x" * 64: [1]}), r"at most 63 bytes"),
        (pd.DataFrame({1: [1]}), r"Column name 1: column names must be non-empty strings"),
        (pd.DataFrame({"a": [1, 2]}, index=[0.5, 1.5]), r"Row ids \(the frame's index\) must be integers or strings"),
        (pd.DataFrame({"a": [1]}, index=pd.MultiIndex.from_tuples([(1, 2)])), r"MultiIndex"),
        (pd.DataFrame({"attempt": ["first"]}), r"Row 0, column 'attempt'"),
        (pd.DataFrame({"backend_status": ["done"]}), r"Row 0, column 'backend_status': unknown value 'done'"),
        (pd.DataFrame({"results_state": ["lost"]}), r"Row 0, column 'results_state': unknown value 'lost'"),
        (pd.DataFrame({"id": [5]}), r"Row 0, column 'id': expected a string, got int 5"),
    ],
)
def test_bad_frames_create_nothing(job_db: OpenEOJobDbHook, frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(JobDbInputError, match=message):
        job_db.initialize_from_df(frame)
    assert not job_db.exists()


def test_not_a_frame(job_db: OpenEOJobDbHook) -> None:
    with pytest.raises(JobDbInputError, match="expected a pandas DataFrame, got list"):
        job_db.initialize_from_df([1, 2])  # type: ignore[arg-type]


def test_bad_persist_changes_nothing(populated) -> None:
    hook, before = populated
    with pytest.raises(JobDbInputError, match=r"duplicate row ids"):
        hook.persist(pd.DataFrame({"title": ["x", "y"]}, index=[0, 0]))
    with pytest.raises(JobDbInputError, match=r"Row 2, column 'status': unknown value 'bogus'"):
        hook.persist(pd.DataFrame({"status": ["running", "bogus"]}, index=[1, 2]))
    # new rows and a new column in the same frame as one bad value: neither the rows nor the column appear
    with pytest.raises(JobDbInputError, match=r"Row 9, column 'title': expected a string"):
        hook.persist(pd.DataFrame({"title": ["ok", 3], "extra": [1.0, 2.0]}, index=[8, 9]))
    with pytest.raises(UnsupportedColumnError, match=r"Column 'weird' has dtype complex128"):
        hook.persist(pd.DataFrame({"weird": [1j]}, index=[0]))
    with pytest.raises(JobDbInputError, match=r"row ids are ints, not strs"):
        hook.persist(pd.DataFrame({"title": ["x"]}, index=["a"]))
    _unchanged(hook, before)


def test_bad_append_changes_nothing(populated) -> None:
    hook, before = populated
    with pytest.raises(JobDbInputError, match=r"Rows \[1\] already exist"):
        hook.initialize_from_df(pd.DataFrame({"year": [1999, 2000]}, index=[7, 1]), on_exists="append")
    with pytest.raises(JobDbInputError, match=r"the frame has no rows"):
        hook.initialize_from_df(before.iloc[0:0], on_exists="append")
    _unchanged(hook, before)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_missing_file(job_db: OpenEOJobDbHook, tmp_path, suffix: str) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.(csv|parquet)"):
        job_db.import_file(tmp_path / f"nowhere{suffix}")
    assert not job_db.exists()


def test_unknown_suffix(job_db: OpenEOJobDbHook, tmp_path) -> None:
    path = tmp_path / "jobs.xlsx"
    path.write_text("a\n1\n")
    with pytest.raises(JobDbInputError, match=r"unknown job file type '\.xlsx'"):
        job_db.import_file(path)


def _good_csv(tmp_path) -> pytest.TempPathFactory:
    path = tmp_path / "jobs.csv"
    pd.DataFrame({"year": range(50), "title": [f"t, {i}" for i in range(50)], "status": "not_started"}).to_csv(
        path, index=False
    )
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], r"line \d+ has \d fields but the header has 3; .*truncated"),
        (lambda data: data[: data.index(b'"t, 7') + 3], r"(truncated|corrupt)"),
        (lambda data: b"", r"empty CSV file"),
        (lambda data: data.replace(b"t, 20", b"\xff\xfe\x00"), r"not a UTF-8 text CSV"),
        (lambda data: data.replace(b"not_started", b"not_started,extra", 1), r"line 2 has 4 fields"),
    ],
)
def test_corrupt_or_truncated_csv(job_db: OpenEOJobDbHook, tmp_path, damage, message: str) -> None:
    path = _good_csv(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(JobDbFileError, match=message) as info:
        job_db.import_file(path)
    assert str(path) in str(info.value)
    assert not job_db.exists()


def test_csv_header_only_is_an_empty_frame(job_db: OpenEOJobDbHook, tmp_path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text("year,title\n")
    with pytest.raises(JobDbInputError, match="no rows"):
        job_db.import_file(path)


def test_csv_with_unknown_status(job_db: OpenEOJobDbHook, tmp_path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text("year,status\n2020,not_started\n2021,half_done\n")
    with pytest.raises(JobDbInputError, match=r"Row 1, column 'status': unknown value 'half_done'"):
        job_db.import_file(path)
    assert not job_db.exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[:-10],
        lambda data: b"PAR1" + b"\x00" * 100,
        lambda data: b"",
    ],
)
def test_corrupt_or_truncated_parquet(job_db: OpenEOJobDbHook, tmp_path, damage) -> None:
    path = tmp_path / "jobs.parquet"
    pd.DataFrame({"year": range(100), "status": "not_started"}).to_parquet(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(JobDbFileError, match=r"unreadable Parquet file .*truncated or corrupt"):
        job_db.import_file(path)
    assert not job_db.exists()


def test_failed_import_into_existing_table_changes_nothing(populated, tmp_path) -> None:
    hook, before = populated
    path = tmp_path / "more.csv"
    path.write_text("year,title\n2030,x\n2031\n")
    with pytest.raises(JobDbFileError):
        hook.import_file(path, on_exists="append")
    _unchanged(hook, before)
