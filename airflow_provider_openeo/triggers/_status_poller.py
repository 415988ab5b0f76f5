"""Shared, batched status reads: one status read per backend per poll interval, whatever the job count.

MBJM (and a naive trigger) sends one ``GET /jobs/{id}`` per active job per round. A triggerer holding hundreds of
deferred tasks for one backend would do the same. Instead every :class:`OpenEOJobTrigger` running in one event
loop subscribes its job id to the :class:`StatusPoller` of its connection; the poller asks the backend about all
watched jobs in one ``read_jobs`` call per interval and hands each subscriber its job's metadata. The hook reads
them the cheapest way this backend allows, a ``GET /jobs`` listing or one read per job, as its read strategy has
learnt (``airflow_provider_openeo.hooks._openeo.read_strategy``; one per connection in the process, kept across
pollers).

Pollers are keyed by (event loop, connection id) because asyncio objects belong to one loop: the triggerer runs
one long-lived loop for all its triggers, while ``dag.test()`` runs each trigger in its own short-lived
``asyncio.run``. The last subscriber out stops the poller and closes its hook, so nothing outlives its loop.

Reads follow the jobs' forecast ends too (their reported ``progress``, else the run times of the jobs seen to
finish on the same connection): when one is due before the next regular read, one read goes out then
(:mod:`~airflow_provider_openeo.triggers._end_forecast`, which bounds what that may cost), so a slot is not left idle
for half an interval on average after its job ends. Such an early read asks only for the jobs due; the others come along
when the hook reads a listing page anyway (``optional``), and only then does it count as the regular read: the regular
schedule (every job at least once per interval) is kept apart from the early reads.

Errors are kept to the job they concern, so one job's failing read never delays the others' statuses:

- a listing that fails transiently (connection, timeout, 429, 5xx) concerns every job: it only delays the next
  listing (exponential backoff, capped, never shorter than the server's ``Retry-After``);
- a job whose own read fails transiently backs off alone, on the same schedule, while the others are read every
  interval; neither ever reaches the subscribers, so neither ends a wait;
- a job whose read is refused (auth, a 4xx) has the error delivered to its subscribers, as a failed listing has
  to every subscriber;
- a 404 is delivered as "gone" only once :mod:`airflow_provider_openeo.wait._job_gone` confirms it (a federated
  backend answers 404 for every job of an upstream it cannot reach); until then the subscribers hear that the
  job is unconfirmed, and the job stays watched. While a job is unconfirmed, each read includes a ``GET /jobs``
  listing, the evidence the rule weighs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_openeo.exceptions import OpenEOJobNotFoundError, OpenEOTransientError
from airflow_provider_openeo.hooks._openeo.job_reads import JobReads
from airflow_provider_openeo.triggers._end_forecast import EndForecast, run_times_of, total_times_of
from airflow_provider_openeo.wait._job_gone import GoneJudge, GonePolicy

log = logging.getLogger(__name__)

#: Longest pause between listings after repeated transient errors, unless the server asks for longer.
DEFAULT_MAX_BACKOFF = 300.0
#: A server's ``Retry-After`` is honoured up to this many seconds; beyond it the value is surely a mistake.
MAX_RETRY_AFTER = 3600.0
#: Listings sent for a forecast end are never closer together than this, nor than a fifth of the interval: a
#: backend whose jobs end every moment gets at most five listings per interval, however many jobs it runs.
MIN_LISTING_SPACING = 1.0
#: Per-job reads of one poll are given the interval, but never less than this, before the stragglers are
#: abandoned (and back off like any failing job): one hanging request must not hold every job's next update.
MIN_READ_BUDGET = 5.0


class AsyncJobStatusHook(Protocol):
    """The part of ``OpenEOAsyncHook`` the triggers use (a fake with these methods serves unit tests)."""

    @property
    def gone_policy(self) -> GonePolicy: ...

    async def read_jobs(
        self,
        job_ids: list[str],
        *,
        confirm: list[str] = ...,
        optional: list[str] = ...,
        each_attempts: int | None = None,
        budget: float | None = None,
    ) -> JobReads: ...

    async def cancel_job(self, job_id: str) -> None: ...

    async def close(self) -> None: ...


HookFactory = Callable[[str], AsyncJobStatusHook]


@dataclass(frozen=True)
class StatusUpdate:
    """What one listing said about one job: its metadata, or the error that ends the wait on it."""

    job_id: str
    observed_at: float
    """Epoch seconds when the listing that produced this update was sent (the earliest the status held)."""
    metadata: dict[str, Any] | None = None
    error: Exception | None = None
    unconfirmed: str | None = None
    """The job answered 404, which does not prove it gone yet: why not (the wait goes on)."""


def backoff_delay(failures: int, *, interval: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait after ``failures`` transient errors in a row: interval, 2x, 4x, ... up to ``cap``.

    The server's ``Retry-After`` wins when it asks for longer (bounded by :data:`MAX_RETRY_AFTER`).
    """
    delay = min(max(cap, interval), interval * 2 ** max(failures - 1, 0))
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


class Subscription:
    """One trigger's view of the poller: the latest update for its job, and a way to wait for the next one."""

    def __init__(self, poller: StatusPoller, job_id: str, interval: float) -> None:
        self.poller = poller
        self.job_id = job_id
        self.interval = interval
        self._latest: StatusUpdate | None = None
        self._fresh = asyncio.Event()
        self._closed = False

    def deliver(self, update: StatusUpdate) -> None:
        self._latest = update
        self._fresh.set()

    async def next_update(self, timeout: float | None = None) -> StatusUpdate | None:
        """The next update not yet returned, or None when ``timeout`` seconds pass first."""
        try:
            await asyncio.wait_for(self._fresh.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        self._fresh.clear()
        return self._latest

    async def close(self) -> None:
        """Leave the poller; idempotent, so both ``run()``'s exit and ``cleanup()`` may call it."""
        if self._closed:
            return
        self._closed = True
        await self.poller.unsubscribe(self)


class StatusPoller:
    """Lists the statuses of every subscribed job of one backend, once per interval, in one event loop."""

    def __init__(
        self,
        conn_id: str,
        hook_factory: HookFactory,
        *,
        loop: asyncio.AbstractEventLoop,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> None:
        self.conn_id = conn_id
        self.loop = loop
        self.max_backoff = max_backoff
        self._hook_factory = hook_factory
        self._subscribers: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._forecast = EndForecast(run_times=run_times_of(conn_id), total_times=total_times_of(conn_id))
        self._judge = GoneJudge()
        self._backoff: dict[str, tuple[int, float]] = {}
        """Jobs whose own reads fail transiently: (failures in a row, epoch time of the next try)."""
        self._due_early: set[str] = set()
        """The jobs the next read is sent early for (their forecast ends): the only ones it must read."""
        self._unconfirmed: set[str] = set()
        """Jobs that answered 404 without the rule confirming them gone: reads include a listing for them."""
        self.listings = 0
        """Number of ``read_jobs`` calls made (for logs and tests)."""

    @property
    def job_ids(self) -> list[str]:
        return list(self._subscribers)

    @property
    def alive(self) -> bool:
        """False once the polling task ended on an error: new subscribers then get a fresh poller."""
        return self._task is None or not self._task.done()

    @property
    def interval(self) -> float:
        """The shortest interval any subscriber asked for: nobody waits longer than they wanted."""
        return min((sub.interval for subs in self._subscribers.values() for sub in subs), default=1.0)

    def subscribe(self, job_id: str, interval: float) -> Subscription:
        subscription = Subscription(self, job_id, interval)
        self._subscribers.setdefault(job_id, set()).add(subscription)
        if self._task is None:
            self._task = self.loop.create_task(self._run(), name=f"openeo-status-poller-{self.conn_id}")
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        subs = self._subscribers.get(subscription.job_id)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._subscribers[subscription.job_id]
                self._forecast.forget(subscription.job_id)
                self._judge.forget(subscription.job_id)
                self._backoff.pop(subscription.job_id, None)
                self._unconfirmed.discard(subscription.job_id)
        if self._subscribers or self._task is None:
            return
        # Last one out: forget this poller before awaiting anything, so a trigger subscribing meanwhile gets a
        # fresh poller instead of this stopping one.
        _forget(self)
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        hook: AsyncJobStatusHook | None = None
        try:
            hook = self._hook_factory(self.conn_id)
            # Let triggers started in the same loop iteration subscribe before the first listing.
            await asyncio.sleep(0)
            await self._poll_forever(hook)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a broken hook: tell every waiter instead of leaving it hanging
            log.exception("Status poller of openEO connection %r stopped", self.conn_id)
            self._deliver_to_all(self._subscribers, error=exc, observed_at=time.time())
        finally:
            if hook is not None:
                with contextlib.suppress(Exception):
                    await hook.close()

    async def _poll_forever(self, hook: AsyncJobStatusHook) -> None:
        failures = 0
        next_full = 0.0
        while self._subscribers:
            started = time.time()
            try:
                if await self._poll_once(hook, started, full=started >= next_full):
                    next_full = started + self.interval
                failures = 0
                wake = self._next_poll_at(started, next_full)
            except OpenEOTransientError as exc:
                failures += 1
                delay = backoff_delay(
                    failures, interval=self.interval, cap=self.max_backoff, retry_after=exc.retry_after
                )
                log.warning(
                    "Listing %d job(s) on openEO connection %r failed (attempt %d, %s); retrying in %.1f s",
                    len(self._subscribers),
                    self.conn_id,
                    failures,
                    exc,
                    delay,
                )
                wake = next_full = started + delay
            except Exception as exc:  # not transient: every waiter must learn it (auth, refused request)
                log.warning("Listing jobs on openEO connection %r failed: %s", self.conn_id, exc)
                self._deliver_to_all(self._subscribers, error=exc, observed_at=started)
                wake = next_full = started + self.interval
            await asyncio.sleep(max(0.0, wake - time.time()))

    def _next_poll_at(self, started: float, next_full: float) -> float:
        """The next regular read (every job, ``next_full``), or an early one when a job's forecast end comes first
        (never closer than :data:`MIN_LISTING_SPACING` or a fifth of the interval to this one)."""
        forecast = self._forecast.next_listing()
        if forecast is None:
            return next_full
        early = max(forecast, started + max(MIN_LISTING_SPACING, self.interval / 5))
        if early >= next_full:
            return next_full
        self._due_early = set(self._forecast.listing_sent_early(early))
        return early

    async def _poll_once(self, hook: AsyncJobStatusHook, started: float, *, full: bool) -> bool:
        """One status read: of every job (``full``), or, sent early for forecast ends, of the jobs due, the others
        reported only if the read lists them in passing. True when every job got its answer (the next regular read
        is then an interval away)."""
        job_ids = self._backoff_free(started)
        due, self._due_early = self._due_early, set()
        if not job_ids:
            return full
        required, optional = job_ids, []
        if not full:
            required = [j for j in job_ids if j in due]
            optional = [j for j in job_ids if j not in due]
            if not required:  # the jobs due left meanwhile: nothing to read early
                return False
        reads = await hook.read_jobs(
            required,
            confirm=[j for j in required if j in self._unconfirmed],
            optional=optional,
            each_attempts=1,  # this poller retries a failing job itself, without holding up the others
            budget=max(self.interval, MIN_READ_BUDGET),
        )
        self.listings += 1
        self._judge.policy = hook.gone_policy
        # The backend read the progress somewhere between our request and its answer.
        read_at = (started + time.time()) / 2
        for job_id in job_ids:
            metadata = reads.jobs.get(job_id)
            if metadata is not None:
                self._backoff.pop(job_id, None)
                self._judge.seen(job_id)
                self._unconfirmed.discard(job_id)
                self._forecast.observe(job_id, metadata, read_at)
                self._deliver_to_all([job_id], metadata=metadata, observed_at=started)
            elif job_id in reads.not_found:
                self._backoff.pop(job_id, None)
                self._forecast.forget(job_id)
                self._weigh_not_found(job_id, reads, started)
            elif job_id in reads.errors:
                self._job_failed(job_id, reads.errors[job_id], started)
        return full or (set(reads.jobs) | reads.not_found | set(reads.errors)).issuperset(job_ids)

    def _backoff_free(self, at: float) -> list[str]:
        """Watched jobs not backing off after failed reads of their own at ``at``."""
        return [j for j in self.job_ids if self._backoff.get(j, (0, 0.0))[1] <= at]

    def _weigh_not_found(self, job_id: str, reads: JobReads, started: float) -> None:
        others_answered = any(other != job_id for other in reads.jobs)
        verdict = self._judge.not_found(job_id, at=started, listing=reads.listing, others_answered=others_answered)
        if verdict.gone:
            self._unconfirmed.discard(job_id)
            gone = OpenEOJobNotFoundError(
                f"the backend answered 404 for job {job_id!r} on connection {self.conn_id!r}, and {verdict.reason}",
                job_id=job_id,
            )
            self._deliver_to_all([job_id], error=gone, observed_at=started)
        else:
            self._unconfirmed.add(job_id)
            self._deliver_to_all([job_id], unconfirmed=verdict.reason, observed_at=started)

    def _job_failed(self, job_id: str, error: Exception, started: float) -> None:
        """One job's read failed: a transient failure backs that job off alone; any other reaches its waiters."""
        if not isinstance(error, OpenEOTransientError):
            log.warning("Reading openEO job %r on connection %r failed: %s", job_id, self.conn_id, error)
            self._deliver_to_all([job_id], error=error, observed_at=started)
            return
        failures = self._backoff.get(job_id, (0, 0.0))[0] + 1
        delay = backoff_delay(failures, interval=self.interval, cap=self.max_backoff, retry_after=error.retry_after)
        self._backoff[job_id] = (failures, started + delay)
        log.warning(
            "Reading openEO job %r on connection %r failed (attempt %d, %s); the other jobs go on, this one is "
            "read again in %.1f s",
            job_id,
            self.conn_id,
            failures,
            error,
            delay,
        )

    def _deliver_to_all(
        self,
        job_ids: Iterable[str],
        *,
        observed_at: float,
        metadata: dict[str, Any] | None = None,
        error: Exception | None = None,
        unconfirmed: str | None = None,
    ) -> None:
        for job_id in list(job_ids):
            update = StatusUpdate(
                job_id=job_id, observed_at=observed_at, metadata=metadata, error=error, unconfirmed=unconfirmed
            )
            for subscription in list(self._subscribers.get(job_id, ())):
                subscription.deliver(update)


_POLLERS: dict[tuple[int, str], StatusPoller] = {}


def _forget(poller: StatusPoller) -> None:
    key = (id(poller.loop), poller.conn_id)
    if _POLLERS.get(key) is poller:
        del _POLLERS[key]


def subscribe(conn_id: str, job_id: str, *, interval: float, hook_factory: HookFactory) -> Subscription:
    """Watch ``job_id`` through the poller of ``conn_id`` in the running loop, starting one if needed."""
    loop = asyncio.get_running_loop()
    key = (id(loop), conn_id)
    poller = _POLLERS.get(key)
    if poller is None or poller.loop is not loop or not poller.alive:
        poller = StatusPoller(conn_id, hook_factory, loop=loop)
        _POLLERS[key] = poller
    return poller.subscribe(job_id, interval)


def active_pollers() -> list[StatusPoller]:
    """Pollers currently running (for diagnostics and tests)."""
    return list(_POLLERS.values())
