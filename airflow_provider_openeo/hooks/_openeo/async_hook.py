"""Async openEO reads for triggers: job status, batched status through ``GET /jobs``, cancel.

A trigger's ``run()`` shares one event loop with every other trigger of the triggerer, so nothing here blocks:
the connection comes from ``BaseHook.aget_connection``, the (synchronous) login and token renewal run in
``asyncio.to_thread`` through the same code the sync hook uses, and the reads use aiohttp with the bearer token.
Transient failures back off a bounded number of times, then raise ``OpenEOTransientError`` so the trigger can
keep polling at its own pace instead of failing the task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import aiohttp

from airflow_provider_openeo.exceptions import (
    OpenEOApiRequestError,
    OpenEOJobNotFoundError,
    OpenEOProviderError,
    OpenEOTransientError,
)
from airflow_provider_openeo.hooks._openeo.connection import ManagedConnection, connect_with_settings
from airflow_provider_openeo.hooks._openeo.http import (
    AUTH_STATUSES,
    TRANSIENT_STATUSES,
    error_for_status,
    parse_retry_after,
    redact,
    safe_retry,
)
from airflow_provider_openeo.hooks._openeo.job_reads import JobReads
from airflow_provider_openeo.hooks._openeo.listing_scan import ListingScan
from airflow_provider_openeo.hooks._openeo.read_strategy import ReadPlan, ReadStrategy
from airflow_provider_openeo.hooks._openeo.settings import OpenEOConnectionSettings
from airflow_provider_openeo.wait._job_gone import GonePolicy, JobListing

log = logging.getLogger(__name__)


class OpenEOAsyncHook:
    """Non-blocking openEO job reads for one Airflow ``openeo`` connection.

    :param openeo_conn_id: the Airflow connection.
    :param session: an aiohttp session to use (and leave open); by default the hook opens and closes its own.
    :param timeout: per-request timeout in seconds (default: the connection's ``timeout`` field).
    :param max_attempts: tries per request on connection errors, timeouts, 429 and 5xx before giving up.
    :param backoff: first backoff in seconds; doubles per attempt up to ``backoff_max``.
    :param retry_after_max: a ``Retry-After`` longer than this is not slept through: the request raises
        ``OpenEOTransientError`` carrying ``retry_after``, so the trigger waits instead of this call.
    :param page_limit: ``limit`` for each ``GET /jobs`` page.
    :param max_listing_pages: pages scanned at most before the remaining ids are read one by one.
    :param listing_min_jobs: below this many ids, never a listing for status (only as evidence for a 404).
    :param max_concurrency: parallel per-job reads.
    :param read_strategy: chooses between listing pages and per-job reads from what this backend's answers cost
        (:mod:`~airflow_provider_openeo.hooks._openeo.read_strategy`); by default a fresh one, which this hook keeps and
        teaches for its lifetime.
    """

    default_conn_name = "openeo_default"

    def __init__(
        self,
        openeo_conn_id: str = default_conn_name,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float | None = None,
        max_attempts: int = 4,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        retry_after_max: float = 60.0,
        page_limit: int = 100,
        max_listing_pages: int = 10,
        listing_min_jobs: int = 2,
        max_concurrency: int = 8,
        read_strategy: ReadStrategy | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.openeo_conn_id = openeo_conn_id
        self._external_session = session
        self._own_session: aiohttp.ClientSession | None = None
        self._timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.page_limit = page_limit
        self.max_listing_pages = max_listing_pages
        self.listing_min_jobs = listing_min_jobs
        self.max_concurrency = max_concurrency
        self.read_strategy = read_strategy if read_strategy is not None else ReadStrategy()
        self._listing_chosen: bool | None = None
        self._connection: ManagedConnection | None = None
        self._settings: OpenEOConnectionSettings | None = None
        self._setup_lock = asyncio.Lock()
        self._unmasked: list[str] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(openeo_conn_id={self.openeo_conn_id!r})"

    async def __aenter__(self) -> OpenEOAsyncHook:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- set-up ----------------------------------------------------------------------------------------------

    async def _connect(self) -> ManagedConnection:
        if self._connection is not None:
            return self._connection
        async with self._setup_lock:
            if self._connection is None:
                from airflow.sdk import BaseHook

                conn = await BaseHook.aget_connection(self.openeo_conn_id)
                extra = await conn.aextra_dejson()
                settings = OpenEOConnectionSettings.from_airflow(conn, extra=extra)
                self._connection = await asyncio.to_thread(
                    connect_with_settings,
                    settings,
                    # Short: this only logs in; a down backend should hand control back to the trigger soon.
                    retry=safe_retry(total=2, backoff_factor=0.5, retry_after_max=int(self.retry_after_max)),
                    timeout=self._timeout,
                    secret_callback=self._unmasked.append,
                    auto_validate=False,
                )
                self._settings = settings
                await self._mask_pending()
        return self._connection

    async def _mask_pending(self) -> None:
        """Mask new secrets with the async API: the sync one may talk to the supervisor from the event loop."""
        from airflow.sdk.log import amask_secret

        while self._unmasked:
            await amask_secret(self._unmasked.pop())

    def _session(self) -> aiohttp.ClientSession:
        if self._external_session is not None:
            return self._external_session
        if self._own_session is None or self._own_session.closed:
            self._own_session = aiohttp.ClientSession()
        return self._own_session

    async def close(self) -> None:
        if self._own_session is not None and not self._own_session.closed:
            await self._own_session.close()
        self._own_session = None

    @property
    def api_root(self) -> str:
        if self._connection is None:
            raise RuntimeError("not connected yet; call one of the async methods first")
        return str(self._connection.root_url).rstrip("/")

    def _secrets(self) -> tuple[str, ...]:
        settings = self._settings.secrets if self._settings else ()
        return (*settings, *(self._connection.secrets() if self._connection else ()))

    async def _auth_headers(self, connection: ManagedConnection) -> dict[str, str]:
        if connection.token_due():
            await asyncio.to_thread(connection.ensure_token)
            await self._mask_pending()
        bearer = connection.bearer
        return {"Authorization": f"Bearer {bearer}"} if bearer else {}

    async def _renew(self, connection: ManagedConnection, reason: str) -> bool:
        renewed = await asyncio.to_thread(connection.try_access_token_refresh, reason=reason)
        await self._mask_pending()
        return renewed

    # -- requests --------------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        action: str,
        params: dict[str, Any] | None = None,
        job_id: str | None = None,
        attempts: int | None = None,
    ) -> Any:
        """One API call with bounded backoff (``attempts`` tries, default ``max_attempts``); returns the decoded
        JSON body (None when empty)."""
        body, _ = await self._request_sized(method, url, action=action, params=params, job_id=job_id, attempts=attempts)
        return body

    async def _request_sized(
        self,
        method: str,
        url: str,
        *,
        action: str,
        params: dict[str, Any] | None = None,
        job_id: str | None = None,
        attempts: int | None = None,
    ) -> tuple[Any, int]:
        """:meth:`_request`, also returning the size of the answer's body in bytes (what the read strategy
        weighs)."""
        max_attempts = attempts or self.max_attempts
        connection = await self._connect()
        timeout = aiohttp.ClientTimeout(total=self._timeout or (self._settings.timeout if self._settings else 60))
        internal = url == self.api_root or url.startswith(self.api_root + "/")
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            headers = await self._auth_headers(connection) if internal else {}
            retry_after: float | None = None
            try:
                async with self._session().request(
                    method, url, params=params, headers=headers, timeout=timeout
                ) as resp:
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    raw = await resp.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                error: OpenEOProviderError = OpenEOTransientError(
                    redact(f"{action} failed: {type(exc).__name__} ({exc or 'timed out'})", self._secrets()),
                    url=url,
                )
            else:
                body = _decode_json(raw)
                if status < 300:
                    return body, len(raw)
                error = self._api_error(status, body, raw, action=action, url=url, job_id=job_id)
                if (
                    status in (401, 403)
                    and not renewed
                    and (status == 401 or error.code == "TokenInvalid")
                    and internal
                ):
                    renewed = True
                    if await self._renew(connection, f"{status} {error.code or ''} on {action}".strip()):
                        attempt -= 1
                        continue
                if status in AUTH_STATUSES:
                    raise error
                if status not in TRANSIENT_STATUSES:
                    raise error
                if isinstance(error, OpenEOTransientError):
                    error.retry_after = retry_after
            if retry_after is not None and retry_after > self.retry_after_max:
                raise error
            if attempt >= max_attempts:
                raise error
            delay = min(self.backoff_max, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            delay = max(delay, retry_after or 0.0)
            log.info(
                "openEO %s: %s; retrying in %.1f s (attempt %d/%d)",
                self.openeo_conn_id,
                error,
                delay,
                attempt,
                max_attempts,
            )
            await asyncio.sleep(delay)

    def _api_error(
        self, status: int, body: Any, raw: bytes, *, action: str, url: str, job_id: str | None
    ) -> OpenEOProviderError:
        code = body.get("code") if isinstance(body, dict) and isinstance(body.get("code"), str) else None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            api_message = body["message"]
        else:
            api_message = " ".join(raw[:300].decode("utf-8", "replace").split())
        text = redact(f"{action} failed: [{status}] {code or 'no openEO error code'}: {api_message}", self._secrets())
        api_message = redact(api_message, self._secrets())
        return error_for_status(
            status, text, job_id=job_id, http_status=status, code=code, api_message=api_message, url=url
        )

    def _job_url(self, job_id: str, suffix: str = "") -> str:
        return f"{self.api_root}/jobs/{quote(str(job_id), safe='')}{suffix}"

    # -- public API ------------------------------------------------------------------------------------------

    async def get_job(self, job_id: str, *, attempts: int | None = None) -> dict[str, Any]:
        """``GET /jobs/{id}``: the job's metadata (status, usage, costs, ...); ``attempts`` overrides
        ``max_attempts`` for this read."""
        job, _ = await self._get_job_sized(job_id, attempts=attempts)
        return job

    async def _get_job_sized(self, job_id: str, *, attempts: int | None) -> tuple[dict[str, Any], int]:
        await self._connect()
        body, size = await self._request_sized(
            "GET", self._job_url(job_id), action=f"GET /jobs/{job_id}", job_id=job_id, attempts=attempts
        )
        if not isinstance(body, dict):
            raise OpenEOApiRequestError(f"GET /jobs/{job_id}: the backend answered no job metadata object.")
        return body, size

    @property
    def gone_policy(self) -> GonePolicy:
        """How much evidence this connection wants before a job counts as gone (its extras, once connected)."""
        return self._settings.gone_policy if self._settings is not None else GonePolicy()

    async def cancel_job(self, job_id: str) -> None:
        """``DELETE /jobs/{id}/results``: ask the backend to stop the job. Safe to repeat."""
        await self._connect()
        await self._request("DELETE", self._job_url(job_id, "/results"), action=f"cancel job {job_id}", job_id=job_id)

    async def get_jobs(self, job_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Metadata for many jobs of this backend with as few requests as the backend allows.

        See :meth:`read_jobs` for how. A job the backend answers 404 for is absent from the result; any other
        failure of any job raises (``OpenEOTransientError`` when retrying later may help). A caller that must
        not let one job's failure hide the others' statuses uses :meth:`read_jobs`.
        """
        reads = await self.read_jobs(job_ids)
        for error in reads.errors.values():
            raise error
        return reads.jobs

    async def read_jobs(
        self,
        job_ids: Collection[str],
        *,
        confirm: Collection[str] = (),
        optional: Collection[str] = (),
        each_attempts: int | None = None,
        budget: float | None = None,
    ) -> JobReads:
        """Statuses of many jobs of this backend, each job's outcome on its own, as cheaply as this backend allows.

        :attr:`read_strategy` decides per call, from what this backend's listings and job reads cost so far,
        whether to start with the ``GET /jobs`` listing (``limit`` per page, following ``rel=next`` links while
        another page is expected to pay for itself) or to read every job by ``GET /jobs/{id}`` (concurrently);
        ids a listing lacked or listed without a status are read one by one either way. Below ``listing_min_jobs``
        ids there is no listing, unless ``confirm`` names jobs whose 404s want one as evidence
        (``airflow_provider_openeo.wait._job_gone``): such a listing is sent whatever the strategy says and scanned, as
        evidence wants, until every id is seen or no page is left (at most ``max_listing_pages``). Listing entries
        are returned as listed (they may omit usage and costs; call :meth:`get_job` for the full record).

        A listing the strategy chose because it pays, failing transiently, raises ``OpenEOTransientError`` (it
        concerns every job); one sent only to look again or as evidence never holds up the job reads; one the
        backend refuses is skipped (and remembered). A per-job read that fails lands in ``errors`` for that job
        only.

        :param optional: further ids a listing, if one is read, should report too (a poll sent early for the jobs
            due to end also refreshes the others a listing shows); never read one by one, and in the result only
            when listed.
        :param each_attempts: tries per per-job read (default ``max_attempts``); a poller that retries on its
            own passes 1, so one failing job never holds up a read of the others.
        :param budget: seconds the per-job reads may take; reads still waiting then are abandoned as transient
            errors of their jobs.
        """
        wanted = list(dict.fromkeys(str(j) for j in job_ids))
        reads = JobReads()
        if not wanted:
            return reads
        extra = [j for j in dict.fromkeys(str(j) for j in optional) if j not in set(wanted)]
        await self._connect()
        found: dict[str, dict[str, Any]] = {}
        unconfirmed = set(confirm) & set(wanted)
        watched = len(wanted) + len(extra)
        plan = ReadPlan(False, f"fewer than {self.listing_min_jobs} jobs")
        if watched >= self.listing_min_jobs:
            plan = self.read_strategy.plan(watched)
            self._log_choice(plan, watched)
        if plan.listing or unconfirmed:
            # Only a listing the strategy counts on concerns every job; a look again or mere evidence must not keep
            # the jobs from being read when it fails.
            essential = plan.listing and not plan.look
            unusable = (OpenEOApiRequestError, OpenEOJobNotFoundError) + (() if essential else (OpenEOTransientError,))
            try:
                found, reads.listing = await self._scan_listing({*wanted, *extra}, unconfirmed=unconfirmed)
            except unusable as exc:
                self.read_strategy.listing_failed(refused=not isinstance(exc, OpenEOTransientError))
                log.info("openEO %s: job listing unusable (%s); reading jobs one by one", self.openeo_conn_id, exc)
            except OpenEOTransientError:
                self.read_strategy.listing_failed(refused=False)
                raise
        missing = [j for j in wanted if j not in found]
        if missing:
            await self._read_each(missing, reads, attempts=each_attempts, budget=budget)
        reads.jobs = {j: found.get(j) or reads.jobs[j] for j in [*wanted, *extra] if j in found or j in reads.jobs}
        return reads

    def _log_choice(self, plan: ReadPlan, watched: int) -> None:
        """Say so when this backend's status reads switch between listings and per-job reads, and why (a look again
        is no switch unless it shows the listing pays, which the next plan then says)."""
        listing = plan.listing
        if plan.look or listing == self._listing_chosen:
            return
        first = self._listing_chosen is None
        self._listing_chosen = listing
        if first and listing:
            return  # the first look: nothing learnt yet, nothing to report
        log.info(
            "openEO %s: status reads of %d job(s) %s: %s (%s)",
            self.openeo_conn_id,
            watched,
            "start with the job listing" if listing else "go job by job",
            plan.reason,
            self.read_strategy.describe(watched),
        )

    async def _scan_listing(
        self, wanted: set[str], *, unconfirmed: Collection[str] = ()
    ) -> tuple[dict[str, dict[str, Any]], JobListing]:
        """Read listing pages as :mod:`~airflow_provider_openeo.hooks._openeo.listing_scan` directs (from where the
        watched jobs were last found, on while another page pays, or as evidence for the 404s of ``unconfirmed`` jobs
        until every id is seen or no page is left), teaching the strategy what the pages showed of the other jobs (a
        404'd job's absence says nothing of the order)."""

        async def fetch(url: str) -> tuple[Any, int]:
            return await self._request_sized("GET", url, action="GET /jobs")

        scan = ListingScan(
            fetch,
            self._next_page,
            self.read_strategy,
            listing_url=f"{self.api_root}/jobs",
            page_limit=self.page_limit,
            max_pages=self.max_listing_pages,
        )
        return await scan.run(wanted, judged=wanted - set(unconfirmed), evidence=bool(unconfirmed))

    def _next_page(self, current: str, body: Any, seen: set[str]) -> str | None:
        links = body.get("links") if isinstance(body, dict) else None
        for link in links if isinstance(links, list) else []:
            if isinstance(link, dict) and link.get("rel") == "next" and isinstance(link.get("href"), str):
                nxt = urljoin(current, link["href"])
                root = urlsplit(self.api_root)
                if urlsplit(nxt)[:2] != root[:2]:
                    # Never send our token to another host; read the rest one by one instead.
                    log.warning("openEO %s: ignoring a next-page link to another host", self.openeo_conn_id)
                    return None
                return None if nxt in seen else nxt
        return None

    async def _read_each(
        self, job_ids: list[str], reads: JobReads, *, attempts: int | None, budget: float | None
    ) -> None:
        semaphore = asyncio.Semaphore(self.max_concurrency)
        sizes: list[int] = []

        async def read(job_id: str) -> None:
            async with semaphore:
                try:
                    reads.jobs[job_id], size = await self._get_job_sized(job_id, attempts=attempts)
                    sizes.append(size)
                except OpenEOJobNotFoundError:
                    reads.not_found.add(job_id)
                except Exception as exc:  # this job's alone: the others' answers still count
                    reads.errors[job_id] = exc

        tasks = {asyncio.ensure_future(read(j)): j for j in job_ids}
        started = time.monotonic()
        _, pending = await asyncio.wait(tasks, timeout=budget)
        for task in pending:
            task.cancel()
            job_id = tasks[task]
            reads.errors[job_id] = OpenEOTransientError(
                f"GET /jobs/{job_id}: no answer within {time.monotonic() - started:.1f} s", url=self._job_url(job_id)
            )
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self.read_strategy.jobs_read(len(sizes), sum(sizes))


def _decode_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
