"""The preload module: imported from ``airflow_local_settings`` by every Airflow process, before tasks fork."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from airflow_provider_openeo.preload import LOCAL_SETTINGS_LINE
from deploy.live_airflow import AirflowSettings, LiveAirflow

PROBE = (
    "import sys, airflow.settings, airflow.models; "
    "print(all(m in sys.modules for m in ('pandas', 'openeo', 'airflow_provider_openeo.batch.task_groups')))"
)


def _airflow_process(home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")} | {"AIRFLOW_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_airflow_starts_with_the_preload_and_holds_the_modules(tmp_path: Path) -> None:
    """No import cycle while Airflow initialises; the modules a task needs are there before any fork."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "airflow_local_settings.py").write_text(LOCAL_SETTINGS_LINE, encoding="utf-8")
    assert _airflow_process(tmp_path) == "True"


def test_without_it_airflow_does_not_load_them(tmp_path: Path) -> None:
    assert _airflow_process(tmp_path) == "False"


def test_the_live_harness_writes_or_removes_the_local_settings(tmp_path: Path) -> None:
    local_settings = tmp_path / "config" / "airflow_local_settings.py"
    LiveAirflow(tmp_path, AirflowSettings())._write_local_settings()
    assert local_settings.read_text(encoding="utf-8") == LOCAL_SETTINGS_LINE
    LiveAirflow(tmp_path, AirflowSettings(preload_openeo=False))._write_local_settings()
    assert not local_settings.exists()
