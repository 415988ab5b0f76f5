"""The outcome of one status read of many jobs, job by job (kept free of HTTP imports: triggers import it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_openeo.wait._job_gone import JobListing


@dataclass
class JobReads:
    """What one status read found out, job by job, so one job's failure never hides the others' statuses.

    ``jobs``: metadata of the jobs the backend answered for; ``not_found``: jobs it answered 404 for (not proof
    of deletion: see :mod:`airflow_provider_openeo.wait._job_gone`); ``errors``: any other failure, per job;
    ``listing``: the ``GET /jobs`` scan made on the way, if one was.
    """

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_found: set[str] = field(default_factory=set)
    errors: dict[str, Exception] = field(default_factory=dict)
    listing: JobListing | None = None
