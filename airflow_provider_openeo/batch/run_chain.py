"""A batch's chain of runs: the run a user triggered, and the runs it chains past ``max_rows_per_run``.

``next_run`` triggers each chained run with the conf of the run before it plus two keys: :data:`CONTINUES_KEY`
(``reruns``: the run it continues, so re-runs are not re-opened twice) and :data:`CHAIN_KEY`, the run key of the
chain's first run, the same in every run of the chain. What must hold for a chain as a whole rather than for one
run reads the chain key: a chained dry run checks only the rows its chain has not checked yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_openeo.batch.reruns import CONTINUES_KEY
from airflow_provider_openeo.batch.row_dispatch import run_key_of
from airflow_provider_openeo.batch.run_settings import run_conf
from airflow_provider_openeo.job_table.job_history import clean

#: The conf key of a chained run: the run key (``<dag_id>/<run_id>``) of the run that started the chain.
CHAIN_KEY = "openeo_chain"

_THIS_RUN = "(dag_run.dag_id ~ '/' ~ dag_run.run_id)"
#: The conf ``next_run`` triggers the next run with (a Jinja template, rendered in the run that chains): the same
#: conf (Params) as this run's, the run it continues, and the chain's first run (this one, when it started it).
CHAINED_CONF_TEMPLATE = (
    "{{ dict(dag_run.conf or {}, "
    f"{CONTINUES_KEY}={_THIS_RUN}, "
    f"{CHAIN_KEY}=((dag_run.conf or {{}}).get('{CHAIN_KEY}') or {_THIS_RUN})"
    ") | tojson }}"
)


def chain_key(context: Mapping[str, Any]) -> str | None:
    """The run key of the first run of the chain this run belongs to (its own, when a user triggered it)."""
    chained = clean(run_conf(context).get(CHAIN_KEY))
    if chained:
        return str(chained)
    ti = context.get("ti")
    if ti is None:
        return None
    return run_key_of(ti.dag_id, ti.run_id)
