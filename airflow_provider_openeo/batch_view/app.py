"""The batch view's FastAPI app, mounted by the API server under :data:`URL_PREFIX` (the provider's plugin).

Every route goes through Airflow's auth manager the way Airflow's own routes do: the user comes from the request's
JWT (``GetUserDep``: the UI's cookie or a bearer token; none is a 401), a batch page or its data needs read access
to its DAG (``requires_access_dag("GET")``, a 403 otherwise), and the list holds only the batches of the DAGs the
auth manager says the user may read. The answers carry names (DAG, table, backend, connection id, pool) and the
job table's own columns, never a connection's host, login, password or extras, nor a database URL or file path.

Pages are one static HTML shell and a script (``static/``) that read the JSON routes under ``/api``.
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from sqlalchemy import select

from airflow_provider_openeo.batch_view.catalog import Batch, BatchCatalog
from airflow_provider_openeo.batch_view.progress import batch_progress, row_detail, row_records, tile_features
from airflow_provider_openeo.batch_view.urls import URL_PREFIX
from airflow_provider_openeo.links.openeo import OPENEO_JOB_URL_XCOM_KEY, OPENEO_ROW_ID_XCOM_KEY, clean_job_url

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
PAGE = STATIC / "batch_view.html"

ReadsDag = Depends(requires_access_dag("GET"))


def _airflow_root(request: Request) -> str:
    """The API server's own root path (the app's root path without our prefix): where the UI's pages are."""
    root = request.scope.get("root_path", "")
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else root


def _page(request: Request, page: str, **data: str) -> HTMLResponse:
    """The page shell with what the script needs to know: the page, the roots, the batch or row it shows."""
    values = {
        "page": page,
        "root": request.scope.get("root_path", "") or URL_PREFIX,
        "airflow_root": _airflow_root(request),
        **data,
    }
    attributes = " ".join(f'data-{name.replace("_", "-")}="{html.escape(value)}"' for name, value in values.items())
    text = PAGE.read_text(encoding="utf-8").replace("{{ROOT}}", html.escape(values["root"]))
    return HTMLResponse(text.replace("{{DATA}}", attributes), headers={"Cache-Control": "no-store"})


def _job_url_and_row(session: Any, ti: dict[str, Any]) -> tuple[str, Any]:
    """The backend's URL of the task instance's job and the row it ran, as the task pushed them to XCom."""
    from airflow.models.xcom import XComModel

    found = dict(
        session.execute(
            select(XComModel.key, XComModel.value).where(
                XComModel.dag_id == ti["dag_id"],
                XComModel.run_id == ti["run_id"],
                XComModel.task_id == ti["task_id"],
                XComModel.map_index == ti["map_index"],
                XComModel.key.in_([OPENEO_JOB_URL_XCOM_KEY, OPENEO_ROW_ID_XCOM_KEY]),
            )
        ).all()
    )
    values = {key: XComModel.deserialize_value(_Stored(value)) for key, value in found.items()}
    return clean_job_url(values.get(OPENEO_JOB_URL_XCOM_KEY)), values.get(OPENEO_ROW_ID_XCOM_KEY)


class _Stored:
    """What ``XComModel.deserialize_value`` reads: an object with the stored ``value``."""

    def __init__(self, value: Any) -> None:
        self.value = value


def create_app() -> FastAPI:
    """The app: its pages (the HTML shell per page) and the JSON routes the pages' script reads, on one catalog of
    the deployment's batches."""
    app = FastAPI(title="openEO batches", docs_url=None, redoc_url=None, openapi_url=None)
    catalog = BatchCatalog()
    _add_pages(app, catalog)
    _add_data_routes(app, catalog)
    return app


def _add_pages(app: FastAPI, catalog: BatchCatalog) -> None:
    """The HTML routes (each the same shell, told which page to draw) and the static files they load."""

    @app.get("/batches", response_class=HTMLResponse)
    def batches_page(request: Request, user: GetUserDep) -> HTMLResponse:
        return _page(request, "batches", dag_id=request.query_params.get("dag_id", ""))

    @app.get("/batches/{dag_id}/{table}", response_class=HTMLResponse, dependencies=[ReadsDag])
    def batch_page(request: Request, dag_id: str, table: str) -> HTMLResponse:
        return _page(request, "batch", dag_id=dag_id, table=table)

    @app.get("/batches/{dag_id}/{table}/rows/{row_id}", response_class=HTMLResponse, dependencies=[ReadsDag])
    def row_page(request: Request, dag_id: str, table: str, row_id: str) -> HTMLResponse:
        return _page(request, "row", dag_id=dag_id, table=table, row_id=row_id)

    @app.get("/task-instance/{dag_id}/{run_id}/{task_id}/{map_index}", dependencies=[ReadsDag])
    def task_instance_page(
        request: Request, dag_id: str, run_id: str, task_id: str, map_index: int, session: SessionDep
    ) -> Any:
        """Where the "openEO job" button leads: the page of the row the task instance ran."""
        ti = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
        job_url, row_id = _job_url_and_row(session, ti)
        found = _row_of_task_instance(catalog.batches([dag_id], session=session), ti, row_id)
        if found is not None:
            batch, row = found
            target = f"{request.scope.get('root_path', '')}/batches/{quote(dag_id, safe='')}/{batch.table}/rows/{row}"
            return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
        shown = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": str(map_index)}
        return _page(request, "job", job_url=job_url, **shown)

    @app.get("/static/{path:path}")
    def static_file(path: str, user: GetUserDep) -> FileResponse:
        target = (STATIC / path).resolve()
        if not target.is_file() or STATIC.resolve() not in target.parents:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
        return FileResponse(target)


def _add_data_routes(app: FastAPI, catalog: BatchCatalog) -> None:
    """The JSON routes: the batches a user may read, one batch's progress and rows, one row's detail."""

    @app.get("/api/batches")
    def list_batches(user: GetUserDep, session: SessionDep, dag_id: str | None = None) -> dict[str, Any]:
        batches = []
        for batch in _readable_batches(catalog, user, session, dag_id):
            described = batch.describe()
            try:
                table = _read_table(batch)
            except HTTPException as exc:
                described["error"] = exc.detail
                table = None
            if table is not None:
                described["progress"] = batch_progress(table, [b.name for b in batch.backends], {}, {})["total"]
            batches.append(described)
        return {"batches": batches}

    @app.get("/api/batches/{dag_id}/{table}", dependencies=[ReadsDag])
    def batch_data(dag_id: str, table: str, session: SessionDep) -> dict[str, Any]:
        batch = _the_batch(catalog, dag_id, table, session)
        rows = _read_table(batch)
        answer: dict[str, Any] = {"batch": batch.describe(), "generated_at": time.time()}
        if rows is None:
            answer.update(exists=False, progress=None, rows=[], tiles=None)
            return answer
        names = [b.name for b in batch.backends]
        progress = batch_progress(rows, names, _paces(batch, names), _pool_slots(session, batch))
        answer.update(exists=True, progress=progress, rows=row_records(rows), tiles=tile_features(rows))
        return answer

    @app.get("/api/batches/{dag_id}/{table}/rows/{row_id}", dependencies=[ReadsDag])
    def row_data(dag_id: str, table: str, row_id: str, session: SessionDep) -> dict[str, Any]:
        batch = _the_batch(catalog, dag_id, table, session)
        rows = _read_table(batch)
        key = _row_key(rows, row_id)
        if key is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"job table {table!r} has no row {row_id!r}")
        geometry = rows.geometry.name if hasattr(rows, "crs") and hasattr(rows, "geometry") else None
        detail = row_detail(key, rows.loc[key].to_dict(), geometry)
        ti = detail["task_instance"]
        detail["job_url"] = _job_url_and_row(session, ti)[0] if ti else ""
        detail["batch"] = batch.describe()
        return detail


def _readable_batches(catalog: BatchCatalog, user: Any, session: Any, dag_id: str | None = None) -> list[Batch]:
    """The batches of the DAGs the auth manager lets ``user`` read (of ``dag_id`` only, when given)."""
    from airflow.api_fastapi.app import get_auth_manager

    dag_ids = get_auth_manager().get_authorized_dag_ids(user=user, method="GET", session=session)
    if dag_id is not None:
        dag_ids = dag_ids & {dag_id}
    return catalog.batches(dag_ids, session=session)


def _the_batch(catalog: BatchCatalog, dag_id: str, table: str, session: Any) -> Batch:
    """The batch a URL names, or a 404."""
    batch = catalog.batch(dag_id, table, session=session)
    if batch is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"DAG {dag_id!r} has no batch with job table {table!r}")
    return batch


def _read_table(batch: Batch) -> Any:
    """The batch's job table (None before its first run), or a 502 that names no host or path."""
    db = batch.job_db()
    try:
        return db.read() if db.exists() else None
    except Exception as exc:  # the message may name the database's host: log it, answer without it
        log.warning("batch view: could not read job table %r of DAG %r: %s", batch.table, batch.dag_id, exc)
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            f"could not read job table {batch.table!r} ({type(exc).__name__}; the API server's log says more)",
        ) from None
    finally:
        db.dispose()


def _pool_slots(session: Any, batch: Batch) -> dict[str, int | None]:
    """Each backend's pool size, by backend name (None: its pool does not exist)."""
    from airflow.models.pool import Pool

    pools = {b.pool: b.name for b in batch.backends if b.pool}
    found = dict(session.execute(select(Pool.pool, Pool.slots).where(Pool.pool.in_(list(pools)))).all())
    return {name: found.get(pool) for pool, name in pools.items()}


def _paces(batch: Batch, names: list[str]) -> dict[str, float]:
    """Seconds a job takes on each backend, from the job table's history (for the time-left estimate)."""
    from airflow_provider_openeo.batch.row_dispatch import backend_paces

    db = batch.job_db()
    try:
        return backend_paces(db, names)
    finally:
        db.dispose()


def _row_key(rows: Any, row_id: str) -> Any:
    """The table's index value for ``row_id`` as the URL gives it (text), whatever the index's type."""
    if rows is None:
        return None
    for key in rows.index:
        if str(key) == row_id:
            return key
    return None


def _row_of_task_instance(batches: list[Batch], ti: dict[str, Any], row_id: Any) -> tuple[Batch, Any] | None:
    """The batch and row a task instance ran: the row it pushed to XCom, else the row whose dispatch columns name
    it (the ``results`` task of a row shares its ``job`` task's map index)."""
    from airflow_provider_openeo.batch.row_dispatch import run_key_of, slot_of

    group = ti["task_id"].rpartition(".")[0]
    mine = [b for b in batches if any(x.job_task_id.rpartition(".")[0] == group for x in b.backends)] or batches
    if row_id is not None and len(mine) == 1:
        return mine[0], row_id
    run = run_key_of(ti["dag_id"], ti["run_id"])
    slot = slot_of(f"{group}.job" if group else ti["task_id"], ti["map_index"])
    for batch in mine:
        db = batch.job_db()
        try:
            if not db.exists():
                continue
            rows = db.read()
        finally:
            db.dispose()
        if "dispatch_run" not in rows.columns:
            continue
        hit = rows[(rows["dispatch_run"] == run) & (rows["dispatch_slot"] == slot)]
        if len(hit):
            return batch, hit.index[0]
    return None
