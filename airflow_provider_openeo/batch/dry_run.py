"""A dry run: every row's job built and checked by the backend, and no job created.

A run triggered with the Param (or conf key) :data:`DRY_RUN_PARAM` takes its rows as any run does, and for each:

1. calls its ``start_job`` (an MBJM callable or a ``ProcessBasedJobCreator``, as it is) with the row's job options and
   ``budget`` applied, exactly as a real start would (:mod:`~airflow_provider_openeo.start._create_options`); but every
   ``POST /jobs`` it sends is answered here, on the connection's session, with a made-up ``201`` (job id
   ``dry-run-<n>``) and never leaves the machine. Requests about such a job (``job.start()``, ``job.status()``) get
   made-up answers too;
2. sends the process graph of that create to the backend's ``POST /validation`` (where its capabilities list it);
3. writes the verdict on the row: ``dry_run_verdict`` (``valid``, ``would_fail``, ``not_checked``, ``has_job``,
   ``skipped``) and ``validation_errors`` (a JSON list of ``{"code", "message"}``: the backend's, or what failed
   before the request: a refused job option, an invalid geometry, ``start_job`` raising). The row's ``status``
   stays what it was (``not_started``): the next real run starts it as if there had been no dry run.

Cost: openEO estimates only a job that exists (``GET /jobs/{id}/estimate``), and a dry run creates none. So a row's
``estimated_costs`` is the median of the ``costs`` this job table records for jobs on the row's backend (else any
backend): the batch's own history. A run may also ask the backend, for a sample of rows (Param or conf key
:data:`ESTIMATES_PARAM`, a number of rows; 0 by default): each sampled row's job is created (titled
``[dry run estimate] ...``), its ``GET /jobs/{id}/estimate`` read, and the job deleted at once, never started, so it
processes nothing; this only where the backend's capabilities list the estimate. The row's ``estimate_source`` says
which estimate it got (``backend`` or ``history``), and the summary extrapolates the median of the backend's
estimates to rows without any. A table without recorded costs and no sample gives no estimate, and the summary says
so.

A row that holds a job already (a run interrupted) is left alone (``has_job``): nothing is started or re-attached.

A batch past ``max_rows_per_run`` is checked whole: each row records the chain of runs that checked it
(``dry_run_chain``, :mod:`~airflow_provider_openeo.batch.run_chain`), a chained dry run plans only the rows its
chain has not checked (:func:`rows_to_check`), and the chain goes on while rows are left and the last run checked any
(:func:`dry_run_continues`). The last run's summary reports the whole chain.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import requests
from airflow.sdk import Param
from openeo import BatchJob, Connection

from airflow_provider_openeo.batch.budget import (
    ESTIMATED_COSTS_COLUMN,
    RESERVING_STATUSES,
    checked_max_costs,
    expected_costs,
)
from airflow_provider_openeo.batch.run_settings import run_setting
from airflow_provider_openeo.hooks._openeo.http import scrub
from airflow_provider_openeo.job_table._usage import parse_costs
from airflow_provider_openeo.job_table.job_history import clean
from airflow_provider_openeo.job_table.job_row import JobRowRef
from airflow_provider_openeo.job_table.job_status import DryRunVerdict, RowStatus
from airflow_provider_openeo.start._create_options import (
    JobOptionsRefused,
    OptionLayers,
    applying_job_options,
    wrapping_provider,
)
from airflow_provider_openeo.start._session_send import Send, is_create_request, wrapped_send
from airflow_provider_openeo.start.job_options import JOB_BUDGET_COLUMN, JOB_OPTIONS_COLUMN, parse_job_options
from airflow_provider_openeo.start.job_starting import describe_start_job, empty_fields_hint, geometry_problem

log = logging.getLogger(__name__)

#: The Param (and conf key) asking one run to be a dry run.
DRY_RUN_PARAM = "dry_run"
VERDICT_COLUMN = "dry_run_verdict"
ERRORS_COLUMN = "validation_errors"
#: The chain of runs (``run_chain``) whose dry run wrote the row's verdict.
CHAIN_COLUMN = "dry_run_chain"
#: Where a dry run's ``estimated_costs`` came from: :data:`BY_BACKEND` (a sampled row's job estimate) or
#: :data:`BY_HISTORY` (the table's recorded costs).
ESTIMATE_SOURCE_COLUMN = "estimate_source"
BY_BACKEND, BY_HISTORY = "backend", "history"
#: The Param (and conf key) asking a dry run for the backend's estimate of that many rows, spread over the table.
ESTIMATES_PARAM = "dry_run_estimates"
#: The title prefix of a job a dry run creates only to have it estimated (and deletes at once).
ESTIMATE_JOB_TITLE = "[dry run estimate] "
#: Job ids the dry run makes up; a request about one never reaches the backend.
DRY_RUN_JOB_PREFIX = "dry-run-"
#: Statuses of ``POST /validation`` meaning "not served here".
NOT_SERVED_STATUSES = frozenset({404, 405, 501})


#: What a dry run says of a row (the ``dry_run_verdict`` column; its values live with the other cell vocabularies).
Verdict = DryRunVerdict


def dry_run_param(default: bool = False) -> Param:
    """The trigger form's switch: add it to the DAG's ``params`` as ``{DRY_RUN_PARAM: dry_run_param()}``."""
    return Param(
        bool(default),
        type="boolean",
        title="Dry run",
        description=(
            "Build every row's job and have the backend validate it (POST /validation), without creating any job. "
            "Each row records its verdict (dry_run_verdict, validation_errors); the summary counts the rows that "
            "would fail and estimates the cost from the costs this job table has recorded."
        ),
    )


def requested_dry_run(context: Mapping[str, Any], default: bool = False) -> bool:
    """Whether this run is a dry run (:func:`~airflow_provider_openeo.batch.run_settings.run_setting`)."""
    return run_setting(context, DRY_RUN_PARAM, _checked_flag, default)


def dry_run_estimates_param(default: int = 0) -> Param:
    """The trigger form's field: add it to the DAG's ``params`` as ``{ESTIMATES_PARAM: dry_run_estimates_param(3)}``."""
    return Param(
        int(default),
        type="integer",
        minimum=0,
        title="Dry run: rows the backend estimates",
        description=(
            "In a dry run, this many rows (spread over the job table) have their job created, estimated by the "
            "backend (GET /jobs/{id}/estimate) and deleted at once, never started; where the backend estimates. "
            "0: the estimate comes from the costs this job table has recorded only."
        ),
    )


def requested_estimates(context: Mapping[str, Any]) -> int:
    """How many rows this dry run asks the backend to estimate (:data:`ESTIMATES_PARAM`; 0 when not asked)."""
    return run_setting(context, ESTIMATES_PARAM, _checked_count, 0)


def _checked_count(where: str, value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ValueError(f"{where} must be a number of rows (0 or more), got {value!r}")
    return int(str(value).strip())


def in_estimate_sample(row_id: Any, rows: int, sample: int) -> bool:
    """Whether a row is one of the ``sample`` rows (of ``rows``) a dry run has the backend estimate: every
    ``ceil(rows / sample)``-th row id, so the sample spreads over the table without the rows' tasks agreeing on it."""
    if sample <= 0 or rows <= 0:
        return False
    stride = max(1, -(-rows // sample))
    number = row_id if isinstance(row_id, int) else zlib.crc32(str(row_id).encode())
    return number % stride == 0


def _checked_flag(where: str, value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"{where} must be true or false, got {value!r}")


@dataclass
class InterceptedCreates:
    """The ``POST /jobs`` bodies ``start_job`` sent, with the connection each was sent on, in order."""

    creates: list[tuple[Connection, dict[str, Any]]] = field(default_factory=list)


@contextmanager
def intercepting_creates(connection: Connection, intercepted: InterceptedCreates) -> Iterator[InterceptedCreates]:
    """While inside, ``connection`` sends no ``POST /jobs``: each is recorded and answered ``201`` here."""
    bodies: dict[str, dict[str, Any]] = {}

    def wrap(original_send: Send) -> Send:
        def send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            if is_create_request(request):
                body = _json_body(request)
                job_id = f"{DRY_RUN_JOB_PREFIX}{len(intercepted.creates) + 1}"
                intercepted.creates.append((connection, body))
                bodies[job_id] = body
                location = f"{str(request.url).rstrip('/')}/{job_id}"
                return _answer(request, 201, None, {"OpenEO-Identifier": job_id, "Location": location})
            job_id = _dry_run_job_of(request)
            if job_id is not None:
                return _answer_about(request, job_id, bodies.get(job_id) or {})
            return original_send(request, **kwargs)

        return send

    with wrapped_send(connection.session, wrap):
        yield intercepted


def _json_body(request: requests.PreparedRequest) -> dict[str, Any]:
    body = request.body.decode("utf-8") if isinstance(request.body, bytes) else request.body
    try:
        payload = json.loads(body or "null")
    except (TypeError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _dry_run_job_of(request: requests.PreparedRequest) -> str | None:
    parts = urlparse(str(request.url or "")).path.rstrip("/").split("/")
    for index, part in enumerate(parts[:-1]):
        if part == "jobs" and parts[index + 1].startswith(DRY_RUN_JOB_PREFIX):
            return parts[index + 1]
    return None


def _answer_about(request: requests.PreparedRequest, job_id: str, body: Mapping[str, Any]) -> requests.Response:
    """Made-up answers about a made-up job: its document (``created``), an accepted start or delete; else 400."""
    path = urlparse(str(request.url or "")).path.rstrip("/")
    if request.method == "GET" and path.endswith(f"/jobs/{job_id}"):
        document = {"id": job_id, "status": "created", "process": body.get("process"), "title": body.get("title")}
        return _answer(request, 200, document)
    if request.method in ("POST", "DELETE") and path.endswith(f"/jobs/{job_id}/results"):
        return _answer(request, 202 if request.method == "POST" else 204, None)
    if request.method == "DELETE" and path.endswith(f"/jobs/{job_id}"):
        return _answer(request, 204, None)
    message = f"dry run: job {job_id} was never created, so {request.method} {path} was not sent"
    return _answer(request, 400, {"code": "DryRun", "message": message})


def _answer(
    request: requests.PreparedRequest, status: int, document: Any, headers: Mapping[str, str] | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.request = request
    response.url = str(request.url)
    response.headers.update(headers or {})
    if document is not None:
        response.headers["Content-Type"] = "application/json"
        response._content = json.dumps(document).encode()
    else:
        response._content = b""
    return response


@dataclass(frozen=True)
class DryRunOutcome:
    """A row's verdict and what backs it."""

    verdict: Verdict
    errors: list[dict[str, str]]
    estimated_costs: float | None = None
    estimate_source: str | None = None

    @property
    def message(self) -> str:
        return "; ".join(f"[{e.get('code')}] {e.get('message')}" for e in self.errors) or self.verdict.value


class RowDryRun:
    """One row's dry run (see the module doc); takes what
    :class:`~airflow_provider_openeo.start.job_starting.RowJobStarter` takes."""

    def __init__(
        self,
        row: JobRowRef,
        *,
        backend_name: str,
        connection: Connection,
        start_job: Callable[..., BatchJob | None],
        connection_provider: Callable[[str], Connection],
        start_job_kwargs: Mapping[str, Any] | None = None,
        job_options: Mapping[str, Any] | None = None,
        job_budget: float | None = None,
        chain: str | None = None,
        estimate_sample: int = 0,
    ) -> None:
        self.row = row
        self.chain = chain
        self.estimate_sample = estimate_sample
        self._create: tuple[Connection, dict[str, Any]] | None = None
        self.backend_name = backend_name
        self.connection = connection
        self.start_job = start_job
        self.connection_provider = connection_provider
        self.start_job_kwargs = dict(start_job_kwargs or {})
        self.job_options = parse_job_options(job_options, where="job_options")
        self.job_budget = checked_max_costs("job_budget", job_budget)
        self.db = row.hook()

    def run(self) -> DryRunOutcome:
        """Check the row and record the verdict on it (``status`` untouched, the row's claim released)."""
        values = self.db.get_row(self.row.row_id)
        if clean(values.get("id")):
            status = clean(values.get("status"))
            outcome = DryRunOutcome(
                Verdict.HAS_JOB,
                [{"code": "HasJob", "message": f"{self.row} holds job {values['id']} ({status}); not dry-run"}],
            )
        else:
            outcome = self._check()
            if outcome.verdict is not Verdict.WOULD_FAIL:
                costs, source = self._estimate()
                outcome = DryRunOutcome(outcome.verdict, outcome.errors, costs, source)
        self._record(outcome, values)
        log.info("%s: dry run: %s", self.row, outcome.message)
        return outcome

    def _check(self) -> DryRunOutcome:
        frame = self.db.get_by_indices([self.row.row_id])
        series = frame.iloc[0]
        problem = geometry_problem(series)
        if problem is not None:
            return _fails("InvalidGeometry", f"{self.row}: {problem}")
        try:
            layers = OptionLayers(
                batch=self.job_options,
                row=parse_job_options(
                    clean(series.get(JOB_OPTIONS_COLUMN)), where=f"{self.row}: field {JOB_OPTIONS_COLUMN!r}"
                ),
                budget=checked_max_costs(
                    f"{self.row}: field {JOB_BUDGET_COLUMN!r}", clean(series.get(JOB_BUDGET_COLUMN))
                )
                or self.job_budget,
            )
        except ValueError as exc:
            return _fails("InvalidJobOptions", str(exc))
        intercepted = InterceptedCreates()
        with ExitStack() as stack:

            def prepare(connection: Connection, backend: str) -> None:
                stack.enter_context(intercepting_creates(connection, intercepted))
                stack.enter_context(applying_job_options(connection, layers, label=str(self.row), backend=backend))

            prepare(self.connection, self.backend_name)
            provider = wrapping_provider(self.connection_provider, prepare, already=(self.connection,))
            try:
                job = self.start_job(
                    row=series,
                    connection=self.connection,
                    connection_provider=provider,
                    provider=self.backend_name,
                    **self.start_job_kwargs,
                )
            except JobOptionsRefused as exc:
                return _fails("JobOptionsRefused", self._scrub(str(exc)))
            except Exception as exc:
                return _fails(
                    "StartJobFailed",
                    self._scrub(
                        f"{self.row}: start_job{describe_start_job(self.start_job)} raised {type(exc).__name__}: "
                        f"{exc}{empty_fields_hint(series)}"
                    ),
                )
        if job is None:
            return DryRunOutcome(Verdict.SKIPPED, [{"code": "Skipped", "message": "start_job returned None"}])
        if not isinstance(job, BatchJob):
            return _fails("StartJobFailed", f"start_job returned {type(job).__name__}, expected a BatchJob or None")
        if not intercepted.creates:
            message = f"start_job returned job {job.job_id} without sending POST /jobs: nothing to validate"
            return DryRunOutcome(Verdict.NOT_CHECKED, [{"code": "NoCreate", "message": message}])
        self._create = intercepted.creates[-1]
        connection, body = self._create
        return self._validate(connection, body)

    def _validate(self, connection: Connection, body: Mapping[str, Any]) -> DryRunOutcome:
        """The backend's ``POST /validation`` on the graph ``start_job`` would have created a job with."""
        graph = (body.get("process") or {}).get("process_graph") if isinstance(body.get("process"), Mapping) else None
        if not isinstance(graph, Mapping):
            return DryRunOutcome(
                Verdict.NOT_CHECKED, [{"code": "NoProcessGraph", "message": "POST /jobs carried no process graph"}]
            )
        try:
            served = connection.capabilities().supports_endpoint("/validation", "POST")
        except Exception as exc:
            return _unchecked(f"cannot read the backend's capabilities: {self._scrub(str(exc))}")
        if not served:
            return _unchecked(f"backend {self.backend_name!r} lists no POST /validation")
        try:
            response = connection.post("/validation", json={"process_graph": graph}, expected_status=200)
            errors = response.json().get("errors")
        except Exception as exc:
            status = getattr(exc, "http_status_code", None)
            if status in NOT_SERVED_STATUSES:
                return _unchecked(f"backend {self.backend_name!r} serves no POST /validation (HTTP {status})")
            return _unchecked(f"POST /validation failed: {self._scrub(str(exc))}")
        if not isinstance(errors, list):
            return _unchecked(f"POST /validation answered no list of errors: {str(errors)[:200]}")
        if errors:
            found = [
                {"code": str(e.get("code", "")), "message": self._scrub(str(e.get("message", "")))}
                if isinstance(e, Mapping)
                else {"code": "", "message": str(e)}
                for e in errors
            ]
            return DryRunOutcome(Verdict.WOULD_FAIL, found)
        return DryRunOutcome(Verdict.VALID, [])

    def _estimate(self) -> tuple[float | None, str | None]:
        """The backend's estimate for a sampled row, else the batch's history: the median costs of this table's
        jobs on the row's backend, else on any."""
        if self._create is not None and self.estimate_sample > 0:
            rows = sum(self.db.count_by_status().values())
            if in_estimate_sample(self.row.row_id, rows, self.estimate_sample):
                costs = self._backend_estimate(*self._create)
                if costs is not None:
                    return costs, BY_BACKEND
        recorded = self.db.recorded_costs(self.backend_name)
        return (expected_costs(recorded), BY_HISTORY) if recorded else (None, None)

    def _backend_estimate(self, connection: Connection, body: Mapping[str, Any]) -> float | None:
        """Create the row's job as ``start_job`` would have, read its ``GET /jobs/{id}/estimate``, delete it unstarted.

        None (logged) where the backend does not list the estimate, or any step fails; the job is deleted whatever
        happens once it exists (a created job that never starts processes nothing).
        """
        try:
            served = connection.capabilities().supports_endpoint("/jobs/{job_id}/estimate", "GET")
        except Exception as exc:
            log.info("%s: dry run: no backend estimate (capabilities unreadable: %s)", self.row, self._scrub(str(exc)))
            return None
        if not served:
            log.info("%s: dry run: backend %r lists no GET /jobs/{job_id}/estimate", self.row, self.backend_name)
            return None
        document = {**body, "title": f"{ESTIMATE_JOB_TITLE}{body.get('title') or self.row}"}
        try:
            created = connection.post("/jobs", json=document, expected_status=201)
            job_id = created.headers.get("OpenEO-Identifier") or created.headers["Location"].rstrip("/").split("/")[-1]
        except Exception as exc:
            log.warning("%s: dry run: could not create a job to estimate: %s", self.row, self._scrub(str(exc)))
            return None
        try:
            answer = connection.get(f"/jobs/{job_id}/estimate", expected_status=200).json()
            costs = parse_costs(answer.get("costs"), job_id=job_id) if isinstance(answer, Mapping) else None
            log.info("%s: dry run: job %s estimated at %s by the backend", self.row, job_id, costs)
            return costs
        except Exception as exc:
            log.warning("%s: dry run: job %s could not be estimated: %s", self.row, job_id, self._scrub(str(exc)))
            return None
        finally:
            try:
                connection.delete(f"/jobs/{job_id}", expected_status=204)
            except Exception as exc:
                log.warning(
                    "%s: dry run: job %s (created only to be estimated, never started) could not be deleted: %s",
                    self.row,
                    job_id,
                    self._scrub(str(exc)),
                )

    def _record(self, outcome: DryRunOutcome, values: Mapping[str, Any]) -> None:
        update: dict[str, Any] = {
            VERDICT_COLUMN: outcome.verdict.value,
            ERRORS_COLUMN: json.dumps(outcome.errors) if outcome.errors else None,
            CHAIN_COLUMN: self.chain,
            "claimed_by": None,
        }
        if outcome.verdict is not Verdict.HAS_JOB:
            update[ESTIMATED_COSTS_COLUMN] = outcome.estimated_costs
            update[ESTIMATE_SOURCE_COLUMN] = outcome.estimate_source
            if clean(values.get("status")) in RESERVING_STATUSES:
                update["status"] = RowStatus.NOT_STARTED.value  # a stale claim of a start that never happened
        self.db.update_row(self.row.row_id, update)

    def _scrub(self, message: str) -> str:
        return scrub(message, self.connection)


def _fails(code: str, message: str) -> DryRunOutcome:
    return DryRunOutcome(Verdict.WOULD_FAIL, [{"code": code, "message": message}])


def _unchecked(message: str) -> DryRunOutcome:
    return DryRunOutcome(Verdict.NOT_CHECKED, [{"code": "NotValidated", "message": message}])


def rows_to_check(rows: pd.DataFrame, chain: str | None) -> pd.DataFrame:
    """The rows a dry run plans from ``rows``: those its chain of runs has not checked yet."""
    if chain is None or CHAIN_COLUMN not in rows.columns or not len(rows):
        return rows
    return rows[(rows[CHAIN_COLUMN] != chain).to_numpy()]


def dry_run_continues(checked_this_run: int, remaining: int) -> bool:
    """Whether a dry run chains the next run: rows are left past ``max_rows_per_run``, and this run checked some
    (a run that checked none would leave the same rows to the next, which would fare no better)."""
    return remaining > 0 and checked_this_run > 0


def dry_run_report(table: pd.DataFrame, chain: str | None, run_key: str, *, remaining: int = 0) -> dict[str, Any]:
    """The summary's ``dry_run``: the verdicts of the rows this run's chain checked (every run of a batch past
    ``max_rows_per_run``), how many would fail, the estimated cost, and whether the chain goes on.

    ``estimated_costs`` sums the rows' estimates; rows with none are counted at the median of the backend's
    estimates of the sampled rows (``extrapolated_rows``), when there are any.
    """
    checked = table.iloc[0:0]
    if len(table) and VERDICT_COLUMN in table and CHAIN_COLUMN in table:
        checked = table[(table[CHAIN_COLUMN] == chain).to_numpy() & table[VERDICT_COLUMN].notna().to_numpy()]
    this_run = int((checked["dispatch_run"] == run_key).sum()) if "dispatch_run" in checked else 0
    verdicts = (
        {str(k): int(v) for k, v in checked[VERDICT_COLUMN].value_counts().sort_index().items()} if len(checked) else {}
    )
    would_run = checked[checked[VERDICT_COLUMN].isin([Verdict.VALID.value, Verdict.NOT_CHECKED.value])]
    estimates = _numbers(would_run, ESTIMATED_COSTS_COLUMN)
    by_backend = estimates.iloc[0:0]
    if len(estimates) and ESTIMATE_SOURCE_COLUMN in would_run:
        by_backend = estimates[(would_run[ESTIMATE_SOURCE_COLUMN] == BY_BACKEND).to_numpy()].dropna()
    known = int(estimates.notna().sum())
    extrapolated = len(would_run) - known if len(by_backend) else 0
    total = float(estimates.fillna(0).sum()) + extrapolated * (float(by_backend.median()) if len(by_backend) else 0.0)
    continues = dry_run_continues(this_run, remaining)
    report: dict[str, Any] = {
        "rows": len(checked),
        "rows_this_run": this_run,
        "verdicts": verdicts,
        "would_fail": verdicts.get(Verdict.WOULD_FAIL.value, 0),
        "estimated_costs": round(total, 6) if known else None,
        "estimated_rows": known,
        "estimated_by_backend": len(by_backend),
        "extrapolated_rows": extrapolated,
        "continues": continues,
        "rows_left_to_next_run": remaining if continues else 0,
        "rows_not_checked": 0 if continues else remaining,
    }
    if len(would_run) and known + extrapolated < len(would_run):
        report["estimate_note"] = (
            f"{len(would_run) - known} row(s) without an estimate: openEO estimates only a job that exists "
            "(GET /jobs/{id}/estimate) and a dry run creates none unless asked (Param "
            f"{ESTIMATES_PARAM!r}); the estimate is the median costs of this job table's jobs, and it records none yet"
        )
    return report


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame or not len(frame):
        return pd.Series(dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").reset_index(drop=True)
