"""openeo_job_batch end to end under dag.test(): planning, row labels, bad backends, the chain past max_map_length."""

# Fixtures come from tests/example_dags/conftest.py by import (F401/F811: pytest injects them by name).
# ruff: noqa: F401, F811

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from airflow_provider_openeo.planning import assign_backends, parse_backends, rows_to_run
from airflow_provider_openeo.task_groups import openeo_job_batch
from tests.example_dags.conftest import (
    assert_batch_consistent,
    backend_job_ids,
    batch_env,
    batch_table,
    example_env,
    load_batch_dag,
    new_jobs,
    run_labels,
    task_instances,
    triggered_runs,
    xcom_of,
)

RUN_TASKS = r"openeo_job_batch\.run_.*"


def write_rows(tmp_path, frame: pd.DataFrame) -> str:
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path)
    return str(path)


def test_plan_spreads_rows_in_proportion_to_parallel_jobs(batch_env, monkeypatch, tmp_path):
    config = {
        **batch_env,
        "backends": {
            "foo": {"conn_id": "openeo_foo", "parallel_jobs": 3},
            "bar": {"conn_id": "openeo_bar", "parallel_jobs": 1},
        },
        "source": write_rows(tmp_path, pd.DataFrame({"title": [f"t{i}" for i in range(12)]})),
    }
    module = load_batch_dag(monkeypatch, config)

    run = module.dag.test(mark_success_pattern=RUN_TASKS)

    plan = xcom_of(run, "openeo_job_batch.plan")
    assert {name: len(rows) for name, rows in plan["assignments"].items()} == {"foo": 9, "bar": 3}
    assert plan["remaining"] == 0
    table = batch_table(config).read()
    for name, rows in plan["assignments"].items():
        assert set(table.loc[rows, "backend_name"]) == {name}
    mapped = [ti for ti in task_instances(run) if ti.map_index >= 0]
    assert sorted((ti.task_id, ti.map_index) for ti in mapped) == sorted(
        (f"openeo_job_batch.run_{backend}.{task}", i)
        for backend, rows in (("foo", 9), ("bar", 3))
        for task in ("job", "results")
        for i in range(rows)
    )


def test_chain_gate_reads_only_the_plan_and_the_next_run_waits_for_the_summary(batch_env, monkeypatch):
    """The gate runs beside the rows, so a batch with nothing left ends with its summary; a chained run still
    starts only once this run's rows are through (the summary waits for all of them)."""
    module = load_batch_dag(monkeypatch, batch_env)
    tasks = module.dag.task_dict
    assert tasks["openeo_job_batch.rows_left"].upstream_task_ids == {"openeo_job_batch.plan"}
    assert tasks["openeo_job_batch.next_run"].upstream_task_ids == {
        "openeo_job_batch.rows_left",
        "openeo_job_batch.summary",
    }
    summary_upstream = tasks["openeo_job_batch.summary"].upstream_task_ids
    assert {"openeo_job_batch.run_foo.results", "openeo_job_batch.run_bar.results"} <= summary_upstream


def test_five_thousand_rows_default_settings_are_split_and_chained(example_env, batch_env, monkeypatch, tmp_path):
    """5,000 rows, two backends, Airflow's default ``[core] max_map_length`` (1024), no ``max_rows_per_run``.

    The plan gives each backend ``DEFAULT_MAX_ROWS_PER_RUN`` (128) rows: rows 0-255 go alternately to foo and bar
    (equal parallel_jobs); the other 4,744 stay ``not_started`` for the next run, which ``rows_left`` ->
    ``next_run`` triggers with the same conf. Twenty runs in all, the last taking 68 rows per backend.
    """
    from airflow.configuration import conf

    assert conf.getint("core", "max_map_length") == 1024, "the test environment must keep Airflow's default"
    config = {**batch_env, "source": write_rows(tmp_path, pd.DataFrame({"title": [f"t{i}" for i in range(5000)]}))}
    module = load_batch_dag(monkeypatch, config)
    started = datetime.now(timezone.utc)
    before = backend_job_ids(example_env)

    run = module.dag.test(run_conf={"batch": "big"}, mark_success_pattern=RUN_TASKS)

    assert new_jobs(example_env, before) == {"foo": [], "bar": []}, "only planned: start_job never ran"

    plan = xcom_of(run, "openeo_job_batch.plan")
    assert {name: len(rows) for name, rows in plan["assignments"].items()} == {"foo": 128, "bar": 128}
    assert plan["assignments"]["foo"][:3] == [0, 2, 4] and plan["assignments"]["bar"][:3] == [1, 3, 5]
    assert plan["remaining"] == 5000 - 256
    table = batch_table(config).read()
    assert table["backend_name"].notna().sum() == 256
    states = {ti.task_id: ti.state for ti in task_instances(run) if ti.map_index < 0}
    assert states["openeo_job_batch.rows_left"] == "success"
    assert states["openeo_job_batch.next_run"] == "success"
    (chained,) = triggered_runs(module.DAG_ID, since=started)
    assert chained.conf == {"batch": "big"}, "the next run gets the same conf (Params) as this one"

    # The runs, as the plan will see the table as each run's rows get through:
    splits = []
    while True:
        db = batch_table(config)
        next_plan = assign_backends(
            rows_to_run(db.read()), parse_backends(module.CONFIG_BACKENDS), max_rows_per_backend=128
        )
        if not next_plan.planned:
            break
        splits.append(({n: len(r) for n, r in next_plan.assignments.items()}, next_plan.remaining))
        done = [row for rows in next_plan.assignments.values() for row in rows]
        db.persist(
            pd.DataFrame({"status": "finished", "results_state": "downloaded"}, index=pd.Index(done, dtype="int64"))
        )
    # The first plan is this run's again (its rows were only marked successful here, never finished).
    assert len(splits) == 20
    assert splits[0] == ({"foo": 128, "bar": 128}, 4744)
    assert splits[-1] == ({"foo": 68, "bar": 68}, 0)


def test_pinned_backend_honoured_and_unknown_backend_refused(example_env, batch_env, monkeypatch, tmp_path):
    rows = pd.DataFrame(
        {
            "title": [f"t{i}" for i in range(6)],
            "backend_name": ["bar", "bar", "nowhere", None, None, None],
        }
    )
    config = {**batch_env, "source": write_rows(tmp_path, rows)}
    module = load_batch_dag(monkeypatch, config)
    before = backend_job_ids(example_env)

    run = module.dag.test()

    table = batch_table(config).read()
    refused = table.loc[2]
    assert refused["status"] == "start_failed"
    assert refused["backend_name"] == "nowhere", "the refused row keeps what the user wrote"
    assert "row 2" in refused["error_message"] and "'backend_name'" in refused["error_message"]
    assert "nowhere" in refused["error_message"] and pd.isna(refused["id"])
    others = table.drop(index=2)
    assert list(others["status"]) == ["finished"] * 5
    assert list(others["backend_name"]) == ["bar", "bar", "foo", "foo", "foo"]
    root = Path(config["root_dir"])
    assert_batch_consistent(table, example_env, new_jobs(example_env, before), root, finished_rows=others.index)
    assert run.state == "success"
    summary = xcom_of(run, "openeo_job_batch.summary")
    assert summary["counts"] == {"finished": 5, "start_failed": 1}
    labels = run_labels(run)
    assert sorted(labels.values()) == sorted(f"{i}: t{i}" for i in others.index)


def asset_events(run) -> list[tuple[str, str, int, dict]]:
    """(asset uri, source task, source map index, extra) of every asset event the run emitted."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetModel.uri, AssetEvent.source_task_id, AssetEvent.source_map_index, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .filter(AssetEvent.source_dag_id == run.dag_id, AssetEvent.source_run_id == run.run_id)
            .order_by(AssetEvent.source_task_id, AssetEvent.source_map_index)
            .all()
        )
    return [(uri, task_id, map_index, dict(extra or {})) for uri, task_id, map_index, extra in rows]


def test_batch_and_job_asset_events(example_env, batch_env, monkeypatch, tmp_path):
    config = {
        **batch_env,
        "source": write_rows(tmp_path, pd.DataFrame({"title": ["a", "b", "c"]})),
        "job_outlets": True,
    }
    module = load_batch_dag(monkeypatch, config)

    run = module.dag.test()

    assert run.state == "success"
    events = asset_events(run)
    batch = [e for e in events if e[0] == module.BATCH_ASSET.uri]
    jobs = [e for e in events if e[0] == module.JOB_ASSET.uri]
    assert len(batch) == 1
    assert batch[0][1] == "openeo_job_batch.summary"
    assert batch[0][3] == {"job_table": "test_dag_batch_pipeline", "rows": 3, "counts": {"finished": 3}, "not_done": 0}
    assert sorted((task_id, map_index) for _, task_id, map_index, _ in jobs) == [
        ("openeo_job_batch.run_bar.results", 0),
        ("openeo_job_batch.run_foo.results", 0),
        ("openeo_job_batch.run_foo.results", 1),
    ]


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"max_rows_per_run": 0}, "max_rows_per_run must be at least 1, got 0"),
        ({"on_exists": "replace"}, "on_exists must be 'skip', 'append' or 'error'"),
        ({"rerun_statuses": ["eror"]}, "rerun_statuses: unknown status"),
    ],
)
def test_bad_batch_arguments_are_refused_when_the_dag_is_parsed(kwargs, text):
    with pytest.raises(ValueError, match=text):
        openeo_job_batch(backends={"foo": {}}, start_job=lambda row, connection, **kw: None, **kwargs)
