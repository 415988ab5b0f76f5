"""Bring a batch's rows into the job database, from whatever the user has: a frame, a file, or a function.

MBJM takes a DataFrame; users migrating from it also hold CSV / Parquet / GeoParquet job databases, and a
recurring DAG computes each interval's rows from its context. All of them end in the same SQL table.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

#: A frame, a path to a CSV/Parquet/GeoParquet file, a callable ``(context) -> frame``, or None (table exists).
JobSource = pd.DataFrame | str | os.PathLike | Callable[[Any], pd.DataFrame] | None


class JobSourceError(ValueError):
    """The batch has nothing valid to load."""


def load_job_source(
    source: JobSource, db: OpenEOJobDbHook, *, on_exists: str = "skip", context: Any = None
) -> dict[str, Any]:
    """Load ``source`` into ``db``; returns what happened, for the task log and XCom."""
    if source is None:
        if not db.exists():
            raise JobSourceError(
                f"job table {db.table!r} does not exist and the batch has no job_source to create it from"
            )
        return {"table": db.table, "loaded": 0, "source": "existing table"}
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if on_exists == "skip" and db.exists():
            return {"table": db.table, "loaded": 0, "source": str(path), "skipped": "table exists"}
        before = _row_count(db)
        db.import_file(path, on_exists=on_exists)
        return {"table": db.table, "loaded": _row_count(db) - before, "source": str(path)}
    if callable(source) and not isinstance(source, pd.DataFrame):
        frame = source(context)
        if not isinstance(frame, pd.DataFrame):
            raise JobSourceError(f"job_source callable returned {type(frame).__name__}, expected a DataFrame")
        label = getattr(source, "__name__", "callable")
    else:
        frame = source
        label = "DataFrame"
    if on_exists == "skip" and db.exists():
        return {"table": db.table, "loaded": 0, "source": label, "skipped": "table exists"}
    if len(frame) == 0:
        raise JobSourceError(f"job table {db.table!r}: job_source ({label}) gave no rows, so there is nothing to run")
    if on_exists == "append" and _already_loaded(frame, db):
        return {"table": db.table, "loaded": 0, "source": label, "skipped": "rows already loaded"}
    before = _row_count(db)
    db.initialize_from_df(frame, on_exists=on_exists)
    return {"table": db.table, "loaded": _row_count(db) - before, "source": label}


def _already_loaded(frame: pd.DataFrame, db: OpenEOJobDbHook) -> bool:
    """True when the table already holds exactly these rows (same ids, same values).

    A retried ``init`` or a cleared run of a recurring batch computes the same interval's rows again; appending
    them must be a no-op, not a "duplicate row ids" failure that blocks the re-run forever. Rows that share ids
    but differ in content are still refused by the append: those are real duplicates.
    """
    if len(frame) == 0 or not db.exists():
        return False
    known = set(db.row_ids())
    if not all(row_id in known for row_id in frame.index):
        return False
    stored = db.get_by_indices(list(frame.index))
    if any(column not in stored.columns for column in frame.columns):
        return False
    return stored.loc[list(frame.index), list(frame.columns)].equals(frame)


def _row_count(db: OpenEOJobDbHook) -> int:
    return sum(db.count_by_status().values()) if db.exists() else 0
