"""The provider's Airflow plugin (the scheduler-side pools check) is registered where Airflow looks for it.

Airflow loads plugins from the ``airflow.plugins`` entry point of installed packages (and, with ``[core]
lazy_discover_providers = False``, from ``plugins`` in the provider info). The entry point is checked as
``pyproject.toml`` declares it: a package installed from an older checkout has older metadata, so the CLI test
puts metadata made from this checkout's ``pyproject.toml`` first on the path, as ``pip install`` would write it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from airflow_provider_openeo import get_provider_info
from airflow_provider_openeo.batch import pool_listener
from airflow_provider_openeo.plugin import OpenEOPlugin
from tests.conftest import REPO

AIRFLOW = Path(sys.executable).with_name("airflow")
tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_pyproject_declares_the_plugin_entry_point():
    declared = PYPROJECT["entry-points"]["airflow.plugins"]
    (name, value), *more = declared.items()
    assert not more
    plugin = EntryPoint(name=name, value=value, group="airflow.plugins").load()
    assert plugin is OpenEOPlugin and plugin.name == name == "openeo"
    assert plugin.listeners == [pool_listener]


def test_provider_info_does_not_name_the_plugin_again():
    """With ``[core] lazy_discover_providers = False`` Airflow loads the entry point's plugins and the provider
    info's: naming it in both registered it twice (the second refused as an import error)."""
    assert "plugins" not in get_provider_info()


def test_the_plugin_is_registered_once_with_eager_provider_discovery(tmp_path):
    code = (
        "from airflow import plugins_manager as pm; plugins, errors = pm._get_plugins(); "
        "print([p.name for p in plugins].count('openeo'), sorted(errors))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "1 []", done.stdout + done.stderr[-2000:]


def test_the_plugin_mounts_the_batch_view_and_shows_it_in_the_ui():
    (app,) = OpenEOPlugin.fastapi_apps
    assert app["url_prefix"] == "/openeo" and callable(app["app"])
    views = {view["url_route"]: view for view in OpenEOPlugin.external_views}
    assert views["openeo-batches"]["destination"] == "nav" and views["openeo-batch"]["destination"] == "dag"


def test_airflow_loads_the_plugin_through_its_entry_point(tmp_path):
    """``airflow plugins``, with package metadata written from pyproject.toml, lists the plugin and its listener."""
    dist_info = tmp_path / f"airflow_provider_openeo-{PYPROJECT['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {PYPROJECT['name']}\nVersion: {PYPROJECT['version']}\n", encoding="utf-8"
    )
    plugins = PYPROJECT["entry-points"]["airflow.plugins"]
    (dist_info / "entry_points.txt").write_text(
        "[airflow.plugins]\n" + "".join(f"{name} = {value}\n" for name, value in plugins.items()), encoding="utf-8"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run(
        [str(AIRFLOW), "plugins", "--output", "json"], capture_output=True, text=True, timeout=180, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listed = json.loads(done.stdout[done.stdout.index("[{") :])  # unit-test mode logs a line first
    (ours,) = [plugin for plugin in listed if plugin["name"] == "openeo"]
    assert ours["listeners"] == ["airflow_provider_openeo.batch.pool_listener"]
    assert "EntryPoint(name='openeo', value='airflow_provider_openeo.plugin:OpenEOPlugin'" in ours["source"]


def test_loading_the_plugin_stays_light():
    """Every Airflow process that loads plugins (scheduler, API server, CLI) imports it: no pandas, no openEO client,
    no FastAPI (the batch view's app is built on its first request)."""
    code = (
        "import sys, airflow_provider_openeo.plugin; "
        "print(sorted({'pandas', 'openeo', 'fastapi', 'airflow_provider_openeo.batch_view.app'} & set(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
