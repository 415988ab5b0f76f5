"""Re-runs: which statuses a run asks for (conf, Param, the batch's argument; none in a chained run), and how a
done row is re-opened: its job kept in job_history, the row not_started again, compare-and-set."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_openeo.batch.reruns import (
    CONTINUES_KEY,
    RERUN_PARAM,
    checked_statuses,
    continued_run,
    requested_statuses,
)


def context(conf=None, params=None):
    return {"dag_run": SimpleNamespace(conf=conf or {}), "params": params or {}}


def test_statuses_come_from_the_conf_then_the_param_then_the_argument():
    assert requested_statuses(context(), ("error",)) == ("error",)
    assert requested_statuses(context(params={RERUN_PARAM: ["canceled"]}), ("error",)) == ("canceled",)
    assert requested_statuses(context(conf={RERUN_PARAM: "finished, error"}), ("error",)) == ("finished", "error")
    assert requested_statuses(context(conf={RERUN_PARAM: []}, params={RERUN_PARAM: ["error"]}), ()) == ()


def test_a_chained_run_re_opens_nothing():
    chained = context(conf={RERUN_PARAM: ["finished"], CONTINUES_KEY: "dag/run_1"})
    assert requested_statuses(chained, ("error",)) == ()
    assert continued_run(chained) == "dag/run_1" and continued_run(context()) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (["finshed"], r"Param 'rerun_statuses': unknown status\(es\) \['finshed'\]; re-runnable: canceled, error"),
        ({"error": 1}, r"must be a list of row statuses"),
        (5, r"must be a list of row statuses"),
    ],
)
def test_bad_statuses_name_the_param(value, text):
    with pytest.raises(ValueError, match=text):
        requested_statuses(context(params={RERUN_PARAM: value}), ())
    with pytest.raises(ValueError, match="rerun_statuses"):
        checked_statuses("rerun_statuses", value)


def test_the_example_dag_takes_a_chained_run_s_conf():
    """A chained run's conf holds the Params and CONTINUES_KEY, which the trigger form does not declare."""
    import copy

    import example_openeo_process_based as module

    def validate(conf):
        params = copy.deepcopy(module.dag.params)
        params.update(conf)
        return params.validate()

    conf = {"start": "2024-01-01", "end": "2024-02-01", "frequency": "MS", RERUN_PARAM: ["error"]}
    assert validate({**conf, CONTINUES_KEY: "example_openeo_process_based/manual_1"})[RERUN_PARAM] == ["error"]
    with pytest.raises(Exception, match="rerun_statuses"):
        validate({**conf, RERUN_PARAM: ["running"]})
