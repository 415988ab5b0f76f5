"""The provider's Airflow plugin, registered through the ``airflow.plugins`` entry point (only there: see below).

It carries the scheduler-side listener that checks a batch's pools before any of its rows starts
(:mod:`airflow_provider_openeo.batch.pool_listener`) and the batch view (:mod:`airflow_provider_openeo.batch_view`): a
FastAPI app the API server mounts under ``/openeo``, shown in the UI as "openEO batches" (under Browse) and as a
tab of every DAG page. Importing this module stays light (no pandas, no openEO client, no FastAPI): every Airflow
process that loads plugins imports it, so the view's app is built on its first request.

The plugin is declared once, by the entry point, which Airflow reads in every mode. The provider info does not
name it too: with ``[core] lazy_discover_providers = False`` Airflow also loads the plugins the provider info
names, and a second registration of the same name is refused as an import error ("already registered").
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_openeo.batch import pool_listener
from airflow_provider_openeo.batch_view.urls import URL_PREFIX, batches_path

PLUGIN_NAME = "openeo"


class LazyBatchViewApp:
    """An ASGI app that builds the batch view's FastAPI app on its first call (in the API server only)."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _built(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from airflow_provider_openeo.batch_view.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._built()(scope, receive, send)


class OpenEOPlugin(AirflowPlugin):
    """openEO batches: the pools check in the scheduler, the batch view in the UI."""

    name = PLUGIN_NAME
    listeners = [pool_listener]
    fastapi_apps = [{"app": LazyBatchViewApp(), "url_prefix": URL_PREFIX, "name": "openEO batch view"}]
    external_views = [
        {
            "name": "openEO batches",
            "href": batches_path(),
            "url_route": "openeo-batches",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "openEO batch",
            "href": batches_path() + "?dag_id={DAG_ID}",
            "url_route": "openeo-batch",
            "destination": "dag",
        },
    ]
