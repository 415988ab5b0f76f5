"""A job's usage and costs as job-table values: the one home of the usage text, written and read back.

MBJM (openeo 0.53) gives every key of a job's ``usage`` (``cpu``, ``memory``, ``duration``, ``input_pixel``,
``sentinelhub``, ... whatever the backend reports) a column of its own, named as the key, holding the text
``"{value} {unit}"`` (``"1.5 cpu-seconds"``; a bare ``"40"`` without unit), and ``costs`` as a float. Keeping the
same names and text means a job table filled by us reads the same in MBJM, in notebooks, and in our summary,
which parses the text back here (:func:`parse_usage`) to add it up per unit.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

#: Usage columns every job table has (MBJM before 0.53 predefined them; our tables keep them for old readers).
USAGE_COLUMNS: tuple[str, ...] = ("cpu", "memory", "duration")
COSTS_COLUMN = "costs"

_USAGE_TEXT = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?:\s+(\S.*?))?\s*$")


class UsageAmount(NamedTuple):
    """One usage cell read back: the number and its unit ("" when the backend gave none)."""

    value: float
    unit: str


def format_usage(entry: Any) -> str:
    """One usage metric as MBJM's ``"value unit"`` text (value 0 and no unit when the backend omits them)."""
    if isinstance(entry, Mapping):
        value = entry.get("value", 0)
        unit = entry.get("unit", "")
    else:
        # Some backends report a bare number; MBJM would write "0" here, the number itself is more useful.
        value, unit = (entry if entry is not None else 0), ""
    return f"{value} {unit if unit is not None else ''}".strip()


def parse_usage(text: Any) -> UsageAmount | None:
    """A usage cell (``"12.5 cpu-seconds"``, ``"40"``, a number) back as value and unit; None when empty or
    not usage text (a cell some other program wrote)."""
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return None if math.isnan(text) else UsageAmount(float(text), "")
    match = _USAGE_TEXT.match(str(text))
    if match is None:
        return None
    value = float(match.group(1))
    return UsageAmount(value, match.group(2) or "") if math.isfinite(value) else None


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


def usage_cells(metadata: Mapping[str, Any], *, job_id: str) -> dict[str, str]:
    """Column name -> usage text for every usage key the job's metadata reports (MBJM names: the key itself).

    Only metrics the backend reported are returned, so an update never blanks a value written earlier.
    """
    usage = metadata.get("usage")
    if usage is None:
        return {}
    if not isinstance(usage, Mapping):
        log.warning("Ignoring malformed usage %r reported for openEO job %s", usage, job_id)
        return {}
    return {str(key): format_usage(entry) for key, entry in usage.items()}


def usage_row_values(metadata: Mapping[str, Any], *, job_id: str) -> dict[str, Any]:
    """Row values for every usage key and ``costs`` found in a job's metadata (see :func:`usage_cells`)."""
    values: dict[str, Any] = dict(usage_cells(metadata, job_id=job_id))
    values.pop(COSTS_COLUMN, None)  # a usage key "costs" would overwrite the costs column: MBJM skips it too
    if COSTS_COLUMN in metadata:
        costs = parse_costs(metadata.get(COSTS_COLUMN), job_id=job_id)
        if costs is not None:
            values[COSTS_COLUMN] = costs
    return values
