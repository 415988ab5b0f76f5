"""Production-server profiles (geopyspark, aggregator, fastapi), observed over HTTP on a real server.

One server for the module, switched between profiles with ``configure(profile=...)``; every test logs in
as a user of its own (any vowel-initial name takes ``<name>123``), so its listings hold only its jobs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openeo
import pytest
import requests
from openeo.rest import OpenEoApiError

from local_backend.launcher import REPO_ROOT, LocalBackend, SettingsError, start_local_backend
from tests.system.local_backend.conftest import connect, create_job, statuses_until_done

GEOPYSPARK_FIELDS = {"id", "status", "created", "updated", "title"}


@pytest.fixture(scope="module")
def profiles_server() -> Iterator[LocalBackend]:
    backend = start_local_backend(name="profiles")
    yield backend
    backend.stop()


@pytest.fixture
def backend(profiles_server: LocalBackend) -> Iterator[LocalBackend]:
    profiles_server.reset()
    yield profiles_server
    profiles_server.reset()


@pytest.fixture
def user() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


@pytest.fixture
def conn(backend: LocalBackend, user: str) -> openeo.Connection:
    return connect(backend, user, f"{user}123")


def _get(conn: openeo.Connection, path: str) -> requests.Response:
    return requests.get(conn.build_url(path), auth=conn.auth, timeout=30)


def _listing(conn: openeo.Connection, query: str = "") -> dict[str, Any]:
    response = _get(conn, f"/jobs{query}")
    assert response.status_code == 200, response.text
    return response.json()


def _follow(conn: openeo.Connection, query: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every job of a listing by its ``next`` links, and the links followed."""
    jobs, hrefs = [], []
    page = _listing(conn, query)
    while True:
        jobs.extend(page["jobs"])
        href = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        if href is None:
            return jobs, hrefs
        hrefs.append(href)
        page = requests.get(href, auth=conn.auth, timeout=30).json()


def _jobs(conn: openeo.Connection, n: int, **overrides: Any) -> list[openeo.BatchJob]:
    return [create_job(conn, title=f"job {i}", **overrides) for i in range(n)]


# -- geopyspark -----------------------------------------------------------------------------------------------
def test_geopyspark_listing_is_short_oldest_first_and_paged_by_page_number(
    backend: LocalBackend, conn: openeo.Connection
) -> None:
    backend.configure(profile="geopyspark")
    jobs = _jobs(conn, 5, queue_seconds=0, run_seconds=30)
    jobs[0].start()

    listed, hrefs = _follow(conn, "?limit=2")
    assert [j["id"] for j in listed] == [j.job_id for j in jobs]  # oldest first, each job once
    assert len(hrefs) == 2 and "page=1" in hrefs[0] and "page=2" in hrefs[1]
    assert all(set(j) == GEOPYSPARK_FIELDS for j in listed)  # no progress, costs, usage, process
    assert listed[0]["status"] == "running"

    # Running jobs report no progress per job either; without ``limit``: every job, no link.
    assert "progress" not in jobs[0].describe()
    everything = _listing(conn)
    assert (len(everything["jobs"]), everything["links"]) == (5, [])
    bad = _get(conn, "/jobs?limit=2&page=-1")
    assert (bad.status_code, bad.json()["code"]) == (400, "InvalidPagination")
    jobs[0].stop()


def test_geopyspark_unordered_listing_is_stable_and_pages_cover_every_job(
    backend: LocalBackend, conn: openeo.Connection
) -> None:
    backend.configure(profile="geopyspark", listing_order="unordered", seed=7)
    created = [j.job_id for j in _jobs(conn, 12)]
    first, _ = _follow(conn, "?limit=5")
    again, _ = _follow(conn, "?limit=5")
    order = [j["id"] for j in first]
    assert order == [j["id"] for j in again]
    assert sorted(order) == sorted(created)
    assert order not in (created, created[::-1])
    backend.configure(listing_order="newest_first")
    assert [j["id"] for j in _listing(conn, "?limit=20")["jobs"]] == created[::-1]


def test_geopyspark_concurrent_job_limit_is_400_at_start(backend: LocalBackend, conn: openeo.Connection) -> None:
    backend.configure(profile="geopyspark", max_concurrent_jobs=1)
    first, second = _jobs(conn, 2, queue_seconds=0, run_seconds=30)
    first.start()
    with pytest.raises(OpenEoApiError) as err:
        second.start()
    assert (err.value.http_status_code, err.value.code) == (400, "ConcurrentJobLimit")
    first.stop()


def test_history_of_thousands_of_old_jobs_is_fast_and_survives_restart(
    backend: LocalBackend, conn: openeo.Connection, user: str
) -> None:
    backend.configure(profile="geopyspark")
    mine = create_job(conn, title="watched")
    started = time.monotonic()
    seeded = backend.seed_history(5000, max_age_days=90, user=user)
    assert time.monotonic() - started < 5
    now = time.time()
    assert (seeded["count"], seeded["user"]) == (5000, user)
    assert now - 90 * 86400 <= seeded["oldest"] < seeded["newest"] <= now - 7200

    first_page = _listing(conn, "?limit=100")
    assert len(first_page["jobs"]) == 100
    assert mine.job_id not in {j["id"] for j in first_page["jobs"]}  # oldest first: the new job is last
    assert "page=1" in first_page["links"][0]["href"]
    everything = _listing(conn)["jobs"]
    assert len(everything) == 5001
    assert everything[-1]["id"] == mine.job_id
    assert {j["status"] for j in everything[:-1]} <= {"finished", "error", "canceled"}

    backend.restart()
    assert len(_listing(conn)["jobs"]) == 5001
    assert backend.config()["profile"] == "geopyspark"


def test_history_request_is_checked(backend: LocalBackend) -> None:
    response = requests.post(f"{backend.url}/_control/history", json={"count": 0}, timeout=10)
    assert response.status_code == 400
    assert "count" in response.json()["message"]


# -- aggregator -----------------------------------------------------------------------------------------------
def test_aggregator_prefixes_ids_round_robin_or_as_assigned(
    backend: LocalBackend, conn: openeo.Connection, user: str
) -> None:
    backend.configure(profile="aggregator", upstreams=["vito", "eodc", "creo"])
    upstreams = [j.job_id.split("-", 1)[0] for j in _jobs(conn, 6)]
    assert sorted(upstreams) == ["creo", "creo", "eodc", "eodc", "vito", "vito"]
    assert upstreams[:3] == upstreams[3:]  # a fixed turn
    backend.configure(upstream_assignment="eodc")
    assert create_job(conn).job_id.startswith("eodc-j-")
    backend.seed_history(3, user=user)  # history jobs are assigned like new ones
    assert sum(j["id"].startswith("eodc-j-") for j in _listing(conn)["jobs"]) == 3 + 3


def test_aggregator_outage_hides_one_upstreams_jobs_behind_404(backend: LocalBackend, conn: openeo.Connection) -> None:
    backend.configure(profile="aggregator", upstreams=["vito", "eodc"])
    jobs = _jobs(conn, 4, queue_seconds=0, run_seconds=0.5)
    for job in jobs:
        job.start()
    vito = [j for j in jobs if j.job_id.startswith("vito-")]
    eodc = [j for j in jobs if j.job_id.startswith("eodc-")]
    assert len(vito) == len(eodc) == 2

    assert backend.upstream_outage("vito", seconds=1.5)["vito"] > 1
    for path in ("", "/results", "/logs"):
        response = _get(conn, f"/jobs/{vito[0].job_id}{path}")
        assert (response.status_code, response.json()["code"]) == (404, "JobNotFound"), path
    assert eodc[0].status() in {"running", "finished"}
    listing = _listing(conn, "?limit=10")
    assert listing["federation:missing"] == ["vito"]
    assert {j["id"] for j in listing["jobs"]} == {j.job_id for j in eodc}
    # Creating a job goes to the upstream that can be reached; a pinned one that cannot answers 503.
    assert create_job(conn).job_id.startswith("eodc-")
    backend.configure(upstream_assignment="vito")
    with pytest.raises(OpenEoApiError) as err:
        create_job(conn)
    assert err.value.http_status_code == 503

    time.sleep(1.6)
    # The jobs ran on meanwhile: back after the window, finished.
    assert [statuses_until_done(j)[-1] for j in vito] == ["finished", "finished"]
    assert _listing(conn, "?limit=10")["federation:missing"] == []


def test_aggregator_honours_limit_without_next_links(backend: LocalBackend, conn: openeo.Connection) -> None:
    backend.configure(profile="aggregator")
    jobs = _jobs(conn, 4)
    listing = _listing(conn, "?limit=2")
    assert [j["id"] for j in listing["jobs"]] == [jobs[3].job_id, jobs[2].job_id]  # newest first
    assert listing["links"] == []
    assert listing["federation:missing"] == []


def test_outages_need_the_aggregator_profile_and_end_with_reset(backend: LocalBackend) -> None:
    with pytest.raises(Exception, match="aggregator"):
        backend.upstream_outage("vito", seconds=5)
    backend.configure(profile="aggregator")
    with pytest.raises(Exception, match="upstream"):
        backend.upstream_outage("nowhere", seconds=5)
    backend.upstream_outage("vito", seconds=60)
    backend.reset()
    backend.configure(profile="aggregator")
    assert requests.get(f"{backend.url}/_control/outages", timeout=10).json() == {"outages": {}}


# -- fastapi --------------------------------------------------------------------------------------------------
def test_fastapi_ignores_limit_and_lists_process_graphs(backend: LocalBackend, conn: openeo.Connection) -> None:
    backend.configure(profile="fastapi")
    jobs = _jobs(conn, 3)
    listing = _listing(conn, "?limit=1")
    assert [j["id"] for j in listing["jobs"]] == [j.job_id for j in jobs]
    assert listing["links"] == []
    graph = listing["jobs"][0]["process"]["process_graph"]
    assert {node["process_id"] for node in graph.values()} == {"load_collection", "save_result"}
    assert len(conn.list_jobs(limit=2)) == 3  # also through the openeo client


# -- settings and launcher ------------------------------------------------------------------------------------
def test_profile_settings_are_checked(backend: LocalBackend) -> None:
    with pytest.raises(SettingsError, match="profile"):
        backend.configure(profile="openeo-platform")
    with pytest.raises(SettingsError, match="listing_order"):
        backend.configure(listing_order="oldest_first")  # the default profile pages newest first only
    with pytest.raises(SettingsError, match="upstream_assignment"):
        backend.configure(profile="aggregator", upstream_assignment="sentinelhub")


def test_launcher_command_line_takes_a_profile() -> None:
    command = [sys.executable, "-m", "local_backend.launcher", "--port", "0", "--name", "cli", "--profile", "fastapi"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "(fastapi profile)" in line, line
        url = line.split(" at ", 1)[1].split()[0]
        assert requests.get(f"{url}/_control/config", timeout=10).json()["profile"] == "fastapi"
    finally:
        process.terminate()
        process.wait(timeout=20)
