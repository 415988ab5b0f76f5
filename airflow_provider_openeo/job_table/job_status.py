"""The status vocabularies a row of the job database carries, and how they relate.

A row has an MBJM-compatible ``status`` (what ``MultiBackendJobManager`` reads and writes, so MBJM can run on
our table unchanged) and, kept apart from it, ``backend_status``: the official openEO status the backend last
reported for the row's job. Our pipeline decides from ``status``; ``backend_status`` is evidence, never guessed.
A finished row's ``results_state`` says how far storing its results got. Every set of these values is
defined here, once.
"""

from __future__ import annotations

from enum import Enum


class CellValues(str, Enum):
    """An enum whose values are what a job-table column may hold (a str, so a cell compares equal to it)."""

    @classmethod
    def values(cls) -> frozenset[str]:
        return frozenset(member.value for member in cls)


class OpenEOJobStatus(CellValues):
    """Official openEO batch-job statuses (openEO API, ``GET /jobs/{id}``)."""

    CREATED = "created"
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELED = "canceled"
    ERROR = "error"

    @classmethod
    def terminal_statuses(cls) -> frozenset[OpenEOJobStatus]:
        return frozenset({cls.FINISHED, cls.CANCELED, cls.ERROR})

    @classmethod
    def active_statuses(cls) -> frozenset[OpenEOJobStatus]:
        """Statuses of a job that exists on the backend and has not ended."""
        return frozenset({cls.CREATED, cls.QUEUED, cls.RUNNING})

    def is_terminal(self) -> bool:
        return self in self.terminal_statuses()

    @classmethod
    def is_terminal_value(cls, value: str | None) -> bool:
        """Whether a status as the backend (or a row's ``backend_status``) spells it has ended; None has not."""
        return value in TERMINAL_BACKEND_STATUSES


class RowStatus(CellValues):
    """Values of the job database's ``status`` column: the openEO statuses plus MBJM's internal ones."""

    NOT_STARTED = "not_started"
    QUEUED_FOR_START = "queued_for_start"
    CREATED = "created"
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    ERROR = "error"
    CANCELED = "canceled"
    START_FAILED = "start_failed"
    SKIPPED = "skipped"

    @classmethod
    def final_statuses(cls) -> frozenset[RowStatus]:
        """A row in one of these needs a deliberate re-run (a cleared task) to be tried again."""
        return frozenset({cls.FINISHED, cls.ERROR, cls.CANCELED, cls.START_FAILED, cls.SKIPPED})

    @classmethod
    def resumable_statuses(cls) -> frozenset[RowStatus]:
        """Rows an interrupted batch picks up again: never started, or holding a job that may still live."""
        return frozenset({cls.NOT_STARTED, cls.QUEUED_FOR_START, cls.CREATED, cls.QUEUED, cls.RUNNING})

    @classmethod
    def job_holding_statuses(cls) -> frozenset[RowStatus]:
        """Rows whose job is being started or may still live on its backend (claimed, no ending recorded)."""
        return frozenset({cls.QUEUED_FOR_START, cls.CREATED, cls.QUEUED, cls.RUNNING})

    @classmethod
    def failed_statuses(cls) -> frozenset[RowStatus]:
        """Rows that ended without results through a failure (not a cancel or a skip)."""
        return frozenset({cls.ERROR, cls.START_FAILED})

    @classmethod
    def recorded_failure_statuses(cls) -> frozenset[RowStatus]:
        """Rows whose job's failure was handled and recorded: running them again is a deliberate re-run."""
        return frozenset({cls.ERROR, cls.CANCELED})


class ResultsState(CellValues):
    """Values of the row's ``results_state`` column: how far the storing of a finished job's results got."""

    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    FAILED = "failed"
    SKIPPED = "skipped"

    @classmethod
    def unstored_statuses(cls) -> frozenset[ResultsState]:
        """A finished row in one of these (or with none) still owes its results: a crash mid-download, or a
        download that failed through all of its retries, must not lose them; a later run stores them."""
        return frozenset({cls.DOWNLOADING, cls.FAILED})


class DryRunVerdict(CellValues):
    """Values of the row's ``dry_run_verdict`` column: what the last dry run (``dry_run``) said of the row. It would
    start, it would fail before or at the start, it was not checked (the backend validates nothing), it holds a
    job already (nothing to try), or ``start_job`` would skip it."""

    VALID = "valid"
    WOULD_FAIL = "would_fail"
    NOT_CHECKED = "not_checked"
    HAS_JOB = "has_job"
    SKIPPED = "skipped"


# The same sets as the plain strings the job database and the backends carry (compare cells against these).
#: Backend statuses of a job that has ended.
TERMINAL_BACKEND_STATUSES: frozenset[str] = frozenset(s.value for s in OpenEOJobStatus.terminal_statuses())
#: Backend statuses of a job that exists and has not ended.
ACTIVE_BACKEND_STATUSES: frozenset[str] = frozenset(s.value for s in OpenEOJobStatus.active_statuses())
#: Row statuses that need a deliberate re-run to be tried again.
FINAL_ROW_STATUSES: frozenset[str] = frozenset(s.value for s in RowStatus.final_statuses())
#: Row statuses an interrupted batch picks up again.
RESUMABLE_ROW_STATUSES: frozenset[str] = frozenset(s.value for s in RowStatus.resumable_statuses())
#: Row statuses whose job is being started or may still live.
JOB_HOLDING_ROW_STATUSES: frozenset[str] = frozenset(s.value for s in RowStatus.job_holding_statuses())
#: Row statuses counted as failed.
FAILED_ROW_STATUSES: frozenset[str] = frozenset(s.value for s in RowStatus.failed_statuses())
#: Row statuses of a recorded job failure (error or cancel).
RECORDED_FAILURE_ROW_STATUSES: frozenset[str] = frozenset(s.value for s in RowStatus.recorded_failure_statuses())
#: ``results_state`` values of a finished row whose results a later run still stores.
UNSTORED_RESULTS_STATES: frozenset[str] = frozenset(s.value for s in ResultsState.unstored_statuses())
