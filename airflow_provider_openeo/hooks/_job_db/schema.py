"""A job table's schema: row identity, column order and codecs, active geometry; and frames in and out of it.

The schema is what the side table stores as JSON. It is the only place that knows how a DataFrame maps to the
SQL table, so ``persist``, ``update_row`` and the file import all validate and encode through here and refuse
bad input before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_openeo.exceptions import (
    JobDbInputError,
    UnknownColumnError,
    UnsupportedColumnError,
)
from airflow_provider_openeo.hooks._job_db.codec import (
    ColumnSpec,
    decode_column,
    encode_column,
    object_array,
    spec_for_series,
)
from airflow_provider_openeo.hooks._job_db.columns import INTERNAL_COLUMNS, RESERVED, RESERVED_COLUMNS
from airflow_provider_openeo.hooks._job_db.sql import MAX_IDENTIFIER_BYTES


@dataclass
class TableSchema:
    index_kind: str  # "int" or "str": what the DataFrame index (row id) holds
    index_dtype: str
    index_name: str | None = None
    index_is_range: bool = False
    columns: list[tuple[str, ColumnSpec]] = field(default_factory=list)
    geometry: str | None = None  # active geometry column of a GeoDataFrame
    #: How the rows' ``row_key`` values were made (``row_keys.key_rule``); None: no row was keyed yet.
    key_rule: dict[str, Any] | None = None
    #: Columns added for (or taken over by) a usage key of a job, beyond the predefined ``cpu``, ``memory`` and
    #: ``duration``: what the summary adds up. Recorded here because a usage column looks like any text column.
    usage_columns: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": {
                "kind": self.index_kind,
                "dtype": self.index_dtype,
                "name": self.index_name,
                "range": self.index_is_range,
            },
            "columns": [{"name": name, **spec.to_json()} for name, spec in self.columns],
            "geometry": self.geometry,
            "key_rule": self.key_rule,
            "usage_columns": list(self.usage_columns),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableSchema:
        index = data["index"]
        return cls(
            index_kind=index["kind"],
            index_dtype=index["dtype"],
            index_name=index.get("name"),
            index_is_range=bool(index.get("range")),
            columns=[(c["name"], ColumnSpec.from_json(c)) for c in data["columns"]],
            geometry=data.get("geometry"),
            key_rule=data.get("key_rule"),
            usage_columns=list(data.get("usage_columns") or []),
        )

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def spec(self, name: str) -> ColumnSpec | None:
        return dict(self.columns).get(name)

    def coerce_row_id(self, value: Any) -> int | str:
        """A row id as stored: ints for an int-indexed table, strings for a str-indexed one."""
        if self.index_kind == "int":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise JobDbInputError(f"Row id {value!r}: this job table's row ids are integers")
            return int(value)
        if not isinstance(value, str):
            raise JobDbInputError(f"Row id {value!r}: this job table's row ids are strings")
        return value


# --------------------------------------------------------------------------------------------- validation


def validate_column_names(names: Iterable[Any], known: Iterable[str] = ()) -> None:
    """Names SQL can hold without surprises; unique even case-insensitively (SQLite folds case)."""
    seen: dict[str, str] = {name.lower(): name for name in known}
    for name in names:
        if not isinstance(name, str) or not name:
            raise UnsupportedColumnError(f"Column name {name!r}: column names must be non-empty strings")
        if name in INTERNAL_COLUMNS:
            raise JobDbInputError(f"Column name {name!r} is used internally by the job database; rename it")
        if "\x00" in name or len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
            raise UnsupportedColumnError(
                f"Column name {name!r}: at most {MAX_IDENTIFIER_BYTES} bytes and no NUL characters"
            )
        other = seen.get(name.lower())
        if other is not None and other != name:
            raise JobDbInputError(f"Column names {other!r} and {name!r} differ only in case; rename one")
        seen[name.lower()] = name


def _index_kind(index: pd.Index) -> str:
    if isinstance(index, pd.MultiIndex):
        raise JobDbInputError("The frame has a MultiIndex; row ids must be one level of ints or strings")
    if pd.api.types.is_integer_dtype(index.dtype) and not pd.api.types.is_bool_dtype(index.dtype):
        return "int"
    if pd.api.types.infer_dtype(index, skipna=False) == "string":
        return "str"
    raise JobDbInputError(
        f"Row ids (the frame's index) must be integers or strings, got {index.dtype} "
        f"({pd.api.types.infer_dtype(index, skipna=False)}); use reset_index() or set_index(<column>)"
    )


def validate_frame(df: Any, *, what: str) -> str:
    """Checks every frame gets before anything is written; returns the index kind."""
    if not isinstance(df, pd.DataFrame):
        raise JobDbInputError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise JobDbInputError(f"{what}: the frame has no rows")
    if isinstance(df.columns, pd.MultiIndex):
        raise UnsupportedColumnError(f"{what}: MultiIndex columns are not supported")
    duplicated_columns = df.columns[df.columns.duplicated()].unique().tolist()
    if duplicated_columns:
        raise JobDbInputError(f"{what}: duplicate column names {duplicated_columns}")
    validate_column_names(df.columns)
    kind = _index_kind(df.index)
    duplicated = df.index[df.index.duplicated()].unique().tolist()
    if duplicated:
        shown = ", ".join(repr(v) for v in duplicated[:10]) + (" ..." if len(duplicated) > 10 else "")
        raise JobDbInputError(f"{what}: duplicate row ids (index values) {shown}; row ids must be unique")
    return kind


def row_ids_of(index: pd.Index, kind: str) -> list[int | str]:
    return [int(v) for v in index] if kind == "int" else [str(v) for v in index]


# --------------------------------------------------------------------------------------------- schema


def active_geometry(df: pd.DataFrame) -> str | None:
    name = getattr(df, "_geometry_column_name", None)
    return name if isinstance(name, str) and name in df.columns else None


def schema_for_frame(df: pd.DataFrame, kind: str) -> TableSchema:
    """Schema of a new table: the frame's columns in order, then reserved columns it lacks."""
    index = df.index
    schema = TableSchema(
        index_kind=kind,
        index_dtype=str(index.dtype),
        index_name=index.name if isinstance(index.name, str) else None,
        index_is_range=isinstance(index, pd.RangeIndex) and index.step == 1,
        geometry=active_geometry(df),
    )
    schema.columns = [(name, column_spec(name, df[name])) for name in df.columns]
    schema.columns += [(c.name, c.spec) for c in RESERVED_COLUMNS if c.name not in df.columns]
    return schema


def column_spec(name: str, series: pd.Series) -> ColumnSpec:
    reserved = RESERVED.get(name)
    return reserved.spec if reserved is not None else spec_for_series(name, series)


# --------------------------------------------------------------------------------------------- encode/decode


def encode_frame(
    schema: TableSchema, df: pd.DataFrame, row_ids: Sequence[Any], *, new_rows: bool
) -> dict[str, list[Any]]:
    """Column name -> SQL values, for the frame's columns (and, for new rows, reserved defaults)."""
    encoded: dict[str, list[Any]] = {}
    for name in df.columns:
        spec = schema.spec(name)
        if spec is None:
            raise JobDbInputError(f"Column {name!r} is not in the job table")
        series = df[name]
        reserved = RESERVED.get(name)
        if reserved is not None:
            if reserved.automatic and not new_rows:
                continue  # e.g. updated_at in a frame read earlier: the job database sets it on every write
            checked = [
                reserved.check(value, row_id, fill_default=new_rows)
                for value, row_id in zip(series.tolist(), row_ids, strict=True)
            ]
            series = pd.Series(object_array(checked), index=df.index)
        encoded[name] = encode_column(name, spec, series, row_ids)
    if new_rows:
        for column in RESERVED_COLUMNS:
            if column.name not in encoded and not column.automatic and schema.spec(column.name) is not None:
                value = column.default_value()
                encoded[column.name] = encode_column(
                    column.name, column.spec, pd.Series(object_array([value] * len(df))), row_ids
                )
    return encoded


def encode_value(schema: TableSchema, name: str, value: Any, row_id: Any) -> Any:
    """One value for ``update_row`` / compare-and-set, validated like a frame's."""
    spec = schema.spec(name)
    if spec is None:
        raise UnknownColumnError(f"Row {row_id!r}: the job table has no column {name!r}")
    reserved = RESERVED.get(name)
    if reserved is not None:
        value = reserved.check(value, row_id, fill_default=False)
    return encode_column(name, spec, pd.Series(object_array([value])), [row_id])[0]


def decode_frame(schema: TableSchema, names: list[str], rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows ``(row_id, *values for names)`` back into the DataFrame (GeoDataFrame) they came from."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in range(len(names) + 1)]
    ids = list(columns[0])
    data = {
        name: decode_column(schema.spec(name), list(values)) for name, values in zip(names, columns[1:], strict=True)
    }
    index = _decode_index(schema, ids)
    geometry = schema.geometry if schema.geometry in data else None
    if geometry is not None:
        import geopandas

        frame: pd.DataFrame = geopandas.GeoDataFrame(data, index=index, geometry=geometry)
    else:
        frame = pd.DataFrame(data, index=index)
    return frame


def _decode_index(schema: TableSchema, ids: list[Any]) -> pd.Index:
    if schema.index_kind == "int":
        if schema.index_is_range and ids == list(range(len(ids))):
            return pd.RangeIndex(len(ids), name=schema.index_name)
        return pd.Index(np.array(ids, dtype=schema.index_dtype), name=schema.index_name)
    dtype = pd.api.types.pandas_dtype(schema.index_dtype) if schema.index_dtype != "object" else object
    return pd.Index(ids, dtype=dtype, name=schema.index_name)
