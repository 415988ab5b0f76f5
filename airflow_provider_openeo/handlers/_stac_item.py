"""One finished row as a STAC item: where its job's results are, where and when they are of, which row made them.

Pure: the caller hands in the row (its values and the job table's CRS), the job's metadata and results document,
and where each asset is (a stored file, or the backend's href when results are not downloaded); this module only
decides what goes where in the item.

- **Geometry**: the row's own (a GeoDataFrame's geometry column, reprojected to WGS 84 as STAC wants), else the
  results document's (``geometry``, ``bbox``, or the collection extent's first bbox), else none (STAC allows a
  null geometry).
- **Time**: the row's ``temporal_extent`` (``[start, end]``, as ``ProcessBasedJobCreator`` rows carry it), else the
  results document's (an item's ``datetime`` / ``start_datetime`` / ``end_datetime``, or the collection extent's
  first interval), else the job's ``created``.
- **Properties**: ``openeo_provider:job_id``, ``:backend``, ``:row_id``, ``:row_key``, ``:job_table``, and
  ``openeo_provider:row``, the row's key fields (``row_keys``: the ``key_columns``, or every job-defining column)
  as JSON values, so a next batch can make its rows from them.

No STAC extension is declared: an extension's schema would have to be fetched to validate the item, and a product
that validates offline (pystac ships the core schemas) is worth more here than ``proj:`` or ``file:`` fields.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_openeo.job_table.cells import is_empty
from airflow_provider_openeo.job_table.timestamps import rfc3339_of

STAC_VERSION = "1.1.0"
PROPERTY_PREFIX = "openeo_provider:"
#: The row column whose ``[start, end]`` gives an item's time span (MBJM's and the UDPs' usual parameter name).
TEMPORAL_EXTENT_COLUMN = "temporal_extent"
#: Asset fields that say where the bytes are (replaced) or that only the backend understands (dropped).
_ASSET_FIELDS_DROPPED = frozenset({"href", "output_dir", "alternate"})


def item_id_for(row_id: Any) -> str:
    """The item id (and file name stem) of a row: one per row, so a re-run row replaces its item."""
    from airflow_provider_openeo.handlers._safe_paths import safe_job_token

    return f"row_{safe_job_token(row_id)}"


def build_item(
    *,
    row_id: Any,
    row: Mapping[str, Any],
    crs: Any,
    key_fields: Sequence[str],
    job_id: str,
    job_table: str,
    backend: str | None,
    metadata: Mapping[str, Any],
    results_document: Mapping[str, Any] | None,
    assets: Mapping[str, tuple[str, Mapping[str, Any]]],
    collection_id: str,
) -> dict[str, Any]:
    """The item as a dict (``pystac.Item.from_dict`` reads it).

    :param assets: ``{key: (href, the backend's asset fields)}``; hrefs relative to the item file, or absolute.
    """
    geometry, bbox = _row_geometry(row, crs)
    if geometry is None:
        geometry, bbox = _document_geometry(results_document or {})
    properties: dict[str, Any] = dict(_times(row, results_document or {}, metadata))
    title = row.get("title")
    if isinstance(title, str) and title:
        properties["title"] = title
    properties.update(
        {
            f"{PROPERTY_PREFIX}job_id": str(job_id),
            f"{PROPERTY_PREFIX}backend": backend,
            f"{PROPERTY_PREFIX}row_id": json_value(row_id),
            f"{PROPERTY_PREFIX}row_key": row.get("row_key"),
            f"{PROPERTY_PREFIX}job_table": job_table,
            f"{PROPERTY_PREFIX}row": {name: json_value(row.get(name)) for name in key_fields if name in row},
        }
    )
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "id": item_id_for(row_id),
        "geometry": geometry,
        "properties": properties,
        "links": [
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "root", "href": "../collection.json", "type": "application/json"},
        ],
        "assets": {key: _asset(href, fields) for key, (href, fields) in assets.items()},
        "collection": collection_id,
    }
    if bbox is not None:
        item["bbox"] = bbox
    return item


def _asset(href: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    asset = {k: json_value(v) for k, v in fields.items() if k not in _ASSET_FIELDS_DROPPED}
    asset["href"] = href
    return asset


# -- geometry ---------------------------------------------------------------------------------------------------


def _row_geometry(row: Mapping[str, Any], crs: Any) -> tuple[dict[str, Any] | None, list[float] | None]:
    """The row's shapely geometry in WGS 84 as GeoJSON, and its bbox; (None, None) when the row has none."""
    import shapely

    geometry = next((v for v in row.values() if isinstance(v, shapely.Geometry)), None)
    if geometry is None or geometry.is_empty:
        return None, None
    if crs is not None:
        import geopandas as gpd

        series = gpd.GeoSeries([geometry], crs=crs)
        if not series.crs.equals("EPSG:4326"):
            geometry = series.to_crs("EPSG:4326").iloc[0]
    return _geojson(shapely.geometry.mapping(geometry)), [float(v) for v in geometry.bounds]


def _document_geometry(document: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[float] | None]:
    """The results document's footprint: its ``geometry`` (with ``bbox``), else a bbox as a polygon."""
    geometry = document.get("geometry")
    bbox = _bbox(document.get("bbox"))
    if bbox is None:
        extent_boxes = ((document.get("extent") or {}).get("spatial") or {}).get("bbox") or []
        bbox = _bbox(extent_boxes[0]) if extent_boxes else None
    if isinstance(geometry, Mapping) and geometry.get("type"):
        import shapely.geometry

        try:
            shape = shapely.geometry.shape(geometry)
        except Exception:
            shape = None
        if shape is not None and not shape.is_empty:
            return _geojson(shapely.geometry.mapping(shape)), bbox or [float(v) for v in shape.bounds]
    if bbox is None:
        return None, None
    west, south, east, north = bbox
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def _bbox(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 4:
        try:
            numbers = [float(v) for v in value]
        except (TypeError, ValueError):
            return None
        if all(math.isfinite(v) for v in numbers):
            return numbers
    return None


def _geojson(value: Any) -> Any:
    """Tuples (shapely's coordinates) as lists, so the item equals its JSON round trip."""
    if isinstance(value, Mapping):
        return {k: _geojson(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_geojson(v) for v in value]
    return value


# -- time -------------------------------------------------------------------------------------------------------


def _times(row: Mapping[str, Any], document: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``datetime`` (or ``start_datetime`` / ``end_datetime`` with a null ``datetime``), RFC 3339 UTC."""
    span = _span(row.get(TEMPORAL_EXTENT_COLUMN))
    if span is None:
        span = _document_span(document)
    if span is None:
        created = _instant(metadata.get("created"))
        span = (created, created) if created else None
    if span is None:
        now = dt.datetime.now(dt.timezone.utc)
        span = (now, now)
    start, end = span
    if start is not None and end is not None and start == end:
        return {"datetime": rfc3339_of(start)}
    times: dict[str, Any] = {"datetime": None}
    times["start_datetime"] = rfc3339_of(start) if start is not None else None
    times["end_datetime"] = rfc3339_of(end) if end is not None else None
    return times


def _document_span(document: Mapping[str, Any]) -> tuple[Any, Any] | None:
    properties = document.get("properties") or {}
    if isinstance(properties, Mapping):
        instant = _instant(properties.get("datetime"))
        if instant is not None:
            return instant, instant
        span = _span([properties.get("start_datetime"), properties.get("end_datetime")])
        if span is not None:
            return span
    intervals = ((document.get("extent") or {}).get("temporal") or {}).get("interval") or []
    return _span(intervals[0]) if intervals else None


def _span(value: Any) -> tuple[Any, Any] | None:
    """``[start, end]`` as two UTC datetimes (either may be open: None); None when ``value`` is no span."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    start, end = _instant(value[0]), _instant(value[1])
    if start is None and end is None:
        return None
    return start, end


def _instant(value: Any) -> dt.datetime | None:
    if is_empty(value) or value == "":
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if pd.isna(stamp):
        return None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


# -- values -----------------------------------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A row value as JSON: numpy and pandas scalars as Python ones, times as RFC 3339, geometries as WKT."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        stamp = pd.Timestamp(value)
        return stamp.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if type(value).__module__.startswith("shapely"):
        return value.wkt
    return str(value)
