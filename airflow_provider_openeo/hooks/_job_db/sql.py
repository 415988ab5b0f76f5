"""SQLAlchemy Core plumbing for the job database: engines, the side table, table objects, DDL.

SQLite needs care to be safe under many writer processes: WAL (readers never block the writer), a busy timeout
(writers queue instead of failing), and ``BEGIN IMMEDIATE`` for every write transaction. The last one matters
most: a deferred transaction that reads and then writes can fail with SQLITE_BUSY_SNAPSHOT without the busy
handler ever being consulted. pysqlite's own implicit transactions are therefore switched off and we emit
``BEGIN`` ourselves (the recipe from SQLAlchemy's SQLite dialect documentation).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_openeo.exceptions import JobDbInputError
from airflow_provider_openeo.hooks._job_db.codec import ColumnSpec
from airflow_provider_openeo.hooks._job_db.columns import ROW_ID_COLUMN, ROW_KEY_COLUMN, SEQ_COLUMN

META_TABLE_NAME = "openeo_job_db_meta"
#: The job table of a hook or row operator that names none (and of every batch that named none before batches
#: got tables named after their DAG).
DEFAULT_TABLE_NAME = "openeo_jobs"
META_FORMAT = 1
SQLITE_BUSY_TIMEOUT_S = 60.0
_WRITE_OPTION = "openeo_job_db_write"
_TABLE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
#: PostgreSQL silently truncates longer identifiers; refuse them instead of letting two names collide.
MAX_IDENTIFIER_BYTES = 63
#: Leaves room for the names of the table's indexes (``ix_<table>_status``) within that limit.
MAX_TABLE_NAME_LENGTH = 48

_metadata = sa.MetaData()
META_TABLE = sa.Table(
    META_TABLE_NAME,
    _metadata,
    sa.Column("table_name", sa.String(MAX_IDENTIFIER_BYTES), primary_key=True),
    sa.Column("format", sa.Integer, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),
)


#: One row per backend name: the dispatch's record of its recent starts (``dispatching.BackendHealth`` as JSON),
#: shared by every batch of this database, as the backend's pool is shared by every DAG.
HEALTH_TABLE_NAME = "openeo_backend_health"
HEALTH_TABLE = sa.Table(
    HEALTH_TABLE_NAME,
    _metadata,
    sa.Column("backend_name", sa.String(MAX_IDENTIFIER_BYTES), primary_key=True),
    sa.Column("record", sa.Text, nullable=False),
)
_SIDE_TABLES = (META_TABLE_NAME, HEALTH_TABLE_NAME)


def validate_table_name(name: str) -> str:
    """Only plain lower-case identifiers: no quoting games, and the same table on SQLite and PostgreSQL."""
    if not isinstance(name, str) or not _TABLE_NAME_RE.match(name) or len(name) > MAX_TABLE_NAME_LENGTH:
        raise JobDbInputError(
            f"Invalid job table name {name!r}: use lower-case letters, digits and underscores, starting with a "
            f"letter or underscore, at most {MAX_TABLE_NAME_LENGTH} characters."
        )
    if name in _SIDE_TABLES:
        raise JobDbInputError(f"Invalid job table name {name!r}: reserved for one of the job database's side tables.")
    return name


def configure_engine(engine: Engine) -> Engine:
    """Make an engine safe for concurrent writers (SQLite) and mark write transactions (all backends)."""
    if engine.dialect.name != "sqlite":
        return engine

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, see module docstring
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a commit survives any crash of the writing process (what a killed task does); only an
        # OS crash or power loss can undo the last commits. FULL costs an fsync per write (~6 ms here vs 0.5 ms).
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def sqlite_engine(path: str) -> Engine:
    return configure_engine(sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}))


def engine_for_connection(conn_id: str, conn_type: str) -> Engine:
    """The engine of an Airflow connection to the job database, by its type: ``sqlite`` or ``postgres``.

    Every difference between the databases lives in this module: the engine, the serialisation of writers
    (:func:`serialize_writers`), row locks (:func:`for_update`) and planner statistics (:func:`refresh_statistics`).
    """
    if conn_type == "sqlite":
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        engine = SqliteHook(sqlite_conn_id=conn_id).get_sqlalchemy_engine(
            engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        )
    elif conn_type == "postgres":
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        engine = PostgresHook(postgres_conn_id=conn_id).get_sqlalchemy_engine(engine_kwargs={"pool_pre_ping": True})
    else:
        raise JobDbInputError(
            f"Connection {conn_id!r} has type {conn_type!r}; the job database supports 'sqlite' and 'postgres' "
            "connections"
        )
    return configure_engine(engine)


def serialize_writers(connection: Connection, key: str) -> None:
    """Make this write transaction the only one working on ``key`` (a table) until it ends.

    SQLite's ``BEGIN IMMEDIATE`` already lets one writer in at a time; PostgreSQL takes a transaction-scoped advisory
    lock on the key, so two budget checks never read the same ledger.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))


def for_update(query: Any, connection: Connection) -> Any:
    """``query`` locking the rows it reads until the transaction ends (SQLite: its write transaction does)."""
    return query.with_for_update() if connection.dialect.name == "postgresql" else query


def refresh_statistics(connection: Connection, table_name: str) -> None:
    """PostgreSQL's planner statistics for a table just filled, now rather than at autovacuum's leisure."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {connection.dialect.identifier_preparer.quote(table_name)}")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock up front (BEGIN IMMEDIATE)."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE_OPTION: True})
        with connection.begin():
            yield connection


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection, connection.begin():
        yield connection


def sql_type(spec: ColumnSpec) -> sa.types.TypeEngine:
    return {
        "bigint": sa.BigInteger(),
        "double": sa.Double(),
        "boolean": sa.Boolean(create_constraint=False),
        "text": sa.Text(),
        "binary": sa.LargeBinary(),
    }[spec.sql_kind]


def build_table(name: str, columns: list[tuple[str, ColumnSpec]], index_kind: str) -> sa.Table:
    """The SQLAlchemy table object for a job table as described by its side-table entry."""
    row_id_type = sa.BigInteger() if index_kind == "int" else sa.Text()
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column(SEQ_COLUMN, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(ROW_ID_COLUMN, row_id_type, nullable=False, unique=True),
        *(sa.Column(column, sql_type(spec)) for column, spec in columns),
    )


def create_tables(connection: Connection, table: sa.Table) -> None:
    META_TABLE.create(connection, checkfirst=True)
    table.create(connection)
    create_indexes(connection, table)


def create_indexes(connection: Connection, table: sa.Table) -> None:
    """Indexes for the hot queries: counts by status, and a row by its key. (A row is claimed by its id, with
    ``update_row``'s compare-and-set, so no index on unclaimed rows is needed; tables made earlier keep theirs.)
    """
    if ROW_KEY_COLUMN in table.c:
        create_key_index(connection, table.name)
    if "status" not in table.c:
        return
    sa.Index(f"ix_{table.name}_status", table.c.status).create(connection)


def create_key_index(connection: Connection, table_name: str) -> None:
    """The unique index on ``row_key``: finds a row by key, and no two rows ever share one (rows without a key,
    such as those MBJM's own ``persist`` adds, may be many: NULLs are distinct). Tables made before keys existed
    get it when their rows are first keyed."""
    preparer = connection.dialect.identifier_preparer
    connection.exec_driver_sql(
        f"CREATE UNIQUE INDEX IF NOT EXISTS {preparer.quote(f'ix_{table_name}_{ROW_KEY_COLUMN}')} "
        f"ON {preparer.quote(table_name)} ({preparer.quote(ROW_KEY_COLUMN)})"
    )


def ensure_meta_table(engine: Engine, table: sa.Table = META_TABLE) -> None:
    """Create a side table; tolerate a concurrent creator (PostgreSQL raises on the catalog's unique index)."""
    try:
        with write_transaction(engine) as connection:
            table.create(connection, checkfirst=True)
    except sa.exc.IntegrityError:
        pass
    except sa.exc.ProgrammingError:
        with read_transaction(engine) as connection:
            if not sa.inspect(connection).has_table(table.name):
                raise


def add_column(connection: Connection, table_name: str, column: str, spec: ColumnSpec, default: Any) -> None:
    """``ALTER TABLE ADD COLUMN``: identifiers quoted by the dialect, the default rendered as a SQL literal."""
    dialect = connection.dialect
    preparer = dialect.identifier_preparer
    ddl = f"ALTER TABLE {preparer.quote(table_name)} ADD COLUMN {preparer.quote(column)} "
    ddl += sql_type(spec).compile(dialect=dialect)
    if default is not None:
        literal = json.dumps(default) if spec.kind == "json" else default
        rendered = sa.literal(literal).compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        ddl += f" DEFAULT {rendered}"
    connection.exec_driver_sql(ddl)


def load_meta(connection: Connection, table_name: str, *, lock: bool = False) -> dict[str, Any] | None:
    """The table's schema JSON; the side table must exist (see ``try_load_meta`` when it may not)."""
    query = sa.select(META_TABLE.c.meta).where(META_TABLE.c.table_name == table_name)
    if lock:
        query = for_update(query, connection)
    text = connection.execute(query).scalar_one_or_none()
    return None if text is None else json.loads(text)


def try_load_meta(engine: Engine, table_name: str) -> dict[str, Any] | None:
    """Like ``load_meta`` in its own transaction, None also when the side table does not exist yet."""
    try:
        with read_transaction(engine) as connection:
            return load_meta(connection, table_name)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        with read_transaction(engine) as connection:
            if sa.inspect(connection).has_table(META_TABLE_NAME):
                raise
        return None


def save_meta(connection: Connection, table_name: str, meta: dict[str, Any], *, insert: bool) -> None:
    text = json.dumps(meta, ensure_ascii=False)
    if insert:
        connection.execute(sa.insert(META_TABLE).values(table_name=table_name, format=META_FORMAT, meta=text))
    else:
        connection.execute(sa.update(META_TABLE).where(META_TABLE.c.table_name == table_name).values(meta=text))
