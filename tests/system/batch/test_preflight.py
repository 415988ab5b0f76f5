"""The batch's check of its backends before any row starts, against the real local openEO backend.

A mistake every row would meet (a missing connection, refused credentials, a host that is no openEO API) is one
problem, named once; a backend that cannot be reached right now is only a warning (the dispatch handles it).
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_openeo.batch.planning import BackendSpec
from airflow_provider_openeo.batch.preflight import BackendsUnusable, check_backend, check_backends
from local_backend.launcher import LocalBackend
from tests.fixtures.local_backend import backend_conn_env, backend_connection


def test_a_working_backend_passes(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend_conn_env(monkeypatch, "pf_good", openeo_backend)
    assert check_backend(BackendSpec("good", "pf_good")) == (None, None)


def test_every_problem_is_named_once_in_one_message(openeo_backend: LocalBackend, monkeypatch: pytest.MonkeyPatch):
    backend_conn_env(monkeypatch, "pf_good", openeo_backend)
    wrong = backend_connection(openeo_backend)
    wrong["password"] = "not-the-password"
    monkeypatch.setenv("AIRFLOW_CONN_PF_WRONG", json.dumps(wrong))
    no_api = backend_connection(openeo_backend)
    no_api["host"] = openeo_backend.url.rstrip("/") + "/not/openeo"
    monkeypatch.setenv("AIRFLOW_CONN_PF_NO_API", json.dumps(no_api))
    specs = {
        "good": BackendSpec("good", "pf_good"),
        "wrong": BackendSpec("wrong", "pf_wrong"),
        "missing": BackendSpec("missing", "pf_missing"),
        "no_api": BackendSpec("no_api", "pf_no_api"),
    }
    with pytest.raises(BackendsUnusable) as failure:
        check_backends(specs)
    message = str(failure.value)
    assert message.startswith("no row was started, because backend 'wrong': the backend refused the credentials")
    assert "backend 'missing': Airflow connection 'pf_missing' does not exist" in message
    assert "airflow connections add pf_missing --conn-type openeo" in message
    assert "backend 'no_api': connection 'pf_no_api' does not lead to" in message
    assert "'good'" not in message and "not-the-password" not in message
    assert message.count("backend 'wrong'") == 1


def test_an_unreachable_backend_is_a_warning_not_a_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PF_DOWN",
        json.dumps({"conn_type": "openeo", "host": "http://127.0.0.1:9", "login": "alice", "password": "alice123"}),
    )
    report = check_backends({"down": BackendSpec("down", "pf_down")})
    assert report.problems == [] and len(report.warnings) == 1
    assert report.warnings[0].startswith("backend 'down' cannot be reached now")
    assert "alice123" not in report.warnings[0]
