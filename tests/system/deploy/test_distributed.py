"""The provider on a distributed Airflow: PostgreSQL, CeleryExecutor with two workers, results on object storage.

What a production deployment looks like, on loopback: the metadata database and the job database in PostgreSQL
(fresh databases, dropped at the end), the CeleryExecutor with the local Redis as broker and PostgreSQL as result
backend, two ``airflow celery worker`` processes, and ``root_dir`` an ``s3://`` URL on an S3-compatible server
(moto) reached through an Airflow ``aws`` connection, so no task relies on a disk another task wrote. The batch is
the LocalExecutor test's (process-based example DAG, two local backends, short jobs) and so are the checks: the
job table, the objects in the bucket and the backends' job lists agree row for row, with no duplicate job.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import shutil
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deploy.live_airflow import HOSTNAME_ENV, AirflowSettings, LiveAirflow, service_hostname
from local_backend.launcher import BASIC_PASSWORD, BASIC_USER, LocalBackend
from tests.conftest import REPO
from tests.system.deploy.test_live_airflow import _most_at_once
from tests.system.example_dags.conftest import (
    UDP_FILE,
    assert_batch_consistent,
    backend_job_ids,
    instances_with_a_row,
    new_jobs,
)

DAG_ID = "example_openeo_process_based"
ROWS = 30
PARALLEL_JOBS = 3
WORKERS = ("celery-worker-1", "celery-worker-2")
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
JOB_DB_CONN_ID = "openeo_jobs_pg"
S3_CONN_ID = "openeo_results_s3"
S3_KEY, S3_SECRET, S3_REGION = "testing", "testing", "us-east-1"  # moto accepts any; nothing real
TEMPORARY_MARKER = ".part-"


# -- services this test needs on the machine ---------------------------------------------------------------------


def _postgres_problem() -> str | None:
    try:
        import psycopg2

        psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5).close()
    except Exception as exc:
        return f"PostgreSQL at {PG_HOST}:{PG_PORT} (user {PG_USER}, trust auth) is unreachable: {type(exc).__name__}"
    return None


def _redis_problem() -> str | None:
    try:
        import redis

        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3, socket_timeout=3).ping()
    except Exception as exc:
        return f"Redis at {REDIS_HOST}:{REDIS_PORT} is unreachable: {type(exc).__name__}"
    return None


@pytest.fixture(scope="module")
def distributed_services() -> None:
    """Skip, saying what is missing, when PostgreSQL, Redis or the Celery/S3 packages are not there."""
    for module in ("airflow.providers.celery", "airflow.providers.amazon", "s3fs", "moto.server", "redis"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[test]')")
    problems = [p for p in (_postgres_problem(), _redis_problem()) if p]
    if problems:
        pytest.skip("distributed test skipped: " + "; ".join(problems) + " (scripts/ensure_services.sh starts them)")


@dataclass(frozen=True)
class Databases:
    metadata: str
    jobs: str

    @staticmethod
    def url(name: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def _admin(statement: str) -> None:
    import psycopg2

    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5)
    try:
        connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


@pytest.fixture
def databases(distributed_services: None) -> Iterator[Databases]:
    """Two fresh PostgreSQL databases (Airflow's metadata, the job table), dropped afterwards whatever holds them."""
    tag = uuid.uuid4().hex[:10]
    dbs = Databases(metadata=f"airflow_dist_{tag}", jobs=f"openeo_jobs_dist_{tag}")
    for name in (dbs.metadata, dbs.jobs):
        _admin(f"CREATE DATABASE {name}")
    yield dbs
    for name in (dbs.metadata, dbs.jobs):
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str
    bucket: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name=S3_REGION,
        )

    def keys(self, prefix: str = "") -> list[str]:
        found: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    def path(self, key: str) -> Any:
        """The test's own view of the bucket (s3fs, not Airflow): proves the objects exist for any S3 client."""
        from upath import UPath

        return UPath(
            f"s3://{self.bucket}/{key}",
            endpoint_url=self.endpoint,
            key=S3_KEY,
            secret=S3_SECRET,
            client_kwargs={"region_name": S3_REGION},
        )


@pytest.fixture
def object_store(distributed_services: None) -> Iterator[ObjectStore]:
    """An S3-compatible server (moto) on a free loopback port with an empty bucket; both workers reach it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        store = ObjectStore(endpoint=f"http://{host}:{port}", bucket=f"openeo-dist-{uuid.uuid4().hex[:8]}")
        store.client().create_bucket(Bucket=store.bucket)
        yield store
    finally:
        server.stop()


def _forget_queue(queue: str) -> None:
    """Kombu leaves binding keys per queue in Redis; a queue of one test run is never used again."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=5)
    client.delete(queue, *client.keys(f"_kombu.binding*.{queue}"))


# -- the harness's Celery settings (fast) --------------------------------------------------------------------------


def test_celery_settings_keep_workers_on_one_machine_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = AirflowSettings.celery(
        database_url="postgresql+psycopg2://postgres@127.0.0.1/meta",
        broker_url="redis://127.0.0.1:6379/0",
        result_backend="db+postgresql://postgres@127.0.0.1/meta",
        queue="q_test",
        env={"OPENEO_EXAMPLE_POLL_INTERVAL": "1"},
        parallelism=2,
    )
    airflow = LiveAirflow(tmp_path / "home", settings)
    commands = airflow._commands()
    workers = sorted(name for name in commands if name.startswith("celery-worker-"))
    assert workers == list(WORKERS)
    for option in ("--pid", "--celery-hostname"):  # one PID file and one Celery node name each
        values = {commands[w][commands[w].index(option) + 1] for w in workers}
        assert len(values) == len(workers), option
    assert all(commands[w][commands[w].index("--queues") + 1] == "q_test" for w in workers)
    env = airflow.env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" and env["AIRFLOW__CORE__PARALLELISM"] == "2"
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "q_test" and env["OPENEO_EXAMPLE_POLL_INTERVAL"] == "1"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://postgres@127.0.0.1/meta"
    # each worker reports its own name as the hostname Airflow records on the task instances it runs
    names = set()
    for worker in workers:
        monkeypatch.setenv(HOSTNAME_ENV, settings.service_env[worker][HOSTNAME_ENV])
        module, _, function = env["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rpartition(".")
        names.add(getattr(importlib.import_module(module), function)())
    assert names == set(WORKERS)
    monkeypatch.delenv(HOSTNAME_ENV)
    assert service_hostname() == socket.getfqdn()  # the scheduler, triggerer ... keep the machine's name


def test_celery_settings_refuse_no_workers() -> None:
    with pytest.raises(ValueError, match="workers and concurrency"):
        AirflowSettings.celery(database_url="x", broker_url="y", result_backend="z", workers=0)


# -- the run -------------------------------------------------------------------------------------------------------


def _worker_runs(airflow: LiveAirflow) -> dict[str, Counter[str]]:
    """Per worker, how many workloads of each task id (without the batch group's prefix, e.g. ``run_foo.job``) its
    log says it executed (a task resumed after deferring counts twice)."""
    pattern = re.compile(r"Executing workload in Celery: .*?task_id='([^']+)'")
    runs: dict[str, Counter[str]] = {}
    for worker in WORKERS:
        text = (airflow.logs / f"{worker}.log").read_text(encoding="utf-8", errors="replace")
        runs[worker] = Counter(match.group(1).split(".", 1)[-1] for match in pattern.finditer(text))
    return runs


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(480)
def test_batch_on_celery_workers_with_postgres_and_object_storage(
    databases: Databases,
    object_store: ObjectStore,
    openeo_backends: dict[str, LocalBackend],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = time.monotonic()
    for backend in openeo_backends.values():
        backend.configure(queue_seconds=0.5, run_seconds=2.5)
    before = backend_job_ids(openeo_backends)
    udp_url = openeo_backends["foo"].add_process_definition("ndvi_timeseries", json.loads(UDP_FILE.read_text()))
    results_url = f"s3://{S3_CONN_ID}@{object_store.bucket}/results"
    queue = f"openeo_dist_{uuid.uuid4().hex[:8]}"
    home = REPO / "build" / "test-distributed" / queue
    settings = AirflowSettings.celery(
        database_url=Databases.url(databases.metadata),
        broker_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        result_backend=Databases.url(databases.metadata, driver="db+postgresql"),
        workers=len(WORKERS),
        concurrency=2,
        queue=queue,
        paused_at_creation=True,  # only the triggered DAG runs: nothing else competes for the pools
        env={
            "OPENEO_EXAMPLE_UDP_URL": udp_url,
            "OPENEO_EXAMPLE_RESULTS_DIR": results_url,
            "OPENEO_EXAMPLE_JOB_DB_CONN_ID": JOB_DB_CONN_ID,
            "OPENEO_EXAMPLE_POLL_INTERVAL": "1",
            "OPENEO_EXAMPLE_PARALLEL_JOBS": str(PARALLEL_JOBS),
        },
    )
    airflow = LiveAirflow(home, settings)
    try:
        airflow.prepare()
        airflow.start(wait=False)
        airflow.set_pools({n: {"conn_id": f"openeo_{n}", "parallel_jobs": PARALLEL_JOBS} for n in openeo_backends})
        airflow.wait_healthy()
        for worker in WORKERS:
            airflow.wait_for_log(worker, " ready.")
        for name, backend in openeo_backends.items():
            airflow.set_connection(
                f"openeo_{name}", "openeo", host=backend.url, login=BASIC_USER, password=BASIC_PASSWORD,
                extra={"auth_method": "basic"},
            )  # fmt: skip
        airflow.set_connection(
            JOB_DB_CONN_ID, "postgres", host=PG_HOST, port=PG_PORT, login=PG_USER, schema=databases.jobs
        )
        airflow.set_connection(
            S3_CONN_ID, "aws", login=S3_KEY, password=S3_SECRET,
            extra={"endpoint_url": object_store.endpoint, "region_name": S3_REGION},
        )  # fmt: skip
        startup = time.monotonic() - wall

        started = time.monotonic()
        end = (pd.Timestamp("2024-01-01") + pd.Timedelta(days=ROWS)).strftime("%Y-%m-%d")
        run_id = airflow.trigger_dag(DAG_ID, {"start": "2024-01-01", "end": end, "frequency": "D"})
        run = airflow.wait_for_run(DAG_ID, run_id, timeout=300)
        run_seconds = time.monotonic() - started
        task_instances = airflow.task_instances(DAG_ID, run_id)
        worker_runs = _worker_runs(airflow)
    finally:
        airflow.stop()
        _forget_queue(queue)

    # the job table in PostgreSQL, read as any other client would, through an Airflow connection of type postgres
    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

    monkeypatch.setenv(
        f"AIRFLOW_CONN_{JOB_DB_CONN_ID.upper()}",
        json.dumps({"conn_type": "postgres", "host": PG_HOST, "port": PG_PORT, "login": PG_USER,
                    "schema": databases.jobs}),
    )  # fmt: skip
    db = OpenEOJobDbHook(JOB_DB_CONN_ID, table=DAG_ID)
    table = db.read()
    db.dispose()

    mapped = [ti for ti in task_instances if ti["map_index"] >= 0]
    # A skipped task never reaches a worker, and the scheduler completes an EmptyOperator by itself.
    ran = [ti for ti in task_instances if ti["state"] != "skipped" and ti["operator_name"] != "EmptyOperator"]
    hostnames = Counter(ti["hostname"] for ti in ran)
    print(
        f"\nstart-up {startup:.0f} s, run {run_seconds:.0f} s ({run['state']}), wall {time.monotonic() - wall:.0f} s",
        f"task instances by hostname (last try): {dict(hostnames)}",
        *(f"{worker} executed: {dict(counts)}" for worker, counts in worker_runs.items()),
        sep="\n",
    )
    assert run["state"] == "success", {ti["task_id"]: ti["state"] for ti in task_instances if ti["state"] != "success"}
    assert {ti["state"] for ti in ran} == {"success"}
    assert len(table) == ROWS and set(table["backend_name"]) == {"foo", "bar"}

    # job table, result objects in the bucket and the backends' own job lists agree row for row, no duplicates
    created = new_jobs(openeo_backends, before)
    assert sum(len(jobs) for jobs in created.values()) == ROWS, "one remote job per row, none duplicated"
    root = object_store.path(f"results/{DAG_ID}")
    assert_batch_consistent(table, openeo_backends, created, root)
    keys = object_store.keys("results/")
    assert not [k for k in keys if TEMPORARY_MARKER in k], "no partial upload left behind"
    assert {k.split("/")[2] for k in keys} == {"stac", *(f"job_{job_id}" for job_id in table["id"])}
    stac_keys = {k for k in keys if k.split("/")[2] == "stac"}
    assert len(stac_keys) == 1 + ROWS, "the batch's STAC collection on S3: the collection and an item per row"
    assert not (home / "openeo_results").exists(), "nothing written to the local default results folder"

    # the pools held each backend to parallel_jobs at a time, as with the LocalExecutor
    for backend, jobs in created.items():
        assert 1 <= _most_at_once(jobs) <= PARALLEL_JOBS, backend

    # every task ran on a Celery worker, and both workers took part in the batch
    with_a_row = instances_with_a_row(mapped)
    assert len(with_a_row) == 2 * ROWS and {ti["state"] for ti in with_a_row} == {"success"}  # a job and a results
    assert {ti["state"] for ti in mapped} <= {"success", "skipped"}, "the unused instances are skipped"
    assert set(hostnames) <= set(WORKERS), f"task instances ran elsewhere: {dict(hostnames)}"
    assert all(hostnames[w] > 0 for w in WORKERS), f"a worker ran no task instance: {dict(hostnames)}"
    for worker in WORKERS:
        assert worker_runs[worker]["run_foo.job"] + worker_runs[worker]["run_bar.job"] > 0, f"{worker} ran no row"
    assert set().union(*worker_runs.values()) == {ti["task_id"].split(".", 1)[-1] for ti in ran}
    total_workloads = sum(sum(c.values()) for c in worker_runs.values())
    # A row's job task ends in the triggerer, not resumed; the extra workloads are the dispatch's turns (an
    # instance that waited in the triggerer for a row, or gave one back) and unused instances skipped after a
    # worker had been handed them. Fewer than one per row: a resumed job task per row would double them.
    assert len(ran) <= total_workloads < len(ran) + ROWS, (total_workloads, len(ran))

    shutil.rmtree(home, ignore_errors=True)  # kept on failure: the services' and tasks' logs are in there
