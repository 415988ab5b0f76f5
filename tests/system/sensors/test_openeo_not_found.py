"""OpenEOJobSensor's pokes on a job that answers 404, against the local backend (no DAG run needed)."""

from __future__ import annotations

import re
from typing import Any

import openeo
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_openeo.hooks.openeo import OpenEOHook
from airflow_provider_openeo.sensors.openeo import OpenEOJobSensor
from tests.fixtures.local_backend import backend_conn_env

CONN_ID = "openeo_sensor_404_test"
ADD = {"add": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}


class StateStore:
    """The task state store's get/set, in memory (a reschedule builds a new sensor; the store stays)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


@pytest.fixture
def connection(openeo_backend, monkeypatch) -> openeo.Connection:
    backend_conn_env(monkeypatch, CONN_ID, openeo_backend, job_gone_polls=2, job_gone_seconds=0)
    return OpenEOHook(CONN_ID).get_conn()


def running_job(connection: openeo.Connection) -> str:
    job = connection.create_job(ADD, title="sensor 404", job_options={"local_backend": {"run_seconds": 60}})
    job.start()
    return job.job_id


def sensor(job_id: str) -> OpenEOJobSensor:
    return OpenEOJobSensor(
        task_id="wait", job_id=job_id, openeo_conn_id=CONN_ID, deferrable=False, cancel_on_kill=False
    )


def not_found(job_id: str) -> dict[str, Any]:
    return {"methods": ["GET"], "path": f"^/jobs/{re.escape(job_id)}$", "error_rate": 1.0, "error_status": 404}


def test_404s_on_a_listed_job_keep_the_sensor_poking(connection, openeo_backend):
    job_id = running_job(connection)
    openeo_backend.configure(faults=[not_found(job_id)])
    store = StateStore()
    for _ in range(4):  # reschedule mode: a new sensor per poke, the 404s remembered in the state store
        assert sensor(job_id).poke({"task_state_store": store}) is False
    assert openeo_backend.fault_stats()["error"] == 4


def test_a_deleted_job_ends_the_sensor_once_a_complete_listing_confirms(connection, openeo_backend):
    running_job(connection)  # the listing shows another job of the user
    job_id = running_job(connection)
    connection.job(job_id).delete()
    with pytest.raises(AirflowFailException, match="absent from the complete job listing"):
        sensor(job_id).poke({})


def test_the_window_counts_across_reschedules_and_a_good_answer_starts_it_over(connection, openeo_backend, monkeypatch):
    """A listing that cannot show the job (one page of one newer job) leaves the window rule: 2 healthy 404s."""
    job_id = running_job(connection)
    store = StateStore()
    openeo_backend.configure(faults=[not_found(job_id)])
    monkeypatch.setattr("airflow_provider_openeo.wait._job_listing.PAGE_LIMIT", 1)  # the job is not on page one ...
    monkeypatch.setattr("airflow_provider_openeo.wait._job_listing.MAX_PAGES", 1)
    running_job(connection)  # ... which shows this newer job: healthy, but no confirmation
    assert sensor(job_id).poke({"task_state_store": store}) is False
    assert store.values["openeo_not_found"]["count"] == 1
    openeo_backend.reset_config()
    assert sensor(job_id).poke({"task_state_store": store}) is False  # answers again: the count starts over
    assert store.values["openeo_not_found"] is None
    openeo_backend.configure(faults=[not_found(job_id)])
    assert sensor(job_id).poke({"task_state_store": store}) is False
    with pytest.raises(AirflowFailException, match="answered 404 2 times"):
        sensor(job_id).poke({"task_state_store": store})
