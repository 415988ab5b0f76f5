"""The job options this backend declares: ``GET /processing_parameters`` (openEO processing-parameters extension).

A small set shaped like openeo-geopyspark-driver's (memory as ``<n>m``/``<n>g`` strings, cores as a bounded
integer, an enum), plus this backend's own ``local_backend`` object (timings and failures of one job, see
``jobs.py``), so a client can check options against real schemas before it creates a job. The backend keeps every
option it receives on the job (``GET /jobs/{id}`` ``job_options``, control API ``jobs()``) without acting on any
but ``local_backend``.
"""

from __future__ import annotations

from typing import Any

_MEMORY = {"type": "string", "pattern": r"^\d+[mg]$"}

CREATE_JOB_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "driver-memory",
        "description": "Memory of the job's driver, e.g. '2g' or '512m'.",
        "optional": True,
        "default": "2g",
        "schema": _MEMORY,
    },
    {
        "name": "executor-memory",
        "description": "Memory of each executor, e.g. '2g' or '512m'.",
        "optional": True,
        "default": "2g",
        "schema": _MEMORY,
    },
    {
        "name": "executor-cores",
        "description": "Cores of each executor.",
        "optional": True,
        "default": 1,
        "schema": {"type": "integer", "minimum": 1, "maximum": 8},
    },
    {
        "name": "log_level",
        "description": "Lowest level of the job's log entries.",
        "optional": True,
        "default": "info",
        "schema": {"type": "string", "enum": ["error", "warning", "info", "debug"]},
    },
    {
        "name": "local_backend",
        "description": "This backend's own controls of one job (see local_backend/README.md).",
        "optional": True,
        "default": {},
        "schema": {
            "type": "object",
            "properties": {
                "queue_seconds": {"type": "number", "minimum": 0},
                "run_seconds": {"type": "number", "minimum": 0},
                "fail": {"type": "boolean"},
                "fail_message": {"type": "string"},
                "fail_category": {
                    "type": "string",
                    "enum": [
                        "out_of_memory",
                        "no_data",
                        "timeout",
                        "invalid_process_graph",
                        "backend_fault",
                        "other",
                    ],
                },
                "min_executor_memory": {"type": "string", "pattern": r"^\d+[mg]$"},
            },
            "additionalProperties": False,
        },
    },
]


def processing_parameters() -> dict[str, Any]:
    return {"create_job_parameters": CREATE_JOB_PARAMETERS}
