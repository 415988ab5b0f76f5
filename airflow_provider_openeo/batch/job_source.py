"""Bring a batch's rows into the job database, from whatever the user has: a frame, a file, or a function.

MBJM takes a DataFrame; users migrating from it also hold CSV / Parquet / GeoParquet job databases, and a
recurring DAG or a trigger form computes each run's rows from its context. All of them end in the same SQL table.

Every run loads its own source by key (``row_keys``): rows the table does not hold yet are added, rows it holds
keep their state (a finished row stays finished, a live job stays attached), and the rows of this source are
marked as this run's (``source_run``), so the plan works on them. ``on_exists`` says what happens when the table
exists: ``append`` (default) loads by key; ``skip`` loads only into a new table (the source is read once, the
run works on the whole table); ``error`` refuses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from airflow_provider_openeo.batch.row_keys import job_defining_columns, key_rule, names_its_rows, row_keys
from airflow_provider_openeo.exceptions import JobSourceError
from airflow_provider_openeo.hooks._job_db.columns import ROW_KEY_COLUMN, SOURCE_RUN_COLUMN
from airflow_provider_openeo.hooks._job_db.files import read_job_file
from airflow_provider_openeo.hooks.job_db import JobDbExistsError, JobDbInputError, OpenEOJobDbHook

log = logging.getLogger(__name__)

#: A frame, a path to a CSV/Parquet/GeoParquet file, a callable ``(context) -> frame``, or None (table exists).
JobSource = pd.DataFrame | str | os.PathLike | Callable[[Any], pd.DataFrame] | None
#: What ``on_exists`` may say; the first is the default.
ON_EXISTS = ("append", "skip", "error")
#: How often a load is retried when another run inserted the same new rows at the same moment.
_LOAD_ATTEMPTS = 3


def check_on_exists(value: Any) -> str:
    """``on_exists`` is one of :data:`ON_EXISTS` (checked when the DAG is parsed, and again when loading)."""
    if value not in ON_EXISTS:
        raise ValueError(f"on_exists must be one of {', '.join(map(repr, ON_EXISTS))}, got {value!r}")
    return value


def load_job_source(
    source: JobSource,
    db: OpenEOJobDbHook,
    *,
    on_exists: str = "append",
    context: Any = None,
    key_columns: Sequence[str] | None = None,
    run_key: str | None = None,
) -> dict[str, Any]:
    """Load ``source`` into ``db``; returns what happened, for the task log and XCom.

    The result's ``scope`` says which rows the run works on: ``source`` (the rows marked with ``run_key``) or
    ``table`` (every row: no source, or ``on_exists="skip"`` on an existing table).
    """
    check_on_exists(on_exists)
    if source is None:
        if not db.exists():
            raise JobSourceError(
                f"job table {db.table!r} does not exist and the batch has no job_source to create it from"
            )
        return {"table": db.table, "loaded": 0, "source": "existing table", "scope": "table"}
    label = _label(source)
    exists = db.exists()
    if exists and on_exists == "skip":
        return {"table": db.table, "loaded": 0, "source": label, "skipped": "table exists", "scope": "table"}
    if exists and on_exists == "error":
        raise JobDbExistsError(f"job table {db.table!r} exists and on_exists='error'")
    frame = _frame_of(source, context)
    if len(frame) == 0:
        raise JobSourceError(f"job table {db.table!r}: job_source ({label}) gave no rows, so there is nothing to run")
    keys = row_keys(frame, key_columns=key_columns)
    for attempt in range(1, _LOAD_ATTEMPTS + 1):
        try:
            added, known = _load_by_key(frame, keys, db, key_columns=key_columns, run_key=run_key)
            break
        except (JobDbExistsError, sa.exc.IntegrityError) as exc:  # another run created or filled it just now
            if attempt == _LOAD_ATTEMPTS:
                raise
            log.info("job table %r changed while loading (%s); loading again", db.table, type(exc).__name__)
    result = {"table": db.table, "loaded": added, "known": known, "rows": len(frame), "source": label}
    if run_key is not None:
        result["scope"] = "source"
    return result


def _label(source: JobSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(Path(source))
    if isinstance(source, pd.DataFrame):
        return "DataFrame"
    return getattr(source, "__name__", "callable")


def _frame_of(source: JobSource, context: Any) -> pd.DataFrame:
    if isinstance(source, (str, os.PathLike)):
        return read_job_file(Path(source))
    if isinstance(source, pd.DataFrame):
        return source
    frame = source(context)
    if not isinstance(frame, pd.DataFrame):
        raise JobSourceError(f"job_source callable returned {type(frame).__name__}, expected a DataFrame")
    return frame


def _load_by_key(
    frame: pd.DataFrame,
    keys: list[str],
    db: OpenEOJobDbHook,
    *,
    key_columns: Sequence[str] | None,
    run_key: str | None,
) -> tuple[int, int]:
    """Add the rows whose key the table lacks, mark the source's rows as ``run_key``'s; ``(added, known)``."""
    rule = key_rule(key_columns)
    keyed = frame.assign(**{ROW_KEY_COLUMN: keys})
    if run_key is not None:
        keyed[SOURCE_RUN_COLUMN] = run_key
    if not db.exists():
        db.initialize_from_df(keyed, on_exists="error")
        db.set_row_keys({}, rule)
        return len(frame), 0
    known = _known_keys(frame, db, key_columns=key_columns, rule=rule)
    is_new = [key not in known for key in keys]
    new = keyed[is_new]
    if len(new):
        new = _with_row_ids(new, db)
        db.initialize_from_df(new, on_exists="append")
    if run_key is not None:
        db.mark_source_run([known[key] for key in keys if key in known], run_key)
    return len(new), len(frame) - len(new)


def _known_keys(
    frame: pd.DataFrame, db: OpenEOJobDbHook, *, key_columns: Sequence[str] | None, rule: dict[str, Any]
) -> dict[str, Any]:
    """The table's ``{key: row id}``, after keying the rows that have no key yet (or whose key was made by
    another rule: ``key_columns`` changed) from their stored values, the way the source's rows are keyed."""
    known, unkeyed = db.keyed_rows()
    if db.key_rule() not in (None, rule):
        log.info("job table %r: the row key rule changed to %s; keying every row again", db.table, rule)
        unkeyed, known = [*known.values(), *unkeyed], {}
    if not unkeyed:
        return known
    stored = db.get_by_indices(unkeyed)
    columns = job_defining_columns(frame.columns, key_columns)
    missing = [name for name in columns if name not in stored.columns]
    if key_columns and missing:
        raise JobDbInputError(f"key_columns: {missing} not in job table {db.table!r}, so its rows cannot be keyed")
    keys = row_keys(stored, key_columns=key_columns, columns=columns, taken=known)
    log.info("job table %r: %d row(s) without a key keyed from their stored values", db.table, len(keys))
    db.set_row_keys(dict(zip(stored.index, keys, strict=True)), rule)
    return {**known, **dict(zip(keys, stored.index, strict=True))}


def _with_row_ids(new: pd.DataFrame, db: OpenEOJobDbHook) -> pd.DataFrame:
    """New rows keep the ids a source gives its rows (a named or string index); positions are renumbered after
    the table's last row, since position 0 of this run is not row 0 of the table."""
    if names_its_rows(new.index):
        held = set(db.row_ids())
        taken = [row_id for row_id in new.index if row_id in held]
        if taken:
            raise JobDbInputError(
                f"Row {taken[0]!r} of the job source is already in job table {db.table!r} with other job-defining "
                "values: a row id names one row. Give the changed row a new id, or pass key_columns=[...] naming "
                "the columns that identify a row"
            )
        return new
    try:
        last = db.max_int_row_id()
    except JobDbInputError:
        raise JobDbInputError(
            f"job table {db.table!r} names its rows by strings, but the job source's rows have no names (positions "
            "0, 1, ...): give them ids the way the table's first source did (set_index)"
        ) from None
    start = 0 if last is None else last + 1
    return new.set_axis(pd.RangeIndex(start, start + len(new)))
