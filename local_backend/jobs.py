"""Batch jobs with a real lifecycle on top of openeo-driver's dummy backend (driver venv only).

openeo-driver's ``DummyBatchJobs`` keeps jobs ``running`` forever, ignores cancel and delete and fails
on results. This subclass keeps openeo-driver's HTTP layer (routing, error format, STAC results,
asset download, log streaming) and replaces the job bookkeeping with ``store.JobStore``: durations are
fixed when a job starts, the status follows the wall clock, results are real files on disk.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flask
from openeo.rest.models.logs import normalize_log_level
from openeo_driver.backend import BatchJobMetadata, BatchJobResultMetadata, JobListing
from openeo_driver.constants import DEFAULT_LOG_LEVEL_RETRIEVAL
from openeo_driver.dummy.dummy_backend import DummyBatchJobs
from openeo_driver.errors import (
    JobNotFinishedException,
    JobNotFoundException,
    OpenEOApiException,
    ProcessGraphInvalidException,
)
from openeo_driver.users import User
from openeo_driver.utils import generate_unique_id

from local_backend.assets import (
    RASTER_MEDIA_TYPE,
    SHA2_256_MULTIHASH_PREFIX,
    multihash_sha256,
    raster_bytes,
    raster_names,
    write_checksums,
)
from local_backend.failure_logs import CATEGORY_LOGS, megabytes, out_of_memory
from local_backend.federation import Federation, UpstreamUnavailable
from local_backend.profiles import (
    DEFAULT,
    ListedJob,
    ListingError,
    listing_order_of,
    order_jobs,
    page_of,
    profile_of,
)
from local_backend.settings import DEFAULT_USAGE_KEYS, USAGE_METRICS
from local_backend.store import ACTIVE, CANCELED, ERROR, FINISHED, QUEUED, RUNNING, JobRecord, JobStore

JOB_OPTIONS_KEY = "local_backend"
_JOB_OPTION_KEYS = {"queue_seconds", "run_seconds", "fail", "fail_message", "fail_category", "min_executor_memory"}
_BBOX = [5.0, 51.0, 5.1, 51.1]
_GEOMETRY = {
    "type": "Polygon",
    "coordinates": [[[5.0, 51.0], [5.1, 51.0], [5.1, 51.1], [5.0, 51.1], [5.0, 51.0]]],
}


def _utc(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)


def _rfc3339(epoch: float) -> str:
    return _utc(epoch).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def usage_of(
    record: JobRecord, now: float, keys: Sequence[str] = DEFAULT_USAGE_KEYS
) -> tuple[dict[str, Any] | None, float | None]:
    """Usage (the metrics ``keys`` of :data:`USAGE_METRICS`) and costs; None until the job has run at all."""
    ran = record.run_time(now)
    if record.status(now) not in (FINISHED, ERROR, CANCELED) or ran <= 0:
        return None, None
    usage = {}
    for key in keys:
        rate, unit = USAGE_METRICS[key]
        usage[key] = {"value": round(rate * ran, 3), "unit": unit}
    return usage, round(0.5 * ran, 3)


class LifecycleBatchJobs(DummyBatchJobs):
    """openEO batch jobs whose status follows the wall clock; see the module docstring."""

    def __init__(
        self,
        store: JobStore,
        settings: Callable[[], dict[str, Any]],
        data_dir: Path,
        federation: Federation | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._settings = settings
        self._results_root = data_dir / "results"
        self._federation = federation or Federation()

    # -- lookup ---------------------------------------------------------------------------------------
    def _record(self, job_id: str, user_id: str) -> JobRecord:
        record = self._store.get(job_id)
        if record is None or record.user_id != user_id:
            raise JobNotFoundException(job_id)
        return record

    def _metadata(self, record: JobRecord, now: float | None = None) -> BatchJobMetadata:
        now = time.time() if now is None else now
        status = record.status(now)
        timeline = record.timeline(now)
        progress = None
        if status == RUNNING and record.run_seconds > 0 and profile_of(self._settings()).running_progress:
            progress = round(100.0 * (now - record.running_at) / record.run_seconds, 1)
        usage, costs = usage_of(record, now, self._settings()["usage_keys"])
        ended = timeline["finished"] or timeline["error"] or timeline["canceled"]
        return BatchJobMetadata(
            id=record.id,
            status=status,
            created=_utc(record.created),
            process=record.process,
            job_options=record.job_options,
            title=record.title,
            description=record.description,
            progress=progress,
            updated=_utc(record.last_change(now)),
            plan=record.plan,
            budget=record.budget,
            costs=costs,
            started=_utc(timeline["running"]),
            finished=_utc(ended) if ended and timeline["running"] else None,
            usage=usage,
            bbox=_BBOX if status == FINISHED else None,
            geometry=_GEOMETRY if status == FINISHED else None,
        )

    def get_job_info(self, job_id: str, user_id: str) -> BatchJobMetadata:
        return self._metadata(self._record(job_id, user_id))

    def _get_job_info(self, job_id: str, user_id: str) -> BatchJobMetadata:
        return self.get_job_info(job_id, user_id)

    def get_user_jobs(
        self, user_id: str, limit: int | None = None, request_parameters: dict | None = None
    ) -> JobListing | dict[str, Any]:
        """Newest first; with ``limit`` a ``next`` link carries the (created, id) of the last job shown.

        Other profiles than the default answer in their own way (``_profile_listing``).
        """
        settings = self._settings()
        if settings["profile"] != DEFAULT:
            return self._profile_listing(user_id, settings, limit, request_parameters or {})
        now = time.time()
        records = sorted(self._store.for_user(user_id), key=lambda r: (r.created, r.id), reverse=True)
        after = (request_parameters or {}).get("after")
        if after:
            created, _, job_id = after.partition("_")
            try:
                key = (float(created), job_id)
            except ValueError:
                raise OpenEOApiException(
                    status_code=400, code="InvalidPagination", message=f"Invalid 'after' parameter {after!r}."
                ) from None
            records = [r for r in records if (r.created, r.id) < key]
        next_parameters = None
        if limit is not None and limit > 0 and len(records) > limit:
            records = records[:limit]
            last = records[-1]
            next_parameters = {"limit": limit, "after": f"{last.created!r}_{last.id}"}
        return JobListing(jobs=[self._metadata(r, now) for r in records], next_parameters=next_parameters)

    def _profile_listing(
        self, user_id: str, settings: dict[str, Any], limit: int | None, parameters: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A production server's listing (see ``profiles.py``), as the dict openeo-driver's view accepts
        (it passes ``links`` and ``federation:missing`` through and calls ``to_api_dict`` per job)."""
        now = time.time()
        profile = profile_of(settings)
        missing = self._federation.missing(settings, now)  # aggregator outage: these upstreams' jobs are left out
        upstream_of = self._federation.upstream_of
        records = [r for r in self._store.for_user(user_id) if upstream_of(r.id, settings) not in missing]
        ordered = order_jobs(records, listing_order_of(settings), lambda r: (r.created, r.id), settings["seed"])
        try:
            shown, next_parameters = page_of(ordered, profile.paging, limit, parameters)
        except ListingError as exc:
            raise OpenEOApiException(status_code=400, code="InvalidPagination", message=str(exc)) from None
        jobs = [
            ListedJob(
                self._metadata(r, now),
                fields=profile.listing_fields,
                extra={"process": r.process} if profile.listing_process else None,
            )
            for r in shown
        ]
        listing: dict[str, Any] = {"jobs": jobs, "links": []}
        if next_parameters:
            listing["links"].append(
                {"rel": "next", "href": flask.url_for(".list_jobs", **next_parameters, _external=True)}
            )
        if profile.federated:
            listing["federation:missing"] = missing
        return listing

    # -- create / start / cancel / delete ---------------------------------------------------------------
    def refusal(self, process_graph: Any) -> str | None:
        """Why this backend refuses ``process_graph`` (setting ``reject_process_graphs``), at create and in
        ``POST /validation`` alike; None when it does not."""
        reject = self._settings()["reject_process_graphs"]
        if reject is True or (isinstance(reject, str) and re.search(reject, json.dumps(process_graph, sort_keys=True))):
            return "The local backend refuses this process graph (setting 'reject_process_graphs')."
        return None

    def create_job(
        self,
        user: User,
        process: dict,
        api_version: str,
        metadata: dict,
        job_options: dict | None = None,
    ) -> BatchJobMetadata:
        settings = self._settings()
        refused = self.refusal(process.get("process_graph"))
        if refused:
            raise ProcessGraphInvalidException(message=refused)
        self._job_overrides(job_options)  # reject bad overrides at creation, not at start
        try:
            job_id = self._federation.job_id(generate_unique_id(prefix="j"), settings)
        except UpstreamUnavailable as exc:
            raise OpenEOApiException(status_code=503, code="ServiceUnavailable", message=str(exc)) from None
        record = JobRecord(
            id=job_id,
            user_id=user.user_id,
            created=time.time(),
            process=process,
            title=metadata.get("title"),
            description=metadata.get("description"),
            job_options=job_options,
            plan=metadata.get("plan"),
            budget=metadata.get("budget"),
        )
        self._store.put(record)
        return self._metadata(record)

    @staticmethod
    def _job_overrides(job_options: dict | None) -> dict[str, Any]:
        overrides = (job_options or {}).get(JOB_OPTIONS_KEY) or {}
        if not isinstance(overrides, dict):
            raise OpenEOApiException(
                status_code=400, code="InvalidJobOptions", message=f"job_options.{JOB_OPTIONS_KEY} must be an object."
            )
        unknown = sorted(set(overrides) - _JOB_OPTION_KEYS)
        if unknown:
            raise OpenEOApiException(
                status_code=400,
                code="InvalidJobOptions",
                message=f"Unknown job_options.{JOB_OPTIONS_KEY} key(s) {unknown}; known: {sorted(_JOB_OPTION_KEYS)}.",
            )
        category = overrides.get("fail_category")
        if category is not None and category not in CATEGORY_LOGS:
            raise OpenEOApiException(
                status_code=400,
                code="InvalidJobOptions",
                message=f"job_options.{JOB_OPTIONS_KEY}.fail_category must be one of {sorted(CATEGORY_LOGS)}.",
            )
        needed = overrides.get("min_executor_memory")
        if needed is not None and megabytes(needed) is None:
            raise OpenEOApiException(
                status_code=400,
                code="InvalidJobOptions",
                message=f"job_options.{JOB_OPTIONS_KEY}.min_executor_memory must be like '3g' or '512m'.",
            )
        for key in ("queue_seconds", "run_seconds"):
            value = overrides.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise OpenEOApiException(
                    status_code=400,
                    code="InvalidJobOptions",
                    message=f"job_options.{JOB_OPTIONS_KEY}.{key} must be a number >= 0, got {value!r}.",
                )
        return overrides

    def start_job(self, job_id: str, user: User) -> None:
        settings = self._settings()
        overrides = None
        with self._store.lock:
            record = self._record(job_id, user.user_id)
            now = time.time()
            limit = settings["max_concurrent_jobs"]
            if limit is not None:
                active = sum(
                    1 for r in self._store.for_user(user.user_id) if r.id != job_id and r.status(now) in ACTIVE
                )
                if active >= limit:
                    raise OpenEOApiException(
                        status_code=settings["concurrent_limit_status"],
                        code="ConcurrentJobLimit",
                        message=f"You reached the limit of {limit} concurrent jobs ({active} queued or running).",
                    )
            overrides = self._job_overrides(record.job_options)
            title_regex = settings["fail_title_regex"]
            category = overrides.get("fail_category")
            if out_of_memory(record.job_options, overrides.get("min_executor_memory")):
                category = "out_of_memory"
            fail = (
                bool(overrides.get("fail"))
                or category is not None
                or bool(title_regex and record.title and re.search(title_regex, record.title))
            )
            self._store.update(
                job_id,
                start_count=record.start_count + 1,
                started_at=now,
                canceled_at=None,
                queue_seconds=float(overrides.get("queue_seconds", settings["queue_seconds"])),
                run_seconds=float(overrides.get("run_seconds", settings["run_seconds"])),
                fail=fail,
                fail_message=overrides.get("fail_message") if fail else None,
                fail_category=category if fail else None,
            )
        shutil.rmtree(self._results_root / job_id, ignore_errors=True)

    def update_job(self, job_id: str, user_id: str, changes: dict[str, Any]) -> None:
        """``PATCH /jobs/{id}`` (openeo-driver answers 501): allowed unless the job is queued or running."""
        with self._store.lock:
            record = self._record(job_id, user_id)
            if record.status() in ACTIVE:
                raise OpenEOApiException(
                    status_code=400, code="JobLocked", message="A queued or running job cannot be modified."
                )
            fields: dict[str, Any] = {k: changes[k] for k in ("title", "description", "plan", "budget") if k in changes}
            if isinstance(changes.get("process"), dict) and "process_graph" in changes["process"]:
                fields["process"] = {"process_graph": changes["process"]["process_graph"]}
            extra = {
                k: v
                for k, v in changes.items()
                if k not in {"title", "description", "plan", "budget", "process", "log_level"}
            }
            if extra:
                options = {**(record.job_options or {}), **extra}
                self._job_overrides(options)
                fields["job_options"] = options
            if fields:
                self._store.update(job_id, **fields)

    def estimate(self, job_id: str, user_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}/estimate`` (openeo-driver answers 501): what a start would take right now."""
        record = self._record(job_id, user_id)
        settings = self._settings()
        overrides = self._job_overrides(record.job_options)
        queue = float(overrides.get("queue_seconds", settings["queue_seconds"]))
        run = float(overrides.get("run_seconds", settings["run_seconds"]))
        return {"costs": round(0.5 * run, 3), "duration": f"PT{queue + run:g}S", "size": settings["result_size"] + 300}

    def restart_if_done(self, job_id: str, user_id: str) -> None:
        """openEO restarts a finished or failed job on ``POST /jobs/{id}/results``; openeo-driver's view
        only starts ``created``/``canceled`` jobs, so the server resets such a job to ``created`` first."""
        with self._store.lock:
            record = self._store.get(job_id)
            if record is not None and record.user_id == user_id and record.status() in (FINISHED, ERROR):
                self._store.update(job_id, started_at=None, canceled_at=None)

    def cancel_job(self, job_id: str, user_id: str) -> None:
        with self._store.lock:
            record = self._record(job_id, user_id)
            if record.status() in ACTIVE:
                self._store.update(job_id, canceled_at=time.time())

    def delete_job(self, job_id: str, user_id: str) -> None:
        with self._store.lock:
            self._record(job_id, user_id)
            self._store.delete(job_id)
        shutil.rmtree(self._results_root / job_id, ignore_errors=True)

    # -- results -----------------------------------------------------------------------------------------
    def _write_results(self, record: JobRecord, out_dir: Path) -> None:
        """Deterministic per job: the same job always yields the same bytes (``result.json`` is written last)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        settings = self._settings()
        names = raster_names(settings["result_assets"])
        digests = {}
        for index, name in enumerate(names):
            # A little-endian TIFF signature and first-IFD offset, then filler bytes: "GeoTIFF-like" enough
            # for a content sniffer, small enough (by default) for hundreds of jobs.
            raster = raster_bytes(record.id, index, settings["result_size"])
            tmp = out_dir / f"{name}.tmp"
            tmp.write_bytes(raster)
            tmp.replace(out_dir / name)
            digests[name] = multihash_sha256(raster)
        meta = {
            "job_id": record.id,
            "title": record.title,
            "process_graph_sha256": hashlib.sha256(
                json.dumps(record.process.get("process_graph"), sort_keys=True).encode()
            ).hexdigest(),
            "raster_sha256": digests["result.tif"].removeprefix(SHA2_256_MULTIHASH_PREFIX),
        }
        if len(names) > 1:
            meta["raster_sha256s"] = {n: d.removeprefix(SHA2_256_MULTIHASH_PREFIX) for n, d in digests.items()}
        text = json.dumps(meta, indent=2, sort_keys=True).encode("utf-8")
        write_checksums(out_dir, {**digests, "result.json": multihash_sha256(text)})
        tmp = out_dir / "result.json.tmp"
        tmp.write_bytes(text)
        tmp.replace(out_dir / "result.json")

    def get_result_assets(self, job_id: str, user_id: str) -> dict[str, dict]:
        record = self._record(job_id, user_id)
        if record.status() != FINISHED:
            raise JobNotFinishedException()
        out_dir = self._results_root / job_id
        with self._store.lock:
            if not (out_dir / "result.json").exists():
                self._write_results(record, out_dir)
        rasters = sorted(p.name for p in out_dir.glob("result*.tif"))
        raster = {
            "output_dir": str(out_dir),
            "type": RASTER_MEDIA_TYPE,
            "roles": ["data"],
            "bands": [{"name": "B04"}],
            "bbox": _BBOX,
            "geometry": _GEOMETRY,
        }
        return {
            **{name: dict(raster) for name in rasters},
            "result.json": {"output_dir": str(out_dir), "type": "application/json", "roles": ["metadata"]},
        }

    def get_result_metadata(self, job_id: str, user_id: str) -> BatchJobResultMetadata:
        return BatchJobResultMetadata(
            assets=self.get_result_assets(job_id=job_id, user_id=user_id),
            links=[],
            providers=self._get_providers(job_id=job_id, user_id=user_id),
        )

    # -- logs --------------------------------------------------------------------------------------------
    def get_log_entries(
        self,
        job_id: str,
        *,
        user_id: str,
        offset: str | None = None,
        limit: int | None = None,
        level: str = DEFAULT_LOG_LEVEL_RETRIEVAL,
    ) -> Iterable[dict]:
        record = self._record(job_id, user_id)
        now = time.time()
        t = record.timeline(now)
        entries: list[tuple[float | None, str, str, str | None]] = [
            (t["created"], "info", "Job created.", None),
            (t["queued"], "info", f"Job queued (start #{record.start_count}).", None),
            (t["running"], "info", "Job running.", None),
            (t["finished"], "info", "Job finished; results are ready.", None),
            (t["canceled"], "warning", "Job canceled by the user.", None),
        ]
        if t["error"] is not None and record.fail_category is not None:
            entries += [(t["error"], "error", text, code) for text, code in CATEGORY_LOGS[record.fail_category]]
        elif t["error"] is not None:
            message = record.fail_message or "Simulated processing failure (local backend)."
            entries += [
                (t["error"], "warning", "Worker lost its data connection; retrying once.", None),
                (t["error"], "error", message, "LocalBackendFailure"),
            ]
            more = self._settings()["error_log_entries"] - 1
            entries += [
                (t["error"], "error", f"Executor {i} lost: task failed (follow-up error {i} of {more}).", None)
                for i in range(1, more + 1)
            ]
        wanted = normalize_log_level(level)
        shown = [e for e in entries if e[0] is not None and e[0] <= now]
        shown.sort(key=lambda e: e[0])
        logs = []
        for i, (when, lvl, message, code) in enumerate(shown):
            entry = {"id": str(i), "level": lvl, "message": message, "time": _rfc3339(when)}
            if code:
                entry["code"] = code
            if normalize_log_level(lvl) >= wanted:
                logs.append(entry)
        if offset is not None:
            logs = [e for e in logs if int(e["id"]) > int(offset)] if offset.isdigit() else logs
        return logs[:limit] if limit else logs


__all__ = ["JOB_OPTIONS_KEY", "QUEUED", "LifecycleBatchJobs", "usage_of"]
