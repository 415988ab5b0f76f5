"""Exact encoding of pandas columns into SQL values and back.

A SQL column has one of a handful of types (BIGINT, DOUBLE, BOOLEAN, TEXT, BLOB), while a pandas column has a
dtype with details SQL cannot hold (timezone, unit, categories, nullable-ness, CRS, which missing-value marker a
string column used). So each column gets a ``ColumnSpec`` that is stored as JSON in the side table and says how to
encode values for SQL and how to rebuild the exact dtype on the way back. Datetimes travel as integers in their
own unit (no precision lost, no timezone parsing); geometries as WKB; free-form object columns as tagged JSON.

Encoding is value-based against the stored spec, not dtype-based: MBJM hands ``persist`` frames whose dtypes
drifted (``DataFrame.update`` upcasts, ``.loc`` assignment turns columns into ``object``), and such a frame must
still be written when its values fit, and be refused, naming row and column, when they do not.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_openeo.exceptions import JobDbInputError, UnsupportedColumnError
from airflow_provider_openeo.job_table.cells import is_empty

_INT_NAMES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
_NULLABLE_INT_NAMES = frozenset({"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"})
_FLOAT_NAMES = frozenset({"float16", "float32", "float64", "Float32", "Float64"})
_TO_NULLABLE = {n: ("UInt" + n[4:] if n.startswith("uint") else "Int" + n[3:]) for n in _INT_NAMES}
_INAT = np.iinfo(np.int64).min  # pandas' integer marker for NaT
_TAG = "$t"


@dataclass(frozen=True)
class ColumnSpec:
    """How one column is stored. ``kind`` picks the codec, ``dtype`` the exact pandas dtype to rebuild."""

    kind: str
    dtype: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "dtype": self.dtype, "extra": self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnSpec:
        return cls(kind=data["kind"], dtype=data.get("dtype"), extra=dict(data.get("extra") or {}))

    @property
    def sql_kind(self) -> str:
        """One of bigint, double, boolean, text, binary: what the SQL column is declared as."""
        if self.kind == "int":
            return "text" if self.dtype in ("uint64", "UInt64") else "bigint"
        if self.kind in ("datetime", "timedelta", "period"):
            return "bigint"
        if self.kind == "float":
            return "double"
        if self.kind == "bool":
            return "boolean"
        if self.kind == "geometry":
            return "binary"
        if self.kind == "category":
            return ColumnSpec.from_json(self.extra["element"]).sql_kind
        return "text"


# --------------------------------------------------------------------------------------------- inference


def _null_marker(series: pd.Series) -> str | None:
    """Which missing-value object a string column uses ('none', 'nan', 'na'), or None when it mixes them."""
    markers = set()
    for value in series[series.isna()]:
        if value is None:
            markers.add("none")
        elif value is pd.NA:
            markers.add("na")
        elif isinstance(value, float):
            markers.add("nan")
        else:
            return None
    if len(markers) > 1:
        return None
    return markers.pop() if markers else "none"


def _pandas_dtype_roundtrips(dtype: Any) -> bool:
    try:
        return pd.api.types.pandas_dtype(str(dtype)) == dtype
    except (TypeError, ValueError):
        return False


def spec_for_series(name: str, series: pd.Series) -> ColumnSpec:
    """Choose how to store a user column; refuse (naming the column) what cannot come back exactly."""
    dtype = series.dtype
    try:
        import geopandas

        if isinstance(dtype, geopandas.array.GeometryDtype):
            crs = getattr(series, "crs", None) or getattr(series.array, "crs", None)
            return ColumnSpec("geometry", "geometry", {"crs": crs.to_json() if crs is not None else None})
    except ImportError:  # pragma: no cover - geopandas is a runtime dependency
        pass
    if isinstance(dtype, pd.CategoricalDtype):
        categories = pd.Series(dtype.categories)
        element = spec_for_series(name, categories)
        if element.kind not in ("int", "float", "bool", "str", "string", "datetime", "timedelta"):
            raise UnsupportedColumnError(
                f"Column {name!r}: categorical with {element.kind} categories is not supported; "
                "use categories of strings, numbers, booleans or datetimes."
            )
        return ColumnSpec(
            "category",
            "category",
            {
                "ordered": bool(dtype.ordered),
                "element": element.to_json(),
                "categories": encode_column(name, element, categories, list(range(len(categories)))),
            },
        )
    if isinstance(dtype, pd.StringDtype):
        na = "nan" if dtype.na_value is not pd.NA else "na"
        return ColumnSpec("string", "string", {"storage": dtype.storage, "na": na})
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "M"):
        if not _pandas_dtype_roundtrips(dtype):
            raise UnsupportedColumnError(f"Column {name!r}: timezone of dtype {dtype} cannot be stored by name.")
        return ColumnSpec("datetime", str(dtype))
    if isinstance(dtype, np.dtype) and dtype.kind == "m":
        return ColumnSpec("timedelta", str(dtype))
    if isinstance(dtype, pd.PeriodDtype):
        if not _pandas_dtype_roundtrips(dtype):
            raise UnsupportedColumnError(f"Column {name!r}: period dtype {dtype} cannot be stored by name.")
        return ColumnSpec("period", str(dtype))
    dtype_name = str(dtype)
    if dtype_name in _INT_NAMES or dtype_name in _NULLABLE_INT_NAMES:
        return ColumnSpec("int", dtype_name)
    if dtype_name in _FLOAT_NAMES:
        return ColumnSpec("float", dtype_name)
    if dtype_name in ("bool", "boolean"):
        return ColumnSpec("bool", dtype_name)
    if dtype_name == "object":
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        marker = _null_marker(series) if inferred == "string" else None
        if inferred == "string" and marker is not None:
            return ColumnSpec("str", "object", {"na": marker})
        return ColumnSpec("json", "object")
    raise UnsupportedColumnError(
        f"Column {name!r} has dtype {dtype_name}, which the job database cannot store and read back exactly "
        "(supported: numbers, booleans, strings, nullable dtypes, datetimes incl. timezone, timedeltas, periods, "
        "categoricals, geometries, and object columns of JSON-like values)."
    )


# --------------------------------------------------------------------------------------------- JSON values


def _to_jsonable(value: Any, where: str) -> Any:
    """Tagged JSON so that tuples, numpy scalars, timestamps ... come back as the same Python types."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and type(value) in (int, float):
        return value
    if value is pd.NA:
        return {_TAG: "NA"}
    if value is pd.NaT:
        return {_TAG: "NaT"}
    if isinstance(value, list):
        return [_to_jsonable(v, where) for v in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [_to_jsonable(v, where) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise UnsupportedColumnError(f"{where}: dict keys must be strings to be stored as JSON.")
        body = {k: _to_jsonable(v, where) for k, v in value.items()}
        return {_TAG: "dict", "v": body} if _TAG in value else body
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufUSO":
            raise UnsupportedColumnError(f"{where}: numpy array of dtype {value.dtype} is not supported.")
        items = [_to_jsonable(v, where) for v in value.tolist()] if value.dtype.kind == "O" else value.tolist()
        return {_TAG: "ndarray", "dtype": value.dtype.str, "shape": list(value.shape), "v": items}
    if isinstance(value, np.generic) and value.dtype.kind in "biufU":
        return {_TAG: "np", "dtype": value.dtype.str, "v": value.item()}
    if isinstance(value, pd.Timestamp):
        return {_TAG: "ts", "v": value.isoformat(), "unit": value.unit, "tz": str(value.tz) if value.tz else None}
    if isinstance(value, pd.Timedelta):
        return {_TAG: "td", "v": int(value.value)}
    if isinstance(value, dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if type(value).__module__.startswith("shapely"):
        import shapely

        return {_TAG: "wkb", "v": shapely.to_wkb(value, hex=True, output_dimension=4)}
    raise UnsupportedColumnError(f"{where}: values of type {type(value).__name__} cannot be stored as JSON.")


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: _from_jsonable(v) for k, v in value.items()}
    body = value.get("v")
    if tag == "dict":
        return {k: _from_jsonable(v) for k, v in body.items()}
    if tag == "tuple":
        return tuple(_from_jsonable(v) for v in body)
    if tag == "NA":
        return pd.NA
    if tag == "NaT":
        return pd.NaT
    if tag == "ndarray":
        dtype = np.dtype(value["dtype"])
        items = [_from_jsonable(v) for v in body] if dtype.kind == "O" else body
        if dtype.kind == "O":
            return object_array(items).reshape(value["shape"])
        return np.array(items, dtype=dtype).reshape(value["shape"])
    if tag == "np":
        return np.dtype(value["dtype"]).type(body)
    if tag == "ts":
        return pd.Timestamp(body).as_unit(value["unit"])
    if tag == "td":
        return pd.Timedelta(body, unit="ns")
    if tag == "datetime":
        return dt.datetime.fromisoformat(body)
    if tag == "date":
        return dt.date.fromisoformat(body)
    if tag == "decimal":
        return decimal.Decimal(body)
    if tag == "bytes":
        return base64.b64decode(body)
    if tag == "wkb":
        import shapely

        return shapely.from_wkb(body)
    raise ValueError(f"Unknown JSON tag {tag!r} in the job database")


def json_dumps(value: Any, where: str) -> str:
    return json.dumps(_to_jsonable(value, where), ensure_ascii=False)


def json_loads(text: str) -> Any:
    return _from_jsonable(json.loads(text))


# --------------------------------------------------------------------------------------------- encoding


def object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array holding ``values`` as they are (slice assignment would unpack nested lists)."""
    arr = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        arr[i] = value
    return arr


def _masked_list(values: np.ndarray, mask: np.ndarray) -> list[Any]:
    out = values.astype(object)
    out[mask] = None
    return out.tolist()


def _fail(name: str, row_ids: Sequence[Any], position: int, problem: str) -> JobDbInputError:
    return JobDbInputError(f"Row {row_ids[position]!r}, column {name!r}: {problem}")


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def encode_column(name: str, spec: ColumnSpec, series: pd.Series, row_ids: Sequence[Any]) -> list[Any]:
    """Values of ``series`` as SQL-ready Python objects (None = NULL), following ``spec``."""
    kind = spec.kind
    if kind in ("str", "string"):
        return _encode_strings(name, series, row_ids)
    if kind == "int":
        return _encode_ints(name, spec, series, row_ids)
    if kind == "float":
        return _encode_floats(name, series, row_ids)
    if kind == "bool":
        return _encode_bools(name, series, row_ids)
    if kind in ("datetime", "timedelta", "period"):
        return _encode_time(name, spec, series, row_ids)
    if kind == "category":
        element = ColumnSpec.from_json(spec.extra["element"])
        if isinstance(series.dtype, pd.CategoricalDtype):
            cats = series.cat.categories
            encoded = encode_column(name, element, pd.Series(cats), [f"category {c!r}" for c in cats])
            return [None if code < 0 else encoded[code] for code in series.cat.codes.to_numpy()]
        return encode_column(name, element, series, row_ids)
    if kind == "geometry":
        return _encode_geometries(name, series, row_ids)
    if kind == "json":
        out: list[Any] = []
        for position, value in enumerate(series.tolist()):
            if value is None:
                out.append(None)
            else:
                out.append(json_dumps(value, f"Row {row_ids[position]!r}, column {name!r}"))
        return out
    raise ValueError(f"Unknown column kind {kind!r} for column {name!r}")


def _encode_strings(name: str, series: pd.Series, row_ids: Sequence[Any]) -> list[Any]:
    values = series.to_numpy(dtype=object, na_value=None)
    mask = pd.isna(series).to_numpy()
    for position, value in enumerate(values):
        if mask[position]:
            continue
        if not isinstance(value, str):
            raise _fail(name, row_ids, position, f"expected a string, got {type(value).__name__} {value!r}")
        if "\x00" in value:
            raise _fail(name, row_ids, position, "strings must not contain NUL characters")
    out = values.copy()
    out[mask] = None
    return out.tolist()


def _encode_ints(name: str, spec: ColumnSpec, series: pd.Series, row_ids: Sequence[Any]) -> list[Any]:
    nullable = _TO_NULLABLE.get(spec.dtype, spec.dtype)
    if series.dtype == object:
        bad = series.map(lambda v: not (v is None or v is pd.NA or _is_integral(v))).to_numpy(dtype=bool)
        if bad.any():
            position = _first_bad(bad)
            raise _fail(name, row_ids, position, f"expected an integer, got {series.iloc[position]!r}")
    try:
        converted = series.astype(nullable)
    except (TypeError, ValueError, OverflowError) as exc:
        bad = _first_unconvertible(series, nullable)
        raise _fail(name, row_ids, bad, f"not an integer of dtype {spec.dtype}: {exc}") from None
    values = converted.to_numpy(dtype=object, na_value=None).tolist()
    if spec.sql_kind == "text":
        return [None if v is None else str(int(v)) for v in values]
    return [None if v is None else int(v) for v in values]


def _is_integral(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value) or (math.isfinite(value) and float(value).is_integer())
    return False


def _first_unconvertible(series: pd.Series, dtype: str) -> int:
    for position in range(len(series)):
        try:
            series.iloc[position : position + 1].astype(dtype)
        except (TypeError, ValueError, OverflowError):
            return position
    return 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _encode_floats(name: str, series: pd.Series, row_ids: Sequence[Any]) -> list[Any]:
    if series.dtype == object:
        bad = series.map(lambda v: not (v is None or v is pd.NA or _is_number(v))).to_numpy(dtype=bool)
        if bad.any():
            position = _first_bad(bad)
            raise _fail(name, row_ids, position, f"expected a number, got {series.iloc[position]!r}")
    try:
        values = series.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise JobDbInputError(f"Column {name!r}: expected numbers ({exc})") from None
    return _masked_list(values, np.isnan(values))


def _encode_bools(name: str, series: pd.Series, row_ids: Sequence[Any]) -> list[Any]:
    values = series.to_numpy(dtype=object, na_value=None)
    for position, value in enumerate(values):
        if is_empty(value):
            values[position] = None
        elif isinstance(value, (bool, np.bool_)):
            values[position] = bool(value)
        else:
            raise _fail(name, row_ids, position, f"expected a boolean, got {value!r}")
    return values.tolist()


def _encode_time(name: str, spec: ColumnSpec, series: pd.Series, row_ids: Sequence[Any]) -> list[Any]:
    target = pd.api.types.pandas_dtype(spec.dtype)
    converted = series
    if series.dtype != target:
        try:
            converted = series.astype(target)
        except (TypeError, ValueError, OverflowError) as exc:
            raise JobDbInputError(f"Column {name!r}: values do not fit dtype {spec.dtype} ({exc})") from None
    mask = converted.isna().to_numpy()
    return _masked_list(np.asarray(converted.array.asi8), mask)


def _encode_geometries(name: str, series: pd.Series, row_ids: Sequence[Any]) -> list[Any]:
    import shapely

    values = np.asarray(series.array if hasattr(series.array, "crs") else series.to_numpy(dtype=object))
    values = values.astype(object)
    for position, value in enumerate(values):
        if is_empty(value):
            values[position] = None
        elif not isinstance(value, shapely.Geometry):
            raise _fail(name, row_ids, position, f"expected a geometry, got {type(value).__name__}")
    return list(shapely.to_wkb(values, output_dimension=4))


# --------------------------------------------------------------------------------------------- decoding


def decode_column(spec: ColumnSpec, values: Sequence[Any]) -> Any:
    """Rebuild the column's array (exact dtype) from SQL values."""
    kind = spec.kind
    has_null = any(v is None for v in values)
    if kind == "str":
        na = {"none": None, "nan": np.nan, "na": pd.NA}[spec.extra.get("na", "none")]
        return object_array([na if v is None else v for v in values])
    if kind == "string":
        na_value = np.nan if spec.extra.get("na") == "nan" else pd.NA
        dtype = pd.StringDtype(spec.extra.get("storage", "python"), na_value=na_value)
        return pd.array(list(values), dtype=dtype)
    if kind == "int":
        ints = [None if v is None else int(v) for v in values]
        if spec.dtype in _NULLABLE_INT_NAMES:
            return pd.array(ints, dtype=spec.dtype)
        if has_null:  # rows written before this column existed: pandas' own answer is float64
            return np.array([np.nan if v is None else v for v in ints], dtype="float64")
        return np.array(ints, dtype=spec.dtype)
    if kind == "float":
        if spec.dtype in ("Float32", "Float64"):
            return pd.array(list(values), dtype=spec.dtype)
        return np.array([np.nan if v is None else v for v in values], dtype="float64").astype(spec.dtype)
    if kind == "bool":
        if spec.dtype == "boolean":
            return pd.array([None if v is None else bool(v) for v in values], dtype="boolean")
        if has_null:
            return object_array([None if v is None else bool(v) for v in values])
        return np.array([bool(v) for v in values], dtype=bool)
    if kind in ("datetime", "timedelta", "period"):
        return _decode_time(spec, values)
    if kind == "category":
        return _decode_category(spec, values)
    if kind == "geometry":
        import geopandas
        import pyproj
        import shapely

        crs_json = spec.extra.get("crs")
        raw = object_array([None if v is None else bytes(v) for v in values])
        crs = pyproj.CRS.from_json(crs_json) if crs_json else None
        return geopandas.array.from_shapely(shapely.from_wkb(raw), crs=crs)
    if kind == "json":
        return object_array([None if v is None else json_loads(v) for v in values])
    raise ValueError(f"Unknown column kind {kind!r}")


def _decode_time(spec: ColumnSpec, values: Sequence[Any]) -> Any:
    ints = np.array([_INAT if v is None else int(v) for v in values], dtype=np.int64)
    dtype = pd.api.types.pandas_dtype(spec.dtype)
    if spec.kind == "period":
        return pd.arrays.PeriodArray(ints, dtype=dtype)
    if spec.kind == "timedelta":
        return pd.array(ints.view(dtype))
    if isinstance(dtype, pd.DatetimeTZDtype):
        naive = pd.DatetimeIndex(ints.view(f"M8[{dtype.unit}]"))
        return naive.tz_localize("UTC").tz_convert(dtype.tz).array
    return pd.array(ints.view(dtype))


def _decode_category(spec: ColumnSpec, values: Sequence[Any]) -> pd.Categorical:
    element = ColumnSpec.from_json(spec.extra["element"])
    categories = pd.Index(decode_column(element, spec.extra["categories"]))
    decoded = pd.Series(decode_column(element, values))
    present = decoded[decoded.notna()]
    unseen = present[~present.isin(categories)]
    if len(unseen):  # values another writer introduced: keep them rather than turning them into NaN
        categories = categories.append(pd.Index(pd.unique(unseen)))
    return pd.Categorical(decoded, categories=categories, ordered=spec.extra.get("ordered", False))
