"""``make bench``: our DAG on a live Airflow next to MBJM's ``run_jobs``, on the same local backends, in one run.

    python -m benchmarks.run [--quick] [--only throughput,heterogeneous,production,handover,job_db,scale,trigger_memory]

Writes every figure to ``benchmarks/results.json`` (one key per figure, ratios included), the timeline plot to
``docs/bench-timeline.png`` and regenerates ``BENCHMARKS.md``. Every comparison is a ratio of two figures taken
in this run: the machines are shared and noisy, absolute seconds are not comparable between runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import logging
import math
import os
import platform
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from deploy.live_airflow import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results.json"
TIMELINE = REPO_ROOT / "docs" / "bench-timeline.png"
WORKDIR = REPO_ROOT / "build" / "bench"
TIMELINE_HETEROGENEOUS = REPO_ROOT / "docs" / "bench-timeline-heterogeneous.png"
TIMELINE_PRODUCTION = REPO_ROOT / "docs" / "bench-timeline-production.png"
WORKLOADS = ("throughput", "heterogeneous", "production", "handover", "job_db", "scale", "trigger_memory")
#: Workload 7: the local backend profile imitating the largest public backends (no progress, oldest-first pages),
#: and the old jobs an account holds there (geopyspark keeps them for months).
PRODUCTION_PROFILE = "geopyspark"
PRODUCTION_HISTORY = 5_000

#: Workload sizes by mode. ``throughput`` is issue 5's workload 1 (rows on 2 backends x 4 slots, ~30 s jobs).
SIZES = {
    "quick": {"throughput_rows": 24, "heterogeneous_rows": 24, "production_rows": 24, "scale_rows": 80,
              "job_db_sizes": [1_000, 10_000, 100_000], "job_db_repeat": 50, "trigger_jobs": 1_000},
    "full": {"throughput_rows": 200, "heterogeneous_rows": 96, "production_rows": 200, "scale_rows": 5_000,
             "job_db_sizes": [1_000, 10_000, 100_000], "job_db_repeat": 200, "trigger_jobs": 5_000},
}  # fmt: skip
POLL_INTERVAL = 5.0
MBJM_POLL_SLEEPS = (60.0, 5.0)


def log(message: str) -> None:
    print(f"[bench {dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def _brief(run: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in run.items() if k != "requests_per_job"})


def _measure(
    backends: dict[str, Any], outcome: dict[str, Any], slots: dict[str, int], job_seconds: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A contender's figures from what ``backends`` saw of its jobs, and its spans for the timeline."""
    from benchmarks import metrics

    spans = {
        name: metrics.spans_from_backend_jobs(name, backend.jobs(), outcome["job_ids"])
        for name, backend in backends.items()
    }
    run = metrics.run_figures(spans, slots, job_seconds=job_seconds, wall_seconds=outcome["wall_s"])
    run["statuses"] = outcome["statuses"]
    stats = {name: backend.stats() for name, backend in backends.items()}
    run["requests_per_job"] = metrics.requests_per_job(stats, max(1, run["jobs"]))
    return run, spans


def throughput(rig: Any, rows: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Workloads 1, 2 and 5: makespan, utilisation, idle gaps, requests per job; spans for the timeline."""
    from benchmarks.workload import STANDARD, mean_job_seconds

    slots = dict.fromkeys(rig.backend_names, STANDARD["parallel_jobs"])
    log(f"workload 1: {rows} rows; MBJM poll_sleep=60 alongside, on a second pair of backends ...")
    return _compare(rig, rows, "bench_openeo_throughput", "standard", slots, mean_job_seconds(rows))


def heterogeneous(rig: Any, rows: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Workload 6: the same rows on backends of unequal speed; also how long the fast one idled while rows waited."""
    from benchmarks import metrics
    from benchmarks.workload import HETEROGENEOUS, STANDARD, heterogeneous_job_seconds

    slots = dict.fromkeys(rig.backend_names, STANDARD["parallel_jobs"])
    log(f"workload 6: {rows} rows, {HETEROGENEOUS['backend']} {HETEROGENEOUS['factor']:g}x slower ...")
    figures, spans = _compare(
        rig, rows, "bench_openeo_heterogeneous", "heterogeneous", slots, heterogeneous_job_seconds(rows, slots)
    )
    fast = next(name for name in rig.backend_names if name != HETEROGENEOUS["backend"])
    for name, by_backend in spans.items():
        every = [span for group in by_backend.values() for span in group]
        figures[name]["fast_idle_share_while_rows_wait"] = metrics.idle_share_while_rows_wait(
            by_backend[fast], every, slots[fast]
        )
        figures[name]["jobs_per_backend"] = {backend: len(group) for backend, group in by_backend.items()}
    figures["fast_backend"] = fast
    return figures, spans


def production(rig: Any, rows: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Workload 7: workload 1 on backends that behave like openeo-geopyspark-driver (no progress in listings,
    oldest first in pages) over an account holding thousands of old jobs; also bytes per status listing."""
    from benchmarks.workload import STANDARD, mean_job_seconds

    slots = dict.fromkeys(rig.backend_names, STANDARD["parallel_jobs"])
    log(f"workload 7: {rows} rows on {PRODUCTION_PROFILE}-profile backends, {PRODUCTION_HISTORY} old jobs each ...")
    try:
        figures, spans = _compare(
            rig,
            rows,
            "bench_openeo_throughput",
            "standard",
            slots,
            mean_job_seconds(rows),
            backend_profile=PRODUCTION_PROFILE,
            history=PRODUCTION_HISTORY,
        )
    finally:
        for backend in rig.backends.values():
            backend.configure(profile="default")
    figures["backend_profile"] = PRODUCTION_PROFILE
    figures["history_jobs_per_backend"] = PRODUCTION_HISTORY
    figures["ratios"]["idle_gap_median_vs_mbjm_poll5"] = _ratio(
        figures["ours"]["idle_gap_median_s"], figures["mbjm_poll5"]["idle_gap_median_s"]
    )
    return figures, spans


def _compare(
    rig: Any,
    rows: int,
    dag_id: str,
    profile: str,
    slots: dict[str, int],
    job_seconds: float,
    *,
    backend_profile: str | None = None,
    history: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ours, then MBJM ``poll_sleep=5``, on the rig's backends; MBJM ``poll_sleep=60`` alongside ours.

    MBJM at ``poll_sleep=60`` spends most of its run asleep: it runs alongside the others, on a second pair of
    identically configured local backends (its own request counters), which keeps ``--quick`` short.
    ``backend_profile`` and ``history`` make all four backends imitate a production server holding that many old
    jobs of the account (each contender's status reads then meet the same listings).
    """
    from benchmarks.mbjm_runner import run_mbjm
    from benchmarks.workload import STANDARD
    from local_backend.launcher import start_local_backend

    timeout = 60 + 12 * math.ceil(rows / sum(slots.values())) * job_seconds
    outcomes: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def mbjm(name: str, poll_sleep: float, backends: dict[str, Any]) -> dict[str, Any]:
        return run_mbjm(
            backends,
            rows=rows,
            parallel_jobs=STANDARD["parallel_jobs"],
            poll_sleep=poll_sleep,
            work_dir=WORKDIR / f"{dag_id}-{name}",
            tag=f"{name}-{uuid.uuid4().hex[:6]}",
            profile=profile,
        )

    side = {name: start_local_backend(name=name) for name in rig.backend_names}
    for backend in [*rig.backends.values(), *side.values()]:
        if backend_profile:
            backend.configure(profile=backend_profile)
        if history:
            backend.seed_history(history, seed=1)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(mbjm, "mbjm_poll60", 60.0, side)
            rig.reset_counters()
            outcome = rig.run_ours(
                dag_id, rows=rows, tag=f"ours-{uuid.uuid4().hex[:6]}", timeout=timeout, profile=profile
            )
            outcomes["ours"] = _measure(rig.backends, outcome, slots, job_seconds)
            outcomes["ours"][0]["listing_bytes_per_request"] = _listing_bytes(rig.backends)
            outcomes["ours"][0]["peak_rss_mb"] = outcome["peak_rss_mb"]
            outcomes["ours"][0]["scheduler_loop"] = outcome["scheduler_loop"]
            outcomes["ours"][0]["gap_parts"] = _gap_parts(rig, dag_id)
            log(f"  ours: {_brief(outcomes['ours'][0])}")
            rig.reset_counters()
            outcomes["mbjm_poll5"] = _measure(rig.backends, mbjm("mbjm_poll5", 5.0, rig.backends), slots, job_seconds)
            log(f"  mbjm_poll5: {_brief(outcomes['mbjm_poll5'][0])}")
            outcomes["mbjm_poll60"] = _measure(side, slow.result(timeout=timeout), slots, job_seconds)
    finally:
        for backend in side.values():
            backend.stop()
    log(f"  mbjm_poll60: {_brief(outcomes['mbjm_poll60'][0])}")

    figures = {name: run for name, (run, _) in outcomes.items()}
    ours, slow_run, fast = figures["ours"], figures["mbjm_poll60"], figures["mbjm_poll5"]

    def status_reads(run: dict[str, Any]) -> float:
        return run["requests_per_job"]["status"] + run["requests_per_job"]["listing"]

    figures["ratios"] = {
        "makespan_vs_mbjm_poll60": _ratio(ours["makespan_s"], slow_run["makespan_s"]),
        "makespan_vs_mbjm_poll5": _ratio(ours["makespan_s"], fast["makespan_s"]),
        "job_span_vs_mbjm_poll60": _ratio(ours["job_span_s"], slow_run["job_span_s"]),
        "job_span_vs_mbjm_poll5": _ratio(ours["job_span_s"], fast["job_span_s"]),
        "makespan_vs_ideal": _ratio(ours["makespan_s"], ours["ideal_makespan_s"]),
        "status_requests_vs_mbjm_poll5": _ratio(status_reads(ours), status_reads(fast)),
        "total_requests_vs_mbjm_poll5": _ratio(ours["requests_per_job"]["total"], fast["requests_per_job"]["total"]),
    }
    return figures, {name: spans for name, (_, spans) in outcomes.items()}


def _listing_bytes(backends: dict[str, Any]) -> float | None:
    """Mean bytes of a ``GET /jobs`` answer, over every backend: what one status listing moves."""
    listings = sum(backend.stats().get("GET /jobs", 0) for backend in backends.values())
    moved = sum(backend.bytes_sent().get("GET /jobs", 0) for backend in backends.values())
    return round(moved / listings) if listings else None


def _compared_with_timeline(rig: Any, measure: Any, rows: int, timeline: Path, title: str) -> dict[str, Any]:
    """One compared workload's figures, its timeline of ours and both MBJMs drawn to ``timeline``."""
    from benchmarks.timeline import plot_timelines

    figures, spans = measure(rig, rows)
    plot_timelines(
        {
            f"ours (live Airflow, poll_interval {POLL_INTERVAL:g} s)": spans["ours"],
            **{f"MBJM run_jobs poll_sleep={int(p)}": spans[f"mbjm_poll{int(p)}"] for p in MBJM_POLL_SLEEPS},
        },
        timeline,
        title=title.format(rows=rows),
    )
    figures["timeline_png"] = str(timeline.relative_to(REPO_ROOT))
    return figures


def _gap_parts(rig: Any, dag_id: str) -> dict[str, Any]:
    from benchmarks.gap_parts import gap_parts

    return gap_parts(rig.airflow.logs, dag_id, {name: backend.jobs() for name, backend in rig.backends.items()})


def handover(rig: Any, variants: dict[str, tuple[int, int, bool]]) -> dict[str, Any]:
    """Workload 8: Airflow's own hand-over of a pool slot between two deferred task instances, no openEO in it
    (``benchmarks.handover_floor``), beside the provider's ``hand_over`` of the workloads above."""
    from benchmarks.handover_floor import POOL, dag_id_of, hand_overs, summary

    figures: dict[str, Any] = {}
    for variant, (instances, slots, waiting) in variants.items():
        log(f"workload 8 ({variant}): {instances} instances, a pool of {slots} slots ...")
        _set_pool(rig, POOL, slots)
        dag_id = dag_id_of(waiting)
        rig.airflow.wait_for_dag(dag_id)
        with rig.scheduler_measured() as scheduler_loop:
            started = time.time()
            run_id = rig.airflow.trigger_dag(dag_id, {"instances": instances})
            run = rig.airflow.wait_for_run(dag_id, run_id, timeout=60 + 3 * instances * 8 / slots + 300, interval=1.0)
        figures[variant] = {
            "instances": instances,
            "pool_slots": slots,
            "waiting_downstream": waiting,
            "state": run["state"],
            "wall_s": round(time.time() - started, 1),
            "hand_over": summary(hand_overs(rig.airflow.logs, run_id, waiting=waiting, slots=slots)),
            "scheduler_loop": scheduler_loop,
        }
        log(f"  {variant}: {figures[variant]['hand_over']}")
    return figures


def _set_pool(rig: Any, name: str, slots: int) -> None:
    """Create pool ``name`` with ``slots``, deferred tasks counted (as the provider's pools), or resize it."""
    body = {"name": name, "slots": slots, "include_deferred": True}
    pools = rig.airflow.api("GET", "/pools", params={"limit": 100})["pools"]
    if any(pool["name"] == name for pool in pools):
        rig.airflow.api("PATCH", f"/pools/{name}", json_body=body)
    else:
        rig.airflow.api("POST", "/pools", json_body=body)


def scale(rig: Any, rows: int) -> dict[str, Any]:
    """Workload 4: near-instant jobs with the batch's defaults (chained runs beyond its rows per run)."""
    from airflow_provider_openeo.batch.planning import DEFAULT_MAX_ROWS_PER_RUN

    log(f"workload 4: {rows} near-instant rows ...")
    outcome = rig.run_ours("bench_openeo_scale", rows=rows, tag="scale", timeout=4 * 3600, profile="instant")
    return {
        "rows": rows,
        "rows_per_run": DEFAULT_MAX_ROWS_PER_RUN,
        "state": outcome["state"],
        "dag_runs": outcome["dag_runs"],
        "wall_s": round(outcome["wall_s"], 1),
        "statuses": outcome["statuses"],
        "orchestration_s_per_row": round(outcome["wall_s"] / rows, 3),
        "peak_rss_mb": outcome["peak_rss_mb"],
        "scheduler_loop": outcome["scheduler_loop"],
    }


def trigger_memory(url: str, jobs: int) -> dict[str, Any]:
    """In a fresh process (the resident set must not include this one's Airflow and MBJM imports)."""
    import subprocess

    log(f"triggerer memory: {jobs} deferred triggers ...")
    env = {**os.environ, "AIRFLOW_HOME": str(WORKDIR / "trigger-memory-home")}
    answer = subprocess.run(
        [sys.executable, "-m", "benchmarks.trigger_memory", "--url", url, "--jobs", str(jobs)],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if answer.returncode != 0:
        raise RuntimeError(f"benchmarks.trigger_memory failed:\n{answer.stderr[-3000:]}")
    return json.loads(answer.stdout.strip().splitlines()[-1])


def job_db(sizes: list[int], repeat: int) -> dict[str, Any]:
    from benchmarks import bench_job_db

    log(f"workload 3: job table at {sizes} rows ...")
    report = bench_job_db.measure(sizes, repeat)
    largest = report["results"][str(max(sizes))]
    csv = largest["mbjm_csv"]["persist_one_row"]["median_ms"]
    report["ratios"] = {
        f"mbjm_csv_persist_vs_{engine}_update_at_{max(sizes)}": _ratio(csv, largest[engine]["update_row"]["median_ms"])
        for engine in ("sqlite", "postgres")
        if engine in largest
    }
    return report


def airflow_setting_env(settings: list[str]) -> dict[str, str]:
    """``scheduler.scheduler_idle_sleep_time=0.25`` -> ``{"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25"}``."""
    env = {}
    for setting in settings:
        name, equals, value = setting.partition("=")
        section, dot, key = name.strip().partition(".")
        if not (equals and dot and section and key):
            raise ValueError(f"--airflow-setting {setting!r}: expected SECTION.KEY=VALUE")
        env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value.strip()
    return env


#: Earlier runs of a compared workload kept in results.json (and the report) next to the latest one.
EARLIER_RUNS = 6


def earlier_runs(section: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The previous figures of a compared workload, newest first, as kept for comparison: each run's date, commit,
    mode, ratios and the figures the targets name (idle gaps, status reads per job)."""
    if not isinstance(section, dict) or "ratios" not in section:
        return []

    def status_reads(run: dict[str, Any]) -> float | None:
        per_job = run.get("requests_per_job") or {}
        return round(per_job.get("status", 0) + per_job.get("listing", 0), 2) if per_job else None

    measured = section.get("measured") or {}
    latest = {
        "date": measured.get("date"),
        "commit": measured.get("commit"),
        "mode": measured.get("mode"),
        "ratios": section["ratios"],
        "idle_gap_median_s": {n: section[n].get("idle_gap_median_s") for n in ("ours", "mbjm_poll5") if n in section},
        "status_reads_per_job": {n: status_reads(section[n]) for n in ("ours", "mbjm_poll5") if n in section},
    }
    return [latest, *section.get("earlier", [])][:EARLIER_RUNS]


def _git_commit() -> str | None:
    """The commit measured, with ``+changes`` when the working tree differs from it (this bench's own outputs,
    rewritten by every run, aside)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        outputs = [
            f":!{path.relative_to(REPO_ROOT)}"
            for path in (RESULTS, TIMELINE, TIMELINE_HETEROGENEOUS, REPO_ROOT / "BENCHMARKS.md")
        ]
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *outputs).strip()
        return commit + ("+changes" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small workloads: under 10 minutes")
    parser.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {WORKLOADS}")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--rows",
        action="append",
        default=[],
        metavar="WORKLOAD=N",
        help="override a workload's rows for this run (recorded with its figures), e.g. scale=1000",
    )
    parser.add_argument(
        "--airflow-setting",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="an Airflow setting for the live Airflow (repeatable), e.g. scheduler.scheduler_idle_sleep_time=0.25",
    )
    args = parser.parse_args(argv)
    try:
        airflow_env = airflow_setting_env(args.airflow_setting)
    except ValueError as exc:
        parser.error(str(exc))
    only = set(args.only.split(","))
    if only - set(WORKLOADS):
        parser.error(f"--only: unknown workload(s) {sorted(only - set(WORKLOADS))}; known: {WORKLOADS}")
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C: the rig stops every process it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.getLogger("openeo").setLevel(logging.WARNING)  # MBJM logs every request at INFO
    mode = "quick" if args.quick else "full"
    sizes = dict(SIZES[mode])
    for override in args.rows:
        workload, _, count = override.partition("=")
        if f"{workload}_rows" not in sizes or not count.isdigit():
            parser.error(
                f"--rows {override!r}: expected WORKLOAD=N with WORKLOAD one of "
                "throughput, heterogeneous, production, scale"
            )
        sizes[f"{workload}_rows"] = int(count)
    os.environ.setdefault("AIRFLOW_HOME", str(WORKDIR / "client-home"))

    from benchmarks.live import BenchRig
    from benchmarks.workload import STANDARD

    started = time.monotonic()
    bench_args = " ".join(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {
        "command": "make bench" + (f' BENCH_ARGS="{bench_args}"' if bench_args else ""),
        "mode": mode,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "sizes": sizes,
        "poll_interval_s": POLL_INTERVAL,
        "airflow_settings": dict(sorted(airflow_env.items())),
    }
    if "job_db" in only:
        results["job_db"] = job_db(sizes["job_db_sizes"], sizes["job_db_repeat"])
    if only & {"throughput", "heterogeneous", "production", "handover", "scale", "trigger_memory"}:
        rig = BenchRig(
            WORKDIR / uuid.uuid4().hex[:8],
            parallel_jobs=STANDARD["parallel_jobs"],
            poll_interval=POLL_INTERVAL,
            airflow_env=airflow_env,
        )
        log("starting two local openEO backends and a live Airflow ...")
        with rig:
            comparisons = (
                (
                    "throughput",
                    throughput,
                    TIMELINE,
                    "Workload 1: {rows} rows, 2 backends x 4 slots, 2 s queue + 25-31 s run",
                ),
                (
                    "heterogeneous",
                    heterogeneous,
                    TIMELINE_HETEROGENEOUS,
                    "Workload 6: {rows} rows, foo 3x slower (8 s queue) than bar",
                ),
                (
                    "production",
                    production,
                    TIMELINE_PRODUCTION,
                    "Workload 7: {rows} rows on geopyspark-profile backends (no progress, 5,000 old jobs)",
                ),
            )
            for name, measure, timeline, title in comparisons:
                if name in only:
                    results[name] = _compared_with_timeline(rig, measure, sizes[f"{name}_rows"], timeline, title)
            if "handover" in only:
                from benchmarks.handover_floor import QUICK_VARIANTS, VARIANTS

                results["handover"] = handover(rig, QUICK_VARIANTS if args.quick else VARIANTS)
            if "trigger_memory" in only:
                results["trigger_memory"] = trigger_memory(rig.backends["foo"].url, sizes["trigger_jobs"])
            if "scale" in only:
                results["scale"] = scale(rig, sizes["scale_rows"])
    results["bench_wall_s"] = round(time.monotonic() - started, 1)
    provenance = {k: results[k] for k in ("command", "mode", "date", "commit", "airflow_settings")}
    for name in only:
        results[name]["measured"] = provenance
    previous = json.loads(args.results.read_text()) if args.results.exists() else {}
    for name in only:
        earlier = earlier_runs(previous.get(name))
        if earlier:
            results[name]["earlier"] = earlier
    # A partial run (--only) replaces its workloads and keeps the others, each labelled with the run it came from.
    merged = {**previous, **results} if only != set(WORKLOADS) else results
    args.results.write_text(json.dumps(merged, indent=2, default=str) + "\n", encoding="utf-8")
    log(f"figures written to {args.results} ({results['bench_wall_s']:.0f} s)")
    from benchmarks.report import write_report

    log(f"report written to {write_report(merged)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
