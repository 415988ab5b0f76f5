"""A run's setting: the run's conf, else its Param, else the batch's argument; a bad value names its source."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_openeo.batch.run_settings import run_conf, run_setting


def positive(where: str, value: Any) -> int:
    if int(value) <= 0:
        raise ValueError(f"{where} must be positive, got {value!r}")
    return int(value)


def context(conf: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"dag_run": SimpleNamespace(conf=conf), "params": params or {}}


def test_the_conf_wins_over_the_param_which_wins_over_the_argument() -> None:
    assert run_setting(context({"n": "3"}, {"n": 2}), "n", positive, 1) == 3
    assert run_setting(context({}, {"n": 2}), "n", positive, 1) == 2
    assert run_setting(context(None, {}), "n", positive, 1) == 1
    assert run_setting({}, "n", positive, 1) == 1, "outside a DAG run (no dag_run, no params)"


@pytest.mark.parametrize(
    ("ctx", "where"), [(context({"n": 0}), "the run's conf 'n'"), (context({}, {"n": -1}), "Param 'n'")]
)
def test_a_bad_value_names_where_it_came_from(ctx: dict[str, Any], where: str) -> None:
    with pytest.raises(ValueError, match=f"^{where} must be positive"):
        run_setting(ctx, "n", positive, 1)


def test_run_conf_is_empty_without_a_conf() -> None:
    assert run_conf(context(None)) == {} and run_conf({}) == {}
