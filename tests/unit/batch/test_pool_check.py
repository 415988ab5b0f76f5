"""The pools check before any row starts: the rule (pure), the scheduler's record, the plan's reading of it, and
how the listener finds a batch's pools in a serialized DAG."""

from __future__ import annotations

import logging
import shlex

import pytest
from airflow.sdk import DAG, TaskGroup

from airflow_provider_openeo.batch.planning import parse_backends
from airflow_provider_openeo.batch.pool_check import (
    PoolState,
    fix_command,
    pool_verdict,
    pools_from_api,
    pools_from_record,
    pools_record,
)
from airflow_provider_openeo.batch.pool_listener import batch_pools
from airflow_provider_openeo.batch.preflight import pool_problems
from airflow_provider_openeo.batch.task_groups import openeo_job_batch
from airflow_provider_openeo.operators.openeo import OpenEOBatchJobOperator

SPECS = parse_backends({"foo": {"parallel_jobs": 2}, "bar": {"conn_id": "openeo_b", "parallel_jobs": 3}})
RIGHT = {"openeo_foo": PoolState(2, True), "openeo_bar": PoolState(3, True)}


def start_job(row, connection, provider, **kwargs):
    return None


# -- the rule ----------------------------------------------------------------------------------------------------


def test_right_pools_pass_silently():
    verdict = pool_verdict(SPECS, RIGHT)
    assert verdict.problems == [] and verdict.warnings == []


def test_a_missing_pool_is_a_problem_naming_backend_pool_and_the_command_that_fixes_it():
    verdict = pool_verdict(SPECS, {"openeo_foo": PoolState(2, True)})
    (problem,) = verdict.problems
    assert problem.startswith("backend 'bar': pool 'openeo_bar' does not exist, so its rows would wait forever.")
    command = "airflow pools set openeo_bar 3 'openEO backend bar (openeo_b): parallel_jobs' --include-deferred"
    assert command in problem
    assert "python -m airflow_provider_openeo.pools backends.json" in problem
    assert verdict.warnings == []


def test_the_fix_command_is_one_shell_command():
    assert shlex.split(fix_command(SPECS["bar"])) == [
        "airflow",
        "pools",
        "set",
        "openeo_bar",
        "3",
        "openEO backend bar (openeo_b): parallel_jobs",
        "--include-deferred",
    ]


@pytest.mark.parametrize(
    ("state", "said"),
    [
        (PoolState(0, True), "has 0 slots, so its rows would wait forever"),
        (PoolState(3, False), "does not count deferred tasks, so it would not hold the backend to parallel_jobs=3"),
        (PoolState(-1, True), "has unlimited slots, so it would not hold the backend to parallel_jobs=3"),
    ],
)
def test_a_pool_that_cannot_work_as_the_limit_is_a_problem(state, said):
    verdict = pool_verdict(SPECS, {**RIGHT, "openeo_bar": state})
    (problem,) = verdict.problems
    assert problem.startswith(f"backend 'bar': pool 'openeo_bar' {said}")
    assert "--include-deferred" in problem


@pytest.mark.parametrize("slots", [1, 5])
def test_other_slots_than_parallel_jobs_are_a_warning(slots):
    verdict = pool_verdict(SPECS, {**RIGHT, "openeo_bar": PoolState(slots, True)})
    assert verdict.problems == []
    (warning,) = verdict.warnings
    assert warning.startswith(f"backend 'bar': pool 'openeo_bar' has {slots} slot(s) but parallel_jobs is 3")


def test_every_backend_is_named_once():
    verdict = pool_verdict(SPECS, {})
    assert [p.split(":")[0] for p in verdict.problems] == ["backend 'foo'", "backend 'bar'"]


def test_rest_api_records_read_like_the_schedulers():
    listed = {"openeo_foo": {"name": "openeo_foo", "slots": 2, "include_deferred": True, "open_slots": 2}}
    assert pools_from_api(listed) == {"openeo_foo": PoolState(2, True)}


# -- the record ----------------------------------------------------------------------------------------------------


def test_record_round_trip():
    record = pools_record(
        {"openeo_foo": PoolState(2, True), "openeo_bar": None}, clear_number=1, recorded_at="2026-12-07T07:00:00+00:00"
    )
    pools, source = pools_from_record(record, clear_number=1)
    assert pools == {"openeo_foo": PoolState(2, True), "openeo_bar": None}
    assert "when this run started (2026-12-07T07:00:00+00:00)" in source


@pytest.mark.parametrize(
    ("record", "clear_number", "reason"),
    [
        (None, 0, "the provider's plugin is not loaded"),
        ({"version": 99, "pools": {}}, 0, "another provider version"),
        (pools_record({}, clear_number=0, recorded_at="t"), 1, "before this run was cleared"),
    ],
)
def test_an_unusable_record_says_why(record, clear_number, reason):
    pools, source = pools_from_record(record, clear_number=clear_number)
    assert pools is None and reason in source


# -- the plan's reading ------------------------------------------------------------------------------------------


def test_plan_without_a_record_or_api_connection_says_pools_were_not_checked(caplog):
    with caplog.at_level(logging.INFO, logger="airflow_provider_openeo.batch.preflight"):
        assert pool_problems(SPECS, None, clear_number=0) == []
    assert "pools were not checked: the scheduler left no record" in caplog.text


def test_plan_with_a_record_returns_problems_and_logs_warnings(caplog):
    record = pools_record({"openeo_foo": PoolState(4, True), "openeo_bar": None}, clear_number=0, recorded_at="t")
    with caplog.at_level(logging.INFO, logger="airflow_provider_openeo.batch.preflight"):
        problems = pool_problems(SPECS, record, clear_number=0)
    assert len(problems) == 1 and "pool 'openeo_bar' does not exist" in problems[0]
    assert "pool 'openeo_foo' has 4 slot(s) but parallel_jobs is 2" in caplog.text


def test_plan_with_a_record_prefers_it_to_the_rest_api(monkeypatch):
    import airflow_provider_openeo.pools as pools_module

    def fetch_pools(conn_id):  # pragma: no cover - must not be called
        raise AssertionError("the REST API was asked although the scheduler recorded the pools")

    monkeypatch.setattr(pools_module, "fetch_pools", fetch_pools)
    record = pools_record(RIGHT, clear_number=0, recorded_at="t")
    assert pool_problems(SPECS, record, clear_number=0, airflow_api_conn_id="airflow_api") == []


def test_plan_without_a_record_reads_the_rest_api_when_given(monkeypatch):
    import airflow_provider_openeo.pools as pools_module

    asked = []
    monkeypatch.setattr(pools_module, "fetch_pools", lambda conn_id: asked.append(conn_id) or {})
    problems = pool_problems(SPECS, None, clear_number=0, airflow_api_conn_id="airflow_api")
    assert asked == ["airflow_api"] and len(problems) == 2


# -- the listener's view of a DAG ----------------------------------------------------------------------------------


def serialized(dag):
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def test_listener_finds_each_batchs_plan_and_pools_in_the_serialized_dag():
    with DAG("pools_two_batches", schedule=None) as dag:
        openeo_job_batch(backends={"foo": {}, "bar": {}}, start_job=start_job, job_table="a")
        with TaskGroup("outer"):
            openeo_job_batch(backends={"baz": {}}, start_job=start_job, job_table="b", group_id="second")
    scheduler_dag = serialized(dag)
    assert batch_pools(scheduler_dag.tasks, scheduler_dag.has_task) == {
        "openeo_job_batch.plan": ["openeo_bar", "openeo_foo"],
        "outer.second.plan": ["openeo_baz"],
    }


def test_listener_leaves_dags_without_a_batch_alone():
    with DAG("pools_no_batch", schedule=None) as dag:
        OpenEOBatchJobOperator(task_id="job", row_id=1, job_table="t", pool="openeo_foo", start_job=start_job)
    scheduler_dag = serialized(dag)
    assert batch_pools(scheduler_dag.tasks, scheduler_dag.has_task) == {}


# -- the listener in a scheduler-like transaction, on the real metadata database -----------------------------------


def test_listener_records_the_pools_after_the_schedulers_commit(airflow_db):
    """As in ``SchedulerJobRunner._start_queued_dagruns``: commits are prohibited while the listener runs; the
    record appears once the scheduler commits, in the plan task's state store."""
    import json
    import uuid
    from datetime import datetime, timezone

    from airflow._shared.state import TaskScope
    from airflow.models.dagrun import DagRun
    from airflow.models.pool import Pool
    from airflow.state import get_state_backend
    from airflow.utils.session import create_session
    from airflow.utils.sqlalchemy import prohibit_commit
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    from airflow_provider_openeo.batch.pool_check import POOLS_KEY
    from airflow_provider_openeo.batch.pool_listener import on_dag_run_running

    tag = uuid.uuid4().hex[:8]
    with DAG(f"pools_listener_{tag}", schedule=None) as dag:
        openeo_job_batch(backends={f"a{tag}": {"parallel_jobs": 2}, f"b{tag}": {}}, start_job=start_job, job_table="t")
    run_id = f"manual__{tag}"
    scope = TaskScope(dag_id=dag.dag_id, run_id=run_id, task_id="openeo_job_batch.plan", map_index=-1)
    with create_session() as session:
        Pool.create_or_update_pool(f"openeo_a{tag}", 2, "test", True, session=session)
        session.add(
            DagRun(
                dag.dag_id,
                run_id,
                run_type=DagRunType.MANUAL,
                state=DagRunState.QUEUED,
                run_after=datetime.now(timezone.utc),
            )
        )
    try:
        with create_session() as session, prohibit_commit(session) as guard:
            dag_run = session.query(DagRun).filter_by(dag_id=dag.dag_id, run_id=run_id).one()
            dag_run.dag = serialized(dag)
            dag_run.state = DagRunState.RUNNING
            on_dag_run_running(dag_run=dag_run, msg="started")
            assert get_state_backend().get(scope, POOLS_KEY, session=session) is None, "written before the commit"
            guard.commit()
        record = json.loads(get_state_backend().get(scope, POOLS_KEY))
        assert record["pools"] == {f"openeo_a{tag}": {"slots": 2, "include_deferred": True}, f"openeo_b{tag}": None}
        pools, _ = pools_from_record(record, clear_number=0)
        (problem,) = pool_verdict(parse_backends({f"a{tag}": {}, f"b{tag}": {}}), pools).problems
        assert f"pool 'openeo_b{tag}' does not exist" in problem
    finally:
        with create_session() as session:
            session.query(DagRun).filter_by(dag_id=dag.dag_id).delete()
            session.query(Pool).filter(Pool.pool == f"openeo_a{tag}").delete()
