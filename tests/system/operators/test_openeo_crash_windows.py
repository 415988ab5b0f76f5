"""Crash windows, for real: the task process is SIGKILLed at the worst moments, then the task runs again.

A child process runs one ``OpenEOBatchJobOperator`` try against the local backend and kills itself with SIGKILL
right after ``POST /jobs`` answered (before the start), right after ``POST /jobs/{id}/results`` answered (before
the row write), or in the middle of streaming a result asset. No ``finally`` and no ``except`` runs in a
SIGKILLed process, so the row holds exactly what was written before the kill. The next try (in this process)
must finish the row with exactly one job on the backend.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from airflow_provider_openeo.batch.planning import rows_to_run
from tests.conftest import REPO
from tests.system.operators.conftest import RowOps, run_row

CHILD = r"""
import json, os, signal, sys

import openeo

from airflow_provider_openeo.handlers.job_handlers import OpenEOJobHandler
from tests.system.operators.conftest import ADD_GRAPH, RowOps, fast_options, run_row
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

args = json.loads(sys.argv[1])
mode = args["mode"]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class DiesAfterStart(openeo.BatchJob):
    def start(self):
        super().start()
        die()


def start_job(row, connection, **kwargs):
    job = connection.create_job(ADD_GRAPH, title=str(row["title"]), job_options=fast_options())
    if mode == "after_create":
        die()
    if mode == "after_start":
        return DiesAfterStart(job.job_id, connection)
    return job


if mode == "mid_download":
    from airflow_provider_openeo.handlers import _asset_download

    real_open = _asset_download.open_partial

    class DiesAfterFirstWrite:
        def __init__(self, handle):
            self._handle = handle

        def write(self, data):
            self._handle.write(data)
            self._handle.flush()
            die()

        def close(self):
            self._handle.close()

    def open_partial(path, *, append):
        handle = real_open(path, append=append)
        return None if handle is None else DiesAfterFirstWrite(handle)

    _asset_download.open_partial = open_partial

db = OpenEOJobDbHook(table=args["table"], sqlite_path=args["sqlite_path"])
ops = RowOps(backend=None, db=db, root_dir=args["root_dir"], prefix="")
operator = ops.operator(start_job=start_job, handler=OpenEOJobHandler(root_dir=args["root_dir"], chunk_size=256))
run_row(operator)
print("the child was not killed", file=sys.stderr)
"""


def crash_child(row_ops: RowOps, mode: str) -> None:
    args = {
        "mode": mode,
        "table": row_ops.db.table,
        "sqlite_path": str(row_ops.db.sqlite_path),
        "root_dir": str(row_ops.root_dir),
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, f"child ended with {child.returncode}:\n{child.stderr[-3000:]}"


def finish_and_check(row_ops: RowOps, title: str, job_id: str) -> None:
    result = run_row(row_ops.operator())
    assert result["job_id"] == job_id
    row = row_ops.row()
    assert (row["status"], row["results_state"], row["id"]) == ("finished", "downloaded", job_id)
    assert [job["id"] for job in row_ops.jobs(title)] == [job_id], "exactly one job for the row on the backend"
    job_dir = row_ops.root_dir / f"job_{job_id}"
    assert (job_dir / "result.tif").stat().st_size == 2048


def test_killed_after_create_before_start_the_row_already_holds_the_job(row_ops: RowOps):
    [title] = row_ops.table()
    crash_child(row_ops, "after_create")

    [job] = row_ops.jobs(title)
    assert job["status"] == "created"
    row = row_ops.row()
    assert (row["id"], row["status"], row["backend_name"]) == (job["id"], "created", "local")

    finish_and_check(row_ops, title, job["id"])


def test_killed_after_start_before_the_row_write_re_attaches(row_ops: RowOps):
    [title] = row_ops.table()
    crash_child(row_ops, "after_start")

    [job] = row_ops.jobs(title)
    assert job["status"] in ("queued", "running", "finished")  # started on the backend...
    assert row_ops.row()["status"] == "created"  # ...but the row never heard of it

    finish_and_check(row_ops, title, job["id"])


def test_killed_mid_download_the_next_run_downloads_again(row_ops: RowOps):
    [title] = row_ops.table()
    crash_child(row_ops, "mid_download")

    [job] = row_ops.jobs(title)
    row = row_ops.row()
    assert (row["id"], row["status"], row["results_state"]) == (job["id"], "finished", "downloading")
    assert list(rows_to_run(row_ops.db.read()).index) == [0], "the plan picks an interrupted download up again"

    finish_and_check(row_ops, title, job["id"])


def test_killed_mid_download_leaves_only_the_results_in_the_job_dir(row_ops: RowOps):
    [title] = row_ops.table()
    crash_child(row_ops, "mid_download")
    [job] = row_ops.jobs(title)
    finish_and_check(row_ops, title, job["id"])

    names = sorted(path.name for path in (row_ops.root_dir / f"job_{job['id']}").iterdir())
    assert names == sorted(["job-results.json", f"job_{job['id']}.json", "result.json", "result.tif"])
