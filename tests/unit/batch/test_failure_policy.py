"""The failure policy as pure functions: parsing at DAG parse time, verdicts, attempt counting, the memory rule,
what a retry keeps in ``job_history``, and the summary's counts."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from airflow_provider_openeo.batch import arguments
from airflow_provider_openeo.batch._oom_memory import format_size, raise_memory, scaled_size
from airflow_provider_openeo.batch.failure_policy import (
    DEFAULT_MAX_ATTEMPTS,
    FailurePolicy,
    attempt_streak,
    decide,
    oom_retries,
    parse_failure_policy,
)
from airflow_provider_openeo.batch.summary import failure_counts, summarize
from airflow_provider_openeo.job_table.job_history import retired_values
from airflow_provider_openeo.start._create_options import (
    OptionLayers,
    applying_job_options,
    forget_processing_parameters,
)
from local_backend.parameters import CREATE_JOB_PARAMETERS
from tests.unit.start.test_job_options import _ServingConnection


def retried(category: str, by: str = "failure_policy", status: str = "error") -> dict[str, Any]:
    return {"id": f"j-{category}", "status": status, "error_category": category, "retry": by}


def test_defaults_retry_memory_timeouts_and_faults_never_no_data_or_a_bad_graph():
    policy = parse_failure_policy(None)
    assert policy.retry == {
        "out_of_memory": True,
        "no_data": False,
        "timeout": True,
        "invalid_process_graph": False,
        "backend_fault": True,
        "other": False,
    }
    assert policy.max_attempts == DEFAULT_MAX_ATTEMPTS == 3 and policy.oom_memory == 1.5


def test_a_batch_changes_categories_it_names_and_keeps_the_others():
    policy = parse_failure_policy({"retry": {"other": True, "timeout": False}, "max_attempts": 2})
    assert policy.retries("other") and not policy.retries("timeout") and policy.retries("out_of_memory")
    assert arguments.failure_policy(policy) is policy


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"retry": {"oom": True}}, r"failure_policy: retry: unknown error category 'oom'; known: backend_fault"),
        ({"retry": {"timeout": "yes"}}, r"failure_policy: retry\['timeout'\] must be True \(retry\) or False"),
        ({"retry": ["timeout"]}, r"failure_policy: retry must map error categories to True/False"),
        ({"max_attempts": 0}, r"failure_policy: max_attempts must be an integer of at least 1, got 0"),
        ({"max_attempts": 2.5}, r"max_attempts must be an integer"),
        ({"oom_memory": 0.5}, r"failure_policy: oom_memory must be a factor of at least 1"),
        ({"oom_memory": "2g"}, r"oom_memory must be a factor"),
        ({"retries": 2}, r"failure_policy: unknown key\(s\) \['retries'\]; known: retry, max_attempts, oom_memory"),
        ("retry", r"failure_policy must be a FailurePolicy or a dict"),
    ],
)
def test_bad_policies_are_refused_at_parse_time_naming_what(value: Any, message: str):
    with pytest.raises(ValueError, match=message):
        arguments.failure_policy(value)


def test_openeo_job_batch_checks_the_policy_when_the_dag_is_parsed():
    from airflow_provider_openeo.batch.task_groups import openeo_job_batch

    with pytest.raises(ValueError, match="unknown error category 'memory'"):
        openeo_job_batch(
            backends={"foo": {"conn_id": "openeo_foo"}},
            start_job=lambda row, connection, **kw: None,
            failure_policy={"retry": {"memory": True}},
        )


def test_verdicts_retry_until_max_attempts_and_never_for_categories_never_retried():
    policy = FailurePolicy(max_attempts=3)
    first = decide(policy, "out_of_memory", [])
    assert first.retry and first.attempt == 1 and "attempt 1 of 3 failed; retrying with more memory" in first.reason
    second = decide(policy, "out_of_memory", [retried("out_of_memory")])
    assert second.retry and second.attempt == 2
    third = decide(policy, "timeout", [retried("out_of_memory"), retried("timeout")])
    assert not third.retry and third.attempt == 3 and "gave up after 3 attempt(s) (max_attempts=3)" in third.reason
    no_data = decide(policy, "no_data", [])
    assert not no_data.retry and no_data.reason == "no_data: not retried by the failure policy"
    assert not decide(policy, None, []).retry, "a row without category counts as other"
    assert not decide(FailurePolicy(max_attempts=1), "backend_fault", []).retry


def test_a_rerun_starts_the_count_afresh_and_lost_jobs_neither_count_nor_reset():
    history = [
        retried("out_of_memory"),
        retried("out_of_memory"),
        {"id": "j-old", "status": "error", "error_category": "out_of_memory"},  # re-opened by rerun_statuses
        retried("out_of_memory"),
        {"id": "j-gone", "status": "deleted"},
        retried("backend_fault", by="task"),  # a clear (or a task retry after a crash) counts too
    ]
    assert [e["id"] for e in attempt_streak(history)] == ["j-out_of_memory", "j-backend_fault"]
    assert oom_retries(history) == 1, "only the policy's own out-of-memory retries raise memory"
    assert decide(FailurePolicy(), "backend_fault", history).attempt == 3


def test_a_retired_error_keeps_its_category_and_message_in_job_history():
    values = {
        "id": "j-1",
        "backend_name": "foo",
        "backend_chosen_by": "dispatch",
        "status": "error",
        "error_category": "out_of_memory",
        "error_message": "workers used too much memory",
        "job_history": [],
        "attempt": 0,
    }
    new = retired_values(values, "error", note={"retry": "failure_policy"}, keep_backend=True)
    (entry,) = new["job_history"]
    assert entry["error_category"] == "out_of_memory" and entry["error_message"] == "workers used too much memory"
    assert entry["retry"] == "failure_policy" and entry["status"] == "error" and entry["backend_name"] == "foo"
    assert new["attempt"] == 1 and new["error_category"] is None and new["id"] is None
    assert "backend_name" not in new, "a policy retry keeps the row on its backend"
    assert retired_values(values, "error")["backend_name"] is None, "a re-run unpins a row the dispatch placed"


@pytest.mark.parametrize(
    ("value", "factor", "expected"),
    [
        ("2g", 1.5, "3g"),
        ("3g", 1.5, "4608m"),
        ("2G", 2, "4G"),
        ("512m", 1.5, "768m"),
        ("1500MB", 2, "3000MB"),
        ("1.5g", 2, "3g"),
        (2048, 1.5, 3072),
        ("lots", 2, "lots"),
    ],
)
def test_sizes_scale_in_their_own_notation(value: Any, factor: float, expected: Any):
    assert scaled_size(value, factor) == expected


def test_format_size_goes_down_a_unit_rather_than_round():
    assert format_size(4.5, "g", "") == "4608m" and format_size(0.25, "m", "") == "256k"


def test_memory_rule_factor_callable_declared_defaults_and_nothing_to_raise(caplog: pytest.LogCaptureFixture):
    options = {"executor-memory": "2g", "driver-memory": "1g", "executor-cores": 2}
    assert raise_memory(options, 1.5, 0) == options
    assert raise_memory(options, 1.5, 2) == {"executor-memory": "4608m", "driver-memory": "2304m", "executor-cores": 2}
    assert raise_memory({}, 2.0, 1, CREATE_JOB_PARAMETERS) == {"driver-memory": "4g", "executor-memory": "4g"}
    mine = raise_memory(options, lambda o, n: {**o, "executor-memoryOverhead": f"{n}g"}, 2)
    assert mine["executor-memoryOverhead"] == "2g" and mine["executor-memory"] == "2g"
    assert raise_memory({"executor-cores": 2}, 2.0, 1, None, label="row 3") == {"executor-cores": 2}
    assert "row 3: out-of-memory retry 1, but neither the job options nor" in caplog.text
    with pytest.raises(TypeError, match="not a mapping"):
        raise_memory(options, lambda o, n: None, 1)  # type: ignore[arg-type, return-value]


def test_raised_memory_is_sent_in_post_jobs_and_checked_against_the_backends_parameters():
    forget_processing_parameters()
    connection = _ServingConnection()

    def adjust(merged: dict[str, Any], parameters: Any) -> dict[str, Any]:
        return raise_memory(merged, 1.5, 1, parameters)

    layers = OptionLayers({}, {"executor-memory": "2g"}, adjust=adjust)
    with applying_job_options(connection, layers, label="row 0", backend="b") as applied:  # type: ignore[arg-type]
        connection.session.post(f"{connection.root_url}/jobs", json={"process": {"process_graph": {}}})
    sent = json.loads(connection.session.sent[-1].body)["job_options"]
    assert sent == {"executor-memory": "3g"} and applied.sent == [sent]
    refused = OptionLayers({}, {}, adjust=lambda merged, parameters: {"executor-memory": "3.5g"})
    with (
        applying_job_options(connection, refused, label="row 1", backend="b"),  # type: ignore[arg-type]
        pytest.raises(ValueError, match=r"row 1: job option 'executor-memory': '3\.5g' does not match"),
    ):
        connection.session.post(f"{connection.root_url}/jobs", json={"process": {"process_graph": {}}})


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {"id": None, "backend_name": "foo", "status": "finished", "error_category": None, "job_history": []}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_the_summary_counts_categories_retries_and_who_gave_up():
    table = _table(
        [
            {"status": "finished", "job_history": [retried("out_of_memory")]},  # retried, then finished
            {"status": "error", "error_category": "no_data"},  # never retried
            {"status": "error", "error_category": "timeout", "job_history": [retried("timeout"), retried("timeout")]},
            {"status": "error", "error_category": None},  # other: not retried by default
            {"status": "running", "job_history": [retried("backend_fault")]},  # a retry running now
        ]
    )
    counts = failure_counts(table, FailurePolicy())
    assert counts == {
        "error_categories": {"no_data": 1, "other": 1, "timeout": 1},
        "retried_jobs": {"backend_fault": 1, "out_of_memory": 1, "timeout": 2},
        "retried_rows": 3,
        "retried_then_finished": 1,
        "gave_up": 1,
        "not_retried": 2,
    }
    assert summarize(table, ["foo"], failure_policy=FailurePolicy())["failures"] == counts
    assert failure_counts(table.iloc[0:0], FailurePolicy())["retried_rows"] == 0
