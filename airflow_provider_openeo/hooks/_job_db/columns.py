"""The job table's reserved columns, in one place.

MBJM's columns come first with MBJM's dtypes (``id``, ``backend_name``, ``status``, ``start_time``,
``running_start_time`` as strings, usage as "value unit" strings, ``costs`` as float64), then the columns our
pipeline keeps. Adding a column here is all it takes to add one: the hook adds missing reserved columns to an
existing table when it opens it (``ALTER TABLE ... ADD COLUMN``), so older tables keep working.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_provider_openeo.batch.error_categories import ErrorCategory
from airflow_provider_openeo.exceptions import JobDbInputError
from airflow_provider_openeo.hooks._job_db.codec import ColumnSpec
from airflow_provider_openeo.job_table.cells import is_empty
from airflow_provider_openeo.job_table.job_status import DryRunVerdict, OpenEOJobStatus, ResultsState, RowStatus

#: Internal columns of the SQL table; never part of a DataFrame and refused as user column names.
SEQ_COLUMN = "_oe_seq"
ROW_ID_COLUMN = "_oe_row_id"
#: Key of the row id in the dicts ``run_rows`` returns.
ROW_ID_KEY = "_row_id"
INTERNAL_COLUMNS = frozenset({SEQ_COLUMN, ROW_ID_COLUMN, ROW_ID_KEY})

#: MBJM writes this status when handing a job to its start thread fails; it is not in RowStatus but must be
#: accepted, or MBJM's ``run_jobs`` would crash on our table where it runs fine on a CSV file.
_MBJM_EXTRA_STATUSES = frozenset({"queued_for_start_failed"})
ROW_STATUS_VALUES = RowStatus.values() | _MBJM_EXTRA_STATUSES
BACKEND_STATUS_VALUES = OpenEOJobStatus.values()
RESULTS_STATES = ResultsState.values()
DRY_RUN_VERDICTS = DryRunVerdict.values()
#: Who put the row's ``backend_name`` there: the user (a pin, also when the value came with the job source and
#: this column is empty) or the dispatch (where the row ran; cleared when its job is given up, so a re-run may
#: go anywhere).
BACKEND_CHOSEN_BY_USER = "user"
BACKEND_CHOSEN_BY_DISPATCH = "dispatch"

#: A row's identity across runs (``row_keys``): the same job-defining values give the same key, so a run that
#: loads its source again finds the rows it already holds instead of adding them twice. Unique in the table.
ROW_KEY_COLUMN = "row_key"
#: The latest batch run (``<dag_id>/<run_id>``) whose job source holds the row: the rows a run works on.
SOURCE_RUN_COLUMN = "source_run"

_STR = ColumnSpec("str", "object", {"na": "none"})
#: A usage column ("value unit" text, MBJM's dtype for it): the predefined ones and those added as jobs report keys.
USAGE_SPEC = _STR


def _history(value: Any) -> Any:
    """``job_history`` comes back from CSV as JSON text; accept that, then insist on a list of dicts."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc})") from None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"must be a list of dicts (earlier jobs), got {value!r}")
    return value


def _non_negative_int(value: Any) -> Any:
    if isinstance(value, bool) or not float(value).is_integer() or value < 0:
        raise ValueError(f"must be a non-negative integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ReservedColumn:
    name: str
    spec: ColumnSpec
    #: Value for new rows and for nulls in an imported frame; None means "stays null".
    default: Any = None
    #: Allowed non-null values (None: any value of the spec's type).
    allowed: frozenset[str] | None = None
    nullable: bool = True
    #: Turns an incoming value into the stored one, raising ValueError with the reason.
    coerce: Callable[[Any], Any] | None = None
    #: Set by the job database itself, never by callers.
    automatic: bool = False

    def default_value(self) -> Any:
        return list(self.default) if isinstance(self.default, list) else self.default

    def check(self, value: Any, row_id: Any, *, fill_default: bool) -> Any:
        """The value to store for ``row_id``, or a clear error naming row and column."""
        if is_empty(value):
            if fill_default and self.default is not None:
                return self.default_value()
            if not self.nullable:
                raise JobDbInputError(f"Row {row_id!r}, column {self.name!r}: must not be empty")
            return None
        if isinstance(value, Enum):  # RowStatus.RUNNING hashes by name, so compare and store its value
            value = value.value
        if self.coerce is not None:
            try:
                value = self.coerce(value)
            except (TypeError, ValueError) as exc:
                raise JobDbInputError(f"Row {row_id!r}, column {self.name!r}: {exc}") from None
        if self.allowed is not None and value not in self.allowed:
            raise JobDbInputError(
                f"Row {row_id!r}, column {self.name!r}: unknown value {value!r} "
                f"(allowed: {', '.join(sorted(self.allowed))})"
            )
        return value


RESERVED_COLUMNS: tuple[ReservedColumn, ...] = (
    # MBJM's columns (openeo 0.53 ``MultiBackendJobManager._column_requirements`` plus its usage columns)
    ReservedColumn("id", _STR),
    ReservedColumn("backend_name", _STR),
    ReservedColumn("status", _STR, default=RowStatus.NOT_STARTED.value, allowed=ROW_STATUS_VALUES, nullable=False),
    ReservedColumn("start_time", _STR),
    ReservedColumn("running_start_time", _STR),
    # The usage columns MBJM predefined before 0.53; since 0.53 every usage key gets a column as it appears
    # (``OpenEOJobDbHook.ensure_usage_columns``). Kept here so tables and readers of older versions keep working.
    ReservedColumn("cpu", USAGE_SPEC),
    ReservedColumn("memory", USAGE_SPEC),
    ReservedColumn("duration", USAGE_SPEC),
    ReservedColumn("costs", ColumnSpec("float", "float64")),
    # Ours
    ReservedColumn("backend_status", _STR, allowed=BACKEND_STATUS_VALUES),
    ReservedColumn("error_message", _STR),
    #: Why the row's job ended in ``error``, from its error logs (``error_categories``); the failure policy reads it.
    ReservedColumn("error_category", _STR, allowed=ErrorCategory.values()),
    ReservedColumn("claimed_by", _STR),
    ReservedColumn("claimed_at", _STR),
    ReservedColumn("attempt", ColumnSpec("int", "int64"), default=0, nullable=False, coerce=_non_negative_int),
    ReservedColumn("job_history", ColumnSpec("json", "object"), default=[], nullable=False, coerce=_history),
    ReservedColumn("results_state", _STR, allowed=RESULTS_STATES),
    ReservedColumn("backend_chosen_by", _STR, allowed=frozenset({BACKEND_CHOSEN_BY_USER, BACKEND_CHOSEN_BY_DISPATCH})),
    #: The batch run whose plan covers the row (``<dag_id>/<run_id>``) and the instance of that run holding it.
    ReservedColumn("dispatch_run", _STR),
    ReservedColumn("dispatch_slot", _STR),
    ReservedColumn(ROW_KEY_COLUMN, _STR),
    ReservedColumn(SOURCE_RUN_COLUMN, _STR),
    #: The budget (``budget``): what a row being started or running is expected to cost, and why a row that is
    #: ``not_started`` was held back (``max_costs``).
    ReservedColumn("estimated_costs", ColumnSpec("float", "float64")),
    ReservedColumn("blocked_by", _STR),
    #: The last dry run's word on the row (``dry_run``): its verdict and what the backend's validation said.
    ReservedColumn("dry_run_verdict", _STR, allowed=DRY_RUN_VERDICTS),
    ReservedColumn("validation_errors", _STR),
    #: The chain of runs whose dry run checked the row (``run_chain``): a chained dry run skips the rows its chain
    #: checked already, so a batch past ``max_rows_per_run`` is checked whole, each row once.
    ReservedColumn("dry_run_chain", _STR),
    #: Where the dry run's ``estimated_costs`` came from: the backend's estimate of the row's job, or the table's costs.
    ReservedColumn("estimate_source", _STR, allowed=frozenset({"backend", "history"})),
    ReservedColumn("updated_at", _STR, automatic=True),
)
RESERVED: dict[str, ReservedColumn] = {column.name: column for column in RESERVED_COLUMNS}
