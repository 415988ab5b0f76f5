"""The budget and the dry run on the row operators, against the real local backend and a real job table.

What reached the backend (the jobs, their ``budget`` field) is read back from the backend's control API; that a
dry run created nothing, from its request counters (no ``POST /jobs``) and its job list.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import openeo
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from openeo.extra.job_management import ProcessBasedJobCreator

from airflow_provider_openeo.batch.dry_run import dry_run_report, requested_dry_run
from airflow_provider_openeo.operators.openeo import OpenEOJobResultsOperator, OpenEOStartJobOperator
from tests.fixtures.local_backend import backend_conn_env
from tests.system.operators.conftest import (
    ADD_GRAPH,
    FAST,
    FakeTaskInstance,
    RowOps,
    fast_options,
    make_row_ops,
    rendered_context,
    run_row,
)

UDP = {
    "id": "plus_one",
    "parameters": [{"name": "x", "description": "a number", "schema": {"type": "number"}}],
    "process_graph": {
        "plus": {"process_id": "add", "arguments": {"x": {"from_parameter": "x"}, "y": 1}, "result": True}
    },
    "default_job_options": {"local_backend": FAST},
}


def graph_start(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
    """A row's ``process`` column names the process (an unknown one is what validation refuses)."""
    process = row.get("process") if isinstance(row.get("process"), str) else "add"
    graph = {"node": {"process_id": process, "arguments": {"x": 1, "y": 2}, "result": True}}
    return connection.create_job(graph, title=str(row["title"]), job_options=fast_options())


def dry_context(operator: Any, **params: Any) -> dict[str, Any]:
    context = rendered_context(operator)
    context["params"] = {"dry_run": True, **params}
    return context


# -- budget -----------------------------------------------------------------------------------------------------


def test_a_budget_stops_new_starts_once_reached_and_the_row_runs_when_raised(row_ops: RowOps):
    """Row 0 runs (no history: expected 0) and records costs 0.25 (0.5 s run); its estimate was recorded before.
    With max_costs 0.3, row 1 (expected 0.25 by row 0's history) does not fit: not started, saying why, no job.
    Raised to 1, it runs."""
    titles = row_ops.table(2)

    run_row(row_ops.operator(0, max_costs=0.3))
    first = row_ops.row(0)
    assert (first["status"], first["costs"], first["estimated_costs"]) == ("finished", 0.25, 0.25)
    assert row_ops.backend.stats()["GET /jobs/{job_id}/estimate"] == 1

    with pytest.raises(AirflowSkipException, match=r"budget reached: max_costs 0\.3, spent 0\.25"):
        run_row(row_ops.operator(1, max_costs=0.3))
    held = row_ops.row(1)
    assert (held["status"], held["blocked_by"], held["id"]) == ("not_started", "max_costs", None)
    assert "the 0.05 left is less than a job's expected 0.25" in held["error_message"]
    assert not row_ops.jobs(titles[1]), "no job was created for the row the budget held back"

    run_row(row_ops.operator(1, max_costs=1.0))
    row = row_ops.row(1)
    assert (row["status"], row["blocked_by"], row["error_message"]) == ("finished", None, None)
    assert len(row_ops.jobs(titles[1])) == 1


def test_a_job_whose_estimate_does_not_fit_is_deleted_before_it_starts(row_ops: RowOps):
    """No costs recorded yet, so the row is expected at 0 when claimed; its job's estimate (0.25) is over the cap."""
    [title] = row_ops.table(1)
    with pytest.raises(AirflowSkipException, match=r"by the estimate of job j-\S+, deleted before it started"):
        run_row(row_ops.operator(max_costs=0.2))
    row = row_ops.row()
    assert (row["status"], row["blocked_by"], row["id"]) == ("not_started", "max_costs", None)
    assert row["job_history"][-1]["status"] == "abandoned"
    assert row_ops.backend.stats().get("POST /jobs/{job_id}/results") is None, "never started"
    assert [job["status"] for job in row_ops.jobs(title)] in ([], ["deleted"]), row_ops.jobs(title)


def test_rows_starting_together_without_history_never_pass_the_cap_together(row_ops_any_db: RowOps):
    """Three rows start at once, no costs recorded (each expected at 0 when claimed); jobs are estimated at 0.25 and
    the budget is 0.6: the estimates, checked again before each start, let exactly two jobs start (SQLite and
    PostgreSQL)."""
    row_ops = row_ops_any_db
    titles = row_ops.table(3)
    operators = [row_ops.operator(i, cls=OpenEOStartJobOperator, max_costs=0.6) for i in range(3)]
    contexts = [rendered_context(op, FakeTaskInstance(map_index=i)) for i, op in enumerate(operators)]
    barrier = threading.Barrier(3)
    outcomes: list[str] = []

    def start(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            operators[index].execute(contexts[index])
            outcomes.append("started")
        except AirflowSkipException:
            outcomes.append("held back")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert sorted(outcomes) == ["held back", "started", "started"]
    assert row_ops.backend.stats()["POST /jobs/{job_id}/results"] == 2
    assert row_ops.db.budget_ledger(0.6).committed == 0.5
    started = [t for t in titles if any(j["status"] != "deleted" for j in row_ops.jobs(t))]
    assert len(started) == 2


def test_the_runs_param_overrides_the_batch_budget(row_ops: RowOps):
    row_ops.table(2)
    run_row(row_ops.operator(0))
    operator = row_ops.operator(1, cls=OpenEOStartJobOperator, max_costs=100.0)
    context = rendered_context(operator)
    context["params"] = {"max_costs": 0.1}
    with pytest.raises(AirflowSkipException, match=r"budget reached: max_costs 0\.1"):
        operator.execute(context)


def test_job_budget_reaches_the_job_row_over_batch(row_ops: RowOps):
    """The openEO ``budget`` field of ``POST /jobs``: the row's ``job_budget`` column over the batch's argument."""
    titles = row_ops.table(2, job_budget=[7.5, None])
    for row_id in (0, 1):
        run_row(row_ops.operator(row_id, job_budget=3))
    budgets = [row_ops.jobs(title)[0]["budget"] for title in titles]
    assert budgets == [7.5, 3.0]


def test_a_bad_job_budget_in_a_row_fails_that_row_before_any_job(row_ops: RowOps):
    [title] = row_ops.table(job_budget=["lots"])
    with pytest.raises(AirflowFailException, match="field 'job_budget' must be a"):
        run_row(row_ops.operator())
    assert row_ops.row()["status"] == "start_failed"
    assert not row_ops.jobs(title)


# -- dry run ----------------------------------------------------------------------------------------------------


def test_a_dry_run_validates_each_row_and_creates_no_job(row_ops: RowOps):
    titles = row_ops.table(2, process=[None, "no_such_process"])
    row_ops.backend.reset_stats()

    good = row_ops.operator(0, start_job=graph_start)
    assert good.execute(dry_context(good)) is None
    bad = row_ops.operator(1, start_job=graph_start)
    with pytest.raises(AirflowFailException, match=r"would fail: \[ProcessUnsupported\].*no_such_process"):
        bad.execute(dry_context(bad))

    stats = row_ops.backend.stats()
    assert "POST /jobs" not in stats and stats["POST /validation"] == 2
    assert not any(row_ops.jobs(title) for title in titles)
    rows = [row_ops.row(0), row_ops.row(1)]
    assert [r["status"] for r in rows] == ["not_started", "not_started"], "a dry run never pretends a row ran"
    assert [r["dry_run_verdict"] for r in rows] == ["valid", "would_fail"]
    assert rows[0]["validation_errors"] is None
    assert json.loads(rows[1]["validation_errors"])[0]["code"] == "ProcessUnsupported"
    assert rows[1]["claimed_by"] is None

    run_row(row_ops.operator(0, start_job=graph_start))  # the row is runnable by a real run afterwards
    assert row_ops.row(0)["status"] == "finished"


def test_a_dry_run_matches_what_the_backend_would_refuse_at_create(row_ops: RowOps):
    """The local backend refuses graphs by a setting; its validation says the same, so the dry run foretells it."""
    row_ops.table(1)
    row_ops.backend.configure(reject_process_graphs='"add"')
    operator = row_ops.operator(start_job=graph_start)
    with pytest.raises(AirflowFailException, match=r"\[ProcessGraphInvalid\]"):
        operator.execute(dry_context(operator))
    assert row_ops.row()["dry_run_verdict"] == "would_fail"


def test_a_dry_run_of_a_process_based_job_creator_with_options_checks_them_first(row_ops: RowOps):
    url = row_ops.backend.add_process_definition(f"plus_one_{uuid.uuid4().hex[:6]}", UDP)
    titles = row_ops.table(2, x=[1, 2], job_options=[None, json.dumps({"executor-memroy": "2g"})])
    creator = ProcessBasedJobCreator(process_id="plus_one", namespace=url)
    row_ops.backend.reset_stats()

    ok = row_ops.operator(0, start_job=creator, job_options={"executor-memory": "1g"})
    ok.execute(dry_context(ok))
    refused = row_ops.operator(1, start_job=creator)
    with pytest.raises(AirflowFailException, match=r"\[JobOptionsRefused\].*'executor-memroy'"):
        refused.execute(dry_context(refused))

    assert "POST /jobs" not in row_ops.backend.stats()
    assert not any(row_ops.jobs(title) for title in titles)
    assert [row_ops.row(i)["dry_run_verdict"] for i in (0, 1)] == ["valid", "would_fail"]


def test_a_dry_run_estimates_from_the_tables_recorded_costs(row_ops: RowOps):
    row_ops.table(3)
    run_row(row_ops.operator(0))  # costs 0.25, the table's history
    for row_id in (1, 2):
        operator = row_ops.operator(row_id)
        operator.execute(dry_context(operator))
    assert row_ops.row(1)["estimated_costs"] == 0.25

    table = row_ops.db.read()
    table["dispatch_run"] = "dag/run"
    (chain,) = table["dry_run_chain"].dropna().unique()
    report = dry_run_report(table, chain, "dag/run")
    assert report == {
        "rows": 2,
        "rows_this_run": 2,
        "verdicts": {"valid": 2},
        "would_fail": 0,
        "estimated_costs": 0.5,
        "estimated_rows": 2,
        "estimated_by_backend": 0,
        "extrapolated_rows": 0,
        "continues": False,
        "rows_left_to_next_run": 0,
        "rows_not_checked": 0,
    }


def test_without_recorded_costs_the_dry_run_report_says_why_there_is_no_estimate(row_ops: RowOps):
    row_ops.table(1)
    operator = row_ops.operator()
    operator.execute(dry_context(operator))
    table = row_ops.db.read().assign(dispatch_run="dag/run")
    report = dry_run_report(table, table.loc[0, "dry_run_chain"], "dag/run")
    assert report["estimated_costs"] is None
    assert "openEO estimates only a job that exists" in report["estimate_note"]


def test_a_dry_run_asked_for_estimates_has_the_backend_estimate_a_sample_of_rows(row_ops: RowOps):
    """4 rows, a sample of 2 (rows 0 and 2): each sampled row's job is created, estimated (the local backend: 0.5 per
    second of run, 0.5 s here) and deleted unstarted; the other rows have no history to go by, so the summary counts
    them at the sample's median: 4 x 0.25."""
    titles = row_ops.table(4)
    row_ops.backend.reset_stats()
    for row_id in range(4):
        operator = row_ops.operator(row_id, start_job=graph_start)
        operator.execute(dry_context(operator, dry_run_estimates=2))

    stats = row_ops.backend.stats()
    assert (stats["POST /jobs"], stats["GET /jobs/{job_id}/estimate"], stats["DELETE /jobs/{job_id}"]) == (2, 2, 2)
    assert "POST /jobs/{job_id}/results" not in stats, "never started"
    assert not any(row_ops.jobs(title) for title in titles)
    assert not [job for job in row_ops.backend.jobs() if str(job.get("title")).startswith("[dry run estimate]")]
    rows = [row_ops.row(i) for i in range(4)]
    assert [r["status"] for r in rows] == ["not_started"] * 4
    assert [r["estimate_source"] for r in rows] == ["backend", None, "backend", None]
    assert [r["estimated_costs"] for r in rows][::2] == [0.25, 0.25]
    table = row_ops.db.read().assign(dispatch_run="dag/run")
    report = dry_run_report(table, table.loc[0, "dry_run_chain"], "dag/run")
    assert (report["estimated_costs"], report["estimated_by_backend"], report["extrapolated_rows"]) == (1.0, 2, 2)
    assert "estimate_note" not in report


def test_where_the_backend_lists_no_estimate_a_sampled_row_creates_no_job(row_ops: RowOps):
    """openeo-driver answers 501 and hides the estimate from its capabilities: the dry run creates nothing to ask."""
    row_ops.table(1)
    row_ops.backend.configure(estimates=False)
    row_ops.backend.reset_stats()
    operator = row_ops.operator(0, start_job=graph_start)
    operator.execute(dry_context(operator, dry_run_estimates=1))
    assert "POST /jobs" not in row_ops.backend.stats()
    assert (row_ops.row()["dry_run_verdict"], row_ops.row()["estimate_source"]) == ("valid", None)


def test_a_dry_run_leaves_a_row_holding_a_job_alone(row_ops: RowOps):
    [title] = row_ops.table(1)
    run_row(row_ops.operator())
    before = row_ops.row()
    operator = row_ops.operator()
    operator.execute(dry_context(operator))
    after = row_ops.row()
    assert after["dry_run_verdict"] == "has_job"
    assert (after["status"], after["id"]) == (before["status"], before["id"])
    assert len(row_ops.jobs(title)) == 1


def test_the_results_task_of_a_dry_run_skips(row_ops: RowOps):
    row_ops.table(1)
    results = OpenEOJobResultsOperator(
        task_id="results", row_id=0, job_table=row_ops.db.table, sqlite_path=str(row_ops.db.sqlite_path)
    )
    with pytest.raises(AirflowSkipException, match="dry run"):
        results.execute(dry_context(results))


def test_dry_run_flag_from_conf_param_or_nothing():
    from types import SimpleNamespace

    assert requested_dry_run({"dag_run": SimpleNamespace(conf={"dry_run": "true"}), "params": {"dry_run": False}})
    assert not requested_dry_run({"params": {"dry_run": False}})
    assert not requested_dry_run({})
    with pytest.raises(ValueError, match="Param 'dry_run' must be true or false"):
        requested_dry_run({"params": {"dry_run": "maybe"}})


def test_a_dry_run_of_a_start_job_that_starts_its_job_itself_creates_nothing(row_ops: RowOps):
    """``start_job`` may start the job too (``job.start()``): the made-up job answers that without the backend."""
    [title] = row_ops.table(1)

    def starting(row: pd.Series, connection: openeo.Connection, **kwargs: Any) -> openeo.BatchJob:
        job = connection.create_job(ADD_GRAPH, title=str(row["title"]), job_options=fast_options())
        job.start()
        assert job.status() == "created"
        return job

    operator = row_ops.operator(start_job=starting)
    operator.execute(dry_context(operator))
    assert row_ops.row()["dry_run_verdict"] == "valid"
    assert not row_ops.jobs(title)


def row_started_on_bar(openeo_backends, sqlite_job_db, tmp_path, monkeypatch) -> tuple[RowOps, Any, str, Any]:
    """A row of backend ``foo`` whose ``start_job`` creates its job on ``bar`` through ``connection_provider``."""
    foo, bar = openeo_backends["foo"], openeo_backends["bar"]
    row_ops = make_row_ops(foo, sqlite_job_db, tmp_path, monkeypatch)
    backend_conn_env(monkeypatch, "openeo_row_ops_other", bar)
    [title] = row_ops.table(1)

    def elsewhere(row: pd.Series, connection_provider: Any, **kwargs: Any) -> openeo.BatchJob:
        return connection_provider("bar").create_job(ADD_GRAPH, title=str(row["title"]), job_options=fast_options())

    return row_ops, bar, title, row_ops.operator(start_job=elsewhere, backends={"bar": "openeo_row_ops_other"})


def test_a_job_created_through_connection_provider_costs_the_backend_no_validation(
    openeo_backends, sqlite_job_db, tmp_path, monkeypatch
):
    """The openeo client validates a graph before each create unless told not to; a batch tells it so for the row's
    own connection and for every connection ``connection_provider`` hands out (one request less per job)."""
    _, bar, title, operator = row_started_on_bar(openeo_backends, sqlite_job_db, tmp_path, monkeypatch)
    operator.start_row(rendered_context(operator))  # the start alone: the job is on bar, not the row's backend

    assert len([job for job in bar.jobs() if job["title"] == title]) == 1  # bar keeps other tests' jobs
    assert bar.stats().get("POST /jobs") == 1 and "POST /validation" not in bar.stats(), bar.stats()


def test_a_dry_run_intercepts_creates_on_connection_provider_connections_too(
    openeo_backends, sqlite_job_db, tmp_path, monkeypatch
):
    """``start_job`` may create its job on another backend through ``connection_provider``: that create is answered
    here too, and that backend validates the graph."""
    row_ops, bar, title, operator = row_started_on_bar(openeo_backends, sqlite_job_db, tmp_path, monkeypatch)
    operator.execute(dry_context(operator))

    assert row_ops.row()["dry_run_verdict"] == "valid"
    # The dry run's own validation, once: a provider's connections skip the client's advisory one, as the row's does.
    assert "POST /jobs" not in bar.stats() and bar.stats()["POST /validation"] == 1
    assert not [job for job in bar.jobs() if job["title"] == title]
