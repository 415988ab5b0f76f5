"""Provider registration: Airflow finds the package, the ``openeo`` connection type and its declarative form.

Checked the way users meet it: the ``airflow`` CLI of this virtualenv in a subprocess, Airflow's
ProvidersManager, and the hook metadata the React UI's connection form is built from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local_backend.launcher import LocalBackend
from tests.fixtures.local_backend import backend_connection

AIRFLOW = Path(sys.executable).with_name("airflow")


def _airflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AIRFLOW), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.parametrize("password", ["alice123", "wrong-password-1"])
def test_airflow_connections_test_cli(openeo_backend: LocalBackend, password: str) -> None:
    """``airflow connections test`` goes through Airflow's own path to OpenEOHook.test_connection."""
    conn = backend_connection(openeo_backend, "basic")
    conn["password"] = password
    result = _airflow(
        "connections",
        "test",
        "oe_cli",
        env={"AIRFLOW_CONN_OE_CLI": json.dumps(conn), "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"},
    )
    output = result.stdout + result.stderr
    assert "wrong-password-1" not in output
    if password == "alice123":
        assert "Connection success!" in output, output[-2000:]  # Airflow prints no message on success
    else:
        assert "Connection failed!" in output, output[-2000:]
        assert "authentication (basic) failed" in output
