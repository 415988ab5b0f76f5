"""The job table's timestamps: RFC 3339 UTC text, the format MBJM writes (``2024-05-01T12:00:00Z``).

One home for writing and reading them, so the starter, the triggers and the dispatch agree on every row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from openeo.util import rfc3339


def utc_now_rfc3339() -> str:
    """Now, as a row's timestamp."""
    return rfc3339.datetime(dt.datetime.now(dt.timezone.utc))


def utc_now_precise() -> str:
    """Now to the microsecond (``2024-05-01T12:00:00.123456Z``): the job database's ``updated_at``, fixed width so
    that it sorts as text and two writes in one second keep their order."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_of(value: dt.datetime) -> str:
    """``2024-05-01T12:00:00Z`` of an aware UTC datetime (STAC's ``datetime`` fields)."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_from_epoch(epoch: float) -> str:
    """``2024-05-01T12:00:00Z``: the format MBJM writes to ``running_start_time``."""
    return rfc3339.datetime(dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc))


def epoch_from_rfc3339(value: Any) -> float | None:
    """Epoch seconds of a row's timestamp (RFC3339 text as MBJM writes it, other ISO 8601 text, or a datetime);
    None if unreadable."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return rfc3339.parse_datetime(value.strip(), with_timezone=True).timestamp()
    except ValueError:
        pass
    try:  # other ISO 8601 spellings (``+00:00``, a space for ``T``), as other tools or older versions write them
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).timestamp()
