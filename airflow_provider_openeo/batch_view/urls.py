"""Where the batch view lives: light enough for the plugin module and the extra link to import anywhere."""

from __future__ import annotations

from urllib.parse import quote

#: Where the API server mounts the batch view's app (``plugin.OpenEOPlugin.fastapi_apps``).
URL_PREFIX = "/openeo"


def _part(value: object) -> str:
    return quote(str(value), safe="")


def batches_path() -> str:
    return f"{URL_PREFIX}/batches"


def task_instance_path(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The view's page of a task instance's row (it redirects to the row's page)."""
    return f"{URL_PREFIX}/task-instance/{_part(dag_id)}/{_part(run_id)}/{_part(task_id)}/{int(map_index)}"
