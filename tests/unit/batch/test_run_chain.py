"""The chain key: the same in every run a batch chains, the run's own key when a user triggered it."""

from __future__ import annotations

from types import SimpleNamespace

import jinja2

from airflow_provider_openeo.batch.run_chain import CHAIN_KEY, CHAINED_CONF_TEMPLATE, chain_key


def context(conf: dict | None, run_id: str = "manual__1") -> dict:
    return {"dag_run": SimpleNamespace(conf=conf), "ti": SimpleNamespace(dag_id="ndvi", run_id=run_id)}


def render(conf: dict | None, run_id: str) -> dict:
    import json

    dag_run = SimpleNamespace(conf=conf, dag_id="ndvi", run_id=run_id)
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps
    return json.loads(env.from_string(CHAINED_CONF_TEMPLATE).render(dag_run=dag_run, dict=dict))


def test_a_triggered_run_starts_its_own_chain_and_chained_runs_keep_it():
    assert chain_key(context(None)) == "ndvi/manual__1"
    assert chain_key(context({"dry_run": True})) == "ndvi/manual__1"
    assert chain_key(context({CHAIN_KEY: "ndvi/manual__0"}, run_id="manual__7")) == "ndvi/manual__0"


def test_the_chained_conf_keeps_the_params_and_the_first_run_of_the_chain():
    second = render({"dry_run": True}, "manual__1")
    assert second == {"dry_run": True, "openeo_continues": "ndvi/manual__1", CHAIN_KEY: "ndvi/manual__1"}
    third = render(second, "manual__2")
    assert third == {"dry_run": True, "openeo_continues": "ndvi/manual__2", CHAIN_KEY: "ndvi/manual__1"}
    assert chain_key(context(third, run_id="manual__3")) == "ndvi/manual__1"
