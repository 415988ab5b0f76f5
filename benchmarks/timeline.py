"""The timeline picture of workload 1: one lane per backend slot, one bar per job, one panel per contender.

Gaps between bars on a lane are the idle time the benchmark's ``idle_gap`` figures count: a slot the backend
would have given to the batch stood empty while the client noticed the end of one job and created the next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks.metrics import JobSpan, assign_lanes


def lanes_of_run(spans_by_backend: Mapping[str, Sequence[JobSpan]]) -> list[tuple[str, list[JobSpan]]]:
    """``(label, jobs)`` per slot, backends in name order: ``foo #1``, ``foo #2`` ..."""
    lanes = []
    for backend in sorted(spans_by_backend):
        for n, lane in enumerate(assign_lanes(spans_by_backend[backend]), start=1):
            lanes.append((f"{backend} #{n}", lane))
    return lanes


def plot_timelines(runs: Mapping[str, Mapping[str, Sequence[JobSpan]]], path: Path, *, title: str) -> Path:
    """One panel per run (``{"ours": spans_by_backend, ...}``), a shared time axis from each run's first create."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines
    import matplotlib.pyplot as plt

    panels = [(name, lanes_of_run(spans)) for name, spans in runs.items()]
    longest = max(
        (
            max(s.ended or s.created for _, lane in lanes for s in lane)
            - min(s.created for _, lane in lanes for s in lane)
        )
        for _, lanes in panels
        if lanes
    )
    heights = [max(1, len(lanes)) for _, lanes in panels]
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(11, 1.2 + 0.32 * sum(heights)), sharex=True, gridspec_kw={"height_ratios": heights}
    )
    axes = [axes] if len(panels) == 1 else list(axes)
    for axis, (name, lanes) in zip(axes, panels, strict=True):
        origin = min((s.created for _, lane in lanes for s in lane), default=0.0)
        for row, (_label, lane) in enumerate(lanes):
            for span in lane:
                if span.started is not None:  # created .. queued: the client's own part, drawn thin
                    axis.broken_barh(
                        [(span.created - origin, span.started - span.created)], (row - 0.1, 0.2), color="0.7"
                    )
                if span.started is not None and span.ended is not None:
                    axis.broken_barh(
                        [(span.started - origin, span.ended - span.started)], (row - 0.35, 0.7), color="C0"
                    )
        axis.set_yticks(range(len(lanes)), [label for label, _ in lanes], fontsize=7)
        axis.set_ylim(-0.6, len(lanes) - 0.4)
        axis.invert_yaxis()
        axis.set_title(name, fontsize=9, loc="left")
        axis.grid(axis="x", linewidth=0.3)
    axes[-1].set_xlim(0, longest * 1.02)
    axes[-1].set_xlabel("seconds since the run's first job was created")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
