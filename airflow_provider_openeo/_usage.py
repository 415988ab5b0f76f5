"""Job-database values taken from a job's metadata: usage (cpu, memory, duration) and costs, as MBJM writes them.

MBJM stores each usage metric as the string ``"{value} {unit}"`` (``"1.5 cpu-seconds"``, a bare ``"40"`` when
the backend gives no unit) and ``costs`` as a float. Keeping the same text means a job table filled by us reads
the same in MBJM, in notebooks, and in our summary task.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

USAGE_COLUMNS: tuple[str, ...] = ("cpu", "memory", "duration")


def format_usage(entry: Any) -> str:
    """One usage metric as MBJM's ``"value unit"`` text (value 0 and no unit when the backend omits them)."""
    if isinstance(entry, Mapping):
        value = entry.get("value", 0)
        unit = entry.get("unit", "")
    else:
        # Some backends report a bare number; MBJM would write "0" here, the number itself is more useful.
        value, unit = (entry if entry is not None else 0), ""
    return f"{value} {unit if unit is not None else ''}".strip()


def parse_costs(raw: Any, *, job_id: str) -> float | None:
    """``costs`` as a float, or None when absent or not a finite number (logged, never raised: costs are info)."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        costs = float(raw)
    except (TypeError, ValueError):
        log.warning("Ignoring non-numeric costs %r reported for openEO job %s", raw, job_id)
        return None
    if not math.isfinite(costs):
        log.warning("Ignoring non-finite costs %r reported for openEO job %s", raw, job_id)
        return None
    return costs


def usage_row_values(metadata: Mapping[str, Any], *, job_id: str) -> dict[str, Any]:
    """Row values for ``cpu``, ``memory``, ``duration`` and ``costs`` found in a job's metadata.

    Only metrics the backend reported are returned, so an update never blanks a value written earlier. Usage
    keys beyond the three columns (e.g. ``input_pixel``) stay in ``job_{id}.json``: MBJM adds them as ad-hoc
    columns, a SQL table has a fixed schema.
    """
    values: dict[str, Any] = {}
    usage = metadata.get("usage")
    if isinstance(usage, Mapping):
        for column in USAGE_COLUMNS:
            if column in usage:
                values[column] = format_usage(usage[column])
        extra = sorted(str(key) for key in usage if key not in USAGE_COLUMNS)
        if extra:
            log.debug("openEO job %s reported further usage metrics kept in its metadata file: %s", job_id, extra)
    elif usage is not None:
        log.warning("Ignoring malformed usage %r reported for openEO job %s", usage, job_id)
    if "costs" in metadata:
        costs = parse_costs(metadata.get("costs"), job_id=job_id)
        if costs is not None:
            values["costs"] = costs
    return values
