"""A row's identity across runs: the key that tells a job source's row the job table already holds.

A DAG run computes its rows again each time (a callable over the trigger form's Params, a frame, a file), and
positions (0, 1, 2 ...) say nothing about which job a row is: triggering with other Params gives other rows at the
same positions. So a row is known by what defines its job. By default that is every value of the source's
columns except the job table's own bookkeeping (``id``, ``status``, ``backend_name`` ... the reserved columns),
plus the row's id when the source names its rows (a named or string index, such as ``"north/2024-01-01"``);
with ``key_columns`` it is the values of those columns alone.

The key is a digest of those values in a canonical form, so it does not change with pandas' dtypes (``2020`` in an
``int64``, ``Int64``, ``float64`` or ``object`` column; a list or the numpy array Parquet gives back; a timestamp in
any unit), nor with the order of the columns. Geometries count by their WKB. An empty value (None, NaN, NA) does
not count, so adding a column to the source that is empty for the known rows keeps their keys. A source that holds
the same values twice asks for two jobs: the second occurrence gets a key of its own.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_openeo.exceptions import RowKeyError
from airflow_provider_openeo.hooks._job_db.columns import RESERVED
from airflow_provider_openeo.job_table.cells import is_empty

#: Bumped whenever the canonical form changes, so tables keyed by an older rule are keyed again.
KEY_RULE_VERSION = 1
#: Hex digits of the SHA-256 kept: 128 bits, no collision in any batch that fits a database.
KEY_LENGTH = 32


def key_rule(key_columns: Sequence[str] | None) -> dict[str, Any]:
    """How the table's keys were made (kept with the table, so a change of rule re-keys its rows)."""
    return {"version": KEY_RULE_VERSION, "columns": list(key_columns) if key_columns else None}


def names_its_rows(index: pd.Index) -> bool:
    """Whether the source's index is the rows' own id (a name, or strings), not just their positions."""
    return index.name is not None or pd.api.types.infer_dtype(index, skipna=False) == "string"


def job_defining_columns(columns: Iterable[Any], key_columns: Sequence[str] | None = None) -> list[str]:
    """The columns a key is made of, in a fixed order: ``key_columns``, or every non-bookkeeping column."""
    if key_columns:
        return list(key_columns)
    return sorted(str(name) for name in columns if name not in RESERVED)


def check_key_columns(columns: Iterable[Any], key_columns: Sequence[str], *, what: str = "job source") -> None:
    """Every key column must be in the source; a clear message naming the missing ones otherwise."""
    present = set(columns)
    missing = [name for name in key_columns if name not in present]
    if missing:
        raise RowKeyError(
            f"key_columns: {missing} not in the {what}'s columns ({', '.join(map(str, present)) or 'none'})"
        )


def row_keys(
    frame: pd.DataFrame,
    *,
    key_columns: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    taken: Iterable[str] = (),
) -> list[str]:
    """One key per row of ``frame``, in its order.

    :param key_columns: the columns that identify a row (two rows sharing their values are refused); default:
        every job-defining column, and the index when the frame names its rows.
    :param columns: the job-defining columns to use instead of the frame's own (to key the stored rows of an
        older table the way the source's rows are keyed); missing ones count as empty.
    :param taken: keys already used elsewhere: a row whose key is taken gets the next occurrence's key, as a
        repeated row of one source does (used when keying stored rows that had no key yet).
    """
    if key_columns:
        check_key_columns(frame.columns, key_columns)
    names = job_defining_columns(frame.columns if columns is None else columns, key_columns)
    with_index = not key_columns and names_its_rows(frame.index)
    values = {name: (frame[name].tolist() if name in frame.columns else [None] * len(frame)) for name in names}
    used = set(taken)
    keys: list[str] = []
    first_of: dict[str, Any] = {}
    for position, row_id in enumerate(frame.index):
        fields = {}
        for name in names:
            value = values[name][position]
            if is_empty(value):
                continue
            try:
                fields[name] = _canonical(value)
            except (TypeError, ValueError) as exc:
                raise RowKeyError(f"Row {row_id!r}, field {name!r}: cannot be part of the row's key: {exc}") from None
        payload: dict[str, Any] = {"fields": fields}
        if with_index:
            payload["row"] = _canonical(row_id)
        key = _digest(payload)
        if key_columns:
            if key in first_of:
                raise RowKeyError(
                    f"Rows {first_of[key]!r} and {row_id!r} have the same values in key_columns {list(key_columns)}; "
                    "key columns must tell every row apart"
                )
            first_of[key] = row_id
        occurrence = 0
        while key in used:  # the same values again: a further job, keyed by its occurrence
            occurrence += 1
            key = _digest({**payload, "occurrence": occurrence})
        used.add(key)
        keys.append(key)
    return keys


def _digest(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def _number(value: float) -> Any:
    """Integral floats as ints (``2020.0`` is ``2020``: a NaN elsewhere in the column makes ints floats)."""
    if math.isinf(value):
        return {"float": "inf" if value > 0 else "-inf"}
    if value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def _canonical(value: Any) -> Any:
    """A JSON value that is the same for equal values whatever their Python or numpy type."""
    if is_empty(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        return _number(float(str(value)))  # float32 0.1 is 0.1, not 0.10000000149011612
    if isinstance(value, (float, np.floating)):
        return _number(float(value))
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else _number(float(value))
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, (pd.Timestamp, dt.datetime, np.datetime64)):
        stamp = pd.Timestamp(value)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC")
        return {"datetime": stamp.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, (pd.Timedelta, dt.timedelta, np.timedelta64)):
        return {"timedelta": int(pd.Timedelta(value).value)}
    if isinstance(value, pd.Period):
        return {"period": str(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, np.ndarray):
        return [_canonical(item) for item in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a dict's keys must be strings")
        return {k: _canonical(v) for k, v in value.items()}
    if type(value).__module__.startswith("shapely"):
        import shapely

        return {"wkb": shapely.to_wkb(value, hex=True, byte_order=1)}
    raise TypeError(f"values of type {type(value).__name__} are not supported")
