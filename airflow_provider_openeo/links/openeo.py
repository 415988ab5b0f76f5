"""The "openEO job" button on a task instance: opens the task's job on its backend.

The URL is pushed to XCom (key ``openeo_job_url``) before the task defers, so the button works while the job
runs and after the task fails. Reading it back by the task instance key (``ti_key`` carries ``map_index``)
gives every mapped task instance, one per job-table row, its own job's link.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator

OPENEO_JOB_URL_XCOM_KEY = "openeo_job_url"


def clean_job_url(job_url: Any) -> str:
    """``job_url`` if it is a plain http(s) URL, with any ``user:password@`` removed; otherwise ``""``.

    The URL is shown in the UI and stored in XCom, so credentials embedded in a backend URL must not travel
    with it, and a scheme like ``javascript:`` from a misbehaving backend must never become a clickable link.
    """
    if not isinstance(job_url, str) or not job_url.strip():
        return ""
    try:
        parts = urllib.parse.urlsplit(job_url.strip())
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment))


class OpenEOJobLink(BaseOperatorLink):
    """Extra link to the openEO job a task instance started or waits on."""

    name = "openEO job"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return clean_job_url(XCom.get_value(ti_key=ti_key, key=OPENEO_JOB_URL_XCOM_KEY))

    @staticmethod
    def persist(context: Mapping[str, Any], job_url: str) -> str:
        """Push ``job_url`` (cleaned) for the running task instance; returns what was stored."""
        url = clean_job_url(job_url)
        if url:
            context["ti"].xcom_push(key=OPENEO_JOB_URL_XCOM_KEY, value=url)
        return url
