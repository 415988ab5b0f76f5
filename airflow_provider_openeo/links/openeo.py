"""The "openEO job" button on a task instance: opens the page of the task's row and job in the batch view.

The backend's own job URL answers raw JSON, and only to a logged-in client; the batch view's row page
(:mod:`airflow_provider_openeo.batch_view`) shows the row a person can read: status, times, usage, error, earlier
jobs, and that backend URL. The task pushes the job URL (key ``openeo_job_url``) and its row (``openeo_row_id``)
to XCom before it defers, so the button appears once the job exists, works while it runs and after the task
fails, and the view finds the row the instance ran. Reading it back by the task instance key (``ti_key`` carries
``map_index``) gives every mapped task instance, one per job-table row, its own link.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from airflow_provider_openeo.batch_view.urls import task_instance_path

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator

OPENEO_JOB_URL_XCOM_KEY = "openeo_job_url"
OPENEO_ROW_ID_XCOM_KEY = "openeo_row_id"


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
    """Extra link to the batch view's page of the openEO job a task instance started or waits on."""

    name = "openEO job"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        if not clean_job_url(XCom.get_value(ti_key=ti_key, key=OPENEO_JOB_URL_XCOM_KEY)):
            return ""  # no job yet: no button
        from airflow.configuration import conf

        base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
        return base + task_instance_path(ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index)

    @staticmethod
    def persist(context: Mapping[str, Any], job_url: str, *, row_id: Any = None) -> str:
        """Push ``job_url`` (cleaned) and the row (if any) for the running task instance; returns the URL stored."""
        url = clean_job_url(job_url)
        if url:
            context["ti"].xcom_push(key=OPENEO_JOB_URL_XCOM_KEY, value=url)
        if row_id is not None:
            context["ti"].xcom_push(key=OPENEO_ROW_ID_XCOM_KEY, value=row_id)
        return url
