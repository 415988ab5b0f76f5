"""Provider registration: Airflow finds the package, the ``openeo`` connection type and its declarative form.

Checked the way users meet it: the ``airflow`` CLI of this virtualenv in a subprocess, Airflow's
ProvidersManager, and the hook metadata the React UI's connection form is built from.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jsonschema
from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.providers_manager import ProvidersManager

from airflow_provider_openeo import get_provider_info
from airflow_provider_openeo.hooks.openeo import OpenEOHook

AIRFLOW = Path(sys.executable).with_name("airflow")
FIELDS = {
    "auth_method",
    "oidc_provider_id",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "timeout",
    "job_gone_polls",
    "job_gone_seconds",
}
SECRET_FIELDS = {"client_secret", "refresh_token", "access_token"}


def _airflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AIRFLOW), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _airflow_schema(name: str) -> dict:
    import airflow

    return json.loads((Path(airflow.__file__).parent / name).read_text())


def test_provider_info_is_valid_for_airflow() -> None:
    info = get_provider_info()
    jsonschema.validate(info, _airflow_schema("provider_info.schema.json"))
    # conn-fields / ui-field-behaviour are only described in the provider.yaml schema: check them there.
    item_schema = _airflow_schema("provider.yaml.schema.json")["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], item_schema)


def test_every_module_and_class_named_in_provider_info_imports() -> None:
    info = get_provider_info()
    modules = [
        m for kind in ("hooks", "operators", "sensors", "triggers") for i in info[kind] for m in i["python-modules"]
    ]
    classes = [*info["extra-links"], *(c["hook-class-name"] for c in info["connection-types"])]
    for module in modules:
        importlib.import_module(module)
    for path in classes:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path


def test_airflow_providers_list_shows_the_package() -> None:
    result = _airflow("providers", "list", "-o", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    # Log lines may precede the JSON document; it starts at the first line opening a list.
    document = result.stdout[result.stdout.index("\n[") :] if not result.stdout.startswith("[") else result.stdout
    listed = {p["package_name"]: p for p in json.loads(document)}
    assert listed["airflow-provider-openeo"]["version"] == get_provider_info()["versions"][0]


def test_providers_manager_knows_the_openeo_connection_type() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager = ProvidersManager()
        hook = manager.hooks["openeo"]
        widgets = {k: v for k, v in manager.connection_form_widgets.items() if k.startswith("extra__openeo__")}
        behaviour = manager.field_behaviours["openeo"]
    assert hook is not None
    assert (hook.hook_class_name, hook.connection_id_attribute_name, hook.hook_name, hook.package_name) == (
        "airflow_provider_openeo.hooks.openeo.OpenEOHook",
        OpenEOHook.conn_name_attr,
        "openEO",
        "airflow-provider-openeo",
    )
    assert hook.connection_testable
    assert {w.field_name for w in widgets.values()} == FIELDS
    assert {w.field_name for w in widgets.values() if w.is_sensitive} == SECRET_FIELDS
    assert behaviour["relabeling"]["host"] == "Backend URL"
    ours = [
        w
        for w in caught
        if issubclass(w.category, (DeprecationWarning, AirflowProviderDeprecationWarning))
        and "openeo" in str(w.message).lower()
    ]
    assert not ours, [str(w.message) for w in ours]
    assert "get_connection_form_widgets" not in OpenEOHook.__dict__
    assert "get_ui_field_behaviour" not in OpenEOHook.__dict__


def test_ui_connection_form_metadata() -> None:
    """What the React UI's connection form is built from (the /ui/connections/hook_meta endpoint)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    meta = next(m for m in HookMetaService.hook_meta_data() if m.connection_type == "openeo")
    assert meta.hook_name == "openEO"
    assert set(meta.extra_fields) == FIELDS
    assert meta.extra_fields["auth_method"]["schema"]["enum"] == [
        "none",
        "basic",
        "oidc_client_credentials",
        "oidc_refresh_token",
        "access_token",
    ]
    assert meta.extra_fields["client_secret"]["schema"]["format"] == "password"
    assert meta.standard_fields is not None and meta.standard_fields.host.title == "Backend URL"
    assert meta.standard_fields.port.hidden
