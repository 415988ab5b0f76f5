"""Where a relative path points on a deployment: under ``$AIRFLOW_HOME``, never a process's working directory.

The scheduler, the dag-processor, the triggerer and every worker each run in a working directory of their own (and
a Celery worker on another machine in yet another), so a relative ``root_dir="results"`` or ``sqlite_path`` would
land wherever the process that met it happened to start. ``$AIRFLOW_HOME`` is the one directory every process of a
deployment agrees on, and where the embedded job database already lives.
"""

from __future__ import annotations

import os
from pathlib import Path


def deployment_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as is when absolute (``~`` expanded), else under ``$AIRFLOW_HOME``."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    from airflow.configuration import get_airflow_home

    return Path(get_airflow_home()) / candidate
