"""Import what every openEO task needs once, in the long-lived Airflow processes, before they fork tasks.

LocalExecutor and Celery workers fork a fresh process for every task instance, and each one parses its DAG
file, so each one imports pandas, the openEO client and this provider again: on a 2-core machine that was
3-4 s of a row's task before it could create its job, paid twice per row (start, then resume), and it was
most of the idle time between one job ending on a backend and the next one being created (BENCHMARKS.md).
Importing them once in the scheduler, the Celery worker and the dag-processor hands every forked child an
already-loaded copy (copy-on-write), and a task's DAG parse drops to a fraction of a second.

Enable it in ``$AIRFLOW_HOME/config/airflow_local_settings.py``, which every Airflow process imports at
start-up::

    import airflow_provider_openeo.preload  # noqa: F401

The cost is resident memory in each long-lived process (about 130 MB in the scheduler, shared with its forks).
"""

from __future__ import annotations

import openeo
import openeo.extra.job_management
import pandas
import shapely.geometry
import sqlalchemy

import airflow_provider_openeo.batch.task_groups  # operators, sensors, triggers, hooks, links

#: The line an ``airflow_local_settings.py`` needs; deployment tooling (``deploy/``) writes exactly this.
LOCAL_SETTINGS_LINE = "import airflow_provider_openeo.preload  # noqa: F401\n"

__all__ = ["LOCAL_SETTINGS_LINE", "airflow_provider_openeo", "openeo", "pandas", "shapely", "sqlalchemy"]
