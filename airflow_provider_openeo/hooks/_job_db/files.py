"""MBJM's exchange files: CSV (geometry as WKT), Parquet and GeoParquet, read strictly and written atomically.

Reading follows MBJM's ``CsvJobDatabase`` / ``ParquetJobDatabase`` (same dtype mapping, same geometry
detection), so a file made by ``create_job_db`` imports as MBJM itself would read it. Unlike pandas, a CSV whose
rows do not all have the header's number of fields is refused: that is what a truncated or damaged file looks
like, and silently padding it with NaN would lose data. Our Parquet export carries the job table's schema in the
file's metadata so that JSON-like columns (``job_history``, lists, dicts) come back as the same objects.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_openeo.exceptions import JobDbFileError, JobDbInputError
from airflow_provider_openeo.hooks._job_db.codec import ColumnSpec, decode_column, json_dumps, json_loads
from airflow_provider_openeo.hooks._job_db.schema import TableSchema

PARQUET_SUFFIXES = frozenset({".parquet", ".geoparquet"})
CSV_SUFFIXES = frozenset({".csv"})
SCHEMA_METADATA_KEY = b"openeo_job_db"
#: MBJM's ``_column_requirements.dtype_mapping()`` in openeo 0.53.
MBJM_CSV_DTYPES = {
    "id": "str",
    "backend_name": "str",
    "status": "str",
    "start_time": "str",
    "running_start_time": "str",
    "costs": "float64",
}


def file_format(path: pathlib.Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise JobDbInputError(f"{path}: unknown job file type {suffix!r}; use .csv, .parquet or .geoparquet")


# --------------------------------------------------------------------------------------------- reading


def read_job_file(path: str | os.PathLike[str], *, index_col: str | None = None) -> pd.DataFrame:
    """The frame stored in a job file; raises ``JobDbFileError`` naming the file when it is not readable."""
    path = pathlib.Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"Job file {str(path)!r} does not exist")
    frame = _read_csv(path) if fmt == "csv" else _read_parquet(path)
    if index_col is not None:
        if index_col not in frame.columns:
            raise JobDbInputError(f"{path}: index_col {index_col!r} is not a column of the file")
        frame = frame.set_index(index_col)
    return frame


def _check_csv_shape(path: pathlib.Path) -> None:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if not header:
                raise JobDbFileError(f"{path}: empty CSV file (no header line)")
            for record in reader:
                if record and len(record) != len(header):
                    raise JobDbFileError(
                        f"{path}: line {reader.line_num} has {len(record)} fields but the header has "
                        f"{len(header)}; the file is truncated or corrupt"
                    )
    except csv.Error as exc:
        raise JobDbFileError(f"{path}: corrupt CSV ({exc}); the file is truncated or damaged") from None
    except UnicodeDecodeError as exc:
        raise JobDbFileError(f"{path}: not a UTF-8 text CSV file ({exc})") from None


def _read_csv(path: pathlib.Path) -> pd.DataFrame:
    _check_csv_shape(path)
    try:
        header = pd.read_csv(path, nrows=0).columns
        dtypes = {name: dtype for name, dtype in MBJM_CSV_DTYPES.items() if name in header}
        # round_trip: pandas' default float parser can be one ulp off what to_csv wrote
        frame = pd.read_csv(path, dtype=dtypes, float_precision="round_trip")
    except (ValueError, pd.errors.ParserError) as exc:
        raise JobDbFileError(f"{path}: cannot parse CSV ({exc})") from None
    if "geometry" in frame.columns and frame["geometry"].dtype == object:
        frame = _geometry_from_wkt(path, frame)
    return frame


def _geometry_from_wkt(path: pathlib.Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Like MBJM: a ``geometry`` column of WKT makes the file a GeoDataFrame (CSV carries no CRS)."""
    import geopandas
    import shapely

    texts = frame["geometry"]
    present = texts.dropna()
    if present.empty or not _looks_like_wkt(present.iloc[0]):
        return frame
    try:
        geometries = shapely.from_wkt(texts.to_numpy(dtype=object, na_value=None))
    except shapely.errors.GEOSException as exc:
        raise JobDbFileError(f"{path}: column 'geometry' holds invalid WKT ({exc})") from None
    frame = frame.copy()
    frame["geometry"] = geopandas.GeoSeries(geometries, index=frame.index)
    return geopandas.GeoDataFrame(frame, geometry="geometry")


def _looks_like_wkt(text: Any) -> bool:
    import shapely

    try:
        shapely.from_wkt(text)
    except (shapely.errors.GEOSException, TypeError):
        return False
    return True


def _read_parquet(path: pathlib.Path) -> pd.DataFrame:
    import pyarrow
    import pyarrow.parquet

    try:
        metadata = pyarrow.parquet.read_metadata(path).metadata or {}
        if b"geo" in metadata:
            import geopandas

            frame = geopandas.read_parquet(path)
        else:
            frame = pd.read_parquet(path)
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        raise JobDbFileError(f"{path}: unreadable Parquet file ({exc}); it is truncated or corrupt") from None
    if SCHEMA_METADATA_KEY in metadata:
        frame = _restore_dtypes(frame, json.loads(metadata[SCHEMA_METADATA_KEY]))
    return frame


def _restore_dtypes(frame: pd.DataFrame, schema_json: dict[str, Any]) -> pd.DataFrame:
    """Undo what Parquet cannot hold: JSON columns were written as text, pyarrow-backed strings read back as
    python ones, and datetimes in seconds as milliseconds (Parquet's coarsest unit)."""
    schema = TableSchema.from_json(schema_json)
    for name, spec in schema.columns:
        if spec.kind == "category" and name in frame.columns:
            element = ColumnSpec.from_json(spec.extra["element"])
            categories = pd.Index(decode_column(element, spec.extra["categories"]))
            dtype = pd.CategoricalDtype(categories, ordered=spec.extra.get("ordered", False))
            if frame[name].dtype != dtype:
                frame[name] = frame[name].astype(dtype)
        if spec.kind in ("datetime", "timedelta") and name in frame.columns:
            dtype = pd.api.types.pandas_dtype(spec.dtype)
            if frame[name].dtype != dtype:
                frame[name] = frame[name].astype(dtype)
        if spec.kind == "string" and name in frame.columns:
            na_value = np.nan if spec.extra.get("na") == "nan" else pd.NA
            frame[name] = frame[name].astype(pd.StringDtype(spec.extra.get("storage", "python"), na_value=na_value))
        if spec.kind == "json" and name in frame.columns:
            values = [None if v is None else json_loads(v) for v in frame[name].tolist()]
            arr = np.empty(len(values), dtype=object)
            for i, value in enumerate(values):
                arr[i] = value
            frame[name] = arr
    return frame


# --------------------------------------------------------------------------------------------- writing


def write_job_file(frame: pd.DataFrame, schema: TableSchema, path: str | os.PathLike[str]) -> pathlib.Path:
    """Write atomically (temporary file + rename), so MBJM or a reader never sees half a file."""
    path = pathlib.Path(path)
    fmt = file_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if fmt == "csv":
            _write_csv(frame, schema, temporary)
        else:
            _write_parquet(frame, schema, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _json_columns_as_text(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    frame = frame.copy()
    for name, spec in schema.columns:
        if spec.kind == "json" and name in frame.columns:
            frame[name] = [None if v is None else json_dumps(v, f"column {name!r}") for v in frame[name].tolist()]
    return frame


def _write_csv(frame: pd.DataFrame, schema: TableSchema, path: pathlib.Path) -> None:
    import shapely

    frame = _json_columns_as_text(frame, schema)
    for name, spec in schema.columns:
        if spec.kind == "geometry" and name in frame.columns:
            # GEOS's "full precision" (-1) writes 16 significant digits, which can be one ulp off; with this many
            # decimals it writes the shortest exact form instead (checked for 1e-12 .. 1e15)
            geometries = np.asarray(frame[name].array, dtype=object)
            wkt = shapely.to_wkt(geometries, rounding_precision=30, trim=True)
            frame = pd.DataFrame(frame).assign(**{name: wkt})
    keep_index = not (isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1)
    label = schema.index_name or "row_id"
    pd.DataFrame(frame).to_csv(path, index=keep_index, index_label=label if keep_index else None)


def _write_parquet(frame: pd.DataFrame, schema: TableSchema, path: pathlib.Path) -> None:
    import pyarrow.parquet

    frame = _json_columns_as_text(frame, schema)
    frame.to_parquet(path)
    table = pyarrow.parquet.read_table(path)
    metadata = dict(table.schema.metadata or {})
    metadata[SCHEMA_METADATA_KEY] = json.dumps(schema.to_json()).encode("utf-8")
    pyarrow.parquet.write_table(table.replace_schema_metadata(metadata), path)
