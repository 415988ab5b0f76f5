"""The batch view's routes, in Airflow's own API server app (``create_app``: the plugin mounted from its entry
point), over DAGs serialized into a real metadata database and job tables in real SQLite files.

Who sees what: a user who may read the DAG gets its batch (progress per backend, rows, tiles); a user who may
read only another DAG gets a 403 for it and does not find it in the list; a request without a token gets a 401
everywhere, the page shells and static files included. No answer carries a secret of the backends' connections
or of the job database's connection.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from airflow_provider_openeo.batch.row_dispatch import run_key_of, slot_of
from airflow_provider_openeo.batch_view.catalog import batches_in_dag
from airflow_provider_openeo.batch_view.progress import batch_progress
from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook
from airflow_provider_openeo.job_table.timestamps import rfc3339_from_epoch
from tests.fixtures.databases import POSTGRES_CONN_JSON, _postgres_unreachable_reason, unique_table_name

try:
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
except ImportError:  # pragma: no cover - Airflow 3 always has it
    SimpleAuthManager = object  # type: ignore[misc,assignment]

GEO_DAG = "test_view_fields"
OTHER_DAG = "test_view_dates"
BACKEND_SECRETS = ("foo-password-0xC0FFEE", "bar-client-secret-0xBEEF", "db-password-0xFACE")
DATES_TABLE = unique_table_name("view_dates")
#: Which DAGs each user may read (the test auth manager below asks this, as a real one asks its policy).
READS = {"alice": {GEO_DAG, OTHER_DAG}, "bob": {OTHER_DAG}}


class DagScopedAuthManager(SimpleAuthManager):  # type: ignore[misc,valid-type]
    """SimpleAuthManager whose users may read only the DAGs ``READS`` gives them (SimpleAuthManager's roles are
    all-DAGs or nothing)."""

    def is_authorized_dag(self, *, method: str, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        allowed = READS.get(user.get_name(), set())
        return method == "GET" and (details is None or details.id is None or details.id in allowed)


def start_job(row: pd.Series, connection: Any, provider: str, **kwargs: Any) -> Any:
    return None


def _dags(work: Path) -> dict[str, Any]:
    from airflow.sdk import DAG

    from airflow_provider_openeo.batch.task_groups import openeo_job_batch

    backends = {
        "foo": {"conn_id": "openeo_foo", "parallel_jobs": 2},
        "bar": {"conn_id": "openeo_bar", "parallel_jobs": 1},
    }
    dags = {}
    with DAG(GEO_DAG, schedule=None) as geo:
        openeo_job_batch(backends=backends, start_job=start_job, sqlite_path=str(work / "geo.db"))
    dags[GEO_DAG] = geo
    with DAG(OTHER_DAG, schedule=None) as other:
        openeo_job_batch(backends=backends, start_job=start_job, job_db_conn_id="view_job_db", job_table=DATES_TABLE)
    dags[OTHER_DAG] = other
    return dags


def _job_db_connection(work: Path) -> str:
    """The second batch's job database: PostgreSQL with a password (trust auth ignores it), as in production; where
    PostgreSQL is not running, a SQLite connection holding the secret in its extras."""
    if _postgres_unreachable_reason() is None:
        return json.dumps({**json.loads(POSTGRES_CONN_JSON), "password": BACKEND_SECRETS[2]})
    return json.dumps({"conn_type": "sqlite", "host": str(work / "dates.db"), "extra": {"token": BACKEND_SECRETS[2]}})


def _fields_table() -> gpd.GeoDataFrame:
    """Six fields in Web Mercator (the view draws them in WGS 84) at every stage of a batch."""
    statuses = ["finished", "finished", "running", "error", "not_started", "queued"]
    backends = ["foo", "bar", "foo", "bar", None, "foo"]
    cells = [box(560_000 + 1_000 * i, 6_650_000, 560_800 + 1_000 * i, 6_650_800) for i in range(6)]
    table = gpd.GeoDataFrame(
        {
            "title": [f"field {i}" for i in range(6)],
            "status": statuses,
            "backend_name": backends,
            "id": ["j-0", "j-1", "j-2", "j-3", None, "j-5"],
            "start_time": [
                "2024-05-01T10:00:00Z",
                "2024-05-01T10:00:00Z",
                "2024-05-01T10:01:00Z",
                "2024-05-01T10:00:00Z",
                None,
                "2024-05-01T10:02:00Z",
            ],
            "error_message": [None, None, None, "job j-3 failed on backend bar: out of memory", None, None],
        },
        geometry=cells,
        crs="EPSG:3857",
    )
    return table


@pytest.fixture(scope="module")
def deployment(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The two DAGs serialized into the metadata database, their job tables filled, and Airflow's API app."""
    import os

    from airflow.api_fastapi.app import create_app, purge_cached_app
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.pool import Pool
    from fastapi.testclient import TestClient

    work = tmp_path_factory.mktemp("batch-view")
    env = {
        "AIRFLOW__CORE__AUTH_MANAGER": f"{__name__}.DagScopedAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "alice:viewer,bob:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(work / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "batch-view-test-jwt-secret-" + "0123456789abcdef" * 4,
        "AIRFLOW_CONN_OPENEO_FOO": json.dumps(
            {
                "conn_type": "openeo",
                "host": "http://127.0.0.1:9/openeo",
                "login": "alice",
                "password": BACKEND_SECRETS[0],
            }
        ),
        "AIRFLOW_CONN_OPENEO_BAR": json.dumps(
            {
                "conn_type": "openeo",
                "host": "http://127.0.0.1:9/openeo",
                "extra": {
                    "auth_method": "oidc_client_credentials",
                    "client_id": "c",
                    "client_secret": BACKEND_SECRETS[1],
                },
            }
        ),
        "AIRFLOW_CONN_VIEW_JOB_DB": _job_db_connection(work),
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # Airflow's configuration reads the environment at each look-up
    try:
        dags = _dags(work)
        DagBundlesManager().sync_bundles_to_db()
        bag = SimpleNamespace(dags=dags, import_errors={}, bundle_path=None, dag_warnings=set(), file_last_changed={})
        sync_bag_to_db(bag, "test_dags", None)
        Pool.create_or_update_pool("openeo_foo", slots=2, description="test", include_deferred=True)
        Pool.create_or_update_pool("openeo_bar", slots=1, description="test", include_deferred=True)

        geo = OpenEOJobDbHook(table=batches_in_dag(dags[GEO_DAG])[0].table, sqlite_path=str(work / "geo.db"))
        geo.initialize_from_df(_fields_table())
        # the jobs took 10 and 5 minutes: created that long before the trigger recorded their end (now)
        geo.update_row(0, {"start_time": rfc3339_from_epoch(time.time() - 600), "backend_status": "finished"})
        geo.update_row(1, {"start_time": rfc3339_from_epoch(time.time() - 300), "backend_status": "finished"})
        geo.update_row(
            2,
            {
                "dispatch_run": run_key_of(GEO_DAG, "manual__1"),
                "dispatch_slot": slot_of("openeo_job_batch.run_foo.job", 4),
            },
        )
        dates = OpenEOJobDbHook("view_job_db", table=DATES_TABLE)
        dates.initialize_from_df(pd.DataFrame({"title": ["2024-01", "2024-02"], "status": ["finished", "not_started"]}))
        for db in (geo, dates):
            db.dispose()

        purge_cached_app()
        app = create_app(apps="core")
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        manager = get_auth_manager()
        tokens = {name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role="viewer")) for name in READS}
        with TestClient(app) as client:
            yield SimpleNamespace(client=client, tokens=tokens, dags=dags, geo_table=geo.table)
        dates.drop()
        dates.dispose()
    finally:
        purge_cached_app()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _get(deployment: SimpleNamespace, path: str, user: str | None) -> Any:
    headers = {"Authorization": f"Bearer {deployment.tokens[user]}"} if user else {}
    answer = deployment.client.get(path, headers=headers, follow_redirects=False)
    for secret in BACKEND_SECRETS:
        assert secret not in answer.text, f"{path} as {user}: a connection secret in the answer"
    assert "127.0.0.1:9" not in answer.text, f"{path} as {user}: a backend's host in the answer"
    return answer


def _paths(deployment: SimpleNamespace, dag_id: str, table: str) -> list[str]:
    base = f"/openeo/batches/{dag_id}/{table}"
    return [
        base,
        f"{base}/rows/0",
        f"/openeo/api/batches/{dag_id}/{table}",
        f"/openeo/api/batches/{dag_id}/{table}/rows/0",
    ]


def test_plugin_external_views_point_at_the_mounted_app(deployment: SimpleNamespace) -> None:
    from airflow_provider_openeo.plugin import OpenEOPlugin

    hrefs = {view["url_route"]: view["href"] for view in OpenEOPlugin.external_views}
    assert hrefs == {"openeo-batches": "/openeo/batches", "openeo-batch": "/openeo/batches?dag_id={DAG_ID}"}
    page = _get(deployment, "/openeo/batches", "alice")
    assert page.status_code == 200 and 'data-page="batches"' in page.text
    assert _get(deployment, "/openeo/static/leaflet/leaflet.js", "alice").status_code == 200


def test_allowed_user_sees_progress_rows_and_tiles(deployment: SimpleNamespace) -> None:
    answer = _get(deployment, f"/openeo/api/batches/{GEO_DAG}/{deployment.geo_table}", "alice")
    assert answer.status_code == 200, answer.text
    data = answer.json()
    progress = data["progress"]
    assert progress["total"]["rows"] == 6 and progress["total"]["done"] == 3  # finished x2, error
    assert progress["total"]["counts"] == {"not_started": 1, "queued": 1, "running": 1, "finished": 2, "error": 1}
    foo, bar = progress["backends"]["foo"], progress["backends"]["bar"]
    assert foo["counts"] == {"queued": 1, "running": 1, "finished": 1} and foo["slots"] == 2
    assert bar["counts"] == {"finished": 1, "error": 1} and bar["slots"] == 1 and bar["left"] == 0
    # foo's one finished job took 10 min; its 2 rows left fill one wave of its 2 slots
    assert foo["pace_seconds"] == pytest.approx(600, abs=5) and foo["eta_seconds"] == pytest.approx(600, abs=5)
    assert progress["total"]["unassigned"] == 1 and progress["total"]["eta_seconds"] is not None
    rows = {row["row_id"]: row for row in data["rows"]}
    assert rows[3]["error_message"] == "job j-3 failed on backend bar: out of memory"
    assert rows[2]["task_instance"] == {
        "dag_id": GEO_DAG, "run_id": "manual__1", "task_id": "openeo_job_batch.run_foo.job", "map_index": 4
    }  # fmt: skip
    assert rows[0]["label"] == "0: field 0" and rows[0]["id"] == "j-0"
    features = data["tiles"]["features"]
    assert [f["properties"]["status"] for f in features] == [rows[i]["status"] for i in range(6)]
    west, south = features[0]["geometry"]["coordinates"][0][0][:2]
    assert 5.0 < west < 5.1 and 51.0 < south < 51.2  # drawn in WGS 84 from Web Mercator
    detail = _get(deployment, f"/openeo/api/batches/{GEO_DAG}/{deployment.geo_table}/rows/3", "alice").json()
    assert detail["columns"]["error_message"].endswith("out of memory") and "geometry" not in detail["columns"]


def test_the_list_holds_only_the_batches_of_readable_dags(deployment: SimpleNamespace) -> None:
    alice = _get(deployment, "/openeo/api/batches", "alice").json()["batches"]
    assert {(b["dag_id"], b["table"]) for b in alice} == {(GEO_DAG, deployment.geo_table), (OTHER_DAG, DATES_TABLE)}
    dates = next(b for b in alice if b["dag_id"] == OTHER_DAG)
    assert dates["job_db"] == "connection view_job_db" and dates["progress"]["done"] == 1
    bob = _get(deployment, "/openeo/api/batches", "bob").json()["batches"]
    assert [(b["dag_id"], b["table"]) for b in bob] == [(OTHER_DAG, DATES_TABLE)]
    assert _get(deployment, f"/openeo/api/batches?dag_id={GEO_DAG}", "bob").json() == {"batches": []}


def test_a_user_without_access_to_the_dag_gets_403(deployment: SimpleNamespace) -> None:
    for path in _paths(deployment, GEO_DAG, deployment.geo_table):
        answer = _get(deployment, path, "bob")
        assert answer.status_code == 403, (path, answer.status_code)
        assert "field" not in answer.text
    assert (
        _get(deployment, f"/openeo/task-instance/{GEO_DAG}/manual__1/openeo_job_batch.run_foo.job/4", "bob").status_code
        == 403
    )
    for path in _paths(deployment, OTHER_DAG, DATES_TABLE):
        assert _get(deployment, path, "bob").status_code == 200, path


def test_an_anonymous_request_gets_nothing(deployment: SimpleNamespace) -> None:
    paths = [
        "/openeo/batches",
        "/openeo/api/batches",
        "/openeo/static/batch_view.js",
        "/openeo/static/leaflet/leaflet.js",
        f"/openeo/task-instance/{GEO_DAG}/manual__1/openeo_job_batch.run_foo.job/4",
        *_paths(deployment, GEO_DAG, deployment.geo_table),
    ]
    for path in paths:
        answer = _get(deployment, path, None)
        assert answer.status_code == 401, (path, answer.status_code)
        assert "field" not in answer.text and "finished" not in answer.text


def test_a_task_instance_leads_to_its_rows_page(deployment: SimpleNamespace) -> None:
    answer = _get(deployment, f"/openeo/task-instance/{GEO_DAG}/manual__1/openeo_job_batch.run_foo.results/4", "alice")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/openeo/batches/{GEO_DAG}/{deployment.geo_table}/rows/2"
    unknown = _get(deployment, f"/openeo/task-instance/{GEO_DAG}/manual__9/openeo_job_batch.run_foo.job/0", "alice")
    assert unknown.status_code == 200 and 'data-page="job"' in unknown.text


def test_unknown_batch_and_row_are_404(deployment: SimpleNamespace) -> None:
    assert _get(deployment, f"/openeo/api/batches/{GEO_DAG}/no_such_table", "alice").status_code == 404
    assert _get(deployment, f"/openeo/api/batches/{GEO_DAG}/{deployment.geo_table}/rows/99", "alice").status_code == 404


def test_page_shell_escapes_what_the_url_brings(deployment: SimpleNamespace) -> None:
    page = _get(deployment, '/openeo/batches?dag_id="><script>alert(1)</script>', "alice").text
    assert "<script>alert(1)" not in page and re.search(r'data-dag-id="&quot;&gt;&lt;script&gt;', page)


def test_progress_without_finished_jobs_has_no_estimate() -> None:
    table = pd.DataFrame({"status": ["running", "not_started"], "backend_name": ["foo", None]})
    progress = batch_progress(table, ["foo"], {}, {"foo": 2})
    assert progress["total"]["eta_seconds"] is None and progress["backends"]["foo"]["eta_seconds"] is None
    done = batch_progress(pd.DataFrame({"status": ["finished"], "backend_name": ["foo"]}), ["foo"], {}, {})
    assert done["total"]["eta_seconds"] == 0.0 and done["total"]["percent_done"] == 100.0
