"""Checks of what a DAG author passes, run when the DAG file is parsed: one home for each rule.

A bad value found at parse time is an import error in the Airflow UI, naming the argument, before any row is
touched or any job created; found at run time, it fails a task after the backend may already hold a job for it
(a ``poll_interval`` of 0 used to fail only once the job existed). The task group, the operators, the sensor and
the trigger use these same checks, so each bad value gets one message wherever it is passed.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from airflow_provider_openeo.hooks._job_db.sql import DEFAULT_TABLE_NAME, MAX_TABLE_NAME_LENGTH, validate_table_name

#: The keywords ``start_job`` is called with (as MultiBackendJobManager calls it); ``start_job_kwargs`` adds more.
START_JOB_KEYWORDS = ("row", "connection", "connection_provider", "provider")


def seconds(name: str, value: Any, *, optional: bool = False) -> float | None:
    """``value`` (seconds, or a ``timedelta``) as positive finite seconds; None passes when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        kind = "positive number of seconds or a timedelta" + (", or None" if optional else "")
        raise ValueError(f"{name} must be a {kind}, got {value!r}")
    return float(value)


def retries(name: str, value: Any) -> int:
    """A task's retry count: a whole number, zero or more."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number of retries (0 or more), got {value!r}")
    return value


def job_table(value: Any) -> str:
    """A job table name the job database accepts (the same rule the hook applies when it opens the table)."""
    try:
        return validate_table_name(value)
    except ValueError as exc:
        raise ValueError(f"job_table: {exc}") from None


#: The job table of every batch that named none, before the table was derived from its DAG (versions up to 0.x).
LEGACY_JOB_TABLE = DEFAULT_TABLE_NAME
#: The group id ``openeo_job_batch`` uses unless told otherwise: its table is then named after the DAG alone.
DEFAULT_GROUP_ID = "openeo_job_batch"


def default_job_table(dag_id: str | None, group_id: str) -> str:
    """The job table of a batch that names none: its DAG's id (and its group's, for a group not named
    :data:`DEFAULT_GROUP_ID`), so two DAGs never share a table unless told to.

    An id that is no valid table name (upper case, ``-``, ``.``, too long) becomes a readable lower-case form of
    it plus 8 hex digits of its hash, so ``My-DAG`` and ``my_dag`` still get tables of their own. Outside a DAG
    (a group built for a test) the old shared name is kept.
    """
    if not dag_id:
        return LEGACY_JOB_TABLE
    name = dag_id if group_id == DEFAULT_GROUP_ID else f"{dag_id}__{group_id}"
    try:
        return validate_table_name(name)
    except ValueError:
        pass
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not slug or not (slug[0].isalpha() or slug[0] == "_"):
        slug = f"t_{slug}"
    return f"{slug[: MAX_TABLE_NAME_LENGTH - len(digest) - 1]}_{digest}"


def key_columns(value: Any) -> tuple[str, ...] | None:
    """The columns that identify a row across runs: a non-empty list of distinct column names that are not the
    job table's own bookkeeping columns (those change as the row runs); None for the default digest."""
    from airflow_provider_openeo.hooks._job_db.columns import RESERVED

    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"key_columns must be a non-empty list of column names, e.g. ['tile', 'year'], got {value!r}")
    names = tuple(value)
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise ValueError(f"key_columns: {bad!r} are not column names")
    if len(set(names)) != len(names):
        raise ValueError(f"key_columns: {list(names)} names a column twice")
    reserved = [name for name in names if name in RESERVED]
    if reserved:
        raise ValueError(
            f"key_columns: {reserved} are the job table's own columns (they change as a row runs); name source columns"
        )
    return names


def job_options(value: Any) -> dict[str, Any]:
    """A batch's ``job_options``: a JSON object (a dict, or its JSON text) of option names to values; None is none.

    Whether the backend knows each option is checked per row, against the backend the row runs on
    (:mod:`airflow_provider_openeo.start._create_options`); here only the shape, which no backend can fix.
    """
    from airflow_provider_openeo.start.job_options import parse_job_options

    return parse_job_options(value, where="job_options")


def failure_policy(value: Any) -> Any:
    """A batch's ``failure_policy``: a ``FailurePolicy``, a dict of its fields, or None (the defaults); an unknown
    category, key or bad value is an error naming it (``failure_policy.parse_failure_policy``)."""
    from airflow_provider_openeo.batch.failure_policy import parse_failure_policy

    return parse_failure_policy(value)


def start_job(value: Any, start_job_kwargs: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """A callable that accepts what each row's task passes it: MBJM's keywords plus ``start_job_kwargs``.

    Callables whose signature Python cannot read (some built-ins) are let through: the row's task says so then.
    """
    if not callable(value):
        raise ValueError(
            f"start_job must be a callable(row, connection, connection_provider, provider, **kwargs) returning a "
            f"BatchJob, or a ProcessBasedJobCreator; got {value!r}"
        )
    extra = dict(start_job_kwargs or {})
    clash = sorted(set(extra) & set(START_JOB_KEYWORDS))
    if clash:
        raise ValueError(f"start_job_kwargs: {clash} are passed by every row's task; use other names")
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return value
    try:
        signature.bind(**dict.fromkeys(START_JOB_KEYWORDS), **extra)
    except TypeError as exc:
        name = getattr(value, "__qualname__", None) or type(value).__name__
        raise ValueError(
            f"start_job {name}{signature} cannot be called the way every row's task calls it, "
            f"start_job({', '.join(f'{k}=...' for k in (*START_JOB_KEYWORDS, *extra))}): {exc}. "
            "Accept the keywords you do not need with **kwargs."
        ) from None
    return value


def costs(name: str, value: Any) -> float | None:
    """A budget (``max_costs``, ``job_budget``): a positive number of the backend's currency or credits, or None."""
    from airflow_provider_openeo.batch.budget import checked_max_costs

    return checked_max_costs(name, value)
