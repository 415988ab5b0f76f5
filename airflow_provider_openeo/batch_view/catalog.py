"""Which batches exist and where their job tables are: read from the DAGs Airflow serialized.

A batch is a job table a DAG's row tasks work on. The API server has no DAG files, only what the dag-processor
serialized: each row task's ``job_table``, ``job_db_conn_id`` and ``sqlite_path`` (template fields, so they are
serialized), its backend and its pool. So the view needs no registry of its own and no extra service, and a
batch belongs to exactly the DAGs whose tasks use its table: whoever may read the DAG may read the batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

#: Module of the provider's row operators, as Airflow records it for every serialized task.
OPERATORS_MODULE = "airflow_provider_openeo.operators.openeo"
#: The job task of each backend's group in ``openeo_job_batch`` is ``<group>.run_<backend>.job``.
RUN_GROUP_MARK = ".run_"


@dataclass(frozen=True)
class BatchBackend:
    """One backend of a batch: its name, its Airflow connection and pool, and the task that runs its rows."""

    name: str
    conn_id: str | None
    pool: str | None
    job_task_id: str


@dataclass(frozen=True)
class Batch:
    """A job table of one DAG, with what it takes to open it and the backends its rows run on."""

    dag_id: str
    table: str
    job_db_conn_id: str | None
    sqlite_path: str | None
    group_id: str | None
    backends: tuple[BatchBackend, ...]

    def job_db(self) -> OpenEOJobDbHook:
        from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

        return OpenEOJobDbHook(self.job_db_conn_id, table=self.table, sqlite_path=self.sqlite_path)

    def describe(self) -> dict[str, Any]:
        """What the page shows about the batch: names only (no file path, no URL, nothing a connection holds)."""
        return {
            "dag_id": self.dag_id,
            "table": self.table,
            "group_id": self.group_id,
            "job_db": f"connection {self.job_db_conn_id}" if self.job_db_conn_id else "embedded SQLite",
            "backends": [{"name": b.name, "conn_id": b.conn_id, "pool": b.pool} for b in self.backends],
        }


def _text(value: Any) -> str | None:
    """A serialized template field as a plain value; None for empty or still-templated values."""
    if value is None or value == "":
        return None
    text = str(value)
    return None if "{{" in text or "{%" in text else text


def batches_in_dag(dag: Any) -> list[Batch]:
    """The batches of one (serialized) DAG, in the order its tasks name them."""
    found: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
    for task in dag.tasks:
        # a serialized task records its class's module; a task of a DAG file still has its class
        if (getattr(task, "_task_module", None) or type(task).__module__) != OPERATORS_MODULE:
            continue
        table = _text(getattr(task, "job_table", None))
        if table is None:
            continue
        where = (table, _text(getattr(task, "job_db_conn_id", None)), _text(getattr(task, "sqlite_path", None)))
        entry = found.setdefault(where, {"group_id": None, "backends": {}})
        prefix, mark, _ = task.task_id.rpartition(RUN_GROUP_MARK)
        if mark and entry["group_id"] is None:
            entry["group_id"] = prefix
        backend = _text(getattr(task, "backend_name", None))
        if backend is not None and backend not in entry["backends"]:
            entry["backends"][backend] = BatchBackend(
                name=backend,
                conn_id=_text(getattr(task, "openeo_conn_id", None)),
                pool=_text(getattr(task, "pool", None)),
                job_task_id=task.task_id,
            )
    return [
        Batch(
            dag_id=dag.dag_id,
            table=table,
            job_db_conn_id=conn_id,
            sqlite_path=sqlite_path,
            group_id=entry["group_id"],
            backends=tuple(entry["backends"].values()),
        )
        for (table, conn_id, sqlite_path), entry in found.items()
    ]


class BatchCatalog:
    """The batches of every DAG, from each DAG's latest serialized version (remembered per version)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_dag: dict[str, tuple[str, list[Batch]]] = {}

    def batches(self, dag_ids: Iterable[str], *, session: Session) -> list[Batch]:
        """The batches of ``dag_ids`` (the DAGs a user may read), sorted by DAG and table."""
        from airflow.models.serialized_dag import SerializedDagModel
        from sqlalchemy import select

        wanted = sorted(set(dag_ids))
        if not wanted:
            return []
        latest = {
            dag_id: dag_hash
            for dag_id, dag_hash in session.execute(
                select(SerializedDagModel.dag_id, SerializedDagModel.dag_hash)
                .where(SerializedDagModel.dag_id.in_(wanted))
                .order_by(SerializedDagModel.created_at)
            ).all()
        }  # the last row of a DAG is its latest version
        found: list[Batch] = []
        for dag_id, dag_hash in sorted(latest.items()):
            with self._lock:
                cached = self._by_dag.get(dag_id)
            if cached is None or cached[0] != dag_hash:
                serialized = SerializedDagModel.get(dag_id, session=session)
                batches = batches_in_dag(serialized.dag) if serialized is not None else []
                cached = (dag_hash, batches)
                with self._lock:
                    self._by_dag[dag_id] = cached
            found.extend(cached[1])
        return found

    def batch(self, dag_id: str, table: str, *, session: Session) -> Batch | None:
        return next((b for b in self.batches([dag_id], session=session) if b.table == table), None)
