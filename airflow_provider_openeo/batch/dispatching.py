"""Which row a backend's free slot takes, and when a backend takes none: pure functions, no Airflow, no SQL.

A batch run does not split its rows across backends up front. Each backend has a mapped group of instances,
queued in its pool ``openeo_<backend>``; an instance that gets a pool slot asks :func:`decide` what to do, and
claims the row it names. So a row goes to whichever backend has room at the moment it has room, and a backend
that ends jobs three times faster takes about three times the rows. A group is sized for the rows its backend
is expected to take (:func:`expected_shares`, :func:`instances_per_backend`: its share by the job table's
history, with slack and a pool's worth more), because the scheduler re-checks every waiting instance on every
loop; together the groups cover every row. Where that history does not tell every backend's pace (a new table,
a new backend), nothing says which backend is faster: every group is sized to take every free row, and the
instances a backend turns out not to need are skipped during the run, once the run's own ended jobs give each
backend's pace (:func:`spare_indexes`).

What :func:`decide` weighs, in order:

1. the row this slot already holds (a retried or resumed instance) is its row, whatever else holds;
2. a backend that keeps failing to start jobs (connection errors, 5xx: :attr:`StartFailure.UNAVAILABLE`) takes
   no new row until its cool-down ends (it grows while the backend stays bad), then one start probes it;
3. a backend whose starts answered ``ConcurrentJobLimit`` (:attr:`StartFailure.LIMIT`: the account's slots are
   held by other jobs) runs at most ``slot_limit`` jobs of ours until a start succeeds again;
4. rows pinned to this backend (or holding a job there) first, then unpinned rows, in table order;
5. near the end of a run, a backend leaves the last unpinned rows to faster ones when, by the job table's own
   history, they would finish them all before this backend finished one (:func:`leave_to_faster`): the one
   slow job started last would otherwise set the batch's end;
6. nothing left that this backend could ever take: the backend is done, its remaining instances are skipped;
   before that, instances beyond what the rows still free could need are skipped as rows get taken
   (:func:`spare_indexes`);
7. a backend that is down, when the working backends' instances are all taken, ends too: the free rows then
   continue in the next run of the batch rather than wait for it alone.

A row is released (given back, unpinned again) when a start on a bad backend fails, so another backend takes
it; :func:`health_after_failure` and :func:`health_after_success` keep each backend's record.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

#: Consecutive failed starts (connection errors, 5xx) after which a backend cools down.
FAILURES_BEFORE_COOLDOWN = 3
#: The first cool-down, in seconds; each further failure doubles it up to :data:`MAX_COOLDOWN_SECONDS`.
BASE_COOLDOWN_SECONDS = 30.0
MAX_COOLDOWN_SECONDS = 15 * 60.0


class StartFailure(str, enum.Enum):
    """Why a start on a backend failed, as far as the dispatch cares."""

    UNAVAILABLE = "unavailable"
    """Connection error, timeout, 5xx: the backend may be down."""
    LIMIT = "limit"
    """``ConcurrentJobLimit``: the account runs as many jobs as the backend allows, some of them not ours."""


@dataclass(frozen=True)
class BackendHealth:
    """What the batch knows of one backend's recent starts (kept in the job database, shared by its batches).

    :param failures: consecutive failed starts.
    :param failing_since: epoch seconds of the first of them.
    :param cooldown_until: epoch seconds before which the backend takes no new row (UNAVAILABLE) or no row beyond
        ``slot_limit`` (LIMIT).
    :param slot_limit: jobs of ours the backend takes at once after a ``ConcurrentJobLimit``; None: its
        ``parallel_jobs`` (the pool).
    :param last_error: the last failure's message (no credentials: the starter scrubs it).
    """

    name: str
    failures: int = 0
    failing_since: float | None = None
    cooldown_until: float = 0.0
    slot_limit: int | None = None
    last_error: str | None = None
    last_failure: StartFailure | None = None

    def cooling_down(self, now: float) -> bool:
        return now < self.cooldown_until

    def describe(self, now: float) -> str:
        """``backend 'foo': 4 failed starts since 12:00:03 UTC (last: ...)``, for row messages and logs."""
        if not self.failures:
            return f"backend {self.name!r} is healthy"
        text = f"backend {self.name!r}: {self.failures} failed start(s) in a row"
        if self.failing_since is not None:
            text += f" over {max(0.0, now - self.failing_since):.0f} s"
        if self.last_error:
            text += f" (last: {self.last_error})"
        return text


def cooldown_seconds(failures: int) -> float:
    """The cool-down after ``failures`` consecutive failures: 30 s at the threshold, doubling, at most 15 min."""
    steps = max(0, failures - FAILURES_BEFORE_COOLDOWN)
    return min(MAX_COOLDOWN_SECONDS, BASE_COOLDOWN_SECONDS * 2**steps)


def health_after_failure(
    health: BackendHealth, failure: StartFailure, *, now: float, active: int, message: str | None = None
) -> BackendHealth:
    """The record after one failed start. ``active``: jobs of ours the backend runs right now (other rows).

    UNAVAILABLE cools the backend down from the :data:`FAILURES_BEFORE_COOLDOWN`-th failure in a row on.
    LIMIT lowers ``slot_limit`` to what the backend does run for us (the account's other jobs hold the rest) and
    cools down at once: above that limit nothing is tried before the cool-down ends.
    """
    failures = health.failures + 1
    changed = replace(
        health,
        failures=failures,
        failing_since=health.failing_since if health.failing_since is not None else now,
        last_error=message if message is not None else health.last_error,
        last_failure=failure,
    )
    if failure is StartFailure.LIMIT:
        limit = max(0, active)
        if health.slot_limit is not None:
            limit = min(limit, health.slot_limit)
        return replace(changed, slot_limit=limit, cooldown_until=now + cooldown_seconds(max(failures, 3)))
    if failures >= FAILURES_BEFORE_COOLDOWN:
        return replace(changed, cooldown_until=now + cooldown_seconds(failures))
    return changed


def health_after_success(health: BackendHealth, *, parallel_jobs: int) -> BackendHealth:
    """A start went through: the failure streak ends, and a lowered ``slot_limit`` grows back by one."""
    limit = health.slot_limit
    if limit is not None:
        limit = None if limit + 1 >= parallel_jobs else limit + 1
    return replace(health, failures=0, failing_since=None, cooldown_until=0.0, slot_limit=limit, last_failure=None)


@dataclass(frozen=True)
class RunRow:
    """One row of a batch run as the dispatch sees it. Every row the plan gave the run needs an instance until
    one holds it; a row given back (its start failed on a bad backend) is free again.

    :param backend_name: where the row must run: the user's pin, or the backend of the job it holds; None: any.
    :param slot: the instance that holds the row in this run (``"<job task id>[<map index>]"``), None if free.
    :param settled: held, and its start is through (the job was started, or the row ended): a held row that is
        not settled may still fail to start and come back free.
    """

    row_id: Any
    backend_name: str | None = None
    slot: str | None = None
    settled: bool = False

    @property
    def unsettled(self) -> bool:
        return self.slot is not None and not self.settled


@dataclass(frozen=True)
class Claim:
    """Take this row (write the slot on it, compare-and-set) and start it."""

    row_id: Any
    held: bool = False
    """The slot held the row already: a retry or a resumed instance continues with it."""


@dataclass(frozen=True)
class Wait:
    """Take no row now; ask again at ``until`` (epoch seconds)."""

    until: float
    reason: str


@dataclass(frozen=True)
class Done:
    """Nothing in this run is left for this backend; ``reason`` says why."""

    reason: str
    leaves_rows: bool = False
    """The backend is down and its free rows continue in the next run: skip its unused instances too."""


@dataclass(frozen=True)
class GiveUp:
    """Fail this row: every backend it may run on has been failing longer than the batch allows."""

    row_id: Any
    reason: str


Decision = Claim | Wait | Done | GiveUp


def decide(
    rows: Sequence[RunRow],
    *,
    backend: str,
    slot: str,
    health: BackendHealth,
    active: int,
    now: float,
    recheck_seconds: float,
    eligible_backends: Iterable[str],
    all_health: dict[str, BackendHealth] | None = None,
    give_up_after: float | None = None,
    paces: dict[str, float] | None = None,
    slots: dict[str, int] | None = None,
    live: dict[str, int] | None = None,
    others_unused: int | None = None,
) -> Decision:
    """What the instance ``slot`` of ``backend`` does now. See the module docstring for the order of rules.

    :param rows: the run's rows (see :class:`RunRow`).
    :param active: jobs of ours running on ``backend`` now (rows holding a live job there).
    :param recheck_seconds: how long to wait before looking again when waiting on a running job to end.
    :param eligible_backends: every backend of the batch (for unpinned rows and for :class:`GiveUp`).
    :param all_health: the other backends' records, for :class:`GiveUp` (None: never give up).
    :param give_up_after: seconds a backend may keep failing before the rows that can only go to failing
        backends are failed (None: wait as long as it takes).
    :param paces: seconds a job takes on each backend, from the job table's history (see :func:`leave_to_faster`).
    :param slots: each backend's ``parallel_jobs``.
    :param live: jobs of ours each backend runs now; rows are left only to faster backends that are running jobs
        (an idle one takes free rows at once anyway, and a wait for a backend that runs nothing could last forever).
    :param others_unused: instances of the other, working backends that hold no row yet (None: not known). A
        backend that is down, with no row pinned to it, ends (:class:`Done` with ``leaves_rows``) once they are
        all taken: its free rows then wait for no one but it, so they continue in the next run, where the
        working backends get instances for them, instead of holding this run open until it comes back.
    """
    for row in rows:
        if row.slot == slot:
            return Claim(row.row_id, held=True)
    mine = [r for r in rows if r.slot is None and r.backend_name == backend]
    free = [r for r in rows if r.slot is None and r.backend_name is None]
    if not mine and not free:
        if any(r.unsettled for r in rows):
            # A row held elsewhere is still being started: a failed start would give it back.
            return Wait(now + recheck_seconds, "rows are being started elsewhere and may come back")
        return Done(f"no row of this run is left for backend {backend!r}")
    if not mine and others_unused == 0 and _others_work_while_down(backend, health, eligible_backends, all_health):
        return Done(
            f"{health.describe(now)}; the other backends' instances of this run are all taken: the "
            f"{len(free)} free row(s) continue in the next run",
            leaves_rows=True,
        )
    if health.failures and health.cooling_down(now) and health.last_failure is StartFailure.UNAVAILABLE:
        stuck = _given_up(mine, free, health, eligible_backends, all_health, give_up_after, now)
        if stuck is not None:
            return stuck
        return Wait(health.cooldown_until, f"{health.describe(now)}; cooling down")
    limit = health.slot_limit
    if limit is not None and active >= limit and health.cooling_down(now):
        until = min(health.cooldown_until, now + recheck_seconds)
        return Wait(until, f"backend {backend!r} takes {limit} job(s) of ours now (ConcurrentJobLimit)")
    if mine:
        return Claim(mine[0].row_id)
    busy = {name: count for name, count in (slots or {}).items() if (live or {}).get(name, 0) > 0}
    if paces and busy and leave_to_faster(backend, len(free), paces, _usable_slots(busy, all_health, now)):
        # Asked again as soon as the answer changes (a faster backend took them, or nothing is left).
        until = now + max(recheck_seconds, paces[backend])
        return Wait(until, f"faster backends will finish the {len(free)} row(s) left sooner")
    return Claim(free[0].row_id)


def _others_work_while_down(
    backend: str, health: BackendHealth, eligible_backends: Iterable[str], all_health: dict[str, BackendHealth] | None
) -> bool:
    """``backend`` is down and another backend of the batch is not: its free rows are better left to the next run,
    where the working backends get instances for them, than held for it (see ``decide``'s ``others_unused``)."""
    return is_down(health) and any(
        not is_down((all_health or {}).get(name, BackendHealth(name))) for name in eligible_backends if name != backend
    )


def leave_to_faster(backend: str, free_rows: int, paces: dict[str, float], slots: dict[str, int]) -> bool:
    """Whether the backends faster than ``backend`` would end all ``free_rows`` before it ended one of them.

    A faster backend ``c`` (a job takes ``paces[c]`` seconds there, ``paces[backend]`` here) has each slot busy now,
    half-way through a job on average, and then ends ``floor(paces[backend] / paces[c] - 0.5)`` whole new jobs per
    slot while this backend runs one. Without a pace for this backend (no job of it ended yet) it never leaves a
    row; near-equal backends never leave one to each other.
    """
    mine = paces.get(backend)
    if mine is None or free_rows < 1:
        return False
    capacity = sum(
        slots.get(name, 0) * max(0, math.floor(mine / pace - 0.5))
        for name, pace in paces.items()
        if name != backend and 0 < pace < mine
    )
    return free_rows <= capacity


def is_down(health: BackendHealth) -> bool:
    """Failing to start jobs for connection errors or 5xx, often enough to have been cooled down."""
    return health.last_failure is StartFailure.UNAVAILABLE and health.failures >= FAILURES_BEFORE_COOLDOWN


def _usable_slots(slots: dict[str, int], all_health: dict[str, BackendHealth] | None, now: float) -> dict[str, int]:
    """Slots each backend can use now: none while it cools down after failures, at most its lowered limit."""
    usable = {}
    for name, count in slots.items():
        health = (all_health or {}).get(name)
        if health is not None and health.failures and health.cooling_down(now):
            if health.last_failure is StartFailure.UNAVAILABLE:
                count = 0
            elif health.slot_limit is not None:
                count = min(count, health.slot_limit)
        usable[name] = count
    return usable


def pace_of(durations: Iterable[float]) -> float | None:
    """A backend's pace: the median of its recent jobs' seconds from creation to end (None without any)."""
    ordered = sorted(d for d in durations if d > 0)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _given_up(
    mine: list[RunRow],
    free: list[RunRow],
    health: BackendHealth,
    backends: Iterable[str],
    all_health: dict[str, BackendHealth] | None,
    give_up_after: float | None,
    now: float,
) -> GiveUp | None:
    """A row to fail: pinned to this failing backend, or free while every backend has been failing too long."""
    if give_up_after is None or all_health is None or not _failing_too_long(health, give_up_after, now):
        return None
    if mine:
        return GiveUp(mine[0].row_id, f"{health.describe(now)}; the row runs only there (field 'backend_name')")
    others = [all_health.get(name, BackendHealth(name)) for name in backends]
    if free and all(_failing_too_long(h, give_up_after, now) for h in others):
        return GiveUp(free[0].row_id, "every backend keeps failing: " + "; ".join(h.describe(now) for h in others))
    return None


def _failing_too_long(health: BackendHealth, give_up_after: float, now: float) -> bool:
    return health.failing_since is not None and now - health.failing_since >= give_up_after


#: How many more rows than its share a backend's group may take: its pace may change during the run.
SHARE_SLACK = 1.25


def backend_shares(
    parallel_jobs: Mapping[str, int],
    *,
    paces: Mapping[str, float] | None = None,
    all_health: Mapping[str, BackendHealth] | None = None,
    now: float,
) -> dict[str, float]:
    """The part of a run's free rows each backend is expected to take: its usable slots over its pace, normalised.

    A backend that cools down after failed starts counts no slot (its rows go elsewhere), one whose account
    runs other jobs counts its lowered limit (:func:`_usable_slots`). A backend with no pace yet (no job of it
    ended) is counted as fast as the fastest known one, so a new backend is given rows to show its pace; with
    no pace at all, shares follow the slots. When every backend cools down, shares follow ``parallel_jobs``:
    the rows wait for whichever comes back first.
    """
    usable = _usable_slots(dict(parallel_jobs), dict(all_health) if all_health else None, now)
    return _shares_of(usable if any(usable.values()) else dict(parallel_jobs), paces or {})


def _shares_of(usable: Mapping[str, int], paces: Mapping[str, float]) -> dict[str, float]:
    """Each backend's slots over its pace, normalised (a backend without a pace counts as the fastest known)."""
    known = [pace for name, pace in paces.items() if name in usable and pace > 0]
    fastest = min(known) if known else 1.0
    rates = {name: slots / (paces.get(name) or fastest) for name, slots in usable.items()}
    total = sum(rates.values())
    return {name: rate / total for name, rate in rates.items()}


def expected_shares(
    parallel_jobs: Mapping[str, int],
    *,
    paces: Mapping[str, float] | None,
    all_health: Mapping[str, BackendHealth] | None = None,
    now: float,
) -> dict[str, float] | None:
    """:func:`backend_shares`, when the job table's history gives a pace for every backend that can take rows now;
    None when it lacks one (a new table, a new backend): then nothing tells which backend is faster, and a share
    guessed from the slots would cap a backend three times faster than the other at half the rows.

    A backend cooling down after failed starts counts no slot, so its missing pace does not matter; when every
    backend cools down, the shares (which then follow the slots) are no estimate either.
    """
    usable = _usable_slots(dict(parallel_jobs), dict(all_health) if all_health else None, now)
    takers = [name for name, slots in usable.items() if slots > 0]
    if not takers or any(not (paces or {}).get(name) for name in takers):
        return None
    return _shares_of(usable, paces or {})


def share_of_free(free: int, share: float, *, slack: float = SHARE_SLACK) -> int:
    """How many of ``free`` unpinned rows a backend with ``share`` is sized for: its share with ``slack``."""
    if slack < 1:
        raise ValueError(f"slack must be at least 1, got {slack!r}")
    return min(free, math.ceil(free * share * slack - 1e-9))


def instances_per_backend(
    rows: Sequence[RunRow],
    parallel_jobs: Mapping[str, int],
    shares: Mapping[str, float] | None,
    *,
    slack: float = SHARE_SLACK,
) -> dict[str, int]:
    """Instances each backend's mapped group gets: its own rows, its share of the free ones with slack, and a
    pool's worth more, never more than all the rows it could take. ``shares`` None (no pace known for some
    backend, :func:`expected_shares`): every group may take every free row.

    Every instance of a group is a task instance the scheduler re-checks every loop until it ends, so a group
    is sized for what the backend is expected to run, not for every row it could take. The groups together
    still cover every row (shares sum to 1, ``slack`` >= 1), so no row of the run lacks an instance while the
    backends keep working; the ``parallel_jobs`` more let a backend that was down at planning time probe and
    take rows when it is back, and let a backend faster than its share run on. Rows left without an instance
    when a backend goes down during the run continue in the next run (:func:`decide`, ``others_unused``).
    Without shares the groups hold up to one instance per free row each; the run skips what a backend does not
    need once its pace is known (:func:`spare_indexes`).
    """
    free = sum(1 for r in rows if r.backend_name is None)
    sizes = {}
    for name, slots in parallel_jobs.items():
        pinned = sum(1 for r in rows if r.backend_name == name)
        if shares is None:
            sizes[name] = pinned + free
            continue
        sizes[name] = pinned + min(free, share_of_free(free, shares.get(name, 0.0), slack=slack) + slots)
    return sizes


def spare_indexes(
    rows: Sequence[RunRow],
    backend: str,
    *,
    own: Callable[[str], bool],
    unused: Sequence[int],
    margin: int,
    share: float | None = None,
) -> list[int]:
    """Map indexes of ``backend``'s unused instances beyond anything the run may still ask of the backend.

    ``unused``: the backend's instances that hold no row, lowest first (Airflow hands pool slots out in that
    order). The lowest stay: one for each row the backend may still have to take (rows pinned to it, the free
    rows it may run, and rows another backend is starting, which a failed start would give back; ``own`` tells
    this backend's slots), and ``margin`` more for instances that ended without a row. With ``share`` (the
    backend's part of the free rows by the paces of the moment, :func:`expected_shares`) only that part of the
    free rows, with slack, counts, as the plan would size the group now: a group sized for every free row on a
    new table (:func:`instances_per_backend`) shrinks to what the backend is seen to take once every backend's
    pace is known. The rest are skipped while the run goes on, so the scheduler does not re-check, every loop, a
    ``results`` task per unused instance until the run's end.
    """
    pinned = sum(1 for r in rows if r.slot is None and r.backend_name == backend)
    free = sum(1 for r in rows if r.slot is None and r.backend_name is None)
    elsewhere = sum(1 for r in rows if r.backend_name in (None, backend) and r.unsettled and not own(r.slot or ""))
    takes = free if share is None else share_of_free(free, share)
    return list(unused[pinned + takes + elsewhere + margin :])


def done_backends(rows: Sequence[RunRow], backends: Iterable[str]) -> list[str]:
    """Backends nothing in the run is left for, now or later: their unused instances can be skipped."""
    if any(r.unsettled for r in rows):
        return []
    waiting = [r for r in rows if r.slot is None]
    if any(r.backend_name is None for r in waiting):
        return []
    wanted = {r.backend_name for r in waiting}
    return [name for name in backends if name not in wanted]
