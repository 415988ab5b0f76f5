"""Why an openEO job ended in ``error``: its error logs sorted into a few categories, by one table of rules.

The failure policy (:mod:`~airflow_provider_openeo.batch.failure_policy`) decides per category whether a row gets
another job, so the categories are the ones that call for different answers: out of memory (retry with more memory), no
data for the request and an invalid process graph (the same request fails the same way: never retry), a timeout and a
backend fault (worth another try), and other.

:data:`RULES` is the one place that knows what backends write. Each rule matches an entry's ``code`` (the openEO
API error code, exactly) or its ``message`` (a case-insensitive regular expression), and names where the text
comes from, so a rule can be checked against its source and a new backend's messages added as a line. The first
rule in table order that matches any entry wins: the specific causes (memory, no data, an invalid graph) come
before the generic ones (timeouts, faults), since a backend often logs a generic follow-up ("failed multiple
times") after the real cause.

Adding a rule: append a :class:`Rule` to :data:`RULES` (or pass your own table to :func:`classify`, e.g. from an
``OpenEOJobHandler`` subclass overriding ``classify_error``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_openeo.job_table.job_status import CellValues


class ErrorCategory(CellValues):
    """Values of the job table's ``error_category`` column."""

    OUT_OF_MEMORY = "out_of_memory"
    NO_DATA = "no_data"
    TIMEOUT = "timeout"
    INVALID_PROCESS_GRAPH = "invalid_process_graph"
    BACKEND_FAULT = "backend_fault"
    OTHER = "other"


@dataclass(frozen=True)
class Rule:
    """One way a backend says a category: an error ``code`` (exact) and/or a ``message`` pattern (regex, any case).

    ``source`` says who writes it and where, so the rule can be checked and kept up to date.
    """

    category: ErrorCategory
    source: str
    codes: frozenset[str] = frozenset()
    message: str | None = None
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.codes and not self.message:
            raise ValueError(f"rule for {self.category.value} ({self.source}) matches nothing: give codes or message")
        if self.message:
            object.__setattr__(self, "_pattern", re.compile(self.message, re.IGNORECASE))

    def matches(self, entry: Mapping[str, Any]) -> bool:
        code = entry.get("code")
        if code and str(code) in self.codes:
            return True
        return self._pattern is not None and self._pattern.search(str(entry.get("message") or "")) is not None


def _rule(category: ErrorCategory, source: str, *, codes: Iterable[str] = (), message: str | None = None) -> Rule:
    return Rule(category, source, frozenset(codes), message)


_OOM, _NO_DATA, _TIMEOUT = ErrorCategory.OUT_OF_MEMORY, ErrorCategory.NO_DATA, ErrorCategory.TIMEOUT
_INVALID, _FAULT = ErrorCategory.INVALID_PROCESS_GRAPH, ErrorCategory.BACKEND_FAULT

#: The rules, most specific first (see the module doc). Sources: openeo-geopyspark-driver
#: ``openeogeotrellis/backend.py`` ``summarize_exception_static`` (the summary a failed batch job logs as
#: "OpenEO batch job failed: <summary>", ``deploy/batch_job.py``), ``job_tracker_v2.py`` (YARN / Kubernetes
#: application diagnostics it logs for the job), ``layercatalog.py`` and ``load_stac.py``; openeo-python-driver
#: ``openeo_driver/errors.py`` (the openEO API error codes every openeo-driver based backend uses, also what
#: openeo-aggregator passes through from its upstreams: ``backend.py`` ``get_log_entries`` forwards the upstream's
#: entries as they are, and partitioned jobs log "Failed to get logs of ..."). openeo-fastapi (EODC) could not be
#: read here; it answers with the same openEO API error codes.
RULES: tuple[Rule, ...] = (
    # -- out of memory -------------------------------------------------------------------------------------
    _rule(
        _OOM,
        "geopyspark backend.py: YARN kills an executor over its memory limit (exit 143); summary 'workers used "
        "too much memory'",
        message=r"exit code is 143|workers used too much memory",
    ),
    _rule(_OOM, "Kubernetes/YARN: a container killed for memory (exit code 137, SIGKILL)", message=r"exit code:? 137"),
    _rule(
        _OOM,
        "YARN: 'Container killed by YARN for exceeding memory limits'; geopyspark job_tracker_v2.py: OOMKilled driver",
        message=r"container killed .{0,40}memory|exceeding (physical |virtual )?memory limits|oomkilled",
    ),
    _rule(
        _OOM,
        "geopyspark backend.py: java.lang.OutOfMemoryError root cause ('driver used too much java memory'); "
        "job_tracker_v2.py 'went out of memory'",
        message=r"outofmemoryerror|used too much (java )?memory|went out of memory|out of memory",
    ),
    _rule(
        _OOM,
        "geopyspark backend.py: Python MemoryError / std::bad_alloc in a UDF, 'failed to map segment from shared "
        "object' (summary 'Ran out of memory ... python-memory')",
        message=r"\bMemoryError\b|std::bad_alloc|ran out of memory|failed to map segment from shared object",
    ),
    # -- no data for the request ---------------------------------------------------------------------------
    _rule(
        _NO_DATA,
        "geopyspark layercatalog.py / load_stac.py: NoDataAvailable ('There is no data available for the given "
        "extents', 'No data available with load_stac')",
        codes={"NoDataAvailable"},
        message=r"NoDataAvailable|no data available|could not find data for your load_collection",
    ),
    _rule(
        _NO_DATA,
        "geopyspark backend.py: 'Cannot stitch empty collection' (summary: boundaries gave an empty image collection)",
        message=r"cannot stitch empty collection|resulted in an empty image collection",
    ),
    # -- invalid process graph -----------------------------------------------------------------------------
    _rule(
        _INVALID,
        "openeo-python-driver errors.py: the openEO API's process graph / parameter error codes",
        codes={
            "ProcessGraphInvalid",
            "ProcessGraphMissing",
            "ProcessInvalid",
            "ProcessParameterInvalid",
            "ProcessParameterRequired",
            "ProcessParameterUnsupported",
            "ProcessUnsupported",
            "CollectionNotFound",
        },
        message=(
            r"ProcessGraphInvalid|ProcessParameterInvalid|ProcessParameterRequired|ProcessUnsupported|"
            r"invalid process graph|the value passed for parameter .* is invalid|"
            r"is not available in namespace|collection .* does not exist"
        ),
    ),
    # -- timeout -------------------------------------------------------------------------------------------
    _rule(
        _TIMEOUT,
        "openeo-python-driver errors.py RequestTimeout; geopyspark job_tracker_v2.py: YARN 'timed out. Failing "
        "the application' ('did not start fast enough and got killed'); calrissian.py 'did not finish within'",
        codes={"RequestTimeout"},
        message=(
            r"timed out|timeout|did not start fast enough|did not finish within|deadline exceeded|"
            r"maximum (run|execution) ?time"
        ),
    ),
    # -- backend fault -------------------------------------------------------------------------------------
    _rule(
        _FAULT,
        "openeo-python-driver errors.py: Internal ('Server error: ...'), InfrastructureBusy / Maintenance, "
        "ServiceUnavailable (5xx)",
        codes={"Internal", "InfrastructureBusy", "InfrastructureMaintenance", "ServiceUnavailable"},
        message=r"^server error|internal server error|\b50[0234]\b.*(error|unavailable)",
    ),
    _rule(
        _FAULT,
        "geopyspark backend.py: Spark stage failures ('A part of your process graph failed multiple times', "
        "'Missing an output location', 'ExecutorLostFailure'), Kubernetes errors ('failed due to Kubernetes "
        "error', 'failed to initialize')",
        message=(
            r"failed multiple times|missing an output location|ExecutorLostFailure|"
            r"failed the maximum allowable number of times|kubernetes error|batch job failed to initialize"
        ),
    ),
    _rule(
        _FAULT,
        "openeo-aggregator partitionedjobs/tracking.py: an upstream's logs could not be read ('Failed to get logs "
        "of ...'); federation: upstream unavailable",
        message=r"failed to get logs of|upstream .*(unavailable|unreachable)|BackendLookupFailure",
    ),
)


@dataclass(frozen=True)
class Classification:
    """A job's category and the rule and log entry that decided it (None: no rule matched, category ``other``)."""

    category: ErrorCategory
    rule: Rule | None = None
    entry: Mapping[str, Any] | None = None


def classify(entries: Iterable[Mapping[str, Any]] | None, rules: Sequence[Rule] = RULES) -> Classification:
    """The category of a job by its error log ``entries``: the first rule (table order) matching any entry.

    No entries (the backend logged none, or they could not be read) and no match are ``other``.
    """
    listed = [entry for entry in (entries or []) if isinstance(entry, Mapping)]
    for rule in rules:
        for entry in listed:
            if rule.matches(entry):
                return Classification(rule.category, rule, entry)
    return Classification(ErrorCategory.OTHER)


def parse_category(value: Any, *, where: str) -> ErrorCategory:
    """A category by its value (``"out_of_memory"``); anything else is an error naming ``where`` and the known ones."""
    if isinstance(value, ErrorCategory):
        return value
    try:
        return ErrorCategory(str(value))
    except ValueError:
        known = ", ".join(sorted(ErrorCategory.values()))
        raise ValueError(f"{where}: unknown error category {value!r}; known: {known}") from None
