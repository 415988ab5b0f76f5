"""The job database: one SQL table per batch, one row per openEO job, safe under many writer processes.

MBJM keeps its job table in a CSV or Parquet file that it rewrites as a whole, from one process. Our pipeline runs
one Airflow task process per row, so the table lives in SQL (an embedded SQLite file by default, PostgreSQL in
production) and every state change is one atomic ``UPDATE`` of one row. Claims are compare-and-set, so two task
processes can never start the same row. The hook still implements MBJM's ``JobDatabaseInterface``: MBJM's own
``run_jobs(job_db=hook)`` works on the same table.

Each table has an entry in the side table ``openeo_job_db_meta`` holding its schema (row-id kind, column dtypes,
CRS, active geometry), so a DataFrame comes back exactly as it went in. Only SQLAlchemy Core is used; nothing is
stored in Airflow's metadata database.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from airflow.sdk import BaseHook
from openeo.extra.job_management import JobDatabaseInterface
from sqlalchemy.engine import Connection, Engine

from airflow_provider_openeo._deployment_paths import deployment_path
from airflow_provider_openeo.batch.budget import (
    ESTIMATED_COSTS_COLUMN,
    RESERVING_STATUSES,
    BudgetLedger,
    expected_costs,
    history_costs,
)
from airflow_provider_openeo.exceptions import (
    JobDbError,
    JobDbExistsError,
    JobDbFileError,
    JobDbInputError,
    JobDbMissingError,
    RowNotFoundError,
    UnknownColumnError,
    UnsupportedColumnError,
)
from airflow_provider_openeo.hooks._job_db.codec import ColumnSpec
from airflow_provider_openeo.hooks._job_db.columns import (
    INTERNAL_COLUMNS,
    RESERVED,
    RESERVED_COLUMNS,
    ROW_ID_COLUMN,
    ROW_ID_KEY,
    ROW_KEY_COLUMN,
    SEQ_COLUMN,
    SOURCE_RUN_COLUMN,
    USAGE_SPEC,
)
from airflow_provider_openeo.hooks._job_db.files import read_job_file, write_job_file
from airflow_provider_openeo.hooks._job_db.schema import (
    TableSchema,
    column_spec,
    decode_frame,
    encode_frame,
    encode_value,
    row_ids_of,
    schema_for_frame,
    validate_column_names,
    validate_frame,
)
from airflow_provider_openeo.hooks._job_db.sql import (
    DEFAULT_TABLE_NAME,
    add_column,
    build_table,
    create_key_index,
    create_tables,
    engine_for_connection,
    ensure_meta_table,
    for_update,
    load_meta,
    read_transaction,
    refresh_statistics,
    save_meta,
    serialize_writers,
    sqlite_engine,
    try_load_meta,
    validate_table_name,
    write_transaction,
)
from airflow_provider_openeo.job_table._usage import USAGE_COLUMNS, parse_usage
from airflow_provider_openeo.job_table.cells import is_empty
from airflow_provider_openeo.job_table.job_status import (
    ACTIVE_BACKEND_STATUSES,
    FINAL_ROW_STATUSES,
    OpenEOJobStatus,
    RowStatus,
)
from airflow_provider_openeo.job_table.timestamps import utc_now_precise

__all__ = [
    "JobDbError",
    "JobDbExistsError",
    "JobDbFileError",
    "JobDbInputError",
    "JobDbMissingError",
    "OpenEOJobDbHook",
    "RowNotFoundError",
    "UnknownColumnError",
    "UnsupportedColumnError",
]

_log = logging.getLogger(__name__)
_ON_EXISTS = ("error", "skip", "append")
#: Keeps ``IN (...)`` lists well below SQLite's bound-parameter limit.
_CHUNK = 500
_DEFAULT_SQLITE_FILE = "openeo_jobs.db"


class OpenEOJobDbHook(BaseHook, JobDatabaseInterface):
    """SQL job database for batches of openEO jobs (SQLite embedded by default, or an Airflow connection).

    :param job_db_conn_id: Airflow connection of type ``sqlite`` or ``postgres``. None (default) uses an
        embedded SQLite file: ``sqlite_path`` or ``$AIRFLOW_HOME/openeo_jobs.db``; nothing to configure.
    :param table: the job table's name (lower-case letters, digits, underscores).
    :param sqlite_path: the SQLite file to use when no connection is given (a relative path is under
        ``$AIRFLOW_HOME``, where every process of the deployment finds the same file).
    """

    conn_name_attr = "job_db_conn_id"
    default_conn_name = "openeo_job_db"
    hook_name = "openEO job database"

    def __init__(
        self,
        job_db_conn_id: str | None = None,
        table: str = DEFAULT_TABLE_NAME,
        *,
        sqlite_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if job_db_conn_id is not None and sqlite_path is not None:
            raise ValueError("Give either job_db_conn_id or sqlite_path, not both")
        self.job_db_conn_id = job_db_conn_id
        self.table = validate_table_name(table)
        self.sqlite_path = pathlib.Path(sqlite_path) if sqlite_path is not None else None
        self._engine: Engine | None = None
        self._schema: TableSchema | None = None
        self._sa_table: sa.Table | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where()})"

    def _where(self) -> str:
        """Where the table lives, for messages: never a URL (it could hold a password)."""
        if self.job_db_conn_id is not None:
            return f"table {self.table!r} via connection {self.job_db_conn_id!r}"
        return f"table {self.table!r} in SQLite file {str(self._sqlite_file())!r}"

    def _sqlite_file(self) -> pathlib.Path:
        return deployment_path(self.sqlite_path if self.sqlite_path is not None else _DEFAULT_SQLITE_FILE)

    # ------------------------------------------------------------------------------------ engine

    def get_conn(self) -> Engine:
        """The SQLAlchemy engine (created on first use, so constructing the hook never touches the database)."""
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> Engine:
        if self.job_db_conn_id is None:
            path = self._sqlite_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            return sqlite_engine(str(path))
        connection = self.get_connection(self.job_db_conn_id)
        return engine_for_connection(self.job_db_conn_id, connection.conn_type)

    def dispose(self) -> None:
        """Close pooled connections (e.g. before handing the hook to another process)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_engine"] = None  # engines and their pools do not cross process boundaries
        return state

    # ------------------------------------------------------------------------------------ schema

    def _set_schema(self, schema: TableSchema | None) -> None:
        self._schema = schema
        self._sa_table = None if schema is None else build_table(self.table, schema.columns, schema.index_kind)

    def _reload(self, connection: Connection | None = None) -> TableSchema | None:
        """Fresh schema from the side table: other processes may have added columns."""
        meta = try_load_meta(self.get_conn(), self.table) if connection is None else load_meta(connection, self.table)
        schema = None if meta is None else TableSchema.from_json(meta)
        if schema is None or self._schema is None or schema.to_json() != self._schema.to_json():
            self._set_schema(schema)
        return self._schema

    def _open(self) -> tuple[TableSchema, sa.Table]:
        """Schema and table of an existing job table, after adding any reserved column it lacks."""
        schema = self._schema if self._schema is not None else self._reload()
        if schema is None:
            raise JobDbMissingError(
                f"The job database has no {self._where()}; create it with initialize_from_df() or import_file()"
            )
        # also when exists() loaded the schema: a table made by an older version lacks the newer reserved columns
        names = set(schema.names)
        missing = [c for c in RESERVED_COLUMNS if c.name not in names]
        if missing:
            self._add_columns([(c.name, c.spec) for c in missing])
        assert self._schema is not None and self._sa_table is not None
        return self._schema, self._sa_table

    def _add_columns(self, columns: Sequence[tuple[str, ColumnSpec]]) -> None:
        """Add columns under the side-table lock; a concurrent process adding the same column is fine."""
        with write_transaction(self.get_conn()) as connection:
            meta = load_meta(connection, self.table, lock=True)
            if meta is None:
                raise JobDbMissingError(f"The job database has no {self._where()}")
            schema = TableSchema.from_json(meta)
            validate_column_names([name for name, _ in columns], known=schema.names)
            added = False
            for name, spec in columns:
                if schema.spec(name) is not None:
                    continue
                reserved = RESERVED.get(name)
                default = reserved.default_value() if reserved is not None else None
                add_column(connection, self.table, name, spec, default)
                schema.columns.append((name, spec))
                added = True
                _log.info("Added column %r to job %s", name, self._where())
            if added:
                save_meta(connection, self.table, schema.to_json(), insert=False)
        self._set_schema(schema)

    # ------------------------------------------------------------------------------------ usage columns

    def usage_columns(self) -> list[str]:
        """The table's usage columns, in table order: ``cpu``, ``memory``, ``duration`` and every column added
        for (or taken over by) a usage key a job reported (:meth:`ensure_usage_columns`)."""
        schema = self._reload()
        if schema is None:
            raise JobDbMissingError(f"The job database has no {self._where()}")
        return [name for name in schema.names if _is_usage_column(schema, name)]

    def ensure_usage_columns(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` (usage keys of a job) whose column a row's usage can be written to; columns a key
        needs are added first, as MBJM 0.53 adds one the first time a job reports the key.

        ``ALTER TABLE`` runs under the side-table lock, so processes adding the same column at once all succeed
        (the later ones find it added). A key is skipped, with a warning, when its column would be one of the
        table's own (``status``, ``costs``, ``attempt`` ...; MBJM skips those too), is no valid column name here
        (too long, or differing from an existing column only in case), or is a user's column that holds
        something other than usage text (MBJM would overwrite it; a job-defining value must not be lost). A
        column of usage text, as in a file MBJM wrote, is taken over.
        """
        wanted = list(dict.fromkeys(str(name) for name in names))
        schema, _ = self._open()
        if not all(_is_usage_column(schema, name) for name in wanted):
            schema = self._reload() or schema  # another process may have added them
        pending = [name for name in wanted if not _is_usage_column(schema, name)]
        if pending:
            schema = self._add_usage_columns(pending)
        return [name for name in wanted if _is_usage_column(schema, name)]

    def _add_usage_columns(self, names: Sequence[str]) -> TableSchema:
        with write_transaction(self.get_conn()) as connection:
            meta = load_meta(connection, self.table, lock=True)
            if meta is None:
                raise JobDbMissingError(f"The job database has no {self._where()}")
            schema = TableSchema.from_json(meta)
            changed = False
            for name in names:
                if _is_usage_column(schema, name):
                    continue  # added by another process while we waited for the lock
                refusal = self._usage_column_refusal(connection, schema, name)
                if refusal is not None:
                    _log.warning("Not recording usage %r in job %s: %s", name, self._where(), refusal)
                    continue
                if schema.spec(name) is None:
                    add_column(connection, self.table, name, USAGE_SPEC, None)
                    schema.columns.append((name, USAGE_SPEC))
                    _log.info("Added usage column %r to job %s", name, self._where())
                else:
                    _log.info("Column %r of job %s holds usage text: usage %r goes there", name, self._where(), name)
                schema.usage_columns.append(name)
                changed = True
            if changed:
                save_meta(connection, self.table, schema.to_json(), insert=False)
        self._set_schema(schema)
        return schema

    def _usage_column_refusal(self, connection: Connection, schema: TableSchema, name: str) -> str | None:
        """Why usage key ``name`` cannot have a column of the table, or None when it can."""
        if name in RESERVED or name in INTERNAL_COLUMNS:
            return "the name is one of the job table's own columns"
        try:
            validate_column_names([name], known=schema.names)
        except JobDbError as exc:
            return str(exc)
        spec = schema.spec(name)
        if spec is None:
            return None
        if spec.kind not in ("str", "string"):
            return f"column {name!r} already exists and holds {spec.dtype} values, not usage text"
        column = sa.table(self.table, sa.column(name))
        query = sa.select(column.c[name]).where(column.c[name].is_not(None)).distinct()
        other = next((v for v in connection.execute(query).scalars() if parse_usage(v) is None), None)
        if other is not None:
            return f"column {name!r} already exists and holds values that are not usage text (such as {other!r})"
        return None

    def _schema_with(self, names: Iterable[str], row_id: Any) -> TableSchema:
        """Schema that knows all ``names``, reloading once (another process may have added them)."""
        schema, _ = self._open()
        unknown = [n for n in names if schema.spec(n) is None]
        if unknown:
            schema = self._reload() or schema
            unknown = [n for n in unknown if schema.spec(n) is None]
        if unknown:
            raise UnknownColumnError(
                f"Row {row_id!r}: the job {self._where()} has no column(s) {unknown}; nothing was written"
            )
        return schema

    # ------------------------------------------------------------------------------------ JobDatabaseInterface

    def exists(self) -> bool:
        return self._reload() is not None

    def initialize_from_df(self, df: pd.DataFrame, *, on_exists: str = "error") -> OpenEOJobDbHook:
        """Create the table from ``df`` (reserved columns added, MBJM-style), or skip/append when it exists."""
        if on_exists not in _ON_EXISTS:
            raise ValueError(f"Invalid on_exists={on_exists!r}; use one of {', '.join(_ON_EXISTS)}")
        kind = validate_frame(df, what="initialize_from_df")
        if self.exists():
            if on_exists == "skip":
                return self
            if on_exists == "error":
                raise JobDbExistsError(f"The job database already has {self._where()}")
            self._append(df, kind)
            return self
        schema = schema_for_frame(df, kind)
        row_ids = row_ids_of(df.index, kind)
        encoded = encode_frame(schema, df, row_ids, new_rows=True)
        table = build_table(self.table, schema.columns, kind)
        engine = self.get_conn()
        ensure_meta_table(engine)
        try:
            with write_transaction(engine) as connection:
                if load_meta(connection, self.table, lock=True) is not None:
                    raise JobDbExistsError(f"The job database already has {self._where()}")
                create_tables(connection, table)
                save_meta(connection, self.table, schema.to_json(), insert=True)
                self._insert(connection, table, row_ids, encoded)
                refresh_statistics(connection, self.table)
        except (sa.exc.IntegrityError, sa.exc.OperationalError, sa.exc.ProgrammingError):
            if on_exists == "skip" and self.exists():  # another process created it at the same moment
                return self
            raise
        self._set_schema(schema)
        return self

    def _append(self, df: pd.DataFrame, kind: str) -> None:
        schema, _ = self._open()
        if kind != schema.index_kind:
            raise JobDbInputError(
                f"initialize_from_df(on_exists='append'): the job table's row ids are {schema.index_kind}s, "
                f"the frame's are {kind}s"
            )
        self._write(df, schema_index_kind=kind, only_new=True)

    def persist(self, df: pd.DataFrame) -> None:
        """Merge rows by index: update the given columns of existing rows, insert new rows (MBJM semantics).

        New columns (MBJM adds one per usage metric it sees) are added to the table. The whole merge is one
        transaction: on any bad value nothing is written.
        """
        if df is None or len(df) == 0:
            return  # MBJM persists empty selections routinely
        if not self.exists():
            self.initialize_from_df(df)
            return
        kind = validate_frame(df, what="persist")
        schema, _ = self._open()
        if kind != schema.index_kind:
            raise JobDbInputError(f"persist: the job table's row ids are {schema.index_kind}s, not {kind}s")
        self._write(df, schema_index_kind=kind, only_new=False)

    def _write(self, df: pd.DataFrame, *, schema_index_kind: str, only_new: bool) -> None:
        row_ids = row_ids_of(df.index, schema_index_kind)
        current = self._open()[0]
        if any(current.spec(name) is None for name in df.columns):
            current = self._reload() or current
        new_columns = [name for name in df.columns if current.spec(name) is None]
        if new_columns:  # validate every value against the would-be schema before changing the table's shape
            validate_column_names(new_columns, known=current.names)
            preview = TableSchema.from_json(current.to_json())
            preview.columns += [(name, column_spec(name, df[name])) for name in new_columns]
            encode_frame(preview, df, row_ids, new_rows=True)
            encode_frame(preview, df, row_ids, new_rows=False)
            self._add_columns([(name, spec) for name, spec in preview.columns if name in new_columns])
        schema, table = self._open()
        updates = encode_frame(schema, df, row_ids, new_rows=False)
        inserts = encode_frame(schema, df, row_ids, new_rows=True)
        with write_transaction(self.get_conn()) as connection:
            existing = set(self._existing_ids(connection, table, row_ids))
            if only_new and existing:
                shown = sorted(existing, key=str)[:10]
                raise JobDbInputError(f"Rows {shown} already exist in the job {self._where()}; row ids must be unique")
            new_positions = [i for i, rid in enumerate(row_ids) if rid not in existing]
            old_positions = [i for i, rid in enumerate(row_ids) if rid in existing]
            if new_positions:
                self._insert(
                    connection,
                    table,
                    [row_ids[i] for i in new_positions],
                    {name: [values[i] for i in new_positions] for name, values in inserts.items()},
                )
            if old_positions and updates:
                self._update_many(connection, table, row_ids, updates, old_positions)

    @staticmethod
    def _existing_ids(connection: Connection, table: sa.Table, row_ids: Sequence[Any]) -> list[Any]:
        row_id = table.c[ROW_ID_COLUMN]
        found: list[Any] = []
        for start in range(0, len(row_ids), _CHUNK):
            chunk = row_ids[start : start + _CHUNK]
            found += connection.execute(sa.select(row_id).where(row_id.in_(chunk))).scalars().all()
        return found

    @staticmethod
    def _insert(
        connection: Connection, table: sa.Table, row_ids: Sequence[Any], encoded: Mapping[str, list[Any]]
    ) -> None:
        now = utc_now_precise()
        names = [name for name in encoded if name != "updated_at"]
        stamps = encoded.get("updated_at") or [None] * len(row_ids)  # kept when importing an exported table
        params = [
            {
                "p_row_id": rid,
                "p_updated_at": stamps[i] or now,
                **{f"p{j}": encoded[name][i] for j, name in enumerate(names)},
            }
            for i, rid in enumerate(row_ids)
        ]
        values = {ROW_ID_COLUMN: sa.bindparam("p_row_id")}
        values.update({name: sa.bindparam(f"p{j}") for j, name in enumerate(names)})
        if "updated_at" in table.c:
            values["updated_at"] = sa.bindparam("p_updated_at")
        for start in range(0, len(params), 5000):
            connection.execute(sa.insert(table).values(values), params[start : start + 5000])

    @staticmethod
    def _update_many(
        connection: Connection,
        table: sa.Table,
        row_ids: Sequence[Any],
        encoded: Mapping[str, list[Any]],
        positions: Sequence[int],
    ) -> None:
        names = list(encoded)
        values: dict[str, Any] = {name: sa.bindparam(f"p{j}") for j, name in enumerate(names)}
        values["updated_at"] = sa.bindparam("p_updated_at")
        statement = sa.update(table).where(table.c[ROW_ID_COLUMN] == sa.bindparam("p_row_id")).values(values)
        now = utc_now_precise()
        params = [
            {"p_row_id": row_ids[i], "p_updated_at": now, **{f"p{j}": encoded[n][i] for j, n in enumerate(names)}}
            for i in positions
        ]
        connection.execute(statement, params)

    def count_by_status(self, statuses: Iterable[str] = ()) -> dict[str, int]:
        _, table = self._open()
        wanted = [str(getattr(s, "value", s)) for s in statuses]
        query = sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
        if wanted:
            query = query.where(table.c.status.in_(wanted))
        with read_transaction(self.get_conn()) as connection:
            return {status: int(count) for status, count in connection.execute(query)}

    def get_by_status(self, statuses: Iterable[str], max: int | None = None) -> pd.DataFrame:
        """Rows in any of ``statuses``, in table order, at most ``max`` of them (MBJM's signature)."""
        wanted = [str(getattr(s, "value", s)) for s in statuses]
        return self._select_frame(lambda table: [table.c.status.in_(wanted)], limit=max)

    def get_by_indices(self, indices: Iterable[int | str]) -> pd.DataFrame:
        """Rows with these row ids, in table order; unknown ids are skipped with a warning (like MBJM)."""
        schema, _ = self._open()
        wanted = [schema.coerce_row_id(v) for v in indices]
        chunks = [wanted[start : start + _CHUNK] for start in range(0, len(wanted), _CHUNK)] or [[]]
        frames = [
            self._select_frame(lambda table, chunk=chunk: [table.c[ROW_ID_COLUMN].in_(chunk)]) for chunk in chunks
        ]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames)
        unknown = set(wanted).difference(frame.index)
        if unknown:
            _log.warning("Ignoring unknown row ids %s of job %s", sorted(unknown, key=str), self._where())
        return frame

    # ------------------------------------------------------------------------------------ reading

    def read(self) -> pd.DataFrame:
        """The whole table (a GeoDataFrame, same CRS, when the source had geometry)."""
        return self._select_frame()

    def _select_frame(
        self, where: Callable[[sa.Table], Sequence[Any]] | None = None, *, limit: int | None = None
    ) -> pd.DataFrame:
        """Decoded rows; ``where`` builds the conditions from the (freshly reloaded) table object."""
        self._open()
        with read_transaction(self.get_conn()) as connection:
            # schema and rows from one snapshot: columns another process added are included, never half
            schema = self._reload(connection)
            if schema is None or self._sa_table is None:
                raise JobDbMissingError(f"The job database has no {self._where()} (dropped meanwhile?)")
            table = self._sa_table
            names = schema.names
            query = sa.select(table.c[ROW_ID_COLUMN], *(table.c[n] for n in names)).order_by(table.c[SEQ_COLUMN])
            if where is not None:
                query = query.where(*where(table))
            if limit is not None:
                query = query.limit(int(limit))
            rows = connection.execute(query).all()
        return decode_frame(schema, names, rows)

    def get_row(self, row_id: int | str) -> dict[str, Any]:
        """One row as a dict of plain Python values (missing values as None)."""
        schema, _ = self._open()
        rid = schema.coerce_row_id(row_id)
        frame = self._select_frame(lambda table: [table.c[ROW_ID_COLUMN] == rid])
        if frame.empty:
            raise RowNotFoundError(f"Row {rid!r} does not exist in the job {self._where()}")
        return {name: _python_value(frame[name].iloc[0]) for name in frame.columns}

    def row_ids(self, statuses: Iterable[str] | None = None, backend_name: str | None = None) -> list[int | str]:
        """Row ids in table order, optionally only those in ``statuses`` and/or on ``backend_name``."""
        _, table = self._open()
        query = sa.select(table.c[ROW_ID_COLUMN]).order_by(table.c[SEQ_COLUMN])
        if statuses is not None:
            query = query.where(table.c.status.in_([str(getattr(s, "value", s)) for s in statuses]))
        if backend_name is not None:
            query = query.where(table.c.backend_name == backend_name)
        with read_transaction(self.get_conn()) as connection:
            return list(connection.execute(query).scalars())

    # ------------------------------------------------------------------------------------ row-level writes

    def update_row(
        self, row_id: int | str, values: Mapping[str, Any], *, expected: Mapping[str, Any] | None = None
    ) -> bool:
        """One atomic UPDATE of one row; with ``expected`` a compare-and-set.

        :return: True when the row was written, False when ``expected`` did not match.
        :raises RowNotFoundError: no such row. Unknown columns or bad values raise before anything is written.
        """
        if not values:
            raise JobDbInputError(f"Row {row_id!r}: update_row needs at least one column to write")
        schema = self._schema_with([*values, *(expected or {})], row_id)
        rid = schema.coerce_row_id(row_id)
        for name in values:
            if name in RESERVED and RESERVED[name].automatic:
                raise JobDbInputError(f"Row {rid!r}, column {name!r}: set by the job database itself")
        assignments = {name: encode_value(schema, name, value, rid) for name, value in values.items()}
        _, table = self._open()
        conditions = [table.c[ROW_ID_COLUMN] == rid]
        for name, value in (expected or {}).items():
            encoded = _encode_expected(schema, name, value, rid)
            conditions.append(table.c[name].is_(None) if encoded is None else table.c[name] == encoded)
        assignments["updated_at"] = utc_now_precise()
        return self._cas(table, rid, conditions, assignments)

    def _cas(self, table: sa.Table, rid: Any, conditions: list[Any], assignments: dict[str, Any]) -> bool:
        with write_transaction(self.get_conn()) as connection:
            result = connection.execute(sa.update(table).where(*conditions).values(assignments))
            if result.rowcount == 1:
                return True
            found = connection.execute(sa.select(sa.func.count()).where(table.c[ROW_ID_COLUMN] == rid)).scalar_one()
        if not found:
            raise RowNotFoundError(f"Row {rid!r} does not exist in the job {self._where()}")
        return False

    def claim_within_budget(
        self,
        row_id: int | str,
        values: Mapping[str, Any],
        *,
        expected: Mapping[str, Any],
        max_costs: float,
        backend_name: str,
        blocked: Callable[[BudgetLedger, float], Mapping[str, Any]],
    ) -> tuple[bool, BudgetLedger, float]:
        """``update_row(row_id, values, expected=expected)`` only while the budget allows one more job (``budget``).

        In one write transaction, serialised against every other claim of the table (SQLite's write lock, taken
        up front; on PostgreSQL an advisory lock on the table's name): read what the table has committed, work out
        the row's expected cost (median of its backend's recorded costs), and either write ``values`` plus that
        reservation (``estimated_costs``) or, when the budget says no, write ``blocked(ledger, expected cost)``
        (compare-and-set on ``expected`` as well). Every claim therefore sees the reservations of the claims before it.

        :return: ``(claimed, ledger before the claim, the row's expected cost)``; not claimed either because the
            budget refused (then ``blocked`` was written) or because ``expected`` did not match (nothing written;
            ``ledger.allows(expected)`` tells which).
        """
        schema = self._schema_with([*values, *expected, ESTIMATED_COSTS_COLUMN], row_id)
        rid = schema.coerce_row_id(row_id)
        _, table = self._open()
        conditions = [table.c[ROW_ID_COLUMN] == rid]
        for name, value in expected.items():
            encoded = _encode_expected(schema, name, value, rid)
            conditions.append(table.c[name].is_(None) if encoded is None else table.c[name] == encoded)
        engine = self.get_conn()
        with write_transaction(engine) as connection:
            serialize_writers(connection, self.table)
            ledger = self._budget_ledger(connection, table, max_costs)
            reserve = expected_costs(self._recorded_costs(connection, table, backend_name))
            allowed = ledger.allows(reserve)
            chosen = {**values, ESTIMATED_COSTS_COLUMN: reserve} if allowed else dict(blocked(ledger, reserve))
            assignments = {name: encode_value(schema, name, value, rid) for name, value in chosen.items()}
            assignments["updated_at"] = utc_now_precise()
            written = connection.execute(sa.update(table).where(*conditions).values(assignments)).rowcount == 1
        return (allowed and written), ledger, reserve

    def confirm_estimate(
        self, row_id: int | str, job_id: str, estimate: float, *, max_costs: float
    ) -> tuple[bool, BudgetLedger]:
        """Replace the row's reservation by its job's estimate, if the budget still has room for it.

        Serialised like :meth:`claim_within_budget`; the ledger returned leaves the row's own reservation out (what
        the other rows have committed), and nothing is written when it does not allow ``estimate``.
        """
        schema, table = self._open()
        rid = schema.coerce_row_id(row_id)
        engine = self.get_conn()
        with write_transaction(engine) as connection:
            serialize_writers(connection, self.table)
            ledger = self._budget_ledger(connection, table, max_costs)
            own = connection.execute(
                sa.select(table.c[ESTIMATED_COSTS_COLUMN]).where(
                    table.c[ROW_ID_COLUMN] == rid,
                    table.c.status.in_(sorted(RESERVING_STATUSES)),
                    table.c.costs.is_(None),
                )
            ).scalar_one_or_none()
            others = BudgetLedger(max_costs=max_costs, spent=ledger.spent, running=ledger.running - float(own or 0.0))
            if not others.allows(estimate):
                return False, others
            connection.execute(
                sa.update(table)
                .where(table.c[ROW_ID_COLUMN] == rid, table.c.id == job_id)
                .values({ESTIMATED_COSTS_COLUMN: float(estimate), "updated_at": utc_now_precise()})
            )
        return True, others

    def recorded_costs(self, backend_name: str) -> list[float]:
        """The ``costs`` the table records for jobs on ``backend_name``, else for jobs on any backend (the history a
        row's expected cost is read from: ``budget``, ``dry_run``)."""
        _, table = self._open()
        with read_transaction(self.get_conn()) as connection:
            return self._recorded_costs(connection, table, backend_name)

    @staticmethod
    def _recorded_costs(connection: Connection, table: sa.Table, backend_name: str) -> list[float]:
        recorded = table.c.costs.is_not(None)
        on_backend = sa.select(table.c.costs).where(recorded, table.c.backend_name == backend_name)
        costs = [float(c) for c in connection.execute(on_backend).scalars()]
        if not costs:
            costs = [float(c) for c in connection.execute(sa.select(table.c.costs).where(recorded)).scalars()]
        return costs

    def budget_ledger(self, max_costs: float) -> BudgetLedger:
        """What the table has committed against ``max_costs`` now (see :mod:`airflow_provider_openeo.batch.budget`)."""
        _, table = self._open()
        with read_transaction(self.get_conn()) as connection:
            return self._budget_ledger(connection, table, max_costs)

    def _budget_ledger(self, connection: Connection, table: sa.Table, max_costs: float) -> BudgetLedger:
        spent = connection.execute(sa.select(sa.func.coalesce(sa.func.sum(table.c.costs), 0.0))).scalar_one()
        histories = connection.execute(
            sa.select(table.c.job_history).where(table.c.job_history.is_not(None), table.c.job_history != "[]")
        ).scalars()
        spent = float(spent) + sum(history_costs(json.loads(h) if isinstance(h, str) else h) for h in histories)
        running = connection.execute(
            sa.select(sa.func.coalesce(sa.func.sum(table.c[ESTIMATED_COSTS_COLUMN]), 0.0)).where(
                table.c.status.in_(sorted(RESERVING_STATUSES)), table.c.costs.is_(None)
            )
        ).scalar_one()
        return BudgetLedger(max_costs=max_costs, spent=spent, running=float(running))

    # ------------------------------------------------------------------------------------ row keys

    def key_rule(self) -> dict[str, Any] | None:
        """How the table's ``row_key`` values were made (``row_keys.key_rule``); None before any row was keyed."""
        schema = self._reload()
        return None if schema is None else schema.key_rule

    def keyed_rows(self) -> tuple[dict[str, int | str], list[int | str]]:
        """``({row key: row id}, [ids of rows without a key])``, in table order: one narrow query."""
        _, table = self._open()
        query = sa.select(table.c[ROW_ID_COLUMN], table.c[ROW_KEY_COLUMN]).order_by(table.c[SEQ_COLUMN])
        with read_transaction(self.get_conn()) as connection:
            rows = connection.execute(query).all()
        return {key: rid for rid, key in rows if key is not None}, [rid for rid, key in rows if key is None]

    def set_row_keys(self, keys: Mapping[int | str, str], rule: Mapping[str, Any]) -> None:
        """Write rows' keys and the rule that made them, in one transaction (keys of other rows stay).

        The rows' old keys are cleared first, so keys swapped between rows never meet the unique index halfway.
        """
        schema, table = self._open()
        rids = [schema.coerce_row_id(r) for r in keys]
        statement = (
            sa.update(table)
            .where(table.c[ROW_ID_COLUMN] == sa.bindparam("p_row_id"))
            .values({ROW_KEY_COLUMN: sa.bindparam("p_key")})
        )
        with write_transaction(self.get_conn()) as connection:
            meta = load_meta(connection, self.table, lock=True)
            if meta is None:
                raise JobDbMissingError(f"The job database has no {self._where()}")
            create_key_index(connection, self.table)
            if rids:
                cleared = [{"p_row_id": rid, "p_key": None} for rid in rids]
                connection.execute(statement, cleared)
                pairs = zip(rids, keys.values(), strict=True)
                connection.execute(statement, [{"p_row_id": rid, "p_key": key} for rid, key in pairs])
            current = TableSchema.from_json(meta)
            if current.key_rule != dict(rule):
                current.key_rule = dict(rule)
                save_meta(connection, self.table, current.to_json(), insert=False)
        self._set_schema(TableSchema.from_json({**schema.to_json(), "key_rule": dict(rule)}))

    def mark_source_run(self, row_ids: Sequence[int | str], run_key: str) -> None:
        """Record ``run_key`` as the latest batch run whose job source holds ``row_ids`` (one transaction)."""
        self._set_in_chunks(row_ids, {SOURCE_RUN_COLUMN: run_key})

    def note_waiting_rows(self, message: str) -> list[int | str]:
        """Write ``message`` as the ``error_message`` of every row waiting to start (``not_started``): why none of
        them started, when the whole batch was stopped before its rows (one transaction). Their status stays, so
        they run once the cause is fixed; a row that starts clears its message. Returns the rows noted."""
        row_ids = self.row_ids([RowStatus.NOT_STARTED.value])
        self._set_in_chunks(row_ids, {"error_message": message})
        return row_ids

    def max_int_row_id(self) -> int | None:
        """The largest row id of an integer-indexed table (None when empty): new rows are numbered after it."""
        schema, table = self._open()
        if schema.index_kind != "int":
            raise JobDbInputError(f"The job {self._where()} has string row ids, not integers")
        with read_transaction(self.get_conn()) as connection:
            value = connection.execute(sa.select(sa.func.max(table.c[ROW_ID_COLUMN]))).scalar_one_or_none()
        return None if value is None else int(value)

    def _set_in_chunks(self, row_ids: Sequence[int | str], values: Mapping[str, Any]) -> None:
        if not row_ids:
            return
        schema, table = self._open()
        rids = [schema.coerce_row_id(r) for r in row_ids]
        now = utc_now_precise()
        with write_transaction(self.get_conn()) as connection:
            for start in range(0, len(rids), _CHUNK):
                chunk = rids[start : start + _CHUNK]
                connection.execute(
                    sa.update(table).where(table.c[ROW_ID_COLUMN].in_(chunk)).values(**values, updated_at=now)
                )

    # ------------------------------------------------------------------------------------ dispatch

    def assign_run(self, row_ids: Sequence[int | str], run_key: str) -> None:
        """Mark ``row_ids`` as the rows batch run ``run_key`` covers, none of them held by an instance yet.

        One transaction for the whole plan (a row-by-row UPDATE costs seconds per thousand rows).
        """
        self._set_in_chunks(row_ids, {"dispatch_run": run_key, "dispatch_slot": None})

    def run_rows(self, run_key: str) -> list[dict[str, Any]]:
        """The rows of batch run ``run_key`` in table order, with what the dispatch reads of them.

        Each dict has the row id under ``"_row_id"`` and ``id``, ``status``, ``backend_name``,
        ``backend_chosen_by``, ``dispatch_slot``, ``claimed_by`` and ``claimed_at``. One narrow query: this runs at
        every claim.
        """
        _, table = self._open()
        names = ("id", "status", "backend_name", "backend_chosen_by", "dispatch_slot", "claimed_by", "claimed_at")
        query = (
            sa.select(table.c[ROW_ID_COLUMN], *(table.c[n] for n in names))
            .where(table.c.dispatch_run == run_key)
            .order_by(table.c[SEQ_COLUMN])
        )
        with read_transaction(self.get_conn()) as connection:
            rows = connection.execute(query).all()
        return [{ROW_ID_KEY: row[0], **dict(zip(names, row[1:], strict=True))} for row in rows]

    def slot_row_id(self, run_key: str, slot: str) -> int | str | None:
        """The row instance ``slot`` of run ``run_key`` holds, or None."""
        _, table = self._open()
        query = sa.select(table.c[ROW_ID_COLUMN]).where(table.c.dispatch_run == run_key, table.c.dispatch_slot == slot)
        with read_transaction(self.get_conn()) as connection:
            return connection.execute(query.limit(1)).scalar_one_or_none()

    def count_live_jobs(self, backend_name: str) -> int:
        """Jobs of this table that take one of ``backend_name``'s slots now: rows being started there, and rows
        whose job the backend last reported alive (a finished job frees its slot before its results are stored)."""
        _, table = self._open()
        live = sorted(ACTIVE_BACKEND_STATUSES)
        query = sa.select(sa.func.count()).where(
            table.c.backend_name == backend_name,
            sa.or_(table.c.status == RowStatus.QUEUED_FOR_START.value, table.c.backend_status.in_(live)),
            table.c.status.notin_(sorted(FINAL_ROW_STATUSES)),
        )
        with read_transaction(self.get_conn()) as connection:
            return int(connection.execute(query).scalar_one())

    def recent_finished_jobs(self, limit: int = 200) -> list[tuple[str, Any, Any]]:
        """``(backend_name, start_time, updated_at)`` of the ``limit`` rows whose job the backend reported finished
        last (the dispatch's history of how long a job takes on each backend). The trigger records the end at once,
        before the job's slot goes to the next row; its results may still be on their way."""
        _, table = self._open()
        query = (
            sa.select(table.c.backend_name, table.c.start_time, table.c.updated_at)
            .where(table.c.backend_status == OpenEOJobStatus.FINISHED.value, table.c.backend_name.is_not(None))
            .order_by(table.c.updated_at.desc())
            .limit(limit)
        )
        with read_transaction(self.get_conn()) as connection:
            return [tuple(row) for row in connection.execute(query).all()]

    def backend_health_records(self) -> dict[str, dict[str, Any]]:
        """Every backend's record in ``openeo_backend_health`` (JSON objects the dispatch reads), by name."""
        from airflow_provider_openeo.hooks._job_db.sql import HEALTH_TABLE

        engine = self.get_conn()
        try:
            with read_transaction(engine) as connection:
                rows = connection.execute(sa.select(HEALTH_TABLE.c.backend_name, HEALTH_TABLE.c.record)).all()
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            with read_transaction(engine) as connection:
                if sa.inspect(connection).has_table(HEALTH_TABLE.name):
                    raise
            return {}
        return {name: json.loads(record) for name, record in rows}

    def change_backend_health(
        self, backend_name: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """Read, change and write one backend's record atomically (the write lock is taken first)."""
        from airflow_provider_openeo.hooks._job_db.sql import HEALTH_TABLE

        engine = self.get_conn()
        ensure_meta_table(engine, HEALTH_TABLE)
        key = HEALTH_TABLE.c.backend_name == backend_name
        for attempt in range(2):
            try:
                with write_transaction(engine) as connection:
                    query = sa.select(HEALTH_TABLE.c.record).where(key)
                    query = for_update(query, connection)
                    text = connection.execute(query).scalar_one_or_none()
                    record = change(None if text is None else json.loads(text))
                    encoded = json.dumps(record)
                    if text is None:
                        connection.execute(sa.insert(HEALTH_TABLE).values(backend_name=backend_name, record=encoded))
                    else:
                        connection.execute(sa.update(HEALTH_TABLE).where(key).values(record=encoded))
                    return record
            except sa.exc.IntegrityError:
                if attempt:  # a concurrent first writer inserted the row: the second round updates it
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------------------------ files

    def import_file(
        self, path: str | os.PathLike[str], *, on_exists: str = "error", index_col: str | None = None
    ) -> OpenEOJobDbHook:
        """Load a job file (CSV with WKT geometry, Parquet, GeoParquet; by suffix), e.g. one MBJM wrote.

        ``index_col`` names the column holding row ids (our CSV export writes one when ids are not 0..n-1).
        """
        if on_exists == "skip" and self.exists():
            return self
        frame = read_job_file(path, index_col=index_col)
        return self.initialize_from_df(frame, on_exists=on_exists)

    def export(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """Write the table to a file MBJM's ``CsvJobDatabase`` / ``ParquetJobDatabase`` can open."""
        schema, _ = self._open()
        return write_job_file(self.read(), schema, path)

    def drop(self) -> None:
        """Delete the table and its side-table entry (no error when it does not exist)."""
        from airflow_provider_openeo.hooks._job_db.sql import META_TABLE, META_TABLE_NAME

        engine = self.get_conn()
        with write_transaction(engine) as connection:
            inspector = sa.inspect(connection)
            if inspector.has_table(self.table):
                sa.Table(self.table, sa.MetaData()).drop(connection)
            if inspector.has_table(META_TABLE_NAME):
                connection.execute(sa.delete(META_TABLE).where(META_TABLE.c.table_name == self.table))
        self._set_schema(None)


def _is_usage_column(schema: TableSchema, name: str) -> bool:
    if name in USAGE_COLUMNS:
        return schema.spec(name) is not None
    return name in schema.usage_columns and schema.spec(name) is not None


def _encode_expected(schema: TableSchema, name: str, value: Any, rid: Any) -> Any:
    """Expected values are compared, not stored: no defaults, and a status may be any value (no match)."""
    if value is None:
        return None
    return encode_value(schema, name, value, rid)


def _python_value(value: Any) -> Any:
    if isinstance(value, (list, dict, tuple, np.ndarray)):
        return value
    if is_empty(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
