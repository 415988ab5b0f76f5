"""``BENCHMARKS.md`` from ``benchmarks/results.json``: tables, ratios, the targets each ratio meets or misses.

The analysis that needs a human (where the idle gap goes, what bounds a missed target) lives in
``benchmarks/analysis.md`` and is appended as written; everything with a number in it is generated here.

    python -m benchmarks.report            # rewrite BENCHMARKS.md from the last results.json
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploy.live_airflow import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results.json"
ANALYSIS = REPO_ROOT / "benchmarks" / "analysis.md"
REPORT = REPO_ROOT / "BENCHMARKS.md"

#: (figure, target text, where the figure sits in results.json) per target of issue 5.
TARGETS: tuple[tuple[str, str, str], ...] = (
    ("slot utilisation (ours)", ">= 0.85", "throughput.ours.utilisation"),
    ("median idle gap (ours)", "<= 5 s", "throughput.ours.idle_gap_median_s"),
    ("makespan / MBJM poll_sleep=60", "<= 0.5", "throughput.ratios.makespan_vs_mbjm_poll60"),
    ("makespan / MBJM poll_sleep=5", "<= 1.0", "throughput.ratios.makespan_vs_mbjm_poll5"),
    ("status reads per job / MBJM poll_sleep=5", "<= 0.5", "throughput.ratios.status_requests_vs_mbjm_poll5"),
    ("unequal backends: makespan / MBJM poll_sleep=60", "<= 0.5", "heterogeneous.ratios.makespan_vs_mbjm_poll60"),
    ("unequal backends: makespan / MBJM poll_sleep=5", "<= 1.0", "heterogeneous.ratios.makespan_vs_mbjm_poll5"),
    (
        "unequal backends: fast backend idle while rows wait (share)",
        "<= 0.05",
        "heterogeneous.ours.fast_idle_share_while_rows_wait",
    ),
    ("no-progress backends: makespan / MBJM poll_sleep=60", "<= 0.5", "production.ratios.makespan_vs_mbjm_poll60"),
    ("no-progress backends: makespan / MBJM poll_sleep=5", "<= 0.97", "production.ratios.makespan_vs_mbjm_poll5"),
    (
        "no-progress backends: median idle gap / MBJM poll_sleep=5",
        "<= 1.0",
        "production.ratios.idle_gap_median_vs_mbjm_poll5",
    ),
    (
        "no-progress backends: status reads per job / MBJM poll_sleep=5",
        "<= 0.5",
        "production.ratios.status_requests_vs_mbjm_poll5",
    ),
    (
        "MBJM CSV persist / our SQLite update, 100,000 rows",
        ">= 100",
        "job_db.ratios.mbjm_csv_persist_vs_sqlite_update_at_100000",
    ),
    (
        "MBJM CSV persist / our PostgreSQL update, 100,000 rows",
        ">= 100",
        "job_db.ratios.mbjm_csv_persist_vs_postgres_update_at_100000",
    ),
    ("triggerer MB per 1,000 deferred jobs", "< 100", "trigger_memory.mb_per_1000_deferred"),
)


def _run_date(results: Mapping[str, Any], dotted: str) -> str:
    """The date of the run a figure comes from: its workload's section says."""
    return str(_get(results, dotted.split(".")[0] + ".measured.date") or "")


def _get(results: Mapping[str, Any], dotted: str) -> Any:
    value: Any = results
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def measured_in(section: Mapping[str, Any] | None) -> str:
    """Which run a workload's figures come from: a partial run (``--only``) keeps the other workloads' figures."""
    run = (section or {}).get("measured")
    if not run:
        return ""
    commit = f", commit {run['commit']}" if run.get("commit") else ""
    settings = run.get("airflow_settings") or {}
    tuned = f", Airflow settings {', '.join(f'{k}={v}' for k, v in settings.items())}" if settings else ""
    return f"`{run['command']}` ({run['mode']} mode), {run['date']}{commit}{tuned}"


def _measured_line(section: Mapping[str, Any]) -> list[str]:
    where = measured_in(section)
    return [f"Measured by {where}.", ""] if where else []


def _meets(value: Any, target: str) -> str:
    if value is None:
        return "not measured"
    op, _, number = target.partition(" ")
    limit = float(number.split()[0])
    ok = {">=": value >= limit, "<=": value <= limit, "<": value < limit}[op]
    return "met" if ok else "**missed**"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _throughput(section: Mapping[str, Any]) -> list[str]:
    names = [n for n in ("ours", "mbjm_poll60", "mbjm_poll5") if n in section]
    labels = {"ours": "ours (live Airflow)", "mbjm_poll60": "MBJM poll_sleep=60", "mbjm_poll5": "MBJM poll_sleep=5"}
    keys = [
        "jobs",
        "makespan_s",
        "job_span_s",
        "ideal_makespan_s",
        "utilisation",
        "idle_gap_median_s",
        "idle_gap_p95_s",
    ]
    out = [
        "## 1. Throughput (workload 1)",
        "",
        *_measured_line(section),
        "Two local backends, `parallel_jobs=4` each; each row's job queues 2 s and runs 25-31 s (seeded) with one "
        "small asset. `makespan_s`: triggering the batch to every row done and stored; `job_span_s`: first job "
        "created to last job ended, as the backends saw it; utilisation: the backends' queued+running seconds over "
        "slots x job span; idle gap: a slot's end-of-job to the next create on that slot; ideal: "
        "ceil(rows / slots) x the mean job time.",
        "",
        _table(["contender", *keys], [[labels[n], *(section[n].get(k) for k in keys)] for n in names]),
        "",
        _table(["ratio", "value"], [[k, v] for k, v in section.get("ratios", {}).items()]),
        "",
        "## 2. Cost to the backend (workload 1)",
        "",
        "Requests the backends received per job, by kind, from their own counters.",
        "",
    ]
    kinds = list(next(iter(section[n]["requests_per_job"] for n in names)))
    out.append(_table(["contender", *kinds], [[labels[n], *section[n]["requests_per_job"].values()] for n in names]))
    parts = (section.get("ours") or {}).get("gap_parts", {}).get("median_s")
    if parts:
        out += [
            "",
            "Where our median idle gap goes (median seconds per row, from the live Airflow's task and trigger logs; "
            "see below):",
            "",
            _table(list(parts), [list(parts.values())]),
        ]
    gaps = (section.get("ours") or {}).get("gap_parts", {}).get("gaps")
    if gaps:
        keys = list(gaps["median_s"])
        labels = {"median_s": "median", "p95_s": "p95", "slowest_5pct_mean_s": "mean of the slowest 5%"}
        out += [
            "",
            f"Our {gaps['count']} idle gaps, each split into the ending job's detect, the hand-over and the next "
            "job's start (seconds):",
            "",
            _table(["", *keys], [[label, *(gaps[key].get(k) for k in keys)] for key, label in labels.items()]),
        ]
    return out


def _heterogeneous(section: Mapping[str, Any]) -> list[str]:
    names = [n for n in ("ours", "mbjm_poll60", "mbjm_poll5") if n in section]
    labels = {"ours": "ours (live Airflow)", "mbjm_poll60": "MBJM poll_sleep=60", "mbjm_poll5": "MBJM poll_sleep=5"}
    keys = ["jobs", "makespan_s", "job_span_s", "ideal_makespan_s", "utilisation", "idle_gap_median_s"]
    fast = section.get("fast_backend", "bar")
    header = ["contender", *keys, "jobs per backend", f"{fast} idle while rows wait"]
    rows = [
        [
            labels[n],
            *(section[n].get(k) for k in keys),
            ", ".join(f"{b} {c}" for b, c in (section[n].get("jobs_per_backend") or {}).items()),
            section[n].get("fast_idle_share_while_rows_wait"),
        ]
        for n in names
    ]
    out = [
        "## 1b. Backends of unequal speed (workload 6)",
        "",
        *_measured_line(section),
        "Workload 1's rows and backends, but on `foo` every job queues 8 s and runs 3x longer (`start_job` scales the "
        "row's times by the backend it is called for, so both contenders send the same requests). The ideal "
        "makespan keeps every slot of both backends busy. `idle while rows wait`: the share of the fast backend's "
        "slot-seconds with no job of ours, from the first job created to the last one created.",
        "",
        _table(header, rows),
        "",
        _table(["ratio", "value"], [[k, v] for k, v in section.get("ratios", {}).items()]),
    ]
    timeline = section.get("timeline_png")
    if timeline:
        out += ["", f"![timeline of workload 6, one lane per backend slot]({timeline})"]
    return out


def _production(section: Mapping[str, Any]) -> list[str]:
    names = [n for n in ("ours", "mbjm_poll60", "mbjm_poll5") if n in section]
    labels = {"ours": "ours (live Airflow)", "mbjm_poll60": "MBJM poll_sleep=60", "mbjm_poll5": "MBJM poll_sleep=5"}
    keys = ["jobs", "makespan_s", "job_span_s", "utilisation", "idle_gap_median_s", "idle_gap_p95_s"]
    rows = [
        [
            labels[n],
            *(section[n].get(k) for k in keys),
            section[n]["requests_per_job"].get("status", 0) + section[n]["requests_per_job"].get("listing", 0),
            section[n].get("listing_bytes_per_request", "-"),
        ]
        for n in names
    ]
    out = [
        "## 1c. Backends that report no progress (workload 7)",
        "",
        *_measured_line(section),
        f"Workload 1 on local backends in the `{section.get('backend_profile')}` profile (local_backend/README.md): "
        "listings carry no `progress` and list oldest first, page by page, as openeo-geopyspark-driver (Copernicus "
        f"Data Space, Terrascope) does, over an account holding {section.get('history_jobs_per_backend'):,} old "
        "jobs on each backend. Without progress our listings come forward by the run times of the jobs already seen "
        "to finish; status reads per job count `GET /jobs` and `GET /jobs/{id}` alike; bytes per listing: the mean "
        "size of a `GET /jobs` answer.",
        "",
        _table(["contender", *keys, "status reads per job", "bytes per listing"], rows),
        "",
        _table(["ratio", "value"], [[k, v] for k, v in section.get("ratios", {}).items()]),
    ]
    out += _earlier(section)
    timeline = section.get("timeline_png")
    if timeline:
        out += ["", f"![timeline of workload 7, one lane per backend slot]({timeline})"]
    return out


def _handover(section: Mapping[str, Any], results: Mapping[str, Any]) -> list[str]:
    """Airflow's own hand-over (workload 8) beside the provider's in the workloads measured with it."""
    rows = [
        [
            name,
            variant.get("instances"),
            variant.get("pool_slots"),
            "yes" if variant.get("waiting_downstream") else "no",
            *(variant.get("hand_over", {}).get(k) for k in ("median_s", "mean_s", "p95_s")),
            variant.get("scheduler_loop", {}).get("median_ms"),
            variant.get("scheduler_loop", {}).get("cpu_ms_per_loop"),
        ]
        for name, variant in section.items()
        if isinstance(variant, Mapping) and "hand_over" in variant
    ]
    ours = [
        [
            f"workload {number} (ours)",
            _get(results, f"{key}.ours.gap_parts.gaps.median_s.hand_over"),
            _get(results, f"{key}.ours.gap_parts.gaps.p95_s.hand_over"),
            _get(results, f"{key}.ours.scheduler_loop.median_ms"),
            _get(results, f"{key}.ours.scheduler_loop.cpu_ms_per_loop"),
            _run_date(results, key),
        ]
        for number, key in (("1", "throughput"), ("6", "heterogeneous"), ("7", "production"))
        if key in results
    ]
    return [
        "## 1d. Airflow's own hand-over (workload 8)",
        "",
        *_measured_line(section),
        "The `hand_over` of workloads 1, 6 and 7 (a row's trigger fired -> the next row's `job` task process began) "
        "is Airflow's part of each idle gap. Here it is measured with no openEO in it: instances of a mapped task "
        "share a pool, each defers to a trigger that sleeps 4-8 s and ends its task in the triggerer, as the "
        "provider's does; the next instance takes the freed slot (`benchmarks/handover_floor.py`). With a "
        "downstream task waiting per instance, the scheduler re-reads and re-checks the run's task instances every "
        "loop, as it does for the provider's `job` -> `results` rows.",
        "",
        _table(
            [
                "variant",
                "instances",
                "pool slots",
                "downstream task waiting",
                "hand-over median s",
                "mean s",
                "p95 s",
                "scheduler loop median ms",
                "CPU ms per loop",
            ],
            rows,
        ),
        "",
        _table(["workload", "hand-over median s", "p95 s", "scheduler loop median ms", "CPU ms per loop", "run"], ours),
    ]


def _earlier(section: Mapping[str, Any]) -> list[str]:
    """Earlier runs of the workload, newest first (``benchmarks.run.earlier_runs``): the same-run ratios only."""
    runs = section.get("earlier") or []
    if not runs:
        return []
    rows = [
        [
            run.get("date"),
            run.get("commit") or "-",
            run.get("mode"),
            _get(run, "ratios.makespan_vs_mbjm_poll5"),
            _get(run, "ratios.makespan_vs_mbjm_poll60"),
            f"{_get(run, 'idle_gap_median_s.ours')} / {_get(run, 'idle_gap_median_s.mbjm_poll5')}",
            f"{_get(run, 'status_reads_per_job.ours')} / {_get(run, 'status_reads_per_job.mbjm_poll5')}",
            _get(run, "ratios.status_requests_vs_mbjm_poll5"),
        ]
        for run in runs
    ]
    header = [
        "earlier run",
        "commit",
        "mode",
        "makespan / MBJM poll 5",
        "makespan / MBJM poll 60",
        "idle gap median s: ours / MBJM poll 5",
        "status reads per job: ours / MBJM poll 5",
        "status reads / MBJM poll 5",
    ]
    return ["", "Earlier runs of this workload, newest first (each a ratio of figures taken in that run):", "",
            _table(header, rows)]  # fmt: skip


def _job_db(section: Mapping[str, Any]) -> list[str]:
    rows = []
    for size, figures in section["results"].items():
        row: list[Any] = [f"{int(size):,}"]
        for engine in ("sqlite", "postgres"):
            engine_figures = figures.get(engine) or {}
            row += [_get(engine_figures, f"{op}.median_ms") for op in ("update_row", "claim", "count_by_status")]
        row += [
            _get(figures, "mbjm_csv.persist_one_row.median_ms"),
            _get(figures, "mbjm_parquet.persist_one_row.median_ms"),
        ]
        rows.append(row)
    header = ["rows"] + [f"{e} {op}" for e in ("SQLite", "PostgreSQL") for op in ("update", "claim", "count")]
    header += ["MBJM CSV persist", "MBJM Parquet persist"]
    return [
        "## 3. Job table at scale (workload 3)",
        "",
        *_measured_line(section),
        "Median milliseconds per operation (PostgreSQL: " + str(section.get("postgres")) + ").",
        "",
        _table(header, rows),
        "",
        _table(["ratio", "value"], [[k, v] for k, v in section.get("ratios", {}).items()]),
    ]


def _rows_per_run(section: Mapping[str, Any]) -> str:
    """Runs measured before the dispatch split rows per backend; since then a run takes its rows whole."""
    if "rows_per_run" in section:
        return f"{section['rows_per_run']} rows per run): "
    return f"{section.get('rows_per_backend_per_run', 'max_map_length')} rows per backend per run): "


def _scale(section: Mapping[str, Any], memory: Mapping[str, Any] | None) -> list[str]:
    out = ["## 4. Scale (workload 4)", ""]
    loop = section.get("scheduler_loop") or {}
    if section:
        out += [
            *_measured_line(section),
            f"{section['rows']:,} near-instant jobs (0 s queue, 0.2-0.4 s run) on a live Airflow with default "
            f"settings (`max_map_length` 1024, pools of 4 per backend, the batch's default "
            + _rows_per_run(section)
            + f"{section.get('dag_runs', 1)} DAG run(s), "
            f"{section['state']}, statuses {section['statuses']}.",
            "",
            _table(
                [
                    "wall s",
                    "s per row",
                    "scheduler loop ms: median",
                    "p95",
                    "scheduler CPU ms per loop",
                    "peak RSS MB: scheduler",
                    "workers",
                    "triggerer",
                ],
                [
                    [
                        section["wall_s"],
                        section["orchestration_s_per_row"],
                        *(loop.get(k, "-") for k in ("median_ms", "p95_ms", "cpu_ms_per_loop")),
                        *(_mb(section["peak_rss_mb"].get(k)) for k in ("scheduler", "workers", "triggerer")),
                    ]
                ],
            ),
            "",
            "The scheduler's loop time is Airflow's own `scheduler.scheduler_loop_duration` timer, received over "
            "StatsD "
            "while the batch ran (`benchmarks/scheduler_loop.py`): the latency every DAG of the deployment sees. "
            "It is wall time, so it also grows when the scheduler waits for a CPU the batch's tasks hold; the "
            "scheduler process's own CPU time per loop counts only its own work.",
            "",
        ]
    if memory:
        where = measured_in(memory)
        out += [
            (f"Measured by {where}. " if where else "")
            + f"Triggerer memory: {memory['deferred_jobs']:,} real `OpenEOJobTrigger`s waiting on as many real "
            f"jobs in one event loop (`python -m benchmarks.trigger_memory`): {memory['rss_before_mb']} MB before, "
            f"{memory['rss_waiting_mb']} MB while waiting, "
            f"**{memory['mb_per_1000_deferred']} MB per 1,000 deferred jobs**.",
        ]
    return out


def render(results: Mapping[str, Any]) -> str:
    machine = results.get("machine", {})
    out = [
        "# Benchmarks",
        "",
        "<!-- generated by `make bench` (benchmarks/report.py); edit benchmarks/analysis.md instead -->",
        "",
        f"Last command: `{results.get('command')}` ({results.get('mode')} mode), {results.get('date')}, "
        f"{machine.get('cpus')} CPUs, Python {machine.get('python')}, {machine.get('platform')}; "
        f"it took {results.get('bench_wall_s')} s. Each section names the run its figures come from. "
        "Figures: [benchmarks/results.json](benchmarks/results.json).",
        "",
        "These machines are shared and noisy: compare ratios taken in one run, not seconds across runs.",
        "",
        "## Targets",
        "",
        _table(
            ["figure", "target", "measured", "verdict", "run"],
            [
                [name, target, _get(results, path), _meets(_get(results, path), target), _run_date(results, path)]
                for name, target, path in TARGETS
            ],
        ),
        "",
    ]
    if "throughput" in results:
        out += [*_throughput(results["throughput"]), ""]
    if "heterogeneous" in results:
        out += [*_heterogeneous(results["heterogeneous"]), ""]
    if "production" in results:
        out += [*_production(results["production"]), ""]
    if "handover" in results:
        out += [*_handover(results["handover"], results), ""]
    if "job_db" in results:
        out += [*_job_db(results["job_db"]), ""]
    if "scale" in results or "trigger_memory" in results:
        out += [*_scale(results.get("scale") or {}, results.get("trigger_memory")), ""]
    timeline = _get(results, "throughput.timeline_png")
    if timeline:
        out += [
            "## 5. Timeline (workload 1)",
            "",
            f"![timeline of workload 1, one lane per backend slot]({timeline})",
            "",
        ]
    if ANALYSIS.exists():
        out += [ANALYSIS.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(out)


def write_report(results: Mapping[str, Any], path: Path = REPORT) -> Path:
    path.write_text(render(results), encoding="utf-8")
    return path


def main() -> int:
    print(write_report(json.loads(RESULTS.read_text(encoding="utf-8"))))
    return 0


def _mb(value: Any) -> Any:
    """Megabytes to one decimal (a sum of rounded figures can carry float noise)."""
    return round(value, 1) if isinstance(value, float) else value


if __name__ == "__main__":
    raise SystemExit(main())
