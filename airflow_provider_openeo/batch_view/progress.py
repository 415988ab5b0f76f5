"""What the batch view shows of a job table: progress per backend, the rows, and the rows' tiles as GeoJSON.

Pure functions of the table (and of how long the backends' finished jobs took), so the page, its JSON and the
tests agree. Statuses are the job table's own (``RowStatus``); a row counts as done in a final status.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from airflow_provider_openeo.batch.row_dispatch import parse_slot
from airflow_provider_openeo.job_table._usage import COSTS_COLUMN
from airflow_provider_openeo.job_table.job_status import FAILED_ROW_STATUSES, FINAL_ROW_STATUSES, RowStatus

#: The order of statuses in the counts and the progress bar: from waiting to done.
STATUS_ORDER = (
    RowStatus.NOT_STARTED.value,
    RowStatus.QUEUED_FOR_START.value,
    RowStatus.CREATED.value,
    RowStatus.QUEUED.value,
    RowStatus.RUNNING.value,
    RowStatus.FINISHED.value,
    RowStatus.ERROR.value,
    RowStatus.START_FAILED.value,
    RowStatus.CANCELED.value,
    RowStatus.SKIPPED.value,
)
DONE_STATUSES = FINAL_ROW_STATUSES
FAILED_STATUSES = FAILED_ROW_STATUSES
#: Rows no backend took yet are counted under this name.
UNASSIGNED = ""
#: The job table's own columns a row of the view carries (the user's columns only through its label).
ROW_FIELDS = (
    "status",
    "backend_name",
    "backend_status",
    "id",
    "start_time",
    "running_start_time",
    "updated_at",
    "duration",
    COSTS_COLUMN,
    "error_message",
    "attempt",
    "results_state",
    "dispatch_run",
    "dispatch_slot",
)


def _plain(value: Any) -> Any:
    """A JSON value: numpy scalars unwrapped, NaN/NA/NaT as None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _statuses(table: pd.DataFrame) -> pd.Series:
    if not len(table):
        return pd.Series(dtype=str)
    return table["status"].fillna(RowStatus.NOT_STARTED.value).astype(str)


def _counts(statuses: pd.Series) -> dict[str, int]:
    found = statuses.value_counts()
    ordered = {status: int(found.get(status, 0)) for status in STATUS_ORDER if found.get(status, 0)}
    ordered.update({str(status): int(n) for status, n in found.items() if status not in ordered})
    return ordered


def _part(rows: pd.DataFrame) -> dict[str, Any]:
    statuses = _statuses(rows)
    done = int(statuses.isin(DONE_STATUSES).sum())
    return {
        "rows": len(rows),
        "counts": _counts(statuses),
        "done": done,
        "finished": int((statuses == RowStatus.FINISHED.value).sum()),
        "failed": int(statuses.isin(FAILED_STATUSES).sum()),
        "left": len(rows) - done,
        "percent_done": round(100.0 * done / len(rows), 1) if len(rows) else 100.0,
    }


def batch_progress(
    table: pd.DataFrame,
    backend_names: Iterable[str],
    paces: Mapping[str, float],
    slots: Mapping[str, int | None],
) -> dict[str, Any]:
    """Counts by status for the batch and per backend, and an estimate of the time left.

    :param paces: seconds a job takes on each backend, from its finished jobs (``row_dispatch.backend_paces``).
    :param slots: each backend's pool slots (its parallel jobs); None or missing counts as one.

    A backend's estimate is its rows left, in waves of its slots, at its pace. The batch's spreads every row left
    (also rows no backend took yet) over the backends' combined throughput. None where no job finished yet.
    """
    names = list(dict.fromkeys(backend_names))
    backend_column = table["backend_name"].fillna(UNASSIGNED).astype(str) if len(table) else pd.Series(dtype=str)
    names += [n for n in dict.fromkeys(backend_column) if n not in names and n != UNASSIGNED]
    backends: dict[str, dict[str, Any]] = {}
    throughput = 0.0
    for name in names:
        part = _part(table[backend_column == name] if len(table) else table)
        pace = paces.get(name)
        width = max(1, int(slots.get(name) or 1))
        part.update(
            slots=slots.get(name),
            pace_seconds=round(pace, 1) if pace else None,
            eta_seconds=(math.ceil(part["left"] / width) * pace) if pace else None,
        )
        if pace:
            throughput += width / pace
        backends[name] = part
    total = _part(table)
    unassigned = int((backend_column == UNASSIGNED).sum()) if len(table) else 0
    if total["left"] == 0:
        eta: float | None = 0.0
    else:
        eta = total["left"] / throughput if throughput else None
    total.update(unassigned=unassigned, eta_seconds=round(eta, 1) if eta is not None else None)
    return {"total": total, "backends": backends, "statuses": list(STATUS_ORDER)}


def label_of(row_id: Any, values: Mapping[str, Any], label_columns: Iterable[str] = ("title", "name")) -> str:
    """``"<row id>: <title>"`` as the row tasks label their instances, or ``"row <id>"``."""
    for column in label_columns:
        value = _plain(values.get(column))
        if value not in (None, ""):
            return f"{row_id}: {value}"
    return f"row {row_id}"


def task_instance_of(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The row's task instance (``dag_id``, ``run_id``, ``task_id``, ``map_index``) from its dispatch columns."""
    run, slot = _plain(values.get("dispatch_run")), _plain(values.get("dispatch_slot"))
    if not run or not slot or "/" not in str(run):
        return None
    dag_id, run_id = str(run).split("/", 1)  # a DAG id holds no "/"
    try:
        task_id, map_index = parse_slot(str(slot))
    except ValueError:
        return None
    return {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}


def row_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as the view lists them: id, label, the job table's own columns, the task instance."""
    records = []
    for row_id, values in table.iterrows():
        record: dict[str, Any] = {"row_id": _plain(row_id), "label": label_of(row_id, values)}
        record.update({field: _plain(values.get(field)) for field in ROW_FIELDS})
        if record["status"] is None:
            record["status"] = RowStatus.NOT_STARTED.value
        record["task_instance"] = task_instance_of(values)
        records.append(record)
    return records


def row_detail(row_id: Any, values: Mapping[str, Any], geometry_column: str | None) -> dict[str, Any]:
    """One row in full for its page: every column but the geometry, and the earlier jobs of the row."""
    record = {"row_id": _plain(row_id), "label": label_of(row_id, values)}
    columns = {}
    for name, value in values.items():
        if name == geometry_column:
            continue
        if isinstance(value, (list, dict)):
            columns[name] = value
        else:
            plain = _plain(value)
            columns[name] = plain if isinstance(plain, (str, int, float, bool)) or plain is None else str(plain)
    record["columns"] = columns
    record["task_instance"] = task_instance_of(values)
    return record


def tile_features(table: pd.DataFrame) -> dict[str, Any] | None:
    """The rows' geometries in WGS 84 as a GeoJSON FeatureCollection (status in each feature), or None when the
    table carries no geometry."""
    geometry = getattr(table, "geometry", None) if hasattr(table, "crs") else None
    if geometry is None or not len(table) or geometry.isna().all():
        return None
    from shapely.geometry import mapping

    if table.crs is not None and table.crs.to_epsg() != 4326:
        geometry = geometry.to_crs(4326)
    statuses = _statuses(table)
    features = []
    for (row_id, values), shape, status in zip(table.iterrows(), geometry, statuses, strict=True):
        if shape is None or shape.is_empty:
            continue
        features.append(
            {
                "type": "Feature",
                "id": _plain(row_id),
                "geometry": mapping(shape),
                "properties": {
                    "row_id": _plain(row_id),
                    "label": label_of(row_id, values),
                    "status": status,
                    "backend_name": _plain(values.get("backend_name")),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}
