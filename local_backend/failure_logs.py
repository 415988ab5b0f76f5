"""Error log entries a failed job writes per failure category, shaped like what production backends log.

The texts are written for this backend (not copied), after the kinds of messages openeo-geopyspark-driver and
openeo-python-driver log for a failed batch job (see ``airflow_provider_openeo/batch/error_categories.py`` for the
sources the provider's classifier cites). A test picks one with the job option
``{"local_backend": {"fail_category": "out_of_memory"}}``; ``min_executor_memory`` makes a job fail with the
out-of-memory entries unless its ``executor-memory`` option is at least that much.
"""

from __future__ import annotations

import re
from typing import Any

#: Per category: ``(message, code)`` entries at level ``error``, the first carrying the summary.
CATEGORY_LOGS: dict[str, list[tuple[str, str | None]]] = {
    "out_of_memory": [
        (
            "OpenEO batch job failed: Your batch job failed because workers used too much memory. The same task "
            "was attempted multiple times. Consider increasing executor-memory.",
            None,
        ),
        ("Container killed on request. Exit code is 143 (executor 3 over its memory limit)", None),
    ],
    "no_data": [
        (
            "There is no data available for the given extents. Could not find data for your load_collection "
            "request with catalog ID 'LOCAL_S2'.",
            "NoDataAvailable",
        ),
    ],
    "timeout": [
        (
            "The batch job did not start fast enough and got killed: its application master timed out. Failing "
            "the application.",
            None,
        ),
    ],
    "invalid_process_graph": [
        (
            "The value passed for parameter 'bands' in process 'load_collection' is invalid: band 'B99' is unknown",
            "ProcessParameterInvalid",
        ),
    ],
    "backend_fault": [
        ("Server error: the job registry could not be reached while writing results", "Internal"),
    ],
    "other": [
        ("Simulated processing failure (local backend).", "LocalBackendFailure"),
    ],
}
DEFAULT_EXECUTOR_MEMORY = "2g"
_SIZE = re.compile(r"^\s*(\d+)\s*([mg])\s*$", re.IGNORECASE)


def megabytes(value: Any) -> int | None:
    """``"2g"`` -> 2048, ``"512m"`` -> 512 (the notation ``GET /processing_parameters`` declares); else None."""
    match = _SIZE.match(str(value)) if value is not None else None
    if not match:
        return None
    return int(match.group(1)) * (1024 if match.group(2).lower() == "g" else 1)


def out_of_memory(job_options: dict[str, Any] | None, needed: Any) -> bool:
    """Whether a job needing ``needed`` executor memory runs out of it with these options (default 2g)."""
    want = megabytes(needed)
    if want is None:
        return False
    have = megabytes((job_options or {}).get("executor-memory", DEFAULT_EXECUTOR_MEMORY)) or 0
    return have < want
