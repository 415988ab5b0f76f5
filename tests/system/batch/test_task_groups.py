"""openeo_job_batch end to end under dag.test(): planning, row labels, bad backends, the chain past max_map_length."""

# Fixtures come from tests/system/example_dags/conftest.py by import (F401/F811: pytest injects them by name).
# ruff: noqa: F401, F811

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pystac
import pytest
from airflow.sdk import DAG, TaskGroup

from airflow_provider_openeo.batch.planning import parse_backends, plan_run, rows_to_run
from airflow_provider_openeo.batch.task_groups import DEFAULT_ROW_RETRIES, DEFAULT_ROW_RETRY_DELAY, openeo_job_batch
from tests.stac_checks import assert_validates_offline, items_by_row
from tests.system.example_dags.conftest import (
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


def test_plan_covers_rows_and_on_a_new_table_lets_each_backend_group_take_every_row(batch_env, monkeypatch, tmp_path):
    """No backend is fixed at planning: an instance of a backend's group takes a row when its pool gives it a slot.
    With no history, nothing tells which backend is faster (3 slots against 1 says nothing of that), so each group
    gets an instance for every free row; the plan marks the rows as this run's."""
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
    assert {k: plan[k] for k in ("rows", "remaining", "slots")} == {
        "rows": 12,
        "remaining": 0,
        "slots": {"foo": 12, "bar": 12},
    }
    table = batch_table(config).read()
    assert table["backend_name"].isna().all(), "no row is given a backend before a slot takes it"
    assert set(table["dispatch_run"]) == {f"{run.dag_id}/{run.run_id}"} and table["dispatch_slot"].isna().all()
    mapped = [ti for ti in task_instances(run) if ti.map_index >= 0]
    assert sorted((ti.task_id, ti.map_index) for ti in mapped) == sorted(
        (f"openeo_job_batch.run_{backend}.{task}", i)
        for backend, count in (("foo", 12), ("bar", 12))
        for task in ("job", "results")
        for i in range(count)
    )


def test_chain_gate_reads_the_plan_and_the_summary_and_the_next_run_waits_for_it(batch_env, monkeypatch):
    """The gate reads what the plan left over and what the run left untaken (the summary's ``run``), so a chained
    run starts only once this run's rows are through (the summary waits for all of them)."""
    module = load_batch_dag(monkeypatch, batch_env)
    tasks = module.dag.task_dict
    assert tasks["openeo_job_batch.rows_left"].upstream_task_ids == {
        "openeo_job_batch.plan",
        "openeo_job_batch.summary",
    }
    assert tasks["openeo_job_batch.next_run"].upstream_task_ids == {"openeo_job_batch.rows_left"}
    summary_upstream = tasks["openeo_job_batch.summary"].upstream_task_ids
    assert {"openeo_job_batch.run_foo.results", "openeo_job_batch.run_bar.results"} <= summary_upstream


def test_five_thousand_rows_default_settings_are_split_and_chained(example_env, batch_env, monkeypatch, tmp_path):
    """5,000 rows, two backends, Airflow's default ``[core] max_map_length`` (1024), no ``max_rows_per_run``.

    The plan covers ``DEFAULT_MAX_ROWS_PER_RUN`` (192) rows, 0-191, each backend's group with an instance for
    every row (a new table: no pace tells which backend will take more; the run skips the spare ones later);
    the other 4,808 stay ``not_started`` for the next run, which ``rows_left`` -> ``next_run`` triggers with the
    same conf. Twenty-six runs in all, the last taking 200 rows (8 past the default, rather than a run of 8).
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
    assert {k: plan[k] for k in ("rows", "remaining", "slots")} == {
        "rows": 192,
        "remaining": 5000 - 192,
        "slots": {"foo": 192, "bar": 192},
    }
    table = batch_table(config).read()
    assert list(table.index[table["dispatch_run"].notna()]) == list(range(192))
    states = {ti.task_id: ti.state for ti in task_instances(run) if ti.map_index < 0}
    assert states["openeo_job_batch.rows_left"] == "success"
    assert states["openeo_job_batch.next_run"] == "success"
    (chained,) = triggered_runs(module.DAG_ID, since=started)
    first = f"{module.DAG_ID}/{run.run_id}"
    assert chained.conf == {"batch": "big", "openeo_continues": first, "openeo_chain": first}, (
        "the next run gets the same conf (Params) as this one, and says which run it continues and which began"
    )

    # The runs, as the plan will see the table as each run's rows get through:
    splits = []
    while True:
        db = batch_table(config)
        next_plan = plan_run(
            rows_to_run(db.read()), parse_backends(module.CONFIG_BACKENDS), max_rows=192, short_last_run=24
        )
        if not next_plan.planned:
            break
        splits.append((next_plan.planned, next_plan.remaining))
        done = next_plan.row_ids
        db.persist(
            pd.DataFrame({"status": "finished", "results_state": "downloaded"}, index=pd.Index(done, dtype="int64"))
        )
    # The first plan is this run's again (its rows were only marked successful here, never finished).
    assert len(splits) == 26
    assert splits[0] == (192, 4808)
    assert splits[-1] == (200, 0), "the last run takes the 8 rows a 27th run would have run"


def test_a_dry_run_past_max_rows_per_run_chains_until_every_row_is_checked_once(
    example_env, batch_env, monkeypatch, tmp_path
):
    """5 rows, 2 per run, triggered with ``dry_run``: three runs, each checking 2, 2 and 1 rows the chain has not
    checked; every row ends ``not_started`` with its verdict and the first run's key as its chain, no job is
    created, and the last run's summary reports the whole chain and starts no fourth run. A new trigger is a new
    chain: its first run checks rows the first chain had checked."""
    config = {
        **batch_env,
        "max_rows_per_run": 2,
        "source": write_rows(tmp_path, pd.DataFrame({"title": [f"t{i}" for i in range(5)]})),
    }
    module = load_batch_dag(monkeypatch, config)
    before = backend_job_ids(example_env)

    def chain(conf: dict) -> list[tuple[Any, dict]]:
        runs = []
        while conf is not None:
            started = datetime.now(timezone.utc)
            run = module.dag.test(run_conf=conf)
            runs.append((run, xcom_of(run, "openeo_job_batch.summary")["dry_run"]))
            chained = triggered_runs(module.DAG_ID, since=started)
            assert len(chained) <= 1
            conf = chained[0].conf if chained else None
        return runs

    runs = chain({"dry_run": True})

    first_key = f"{module.DAG_ID}/{runs[0][0].run_id}"
    assert [dry["rows_this_run"] for _, dry in runs] == [2, 2, 1]
    assert [dry["continues"] for _, dry in runs] == [True, True, False]
    assert [dry["rows"] for _, dry in runs] == [2, 4, 5], "each summary counts the chain so far"
    table = batch_table(config).read()
    assert list(table["status"]) == ["not_started"] * 5
    assert list(table["dry_run_verdict"]) == ["valid"] * 5
    assert set(table["dry_run_chain"]) == {first_key}
    assert sorted(table["dispatch_run"].value_counts().tolist()) == [1, 2, 2], "each row checked by one run"
    last = runs[-1][1]
    assert (last["verdicts"], last["rows_not_checked"], last["rows_left_to_next_run"]) == ({"valid": 5}, 0, 0)
    assert new_jobs(example_env, before) == {"foo": [], "bar": []}, "a dry run creates no job"

    started = datetime.now(timezone.utc)
    again = module.dag.test(run_conf={"dry_run": True})  # a new trigger is a new chain: its rows are checked again
    triggered_runs(module.DAG_ID, since=started)  # its next runs are not needed here
    assert xcom_of(again, "openeo_job_batch.summary")["dry_run"]["rows_this_run"] == 2
    assert set(batch_table(config).read()["dry_run_chain"].dropna()) == {first_key, f"{module.DAG_ID}/{again.run_id}"}


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
    assert list(others["backend_name"][:2]) == ["bar", "bar"], "pinned rows run where the user said"
    assert set(others["backend_name"]) <= {"foo", "bar"}
    assert list(others["backend_chosen_by"]) == ["user", "user", "dispatch", "dispatch", "dispatch"]
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
    collection_path = Path(config["root_dir"]) / "stac" / "test_dag_batch_pipeline" / "collection.json"
    assert batch[0][3] == {
        "job_table": "test_dag_batch_pipeline",
        "rows": 3,
        "counts": {"finished": 3},
        "not_done": 0,
        "stac_collection": str(collection_path),
    }
    sources = [(task_id, map_index) for _, task_id, map_index, _ in jobs]
    assert len(sources) == len(set(sources)) == 3, "one event per finished job, each from its own instance"
    assert {task_id for task_id, _ in sources} <= {
        "openeo_job_batch.run_foo.results",
        "openeo_job_batch.run_bar.results",
    }
    # Each row's event says where its results are: a consumer reads the item and the collection from the event.
    table = batch_table(config).read()
    collection = assert_validates_offline(collection_path)
    items = items_by_row(collection)
    assert set(items) == set(table.index)
    for _, _, _, extra in jobs:
        row = table.loc[extra["row_id"]]
        assert extra["job_id"] == row["id"] and extra["stac_collection"] == str(collection_path)
        item = pystac.Item.from_file(extra["stac_item"])
        assert item.properties["openeo_provider:job_id"] == row["id"]
        assert item.properties["openeo_provider:row"] == {"title": row["title"]}
        assert Path(item.assets["result.tif"].get_absolute_href()).read_bytes()[:2] == b"II", "the asset opens"


def test_a_connection_every_row_would_fail_on_stops_the_batch_once_before_any_row(
    example_env, batch_env, monkeypatch, tmp_path
):
    """A wrong password on one backend: the plan fails with one message naming it, no row task runs, no job is
    created, the rows keep their status (they run once the connection is fixed and the plan cleared) and say why,
    as the summary does, once."""
    import json

    from tests.fixtures.local_backend import backend_connection

    wrong = backend_connection(example_env["bar"])
    wrong["password"] = "not-the-password"
    monkeypatch.setenv("AIRFLOW_CONN_OPENEO_BAR_WRONG", json.dumps(wrong))
    config = {
        **batch_env,
        "backends": {"foo": {"conn_id": "openeo_foo"}, "bar": {"conn_id": "openeo_bar_wrong"}},
        "source": write_rows(tmp_path, pd.DataFrame({"title": [f"t{i}" for i in range(4)]})),
    }
    module = load_batch_dag(monkeypatch, config)
    before = backend_job_ids(example_env)

    run = module.dag.test()

    states = {ti.task_id: ti.state for ti in task_instances(run) if ti.map_index < 0}
    assert states["openeo_job_batch.plan"] == "failed"
    assert not [ti for ti in task_instances(run) if ti.map_index >= 0], "no row instance was even created"
    assert not any(new_jobs(example_env, before).values()), "no job was created on either backend"
    table = batch_table(config).read()
    assert set(table["status"]) == {"not_started"}
    (why,) = set(table["error_message"])
    assert why.startswith("no row was started, because backend 'bar': the backend refused the credentials")
    assert "not-the-password" not in why
    summary = xcom_of(run, "openeo_job_batch.summary")
    assert summary["not_started_because"] == why and summary["counts"] == {"not_started": 4}
    assert run.state == "failed"


def test_two_dags_that_name_no_job_table_run_their_own_rows_in_tables_of_their_own(example_env, batch_env, monkeypatch):
    """Before tables were named after their DAG, the second DAG found the shared table 'openeo_jobs' and ran none
    of its own rows; now each DAG's rows run, in its own table, and no shared table appears."""
    import importlib.util
    import json

    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
    from tests.conftest import REPO

    monkeypatch.setenv("OPENEO_TEST_DEFAULT_TABLES", json.dumps(batch_env))
    spec = importlib.util.spec_from_file_location(
        "test_dag_default_tables", REPO / "tests/dags/test_dag_default_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    for dag_id in module.DAG_IDS:
        table = OpenEOJobDbHook(table=dag_id, sqlite_path=batch_env["sqlite_path"])
        if table.exists():
            table.drop()
        assert getattr(module, dag_id).test().state == "success"

    for dag_id in module.DAG_IDS:
        table = OpenEOJobDbHook(table=dag_id, sqlite_path=batch_env["sqlite_path"]).read()
        assert list(table["title"]) == [f"{dag_id} row 0", f"{dag_id} row 1"]
        assert set(table["status"]) == {"finished"}
    assert not OpenEOJobDbHook(table="openeo_jobs", sqlite_path=batch_env["sqlite_path"]).exists()
