"""A JSON-serialisable pointer to one row of a job database, passed from operators to triggers.

Triggers only take JSON kwargs, and a trigger that outlives its triggerer must find the row again; so rows are
addressed by value (connection id, table, row id), never by a hook object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook


@dataclass(frozen=True)
class JobRowRef:
    """Where a row lives: ``job_db_conn_id`` None means the embedded SQLite default at ``sqlite_path``."""

    table: str
    row_id: int | str
    job_db_conn_id: str | None = None
    sqlite_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRowRef:
        return cls(**data)

    def hook(self) -> OpenEOJobDbHook:
        from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

        return OpenEOJobDbHook(self.job_db_conn_id, table=self.table, sqlite_path=self.sqlite_path)

    def compare_and_set(self, values: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
        """Write ``values`` to the row only while it still holds ``expected``; False when it changed. The one
        short-lived connection is disposed after, so a long-deferred task holds no database pool."""
        hook = self.hook()
        try:
            return hook.update_row(self.row_id, dict(values), expected=dict(expected))
        finally:
            getattr(hook, "dispose", lambda: None)()

    def read(self) -> dict[str, Any]:
        """The row's values, read through a connection disposed after (see :meth:`compare_and_set`)."""
        hook = self.hook()
        try:
            return hook.get_row(self.row_id)
        finally:
            getattr(hook, "dispose", lambda: None)()

    def __str__(self) -> str:
        return f"row {self.row_id!r} of job table {self.table!r}"
