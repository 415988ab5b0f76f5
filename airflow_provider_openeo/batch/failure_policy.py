"""The failure policy: which rows get another job after theirs ended in ``error``, and how often.

A job that ends in ``error`` is classified by its error logs (:mod:`~airflow_provider_openeo.batch.error_categories`,
the row's ``error_category``). Per category the batch either retries the row (a new job for it, up to ``max_attempts``
jobs in a row) or leaves it failed. Defaults: out of memory, timeouts and backend faults are retried (an out-of-memory
retry with more memory, :mod:`~airflow_provider_openeo.batch._oom_memory`); no data and an invalid process graph never
are (the same request fails the same way); other is not (an unknown failure retried blindly costs a job each time).

Where a retry happens, and why there (``OpenEOBatchJobOperator.after_job_error``): in the row's own ``job`` task,
right after the job handler recorded the error. The row gives its job up (into ``job_history``, with category,
message and ``retry: "failure_policy"``) by a compare-and-set on the job id and status, keeping its backend and its
instance's slot, and the task starts the row again exactly as a fresh row is started (claim, ``POST /jobs`` with its
id recorded the moment the backend answers, lost-create recovery), then waits for the new job in the triggerer. So a
retry reuses the one path that creates jobs and holds the backend's pool slot throughout: a task killed at any point
continues from what the row says (an id: re-attach; none: create), and never creates a second job.

Counting attempts: the row's jobs since it was last re-opened (loaded, or ``rerun_statuses``): the first job, each
policy retry, and each new job a task retry or clear created after a recorded error (``retry: "task"`` in
``job_history``). A re-run by ``rerun_statuses`` starts the count afresh, and the memory with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_openeo.batch._oom_memory import MemoryRule
from airflow_provider_openeo.batch.error_categories import ErrorCategory, parse_category

#: Retry or not, per category, when the batch says nothing else.
DEFAULT_RETRY: dict[ErrorCategory, bool] = {
    ErrorCategory.OUT_OF_MEMORY: True,
    ErrorCategory.NO_DATA: False,
    ErrorCategory.TIMEOUT: True,
    ErrorCategory.INVALID_PROCESS_GRAPH: False,
    ErrorCategory.BACKEND_FAULT: True,
    ErrorCategory.OTHER: False,
}
#: Jobs per row (the first included) unless the batch says otherwise.
DEFAULT_MAX_ATTEMPTS = 3
#: Each out-of-memory retry multiplies the memory options by this (``"2g"`` -> ``"3g"`` -> ``"4608m"``).
DEFAULT_MEMORY_FACTOR = 1.5
#: ``job_history`` field saying the row got another job after this one, and who gave it.
RETRY_KEY = "retry"
RETRY_BY_POLICY = "failure_policy"
RETRY_BY_TASK = "task"
#: History statuses that are not an attempt of their own (the job never ran, or vanished): they neither count nor
#: end a run of attempts.
_NOT_ATTEMPTS = frozenset({"deleted", "abandoned"})
_KEYS = ("retry", "max_attempts", "oom_memory")


@dataclass(frozen=True)
class FailurePolicy:
    """What the batch does with a row whose job ended in ``error`` (see the module doc).

    :param retry: per category (``"out_of_memory"``, ``"no_data"``, ``"timeout"``, ``"invalid_process_graph"``,
        ``"backend_fault"``, ``"other"``): True to retry, False never; categories left out keep
        :data:`DEFAULT_RETRY`.
    :param max_attempts: jobs per row at most (the first included); 1 turns retries off.
    :param oom_memory: for an out-of-memory retry: a factor applied to the memory job options once per such retry
        so far (default 1.5), a callable ``(options, oom_retries) -> options``, or None to retry unchanged.
    """

    retry: Mapping[Any, Any] = field(default_factory=dict)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    oom_memory: MemoryRule | None = DEFAULT_MEMORY_FACTOR

    def __post_init__(self) -> None:
        if not isinstance(self.retry, Mapping):
            raise ValueError(
                f"failure_policy: retry must map error categories to True/False, got {type(self.retry).__name__}"
            )
        merged = dict(DEFAULT_RETRY)
        for key, value in self.retry.items():
            category = parse_category(key, where="failure_policy: retry")
            if not isinstance(value, bool):
                raise ValueError(
                    f"failure_policy: retry[{category.value!r}] must be True (retry) or False (never), got {value!r}"
                )
            merged[category] = value
        object.__setattr__(self, "retry", {category.value: merged[category] for category in ErrorCategory})
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(
                f"failure_policy: max_attempts must be an integer of at least 1, got {self.max_attempts!r}"
            )
        rule = self.oom_memory
        factor_ok = not isinstance(rule, bool) and isinstance(rule, (int, float)) and rule >= 1
        if rule is not None and not callable(rule) and not factor_ok:
            raise ValueError(
                "failure_policy: oom_memory must be a factor of at least 1 (e.g. 1.5), a callable "
                f"(options, oom_retries) -> options, or None, got {rule!r}"
            )

    def retries(self, category: ErrorCategory | str) -> bool:
        return bool(self.retry[parse_category(category, where="error_category").value])


@dataclass(frozen=True)
class Verdict:
    """What the policy says of a job that ended in ``error``: ``retry`` or not, this job's ``attempt`` number, and
    a ``reason`` for the row's ``error_message`` and the task log."""

    retry: bool
    attempt: int
    reason: str


def parse_failure_policy(value: Any) -> FailurePolicy:
    """``openeo_job_batch(failure_policy=...)``: a :class:`FailurePolicy`, a dict of its fields, or None (the
    defaults). Checked when the DAG is parsed: an unknown category, key or a bad value is an error naming it."""
    if value is None:
        return FailurePolicy()
    if isinstance(value, FailurePolicy):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(
            "failure_policy must be a FailurePolicy or a dict with keys retry, max_attempts, oom_memory, got "
            f"{type(value).__name__}"
        )
    unknown = sorted(str(key) for key in value if key not in _KEYS)
    if unknown:
        raise ValueError(f"failure_policy: unknown key(s) {unknown}; known: {', '.join(_KEYS)}")
    return FailurePolicy(**dict(value))


def attempt_streak(history: Iterable[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    """The row's earlier jobs that count towards ``max_attempts`` now: those after which it got another job
    automatically (``retry`` set), back to the last one it did not (a re-open by ``rerun_statuses``)."""
    streak: list[Mapping[str, Any]] = []
    for entry in reversed(list(history or [])):
        if not isinstance(entry, Mapping) or entry.get("status") in _NOT_ATTEMPTS:
            continue
        if not entry.get(RETRY_KEY):
            break
        streak.append(entry)
    streak.reverse()
    return streak


def oom_retries(history: Iterable[Mapping[str, Any]] | None) -> int:
    """How many of the counted earlier jobs ran out of memory and were retried by the policy: the memory rule is
    applied that many times to the next job's options."""
    return sum(
        1
        for entry in attempt_streak(history)
        if entry.get(RETRY_KEY) == RETRY_BY_POLICY and entry.get("error_category") == ErrorCategory.OUT_OF_MEMORY.value
    )


def decide(policy: FailurePolicy, category: ErrorCategory | str | None, history: Any) -> Verdict:
    """Retry the row or not, for its current job that ended in ``error`` as ``category`` (None: ``other``)."""
    category = parse_category(category or ErrorCategory.OTHER.value, where="error_category")
    attempt = len(attempt_streak(history)) + 1
    if not policy.retries(category):
        return Verdict(False, attempt, f"{category.value}: not retried by the failure policy")
    if attempt >= policy.max_attempts:
        return Verdict(
            False, attempt, f"{category.value}: gave up after {attempt} attempt(s) (max_attempts={policy.max_attempts})"
        )
    more = " with more memory" if category is ErrorCategory.OUT_OF_MEMORY and policy.oom_memory is not None else ""
    reason = f"{category.value}: attempt {attempt} of {policy.max_attempts} failed; retrying{more}"
    return Verdict(True, attempt, reason)
