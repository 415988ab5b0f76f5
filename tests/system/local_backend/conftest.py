"""Helpers shared by the local backend tests: an authenticated openeo connection and status waiting."""

from __future__ import annotations

import time

import openeo
import pytest

from local_backend.launcher import BASIC_PASSWORD, BASIC_USER, LocalBackend

TERMINAL = {"finished", "error", "canceled"}


def connect(backend: LocalBackend, user: str = BASIC_USER, password: str = BASIC_PASSWORD) -> openeo.Connection:
    return openeo.connect(backend.url).authenticate_basic(user, password)


def simple_cube(conn: openeo.Connection) -> openeo.DataCube:
    return conn.load_collection("S2_FOOBAR", bands=["B02"])


def create_job(conn: openeo.Connection, title: str = "test job", **overrides: object) -> openeo.BatchJob:
    """A job whose lifecycle durations/failure come from ``overrides`` (job_options.local_backend)."""
    options = {"queue_seconds": 0.2, "run_seconds": 0.3, **overrides}
    return simple_cube(conn).create_job(title=title, job_options={"local_backend": options})


def statuses_until_done(job: openeo.BatchJob, timeout: float = 10.0, interval: float = 0.05) -> list[str]:
    """Every distinct status seen while polling, in order, until a terminal one (or timeout)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job.status()
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in TERMINAL:
            return seen
        time.sleep(interval)
    raise AssertionError(f"job {job.job_id} not done after {timeout} s; statuses seen: {seen}")


@pytest.fixture
def conn(openeo_backend: LocalBackend) -> openeo.Connection:
    return connect(openeo_backend)
