"""Faults on a live Airflow (scheduler, triggerer, dag-processor, API server; LocalExecutor; SQLite): nothing lost.

Every scenario runs a small batch of one fault DAG (``tests/system/deploy/dags/fault_dags.py``) against the two local
backends, injects its fault, and then checks the same two promises: nothing is lost (each row ends finished, or
in the state the scenario demands, and the job table, the result folders and the backends' own job lists agree
row for row) and no remote job is created twice (the backends hold exactly one job per row). Airflow's own
retries (``retries``/``retry_delay``, kept short in the DAGs) do the recovering where a task fails.

What each test saw (timings, retries, statuses) goes to ``build/test-faults/observations.json`` and the test
output, for the issue's notes.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psutil
import pytest

from airflow_provider_openeo.batch.dispatching import BASE_COOLDOWN_SECONDS
from airflow_provider_openeo.batch.reruns import CONTINUES_KEY
from airflow_provider_openeo.batch.run_chain import CHAIN_KEY
from tests.system.deploy.conftest import FaultRig
from tests.system.example_dags.conftest import assert_batch_consistent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

RUN_TIMEOUT = 240.0
ASSET_ENDPOINT = "GET /jobs/{job_id}/results/assets/{filename}"


@pytest.fixture
def rig(fault_rig: FaultRig) -> Iterator[FaultRig]:
    """The shared deployment with both backends up, on start-up settings, counters at zero."""
    for backend in fault_rig.backends.values():
        if not backend.is_running():
            backend.restart()
        backend.reset()
    yield fault_rig
    for backend in fault_rig.backends.values():
        if backend.is_running():
            backend.reset_config()


# -- helpers ---------------------------------------------------------------------------------------------------


def ti_states(tis: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(str(ti["state"]) for ti in tis))


def retried(tis: list[dict[str, Any]]) -> dict[str, int]:
    """``label -> try number`` of the row tasks that needed more than one try."""
    return {
        ti["rendered_map_index"] or f"{ti['task_id']}[{ti['map_index']}]": ti["try_number"]
        for ti in tis
        if ti["try_number"] > 1
    }


def observe(rig: FaultRig, scenario: str, **facts: Any) -> None:
    rig.observations[scenario] = facts
    print(f"\n[{scenario}] " + json.dumps(facts, default=str))


def count_state(rig: FaultRig, dag_id: str, run_id: str, state: str) -> int:
    return sum(1 for ti in rig.mapped(dag_id, run_id) if ti["state"] == state)


def check_batch(
    rig: FaultRig, dag_id: str, rows: int, *, finished_rows: Any = None, jobs: int | None = None
) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    """Nothing lost, nothing created twice: the table, the result folders and the backends agree row for row.

    ``jobs``: how many jobs the backends must hold for the DAG (default: one per row).
    """
    table = rig.table(dag_id)
    created = rig.jobs_of(f"{dag_id} ")
    assert len(table) == rows, f"{dag_id}: {len(table)} rows in the job table, expected {rows}"
    assert_batch_consistent(table, rig.backends, created, rig.results(dag_id), finished_rows=finished_rows)
    on_backends = sum(len(jobs) for jobs in created.values())
    expected = rows if jobs is None else jobs
    assert on_backends == expected, f"{dag_id}: the backends hold {on_backends} jobs, expected {expected}"
    leftovers = [p.name for p in rig.results(dag_id).rglob("*") if ".part-" in p.name]
    assert not leftovers, f"partial files left behind: {leftovers}"
    return table, created


def run_batch(rig: FaultRig, dag_id: str, conf: dict[str, Any]) -> tuple[str, float]:
    return rig.trigger(dag_id, conf), time.monotonic()


# -- 1. the triggerer dies ---------------------------------------------------------------------------------------


def kill_and_restart(
    rig: FaultRig, dag_id: str, service: str, *, rows: int, run_seconds: float, deferred: int, down_for: float
) -> dict[str, Any]:
    """``kill -9`` one Airflow service once ``deferred`` row tasks wait in the triggerer, start it again after
    ``down_for`` seconds, and check the batch still ends with every row finished by exactly one job.

    Returns the observations common to every such scenario (seconds are counted from the trigger).
    """
    run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": run_seconds})
    rig.wait_until(f"{deferred} deferred row tasks", lambda: count_state(rig, dag_id, run_id, "deferred") >= deferred)
    table = rig.table(dag_id)
    at_kill = {
        "row_tasks_at_kill": ti_states(rig.mapped(dag_id, run_id)),
        "jobs_live_at_kill": int(table["status"].isin(["queued", "running"]).sum()),
    }
    killed = time.monotonic()
    rig.airflow.kill_service(service, signal.SIGKILL)
    time.sleep(down_for)
    rig.airflow.start_service(service)
    restarted = time.monotonic()
    run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    ended = time.monotonic()
    tis = rig.mapped(dag_id, run_id)

    assert run["state"] == "success", ti_states(tis)
    check_batch(rig, dag_id, rows)
    return {
        "rows": rows,
        **at_kill,
        "killed_after_s": round(killed - started, 1),
        f"{service}_healthy_after_s": round(restarted - killed, 1),
        "run_ended_after_kill_s": round(ended - killed, 1),
        "run_seconds": round(ended - started, 1),
        "run_state": run["state"],
        "retried_tasks": retried(tis),
        "jobs_on_backends": sum(len(j) for j in rig.jobs_of(f"{dag_id} ").values()),
    }


def test_triggerer_killed_mid_batch_and_replaced(rig: FaultRig) -> None:
    """kill -9 the triggerer while row tasks are deferred; a new triggerer takes their triggers over."""
    seen = kill_and_restart(rig, "fault_kill_triggerer", "triggerer", rows=6, run_seconds=5, deferred=3, down_for=2.0)
    observe(rig, "1 kill -9 triggerer", **seen)


# -- 2. the scheduler dies ---------------------------------------------------------------------------------------


def test_scheduler_killed_mid_batch_and_restarted(rig: FaultRig) -> None:
    """kill -9 the scheduler mid-batch; once restarted it adopts the running and deferred row tasks."""
    seen = kill_and_restart(rig, "fault_kill_scheduler", "scheduler", rows=6, run_seconds=6, deferred=2, down_for=3.0)
    observe(rig, "2 kill -9 scheduler", **seen)


# -- 2b. both die while rows are being dispatched -------------------------------------------------------------------


def _waiting_for_dispatch(rig: FaultRig, dag_id: str, run_id: str, backend: str) -> int:
    """Instances of ``backend`` deferred in the dispatch wait (no row taken: their label says so)."""
    from airflow_provider_openeo.operators.openeo import NO_ROW_YET_LABEL

    label = NO_ROW_YET_LABEL.format(backend=backend)
    return sum(
        1 for ti in rig.mapped(dag_id, run_id) if ti["state"] == "deferred" and ti["rendered_map_index"] == label
    )


def _given_back(table: pd.DataFrame) -> int:
    return int(table["error_message"].astype(str).str.contains("given back").sum())


def test_triggerer_and_scheduler_killed_during_dispatch(rig: FaultRig) -> None:
    """foo is down, so rows are given back and move to bar while foo's instances wait out its cool-down in the
    triggerer. kill -9 the triggerer, then the scheduler, while those dispatch waits are deferred; foo comes back.
    Every row still ends finished by exactly one job, on whichever backend took it."""
    dag_id, rows = "fault_kill_during_dispatch", 10
    foo = rig.backends["foo"]
    _stop(foo)
    run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": 6})
    try:
        rig.wait_until(
            "foo's instances to wait out its cool-down in the triggerer",
            lambda: _waiting_for_dispatch(rig, dag_id, run_id, "foo") >= 1,
            timeout=150,
        )
        at_kill = {
            "row_tasks_at_triggerer_kill": ti_states(rig.mapped(dag_id, run_id)),
            "dispatch_waits_at_triggerer_kill": _waiting_for_dispatch(rig, dag_id, run_id, "foo"),
            "rows_given_back_before_kill": _given_back(rig.table(dag_id)),
        }
        triggerer_killed = time.monotonic()
        rig.airflow.kill_service("triggerer", signal.SIGKILL)
        time.sleep(2.0)
        rig.airflow.start_service("triggerer")
        rig.wait_until(
            "the new triggerer to hold the dispatch waits",
            lambda: _waiting_for_dispatch(rig, dag_id, run_id, "foo") >= 1,
            timeout=60,
        )
        at_kill["dispatch_waits_at_scheduler_kill"] = _waiting_for_dispatch(rig, dag_id, run_id, "foo")
        scheduler_killed = time.monotonic()
        rig.airflow.kill_service("scheduler", signal.SIGKILL)
        time.sleep(3.0)
    finally:
        foo.restart()
    rig.airflow.start_service("scheduler")
    run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    ended = time.monotonic()
    tis = rig.mapped(dag_id, run_id)

    assert run["state"] == "success", ti_states(tis)
    table, created = check_batch(rig, dag_id, rows)
    observe(
        rig,
        "2b kill -9 triggerer and scheduler during dispatch",
        rows=rows,
        **at_kill,
        triggerer_killed_after_s=round(triggerer_killed - started, 1),
        scheduler_killed_after_s=round(scheduler_killed - started, 1),
        rows_per_backend=table["backend_name"].value_counts().to_dict(),
        run_seconds=round(ended - started, 1),
        run_state=run["state"],
        retried_tasks=retried(tis),
        jobs_on_backends=sum(len(j) for j in created.values()),
    )


# -- 3. a worker dies while downloading ----------------------------------------------------------------------------


def test_worker_killed_during_result_download(rig: FaultRig) -> None:
    """SIGKILL the task process while it downloads an asset; the retry downloads again into a clean job dir."""
    dag_id, rows = "fault_kill_worker", 2
    run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": 4})
    table = rig.wait_until("a row with a job", lambda: _with_a_job(rig.table(dag_id)))
    row_id = table[table["id"].notna()].index[0]
    job_id, backend_name = table.loc[row_id, "id"], table.loc[row_id, "backend_name"]
    backend = rig.backends[backend_name]
    # result.json comes first, then result.tif: hold the second asset of this one job for 60 s, once.
    backend.configure(
        faults=[
            {
                "latency": 60.0,
                "endpoints": [ASSET_ENDPOINT],
                "path": f"{re.escape(job_id)}/results/assets/result\\.tif$",
                "times": 1,
            }
        ]
    )
    rig.wait_until(
        "the download of result.tif to hang",
        lambda: (
            backend.fault_stats().get("latency", 0) >= 1
            and rig.table(dag_id).loc[row_id, "results_state"] == "downloading"
        ),
        timeout=90,
    )
    ti = rig.row_task(dag_id, run_id, row_id, "results")
    process = rig.wait_until("the row's results task process", lambda: rig.task_process(ti["id"]), timeout=30)
    job_dir = rig.results(dag_id) / f"job_{job_id}"
    files_at_kill = sorted(p.name for p in job_dir.iterdir()) if job_dir.exists() else []
    supervisor = process.ppid()
    process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    psutil.wait_procs([process], timeout=10)
    run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    ended = time.monotonic()
    tis = rig.mapped(dag_id, run_id)

    assert run["state"] == "success", ti_states(tis)
    table, created = check_batch(rig, dag_id, rows)
    assert rig.row_task(dag_id, run_id, row_id, "results")["try_number"] >= 2, "the killed try was not retried"
    assert (job_dir / "result.tif").stat().st_size == backend.config()["result_size"]
    json.loads((job_dir / "result.json").read_text())
    asset_gets = backend.stats().get(ASSET_ENDPOINT, 0)
    observe(
        rig,
        "3 kill worker during download",
        rows=rows,
        killed=f"task process {process.pid} (its supervisor {supervisor} lives on)",
        killed_row=str(row_id),
        job_dir_at_kill=files_at_kill,
        job_dir_after=sorted(p.name for p in job_dir.iterdir()),
        killed_after_s=round(killed - started, 1),
        run_ended_after_kill_s=round(ended - killed, 1),
        run_seconds=round(ended - started, 1),
        run_state=run["state"],
        retried_tasks=retried(tis),
        asset_requests_on_backend=asset_gets,
        jobs_on_backends=sum(len(j) for j in created.values()),
    )


def _with_a_job(table: pd.DataFrame) -> pd.DataFrame | None:
    return table if "id" in table and table["id"].notna().any() else None


# -- 4. a flaky backend ---------------------------------------------------------------------------------------------


def test_backend_answering_30_percent_5xx_and_429(rig: FaultRig) -> None:
    """foo answers 15 % of all requests 500 and 15 % 429 (Retry-After 1 s) for its whole first run; bar answers its
    first ``POST /jobs`` 500.

    A ``POST /jobs`` answered 500 may have created a job the client never heard of, so the provider refuses to
    create another: such rows end ``start_failed`` with a message saying why (and here, since the injected 500
    comes before the backend acts, no job exists for them). The re-run (this DAG re-runs ``start_failed`` rows)
    then completes the batch, still one job per row. bar's one ``POST /jobs`` answered 500 makes that path run every
    time, whatever the dispatch makes of foo's errors.
    """
    dag_id, rows = "fault_flaky_backend", 8
    foo, bar = rig.backends["foo"], rig.backends["bar"]
    foo.configure(error_rate=0.15, error_status=500, rate_limit_rate=0.15, retry_after=1)
    # And the first POST /jobs on healthy bar answered 500 for sure: bar always gets rows (foo may be cooling down,
    # its rows going elsewhere), so the lost-create path below runs every time.
    bar.configure(faults=[{"error_rate": 1.0, "error_status": 500, "endpoints": ["POST /jobs"], "times": 1}])
    params = {"rows": rows, "run_seconds": 2}
    run_id, started = run_batch(rig, dag_id, params)
    try:
        run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    finally:
        faults = foo.fault_stats()
        requests = foo.stats()
        foo.reset_config()
        bar.reset_config()
    first_seconds = time.monotonic() - started
    tis = rig.mapped(dag_id, run_id)
    table = rig.table(dag_id)
    lost_creates = table[table["status"] == "start_failed"]
    assert set(table["status"]) <= {"finished", "start_failed"}, (
        table[["status", "backend_name", "error_message"]].to_dict("index"),
        ti_states(tis),
        retried(tis),
    )
    for row_id, row in lost_creates.iterrows():
        assert row["backend_name"] in {"foo", "bar"} and "answer was lost" in str(row["error_message"]), (
            row_id,
            row.to_dict(),
        )
    # a row refused after a lost create holds no job, and the backend holds none for it either
    check_batch(
        rig, dag_id, rows, finished_rows=table.index[table["status"] == "finished"], jobs=rows - len(lost_creates)
    )
    assert not lost_creates.empty and run["state"] == "failed", ti_states(tis)

    rerun_id, rerun_started = run_batch(rig, dag_id, params)  # the backend healthy again
    rerun_state = rig.airflow.wait_for_run(dag_id, rerun_id, timeout=RUN_TIMEOUT)["state"]
    rerun_seconds = time.monotonic() - rerun_started
    assert rerun_state == "success"
    table, created = check_batch(rig, dag_id, rows)
    total_requests = sum(requests.values())
    observe(
        rig,
        "4 backend 30% 5xx/429",
        rows=rows,
        rows_on_foo=int((table["backend_name"] == "foo").sum()),
        faults_injected=faults,
        requests_to_foo=total_requests,
        fault_share=round((faults.get("error", 0) + faults.get("rate_limit", 0)) / max(total_requests, 1), 2),
        first_run_state=run["state"],
        first_run_seconds=round(first_seconds, 1),
        start_failed_lost_create=[str(r) for r in lost_creates.index],
        rerun_state=rerun_state,
        rerun_seconds=round(rerun_seconds, 1),
        retried_tasks=retried(tis),
        jobs_on_backends=sum(len(j) for j in created.values()),
    )


# -- 5. ConcurrentJobLimit ------------------------------------------------------------------------------------------


def test_backend_refusing_jobs_with_concurrent_job_limit(rig: FaultRig) -> None:
    """foo takes one job at a time while its pool lets three tasks start: a refused start gives its row back (its
    created job deleted), foo's limit drops to what it runs, and nothing fails.

    Whether a start is refused at all depends on timing (bar may take the rows first); that it never costs a row
    is what is checked, and ``test_account_slots_held_by_jobs_outside_the_batch`` forces the refusal.
    """
    dag_id, rows = "fault_job_limit", 9
    foo = rig.backends["foo"]
    foo.configure(max_concurrent_jobs=1)
    # jobs long enough that the three foo tasks' starts overlap even on a busy machine
    run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": 5})
    run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    ended = time.monotonic()
    tis = rig.mapped(dag_id, run_id)

    assert run["state"] == "success", ti_states(tis)
    table, created = check_batch(rig, dag_id, rows)
    on_foo = int((table["backend_name"] == "foo").sum())
    assert _max_concurrent(created["foo"]) <= 1, "foo ran two of the batch's jobs at once"
    starts = foo.stats().get("POST /jobs/{job_id}/results", 0)
    observe(
        rig,
        "5 ConcurrentJobLimit",
        rows=rows,
        rows_on_foo=on_foo,
        max_concurrent_jobs=1,
        pool_slots=3,
        start_requests_on_foo=starts,
        refused_starts=starts - on_foo,
        abandoned_jobs=sum(1 for h in table["job_history"] for entry in (h or []) if entry["status"] == "abandoned"),
        run_seconds=round(ended - started, 1),
        run_state=run["state"],
        retried_tasks=retried(tis),
        jobs_on_backends=sum(len(j) for j in created.values()),
    )


# -- 6. a backend down: failover --------------------------------------------------------------------------------


def _stop(backend: Any) -> None:
    server = psutil.Process(backend.pid)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=15)


def _health(rig: FaultRig, dag_id: str) -> dict[str, dict[str, Any]]:
    db = rig.job_db(dag_id)
    try:
        return db.backend_health_records()
    finally:
        db.dispose()


def test_backend_down_at_start_comes_back(rig: FaultRig) -> None:
    """foo is stopped before the trigger: its starts fail, it cools down and bar takes the rows; started again (same
    port, same jobs) during the cool-down, the probe after it succeeds and foo takes rows again. No row fails, no
    Airflow retry is spent on the outage."""
    dag_id, rows = "fault_backend_down", 15
    foo = rig.backends["foo"]
    _stop(foo)
    run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": 12})

    def foo_cooling_down() -> bool:
        return _health(rig, dag_id).get("foo", {}).get("cooldown_until", 0) > time.time()

    rig.wait_until("foo to cool down after failed starts", foo_cooling_down, timeout=150, interval=1)
    cooling = time.monotonic()
    record = _health(rig, dag_id)["foo"]
    foo.restart()
    back = time.monotonic()
    run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    ended = time.monotonic()
    tis = rig.mapped(dag_id, run_id)

    assert run["state"] == "success", ti_states(tis)
    table, created = check_batch(rig, dag_id, rows)
    on_foo = int((table["backend_name"] == "foo").sum())
    assert on_foo >= 1, "foo took no row after it came back: the probe after the cool-down never came"
    assert _health(rig, dag_id)["foo"]["failures"] == 0, "the successful probe ends the failure streak"
    observe(
        rig,
        "6 backend down at start, comes back",
        rows=rows,
        rows_on_foo=on_foo,
        failures_before_cooldown=record["failures"],
        cooldown_after_s=round(cooling - started, 1),
        backend_down_s=round(back - started, 1),
        run_ended_after_comeback_s=round(ended - back, 1),
        run_seconds=round(ended - started, 1),
        run_state=run["state"],
        retried_tasks=retried(tis),
        jobs_on_backends=sum(len(j) for j in created.values()),
    )


def test_backend_down_for_the_whole_batch(rig: FaultRig) -> None:
    """foo stays down: every unpinned row finishes on bar, each started within a cool-down of the moment a bar slot
    was free; the row pinned to foo fails once foo has been failing for the DAG's ``backend_outage_limit`` (20 s),
    with a message naming foo and its error."""
    dag_id, rows, pinned = "fault_backend_outage", 7, 3
    _stop(rig.backends["foo"])
    triggered_at = time.time()
    run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": 2, "pins": {str(pinned): "foo"}})
    try:
        run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    finally:
        rig.backends["foo"].restart()
    ended = time.monotonic()
    tis = rig.mapped(dag_id, run_id)
    table = rig.table(dag_id)

    unpinned = table.index.drop(pinned)
    assert set(table.loc[unpinned, "backend_name"]) == {"bar"}
    check_batch(rig, dag_id, rows, finished_rows=unpinned, jobs=rows - 1)
    row = table.loc[pinned]
    assert row["status"] == "start_failed" and pd.isna(row["id"]), row.to_dict()
    message = str(row["error_message"])
    assert "backend 'foo'" in message and "'backend_name'" in message, message
    assert run["state"] == "failed", "a failed row fails the run (all_rows_succeeded)"
    bar_jobs = sorted(rig.jobs_of(f"{dag_id} ")["bar"], key=lambda job: job["times"]["created"])
    first_bar = bar_jobs[0]["times"]["created"]
    starts = [triggered_at] + [job["times"]["created"] for job in bar_jobs]
    longest_gap = max(later - earlier for earlier, later in itertools.pairwise(starts))
    assert longest_gap < BASE_COOLDOWN_SECONDS, (
        f"bar started no job for {longest_gap:.1f} s while rows waited: a row waited out foo's cool-down"
    )
    observe(
        rig,
        "6b backend down for the whole batch",
        rows=rows,
        pinned_row=pinned,
        pinned_row_message=message,
        rows_on_bar=len(bar_jobs),
        first_bar_job_after_trigger_s=round(first_bar - triggered_at, 1),
        longest_gap_between_bar_starts_s=round(longest_gap, 1),
        run_seconds=round(ended - started, 1),
        run_state=run["state"],
        row_tasks=ti_states(tis),
        retried_tasks=retried(tis),
    )


def test_backend_down_rows_no_instance_took_continue_in_the_next_run(rig: FaultRig) -> None:
    """A first batch of 4 rows (2 pinned to each backend) gives the job table a pace for both; then foo goes down
    and 14 more rows come, nothing pinned. With both paces alike, bar's group is sized for its half of the new rows
    with slack and a pool more (9 + 3 of 14), so it cannot take every row; once its instances are all taken, foo's
    instances end (the rows left would wait for foo alone) and those rows continue in the chained run, where bar
    takes them. Nothing fails, no Airflow retry is spent, one job per row."""
    dag_id, warm_up, rows = "fault_backend_down_chain", 4, 18
    pins = {"0": "foo", "1": "foo", "2": "bar", "3": "bar"}
    warm_up_run, _ = run_batch(rig, dag_id, {"rows": warm_up, "run_seconds": 2, "pins": pins})
    assert rig.airflow.wait_for_run(dag_id, warm_up_run, timeout=RUN_TIMEOUT)["state"] == "success"
    _stop(rig.backends["foo"])
    run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": 2})
    try:
        first = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
        first_ended = time.monotonic()
        first_tis = rig.mapped(dag_id, run_id)
        assert first["state"] == "success", ti_states(first_tis)

        def chained() -> list[dict[str, Any]]:
            runs = rig.airflow.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 20, "order_by": "logical_date"})
            return [run for run in runs["dag_runs"] if run["dag_run_id"] not in (warm_up_run, run_id)]

        rig.wait_until("the chained run", lambda: bool(chained()), timeout=120, interval=1)
        (second,) = chained()
        second = rig.airflow.wait_for_run(dag_id, second["dag_run_id"], timeout=RUN_TIMEOUT)
    finally:
        rig.backends["foo"].restart()
    ended = time.monotonic()
    second_tis = rig.mapped(dag_id, second["dag_run_id"])
    assert second["state"] == "success", ti_states(second_tis)
    assert {k: v for k, v in second["conf"].items() if k not in (CONTINUES_KEY, CHAIN_KEY)} == first["conf"], (
        "the chained run gets the same Params"
    )
    assert second["conf"][CONTINUES_KEY] == f"{dag_id}/{run_id}", "and says which run it continues"
    assert second["conf"][CHAIN_KEY] == f"{dag_id}/{run_id}", "and which run began the chain"

    table, created = check_batch(rig, dag_id, rows)
    new_rows = table[table["dispatch_run"] != f"{dag_id}/{warm_up_run}"]
    assert len(new_rows) == rows - warm_up and set(new_rows["backend_name"]) == {"bar"}
    assert len(created["foo"]) == 2, "foo ran the warm-up's two rows only"
    by_run = table["dispatch_run"].value_counts().to_dict()
    carried = by_run.get(f"{dag_id}/{second['dag_run_id']}", 0)
    # bar's group: its half of the 14 new rows with slack and a pool more, 9 + 3 when the warm-up's two paces come out
    # alike (the ends the triggers record differ by a listing, so one pace may come out a little faster: one instance
    # more or fewer). It cannot take every row: the first run took at most its instances, the rest continued.
    took = by_run.get(f"{dag_id}/{run_id}", 0)
    bar_instances = len([ti for ti in first_tis if ".run_bar." in ti["task_id"]])
    assert 11 <= took <= bar_instances < rows - warm_up and took + carried == rows - warm_up, (by_run, bar_instances)
    foo_instances = [ti for ti in first_tis if ".run_foo." in ti["task_id"]]
    ended_well = all(ti["state"] in ("skipped", "success") for ti in foo_instances)
    assert foo_instances and ended_well, ti_states(foo_instances)
    assert not retried(first_tis) and not retried(second_tis)
    observe(
        rig,
        "6c backend down, rows continue in the next run",
        rows=rows,
        rows_in_first_run=by_run.get(f"{dag_id}/{run_id}"),
        rows_carried_over=carried,
        first_run_s=round(first_ended - started, 1),
        batch_s=round(ended - started, 1),
        foo_instances=ti_states(foo_instances),
    )


def test_account_slots_held_by_jobs_outside_the_batch(rig: FaultRig) -> None:
    """foo allows 2 concurrent jobs per account, and 2 jobs started outside the batch hold them: foo's starts answer
    ``ConcurrentJobLimit``, its created jobs are deleted and the rows go to bar. Nothing fails."""
    import openeo

    from local_backend.launcher import BASIC_PASSWORD, BASIC_USER

    dag_id, rows = "fault_account_full", 6
    foo = rig.backends["foo"]
    foo.configure(max_concurrent_jobs=2)
    outside = openeo.connect(foo.url).authenticate_basic(BASIC_USER, BASIC_PASSWORD)
    cube = outside.load_collection("S2_FOOBAR", bands=["B04"])
    others = [
        cube.create_job(title=f"outside {i}", job_options={"local_backend": {"queue_seconds": 0, "run_seconds": 600}})
        for i in range(2)
    ]
    for job in others:
        job.start()
    try:
        run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": 3})
        run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    finally:
        for job in others:
            job.stop()
    ended = time.monotonic()
    tis = rig.mapped(dag_id, run_id)

    assert run["state"] == "success", ti_states(tis)
    table, created = check_batch(rig, dag_id, rows)
    refused = foo.stats().get("POST /jobs/{job_id}/results", 0)
    assert refused >= 1, "foo never refused a start: the scenario did not happen"
    assert set(table["backend_name"]) == {"bar"}
    record = _health(rig, dag_id)["foo"]
    assert record["last_failure"] == "limit" and record["slot_limit"] == 0, record
    observe(
        rig,
        "6c account slots held outside the batch",
        rows=rows,
        refused_starts_on_foo=refused,
        foo_slot_limit=record["slot_limit"],
        history=[h for h in table["job_history"] if h],
        run_seconds=round(ended - started, 1),
        run_state=run["state"],
        retried_tasks=retried(tis),
        jobs_on_backends=sum(len(j) for j in created.values()),
    )


def _max_concurrent(jobs: list[dict[str, Any]]) -> int:
    """The most jobs a backend held at once between queued and their end (its own timelines)."""
    events = []
    for job in jobs:
        times = job["times"]
        start = times.get("queued")
        end = next((times[s] for s in ("finished", "error", "canceled") if times.get(s)), None)
        if start is not None and end is not None:
            events += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


def test_two_dags_sharing_a_backend_never_exceed_its_pool_together(rig: FaultRig) -> None:
    """Two batches at once on the same two backends: their jobs together never outnumber a backend's pool slots."""
    from tests.system.deploy.conftest import PARALLEL_JOBS

    runs = {
        dag_id: run_batch(rig, dag_id, {"rows": 8, "run_seconds": 3})[0]
        for dag_id in ("fault_shared_backend_a", "fault_shared_backend_b")
    }
    states = {
        dag_id: rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)["state"]
        for dag_id, run_id in runs.items()
    }
    assert set(states.values()) == {"success"}, states
    peaks = {}
    for name in ("foo", "bar"):
        jobs = [job for dag_id in runs for job in rig.jobs_of(f"{dag_id} ")[name]]
        peaks[name] = _max_concurrent(jobs)
        assert peaks[name] <= PARALLEL_JOBS, f"{name} ran {peaks[name]} jobs of the two batches at once"
    for dag_id in runs:
        check_batch(rig, dag_id, 8)
    observe(
        rig, "6d two DAGs sharing the backends", rows_per_dag=8, peak_jobs_per_backend=peaks, pool_slots=PARALLEL_JOBS
    )


def _labels(tis: list[dict[str, Any]], backend: str) -> set[str]:
    return {ti["rendered_map_index"] for ti in tis if ti["task_id"].endswith(f".run_{backend}.job")}


# -- 7. cancel_running_job_after --------------------------------------------------------------------------------------


def test_cancel_running_job_after_on_live_triggerer(rig: FaultRig) -> None:
    """Row 0 runs 60 s, the DAG allows 5 s of running: the triggerer cancels it; the others finish."""
    dag_id, rows = "fault_cancel_after", 3
    run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": 2, "long_rows": [0]})
    run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    ended = time.monotonic()
    table, created = check_batch(rig, dag_id, rows, finished_rows=[1, 2])

    row = table.loc[0]
    assert row["status"] == "canceled" and row["backend_status"] == "canceled", row.to_dict()
    (job,) = [j for jobs in created.values() for j in jobs if j["id"] == row["id"]]
    assert job["status"] == "canceled"
    ran_for = job["times"]["canceled"] - job["times"]["running"]
    assert 5.0 <= ran_for <= 5.0 + 3 * 1.0 + 5.0, f"canceled after {ran_for:.1f} s of running"
    cancel_ti = rig.row_task(dag_id, run_id, 0)
    assert cancel_ti["state"] == "failed" and cancel_ti["try_number"] == 1, cancel_ti
    assert run["state"] == "failed"  # a row that did not finish fails the run (all_rows_succeeded)
    observe(
        rig,
        "7 cancel_running_job_after=5",
        rows=rows,
        canceled_row_ran_s=round(ran_for, 1),
        canceled_row={k: row[k] for k in ("status", "backend_status", "running_start_time")},
        canceled_task={"state": cancel_ti["state"], "try_number": cancel_ti["try_number"]},
        others=table.loc[[1, 2], "status"].value_counts().to_dict(),
        run_seconds=round(ended - started, 1),
        run_state=run["state"],
        jobs_on_backends=sum(len(j) for j in created.values()),
    )


# -- 8. marked failed in the UI ----------------------------------------------------------------------------------------


def test_marking_a_running_row_failed_cancels_its_job(rig: FaultRig) -> None:
    """PATCH the deferred task of row 0 to failed through the REST API: the trigger's on_kill cancels the job."""
    dag_id, rows = "fault_mark_failed", 2
    run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": 2, "long_rows": [0]})

    def running_and_deferred() -> dict[str, Any] | None:
        table = rig.table(dag_id)
        if table.empty or table.loc[0, "status"] != "running":
            return None
        ti = rig.row_task(dag_id, run_id, 0)
        return ti if ti["state"] == "deferred" else None

    ti = rig.wait_until("row 0 running and its task deferred", running_and_deferred, timeout=90)
    job_id = rig.table(dag_id).loc[0, "id"]
    marked = time.monotonic()
    answer = rig.airflow.api(
        "PATCH",
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/{ti['map_index']}",
        json_body={"new_state": "failed"},
    )
    assert [t["state"] for t in answer["task_instances"]] == ["failed"]
    backend = rig.backends[rig.table(dag_id).loc[0, "backend_name"]]
    job = rig.wait_until(
        "the remote job canceled",
        lambda: next((j for j in backend.jobs() if j["id"] == job_id and j["status"] == "canceled"), None),
        timeout=60,
    )
    canceled_after = time.monotonic() - marked
    rig.wait_until("row 0 to say canceled", lambda: rig.table(dag_id).loc[0, "status"] == "canceled", timeout=30)
    run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    ended = time.monotonic()
    tis = rig.mapped(dag_id, run_id)

    table, created = check_batch(rig, dag_id, rows, finished_rows=[1])
    assert (table.loc[0, "status"], table.loc[0, "backend_status"]) == ("canceled", "canceled")
    assert run["state"] == "failed"
    observe(
        rig,
        "8 mark row task failed via REST",
        rows=rows,
        endpoint="PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}",
        job_canceled_after_mark_s=round(canceled_after, 1),
        job_ran_s=round(job["times"]["canceled"] - job["times"]["running"], 1),
        row0={k: table.loc[0, k] for k in ("status", "backend_status")},
        row_task_states=ti_states(tis),
        run_seconds=round(ended - started, 1),
        run_state=run["state"],
        jobs_on_backends=sum(len(j) for j in created.values()),
    )


# -- 9. a recurring schedule -------------------------------------------------------------------------------------------


def test_recurring_schedule_runs_two_consecutive_intervals(rig: FaultRig) -> None:
    """The recurring batch on a 30 s data-interval schedule: two scheduled runs, each adding and finishing its rows."""
    dag_id = "fault_recurring"
    started = time.monotonic()
    # While paused, the DAG's next interval is the one computed at its last parse, up to minutes old: unpaused as
    # is, its first run would be that stale interval and the second would skip ahead to now (catchup=False).
    # A fresh parse first makes the first run the latest complete interval, the second the one after it.
    details = rig.airflow.api("GET", f"/dags/{dag_id}/details")
    rig.airflow.api("PUT", f"/parseDagFile/{details['file_token']}")
    rig.wait_until(
        "the DAG parsed again",
        lambda: rig.airflow.api("GET", f"/dags/{dag_id}")["last_parsed_time"] != details["last_parsed_time"],
        timeout=120,
        interval=1,
    )
    rig.airflow.api("PATCH", f"/dags/{dag_id}", json_body={"is_paused": False})

    def two_scheduled_runs_done() -> list[dict[str, Any]] | None:
        runs = rig.airflow.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 20, "order_by": "logical_date"})
        done = [r for r in runs["dag_runs"] if r["run_type"] == "scheduled" and r["state"] in ("success", "failed")]
        return done[:2] if len(done) >= 2 else None

    try:
        first, second = rig.wait_until("two scheduled runs", two_scheduled_runs_done, timeout=200, interval=2)
    finally:
        rig.airflow.api("PATCH", f"/dags/{dag_id}", json_body={"is_paused": True})
    ended = time.monotonic()
    assert (first["state"], second["state"]) == ("success", "success")
    assert second["data_interval_start"] == first["data_interval_end"], "the intervals are not consecutive"

    table = rig.table(dag_id)
    per_run: dict[str, Any] = {}
    own_rows: list[str] = []
    jobs: dict[str, list[dict[str, Any]]] = {name: [] for name in rig.backends}
    for run in (first, second):
        stamp = f"{pd.Timestamp(run['data_interval_start']):%Y-%m-%dT%H:%M:%S}"
        own = table[[str(i).startswith(f"{stamp}/") for i in table.index]]
        assert sorted(own.index) == [f"{stamp}/north", f"{stamp}/south"], list(table.index)
        for name, created in rig.jobs_of(f"{dag_id} {stamp} ").items():
            jobs[name].extend(created)
        own_rows.extend(own.index)
        per_run[run["dag_run_id"]] = {
            "interval": [run["data_interval_start"], run["data_interval_end"]],
            "rows": list(own.index),
            "statuses": own["status"].value_counts().to_dict(),
        }
    # both intervals' rows in one table, finished, one job each, results in place
    assert_batch_consistent(table.loc[own_rows], rig.backends, jobs, rig.results(dag_id))
    assert sum(len(j) for j in jobs.values()) == len(own_rows) == 4
    observe(
        rig,
        "9 recurring (30 s data intervals)",
        runs=per_run,
        rows_in_table=len(table),
        seconds_for_two_runs=round(ended - started, 1),
    )


# -- 10. re-triggers -----------------------------------------------------------------------------------------------


def summary_of(rig: FaultRig, dag_id: str, run_id: str) -> dict[str, Any]:
    """The batch summary's return value, as the REST API gives it."""
    entry = rig.airflow.api(
        "GET",
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/openeo_job_batch.summary/xcomEntries/return_value",
        params={"deserialize": "true", "stringify": "false"},
    )
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) else value


def test_failure_policy_retries_out_of_memory_not_no_data(rig: FaultRig) -> None:
    """The default failure policy on a live Airflow: row 0 needs 3g of executor memory and is given 2g, so its first
    job fails out of memory; the retry gets x1.5 (3g) and finishes. Row 1's job finds no data and is not retried;
    row 2 finishes. ``job_history``, ``error_category``, ``attempt`` and the summary say so; no row has a job twice
    at once and the backends hold exactly the jobs the table accounts for. Row 3 asks for an option the backend's
    ``GET /processing_parameters`` does not know: refused before any job exists, naming the row and the option.
    The finished rows carry every ``usage`` key the backend reports as a column of its own."""
    dag_id = "fault_failure_policy"
    row_options = {
        "0": {"executor-memory": "2g", "local_backend": {"min_executor_memory": "3g"}},
        "1": {"local_backend": {"fail_category": "no_data"}},
        "3": {"executor-memroy": "4g"},
    }
    run_id, started = run_batch(rig, dag_id, {"rows": 4, "run_seconds": 1, "row_options": row_options})
    run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    ended = time.monotonic()
    table = rig.table(dag_id).sort_values("title").reset_index(drop=True)
    jobs = {job["id"]: job for backend_jobs in rig.jobs_of(f"{dag_id} ").values() for job in backend_jobs}
    summary = summary_of(rig, dag_id, run_id)

    assert run["state"] == "failed", "the no-data row fails the run (all_rows_succeeded)"
    assert "error_category" in table.columns
    oom, no_data, plain, misspelt = (table.loc[i] for i in range(4))
    assert oom["status"] == "finished" and oom["attempt"] == 1 and pd.isna(oom["error_category"])
    (first,) = oom["job_history"]
    assert first["error_category"] == "out_of_memory" and first["retry"] == "failure_policy", first
    assert "too much memory" in first["error_message"]
    assert jobs[first["id"]]["status"] == "error" and jobs[first["id"]]["job_options"]["executor-memory"] == "2g"
    assert jobs[oom["id"]]["status"] == "finished" and jobs[oom["id"]]["job_options"]["executor-memory"] == "3g"
    assert first["backend_name"] == oom["backend_name"], "the retry stays on the row's backend"
    assert no_data["status"] == "error" and no_data["error_category"] == "no_data"
    assert no_data["job_history"] == [] and no_data["attempt"] == 0, "no data: never retried"
    assert "no_data: not retried by the failure policy" in no_data["error_message"]
    assert plain["status"] == "finished" and plain["job_history"] == []
    assert misspelt["status"] == "start_failed" and pd.isna(misspelt["id"]), misspelt.to_dict()
    assert "row 3" in misspelt["error_message"] and "'executor-memroy'" in misspelt["error_message"]
    for finished in (oom, plain):  # the local backend's usage keys, each a column "value unit"
        for key, unit in (
            ("cpu", "cpu-seconds"),
            ("input_pixel", "mega-pixel"),
            ("sentinelhub", "sentinelhub_processing_unit"),
        ):
            assert str(finished[key]).endswith(unit), (key, finished[key])
    held = {first["id"], *table["id"].dropna()}
    assert set(jobs) == held and len(jobs) == 4, "one job per attempt, every one accounted for"
    assert summary["failures"] == {
        "error_categories": {"no_data": 1},
        "retried_jobs": {"out_of_memory": 1},
        "retried_rows": 1,
        "retried_then_finished": 1,
        "gave_up": 0,
        "not_retried": 1,
    }, summary["failures"]
    observe(
        rig,
        "12b failure policy",
        run_state=run["state"],
        seconds=round(ended - started, 1),
        failures=summary["failures"],
        oom_row_history=list(oom["job_history"]),
    )


def test_retrigger_with_params_a_b_a_runs_each_row_once(rig: FaultRig) -> None:
    """Through the REST API, as a user would: Params A (3 rows), then B (2 other rows), then A again. A's rows run
    once, B's rows run, the third run starts no job and its summary says all 3 of its rows were already done."""
    dag_id = "fault_retrigger"
    a = {"rows": 3, "run_seconds": 1}
    b = {"rows": 2, "run_seconds": 2}  # other job options: other rows, though their titles repeat A's
    states, summaries, jobs_after = [], [], []
    for params in (a, b, a):
        run_id, _ = run_batch(rig, dag_id, params)
        states.append(rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)["state"])
        summaries.append(summary_of(rig, dag_id, run_id))
        jobs_after.append(sum(len(jobs) for jobs in rig.jobs_of(f"{dag_id} ").values()))
    third_tis = rig.mapped(dag_id, run_id)

    assert states == ["success"] * 3
    check_batch(rig, dag_id, 5)
    assert jobs_after == [3, 5, 5], "the third run starts no job"
    assert [s["source"]["added"] for s in summaries] == [3, 2, 0]
    assert summaries[2]["source"]["already_done"] == 3, summaries[2]["source"]
    assert summaries[2]["source"]["already_done_by_status"] == {"finished": 3}
    assert not [ti for ti in third_tis if ti["state"] not in ("skipped", "removed")], ti_states(third_tis)
    observe(rig, "13 re-trigger A, B, A", jobs_after_each_run=jobs_after, third_run_source=summaries[2]["source"])


# -- 11. production backends (the local backend's profiles; last: they leave history in the accounts) --------------

#: Old jobs added to the account on each profile's turn: a production account's months of history.
PROFILE_HISTORY = 1000


def _first_running_job_on(rig: FaultRig, backend: str, title_prefix: str) -> dict[str, Any] | None:
    jobs = rig.jobs_of(title_prefix)[backend]
    return next((job for job in jobs if job["status"] == "running"), None)


@pytest.mark.parametrize("profile", ["geopyspark", "aggregator", "fastapi"])
def test_batch_on_backends_that_behave_like_production_servers(rig: FaultRig, profile: str) -> None:
    """Both backends imitate one production server (local_backend/README.md, profiles), over an account holding a
    history of old jobs, each with the fault that server is known for:

    - geopyspark (Copernicus Data Space, Terrascope): no progress, oldest-first page paging; foo's account runs two
      jobs at most and refuses a third with HTTP 400 ConcurrentJobLimit while its pool lets three tasks start;
    - aggregator (openEO Platform): ids ``<upstream>-<id>``; the upstream of a running job on foo cannot be reached
      for 8 s, so its jobs answer 404 JobNotFound and leave listings (``federation:missing``);
    - fastapi (EODC): every listing holds every job with its process graph, ``limit`` ignored.

    Nothing is lost and nothing is created twice: the table, the result folders and both backends' job lists agree
    row for row, and a 404 of an unreachable upstream never ends a row.
    """
    dag_id, rows = f"fault_profile_{profile}", 8
    foo = rig.backends["foo"]
    for backend in rig.backends.values():
        backend.configure(profile=profile)
        backend.seed_history(PROFILE_HISTORY, seed=len(profile))
    if profile == "geopyspark":
        foo.configure(max_concurrent_jobs=2)
    run_id, started = run_batch(rig, dag_id, {"rows": rows, "run_seconds": 4})
    outage: dict[str, Any] = {}
    if profile == "aggregator":
        job = rig.wait_until("a running job on foo", lambda: _first_running_job_on(rig, "foo", f"{dag_id} "))
        upstream = job["id"].split("-", 1)[0]
        foo.upstream_outage(upstream, seconds=8)
        outage = {"upstream": upstream, "job_seen_running": job["id"], "seconds": 8}
    run = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    ended = time.monotonic()
    tis = rig.mapped(dag_id, run_id)

    assert run["state"] == "success", ti_states(tis)
    table, created = check_batch(rig, dag_id, rows)
    if profile == "aggregator":
        assert all("-" in job_id for job_id in table["id"]), "job ids lost their upstream prefix"
        retired = table[table["job_history"].map(lambda h: any(e.get("status") == "deleted" for e in (h or [])))]
        assert retired.empty, f"rows took their job for deleted during the outage: {retired.index.tolist()}"
    if profile == "geopyspark":
        assert _max_concurrent(created["foo"]) <= 2, "foo ran more jobs than its account allows"
    stats = {name: backend.stats() for name, backend in rig.backends.items()}
    observe(
        rig,
        f"11 production profile {profile}",
        rows=rows,
        history_jobs_per_backend=PROFILE_HISTORY,
        run_seconds=round(ended - started, 1),
        rows_per_backend=table["backend_name"].value_counts().to_dict(),
        listings=sum(s.get("GET /jobs", 0) for s in stats.values()),
        job_reads=sum(s.get("GET /jobs/{job_id}", 0) for s in stats.values()),
        starts=sum(s.get("POST /jobs/{job_id}/results", 0) for s in stats.values()),
        outage=outage,
        retried_tasks=retried(tis),
    )


# -- 12. dry run and budget ---------------------------------------------------------------------------------------


def test_dry_run_then_a_budget_that_stops_new_starts_at_the_cap(rig: FaultRig) -> None:
    """From the trigger form's Params, through a real scheduler and triggerer:

    1. a dry run of 3 rows (row 2 names a process no backend knows): no job on either backend (job lists and
       request counters), every row still ``not_started`` with its verdict, the summary counts 1 that would fail;
    2. the same rows for real: rows 0 and 1 finish (the dry run left them runnable), row 2 fails as foretold;
    3. 4 more rows under ``max_costs`` 2.6 (spent 1.0, jobs cost 0.5): 3 start, the 4th stays ``not_started``
       saying why (a raised budget starts it: ``tests/system/operators/test_openeo_budget_dry_run.py``), the summary
       reports spent and remaining, nothing is lost or created twice.
    """
    dag_id = "fault_budget"
    for backend in rig.backends.values():  # what a backend refuses at create, its validation refuses too
        backend.configure(reject_process_graphs="no_such_process")
    base = {"run_seconds": 1, "bad_rows": [2]}

    run_id, _ = run_batch(rig, dag_id, {**base, "rows": 3, "dry_run": True})
    dry_state = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)["state"]
    dry = summary_of(rig, dag_id, run_id)["dry_run"]
    table = rig.table(dag_id)
    assert dry_state == "failed", "a row that would fail fails its task in the dry run"
    assert not any(rig.jobs_of(f"{dag_id} ").values()), "a dry run creates no job"
    assert all("POST /jobs" not in backend.stats() for backend in rig.backends.values())
    assert table["status"].tolist() == ["not_started"] * 3
    assert table["dry_run_verdict"].tolist() == ["valid", "valid", "would_fail"]
    assert "ProcessUnsupported" in table.loc[2, "validation_errors"]
    assert (dry["rows"], dry["would_fail"], dry["estimated_costs"]) == (3, 1, None), dry

    run_id, _ = run_batch(rig, dag_id, {**base, "rows": 3})
    rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
    table = rig.table(dag_id)
    assert table["status"].tolist() == ["finished", "finished", "start_failed"], table["error_message"].tolist()

    run_id, _ = run_batch(rig, dag_id, {**base, "rows": 7, "max_costs": 2.6})
    capped_state = rig.airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)["state"]
    capped = summary_of(rig, dag_id, run_id)["budget"]
    table = rig.table(dag_id)
    held = table[table["blocked_by"] == "max_costs"]
    assert capped_state == "success", ti_states(rig.mapped(dag_id, run_id))
    assert len(held) == 1 and held["status"].tolist() == ["not_started"], table[["status", "blocked_by"]]
    assert "budget reached: max_costs 2.6" in held["error_message"].iloc[0]
    assert (table["status"] == "finished").sum() == 5
    assert capped == {"max_costs": 2.6, "spent": 2.5, "running_estimate": 0.0, "remaining": 0.1, "rows_not_started": 1}
    check_batch(rig, dag_id, 7, finished_rows=table.index[table["status"] == "finished"], jobs=5)

    observe(rig, "14 dry run then budget", dry_run=dry, capped_budget=capped)


def test_a_dry_run_past_max_rows_per_run_checks_every_row_once_across_its_chain(rig: FaultRig) -> None:
    """From the trigger form's Params, 5 rows at 2 per run (row 3 names a process no backend knows), the backend asked
    to estimate 2 of them: the dry run chains three runs, checking 2, 2 and 1 rows; every row keeps ``not_started``
    with its verdict and the first run's key as its chain. Of the sample (rows 0 and 3), row 0's job is created,
    estimated (1 s of run: 0.5) and deleted unstarted, row 3 would fail; the last run's summary counts the whole
    chain and puts the 3 rows without an estimate at the sample's 0.5. No job is left on a backend."""
    dag_id, rows = "fault_dry_run_chain", 5
    conf = {"rows": rows, "run_seconds": 1, "bad_rows": [3], "dry_run": True, "dry_run_estimates": 2}
    run_id, _ = run_batch(rig, dag_id, conf)

    def runs() -> list[dict[str, Any]]:
        found = rig.airflow.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 20, "order_by": "logical_date"})
        return found["dag_runs"]

    def chain_ended() -> bool:
        found = runs()
        return len(found) >= 3 and all(run["state"] in ("success", "failed") for run in found)

    # A run ends after its next_run, so a fourth run would be listed by the time the third has ended.
    rig.wait_until("the dry run's chain of three runs", chain_ended, timeout=RUN_TIMEOUT, interval=2)
    chain = runs()
    summaries = [summary_of(rig, dag_id, run["dag_run_id"])["dry_run"] for run in chain]
    table = rig.table(dag_id)

    assert chain[0]["dag_run_id"] == run_id and len(chain) == 3, [r["dag_run_id"] for r in chain]
    assert {run["conf"].get(CHAIN_KEY) for run in chain[1:]} == {f"{dag_id}/{run_id}"}
    assert [s["rows_this_run"] for s in summaries] == [2, 2, 1], summaries
    assert [s["continues"] for s in summaries] == [True, True, False]
    assert table["status"].tolist() == ["not_started"] * rows
    assert table["dry_run_verdict"].tolist() == ["valid", "valid", "valid", "would_fail", "valid"]
    assert set(table["dry_run_chain"]) == {f"{dag_id}/{run_id}"}
    assert sorted(table["dispatch_run"].value_counts().tolist()) == [1, 2, 2], "each row checked by one run"
    last = summaries[-1]
    assert (last["rows"], last["would_fail"], last["rows_not_checked"]) == (rows, 1, 0), last
    assert table["estimate_source"].tolist() == ["backend", None, None, None, None]
    assert (last["estimated_costs"], last["estimated_by_backend"], last["extrapolated_rows"]) == (2.0, 1, 3), last
    assert not any(rig.jobs_of(f"{dag_id} ").values()), "a dry run runs no job"
    assert not any(rig.jobs_of("[dry run estimate] ").values()), "the job estimated is deleted"
    observe(rig, "14b dry run chain", runs=len(chain), dry_run=last)
