"""Paginated ``GET /jobs/{id}/logs``: with ``logs_page_size`` set, a page of entries and a ``rel=next`` link.

openeo-driver always answers every entry with ``"links": []``; some production backends page long logs.
The ``next`` link repeats the request with ``offset`` = the id of the last entry shown (the openEO API's
meaning of ``offset``), keeping ``level`` and ``limit``. With the setting off, openeo-driver's view answers.
Driver venv only.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import flask
from openeo_driver.constants import DEFAULT_LOG_LEVEL_RETRIEVAL
from openeo_driver.users.auth import HttpAuthHandler

from local_backend.jobs import LifecycleBatchJobs


def page_of_logs(entries: list[dict[str, Any]], page_size: int, limit: int | None) -> tuple[list[dict], bool]:
    """The entries of one page, and whether more remain after it."""
    size = min(page_size, limit) if limit else page_size
    return entries[:size], len(entries) > size


def install_log_pages(
    app: flask.Flask, auth: HttpAuthHandler, batch_jobs: LifecycleBatchJobs, settings: Callable[[], dict[str, Any]]
) -> None:
    @auth.requires_bearer_auth
    def paged_logs(job_id: str, user: Any) -> flask.Response:
        args = flask.request.args
        level = args.get("level", default=DEFAULT_LOG_LEVEL_RETRIEVAL)
        limit = args.get("limit", default=None, type=int)
        entries = list(batch_jobs.get_log_entries(job_id, user_id=user.user_id, offset=args.get("offset"), level=level))
        page, more = page_of_logs(entries, settings()["logs_page_size"], limit)
        links = []
        if more and page:
            query = {k: v for k, v in args.items() if k != "offset"}
            query["offset"] = page[-1]["id"]
            links.append({"rel": "next", "href": f"{flask.request.base_url}?{urllib.parse.urlencode(query)}"})
        return flask.jsonify({"level": level, "logs": page, "links": links})

    for blueprint in ("openeo", "openeo_old"):
        name = f"{blueprint}.get_job_logs"
        original = app.view_functions[name]

        def view(job_id: str, _original: Callable[..., Any] = original) -> Any:
            chosen = _original if settings()["logs_page_size"] is None else paged_logs
            return chosen(job_id=job_id)

        app.view_functions[name] = view
