"""The failure policy's crash windows, for real: the task process is SIGKILLed around a retry, then runs again.

A child process runs one ``OpenEOBatchJobOperator`` try (with the default failure policy) on a row that needs 3g
of executor memory and is given 2g, and kills itself with SIGKILL either right after the policy gave the failed
job up (before the new ``POST /jobs``) or right after the handler recorded the error (before the policy's
verdict). The next try (in this process) must finish the row, never with two jobs of the row alive at once, the
failed jobs in ``job_history``, the memory raised only by the policy's own out-of-memory retries.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import Any

from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_openeo.batch.failure_policy import FailurePolicy
from airflow_provider_openeo.triggers.openeo import OpenEOJobTrigger
from tests.conftest import REPO
from tests.system.operators.conftest import ADD_GRAPH, FAST, FakeTaskInstance, RowOps, rendered_context

CHILD = r"""
import json, os, signal, sys

from airflow_provider_openeo.batch import failure_policy
from airflow_provider_openeo.start import job_starting
from airflow_provider_openeo.batch.failure_policy import FailurePolicy
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.operators import openeo as operators
from tests.system.operators.conftest import RowOps, run_row
from tests.system.operators.test_openeo_failure_policy import start_job

args = json.loads(sys.argv[1])


def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


if args["mode"] == "after_give_up":
    real_create = job_starting.RowJobStarter._create_and_start

    def create(self, values):
        if values.get("job_history"):
            die()
        return real_create(self, values)

    job_starting.RowJobStarter._create_and_start = create
else:  # before the verdict: the handler recorded the error, the policy never decided
    operators.decide = die

db = OpenEOJobDbHook(table=args["table"], sqlite_path=args["sqlite_path"])
ops = RowOps(backend=None, db=db, root_dir=args["root_dir"], prefix="")
run_row(ops.operator(start_job=start_job, failure_policy=FailurePolicy()))
print("the child was not killed", file=sys.stderr)
"""


def start_job(row: Any, connection: Any, **kwargs: Any) -> Any:
    """A row that runs out of memory below 3g of executor memory, given 2g."""
    options = {"executor-memory": "2g", "local_backend": {**FAST, "min_executor_memory": "3g"}}
    return connection.create_job(ADD_GRAPH, title=str(row["title"]), job_options=options)


def crash_child(row_ops: RowOps, mode: str) -> None:
    args = {"mode": mode, "table": row_ops.db.table, "sqlite_path": str(row_ops.db.sqlite_path)}
    args["root_dir"] = str(row_ops.root_dir)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, f"child ended with {child.returncode}:\n{child.stderr[-3000:]}"


def run_through_retries(operator: Any, *, timeout: float = 60) -> Any:
    """One try of ``operator`` to its end, through every deferral (a policy retry defers again from the resume)."""
    ti = FakeTaskInstance()
    call, kwargs = operator.execute, {}
    while True:
        try:
            return call(rendered_context(operator, ti), **kwargs)
        except TaskDeferred as deferred:
            trigger = OpenEOJobTrigger(**json.loads(json.dumps(deferred.trigger.serialize()[1])))
            event = asyncio.run(asyncio.wait_for(anext(trigger.run()), timeout))
            call, kwargs = getattr(operator, deferred.method_name), {"event": json.loads(json.dumps(event.payload))}


def _memory(jobs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(job["status"], job["job_options"]["executor-memory"]) for job in jobs]


def test_killed_after_the_give_up_the_next_try_creates_the_retry_once(row_ops: RowOps):
    [title] = row_ops.table()
    crash_child(row_ops, "after_give_up")

    row = row_ops.row()
    assert (row["status"], row["id"], row["attempt"]) == ("not_started", None, 1), "given up, no new job yet"
    assert [h["retry"] for h in row["job_history"]] == ["failure_policy"]
    assert _memory(row_ops.jobs(title)) == [("error", "2g")]

    result = run_through_retries(row_ops.operator(start_job=start_job, failure_policy=FailurePolicy()))

    row = row_ops.row()
    assert result["status"] == "finished" and row["status"] == "finished"
    assert _memory(row_ops.jobs(title)) == [("error", "2g"), ("finished", "3g")], "one retry, with more memory"


def test_killed_before_the_verdict_the_next_try_replaces_the_job_once_and_the_policy_goes_on(row_ops: RowOps):
    [title] = row_ops.table()
    crash_child(row_ops, "before_verdict")

    row = row_ops.row()
    assert (row["status"], row["error_category"]) == ("error", "out_of_memory"), "the handler recorded the error"

    result = run_through_retries(row_ops.operator(start_job=start_job, failure_policy=FailurePolicy()))

    row = row_ops.row()
    assert result["status"] == "finished" and row["attempt"] == 2
    # The next try found the recorded error and replaced the job as a clear does (counted as an attempt, memory
    # unchanged: only the policy's own out-of-memory retries raise it); that job ran out of memory too and the
    # policy retried it with 3g. Never two jobs of the row alive at once.
    assert [(h["retry"], h["error_category"]) for h in row["job_history"]] == [
        ("task", "out_of_memory"),
        ("failure_policy", "out_of_memory"),
    ]
    assert _memory(row_ops.jobs(title)) == [("error", "2g"), ("error", "2g"), ("finished", "3g")]
