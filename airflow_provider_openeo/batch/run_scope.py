"""Which rows one batch run works on: the rows of its own job source, and resumable rows earlier runs left.

``init`` marks the rows the run's source holds (``job_source``). The plan takes those that are not done yet,
re-opens the done ones the run asks to re-run (``reruns``), and adds the rows earlier runs left resumable (a
run interrupted, or chained past ``max_rows_per_run``): those have a job or a place in the table already, and
leaving them would strand them. Rows that are done stay done, and the run says how many there were.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from airflow_provider_openeo.batch.planning import already_done, rows_to_run, split_by_source
from airflow_provider_openeo.batch.reruns import RERUN_PARAM, reopen_rows

if TYPE_CHECKING:
    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

log = logging.getLogger(__name__)


@dataclass
class RunScope:
    """The rows a run's plan picks from (``rows``, in table order) and what the run's report says of them."""

    rows: pd.DataFrame
    scope: str
    own: int
    added: int | None = None
    done: dict[str, int] = field(default_factory=dict)
    reopened: int = 0
    reruns: tuple[str, ...] = ()
    earlier: frozenset[Any] = frozenset()

    @classmethod
    def of(cls, db: OpenEOJobDbHook, loaded: Mapping[str, Any] | None, run_key: str, reruns: Sequence[str]) -> RunScope:
        """Read the table once (twice after re-opening rows) and work out the run's rows.

        ``loaded``: what ``init`` returned; its ``scope`` is ``source`` when the run's source was loaded by key,
        else (no source, or ``on_exists="skip"`` on an existing table) every row of the table is the run's own.
        """
        loaded = dict(loaded or {})
        scope = loaded.get("scope", "table")
        key = run_key if scope == "source" else None
        table = db.read()
        own, others = split_by_source(table, key)
        reopened = reopen_rows(db, own, reruns) if reruns else []
        if reopened:
            table = db.read()
            own, others = split_by_source(table, key)
        picked = rows_to_run(own).index.union(rows_to_run(others).index, sort=False)
        return cls(
            rows=table[table.index.isin(picked)],
            scope=scope,
            own=len(own),
            added=loaded.get("loaded"),
            done=already_done(own),
            reopened=len(reopened),
            reruns=tuple(reruns),
            earlier=frozenset(rows_to_run(others).index),
        )

    def report(self, planned: Sequence[Any]) -> dict[str, Any]:
        """What the plan and the summary say of the run's rows (JSON, for XCom)."""
        from_earlier = sum(1 for row_id in planned if row_id in self.earlier)
        return {
            "scope": self.scope,
            "rows": self.own,
            "added": self.added,
            "already_done": sum(self.done.values()),
            "already_done_by_status": dict(self.done),
            "rerun": self.reopened,
            "rerun_statuses": list(self.reruns),
            "from_earlier_runs": from_earlier,
        }

    def log(self, report: Mapping[str, Any], continues: str | None) -> None:
        if continues:
            log.info("this run continues run %s (rows past max_rows_per_run, or left untaken)", continues)
        if self.scope == "source":
            log.info("this run's job source: %d row(s), %s new to the job table", report["rows"], report["added"] or 0)
        else:
            log.info("this run works on the whole job table (%d row(s)): no job source was loaded", report["rows"])
        if report["rerun"]:
            log.info("%d row(s) in %s run again: their jobs kept in job_history", report["rerun"], list(self.reruns))
        if report["from_earlier_runs"]:
            log.info(
                "%d resumable row(s) of earlier runs are taken too (not started, or holding a live job)",
                report["from_earlier_runs"],
            )
        log_already_done(report)


def log_already_done(report: Mapping[str, Any]) -> None:
    """One line saying which of the run's rows were done already, and how to run them again."""
    if report.get("already_done"):
        log.info(
            "%d of this run's %d row(s) were already done (%s) and are not run again; trigger with Param %r "
            '(e.g. ["error", "canceled"] or ["finished"]) to run them again',
            report["already_done"],
            report["rows"],
            ", ".join(f"{status}: {count}" for status, count in report["already_done_by_status"].items()),
            RERUN_PARAM,
        )
