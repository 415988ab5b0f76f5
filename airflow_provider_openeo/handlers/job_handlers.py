"""What happens when an openEO job ends: MBJM's ``on_job_done`` / ``on_job_error`` / ``on_job_cancel``, for Airflow.

Users migrating from ``MultiBackendJobManager`` override the same three hooks; here they are methods of a
small, picklable handler object that an operator keeps as an attribute, so subclassing replaces subclassing the
manager. The defaults keep MBJM's files (``root_dir/job_{id}`` with the assets, ``job-results.json``,
``job_{id}.json`` and ``job_{id}_errors.json``) and add what MBJM lacks: writes that survive interruption,
results on shared object storage, names from the server that cannot escape the job directory (and a note on the
row when an asset had to be renamed or refused), downloads that resume per asset instead of starting over (kept
complete files, ``Range`` for partial ones, fresh links when signed ones expire), error logs read across pages,
and row updates that a stale handler cannot apply to a newer job.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_openeo.batch.error_categories import ErrorCategory, classify
from airflow_provider_openeo.batch.row_keys import job_defining_columns
from airflow_provider_openeo.exceptions import ResultDownloadError
from airflow_provider_openeo.handlers import _safe_paths
from airflow_provider_openeo.handlers._asset_download import AssetTransfer, download_asset
from airflow_provider_openeo.handlers._asset_plan import (
    ORIGINAL_KEY_FIELD,
    AssetNote,
    PlannedAsset,
    plan_assets,
    stored_results_document,
)
from airflow_provider_openeo.handlers._log_pages import MAX_LOG_PAGES, read_log_pages
from airflow_provider_openeo.handlers._result_storage import (
    StoragePath,
    as_storage_path,
    make_dirs,
    remove_leftover_temporaries,
    remove_partials,
    write_json_atomically,
)
from airflow_provider_openeo.handlers._safe_paths import is_object_storage
from airflow_provider_openeo.handlers._stac_item import build_item
from airflow_provider_openeo.handlers.output_naming import OutputNaming, OutputNamingError, Rule
from airflow_provider_openeo.handlers.stac_collection import BatchCollection
from airflow_provider_openeo.hooks._openeo.http import connection_secrets, redact
from airflow_provider_openeo.job_table._usage import COSTS_COLUMN, usage_row_values
from airflow_provider_openeo.job_table.job_status import OpenEOJobStatus, ResultsState, RowStatus

if TYPE_CHECKING:
    import openeo
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_openeo.job_table.job_row import JobRowRef

__all__ = ["OpenEOJobHandler", "ResultDownloadError", "ResultsState"]

JOB_RESULTS_FILENAME = "job-results.json"
DEFAULT_CHUNK_SIZE = 1024 * 1024
_MAX_ERROR_MESSAGE_CHARS = 1000
_OBJECT_STORAGE_STATE = "__object_storage_path__"
_URL_QUERY = re.compile(r"(https?://[^\s?#\"']+)\?[^\s#\"']*")


@dataclass
class StoredResults:
    """What :meth:`OpenEOJobHandler.store_results` did: files written, assets renamed or refused, transfers.

    ``document`` is the results document as the backend sent it and ``stored`` each stored asset's key, path and
    the backend's fields for it (what the batch's STAC item lists).
    """

    files: list[str] = field(default_factory=list)
    notes: list[AssetNote] = field(default_factory=list)
    transfers: dict[str, AssetTransfer] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)
    stored: list[tuple[PlannedAsset, StoragePath]] = field(default_factory=list)

    def note_text(self) -> str | None:
        """One line for the row's ``error_message``: every renamed or refused asset, or None."""
        if not self.notes:
            return None
        return f"results stored with {len(self.notes)} asset note(s): " + "; ".join(n.describe() for n in self.notes)


def redact_urls(text: str) -> str:
    """Drop query strings from URLs: signed asset URLs carry access tokens there."""
    return _URL_QUERY.sub(r"\1?<redacted>", text)


def _connection_secrets(job: Any) -> tuple[str, ...]:
    """Credentials the job's connection holds (our hook's connections can list them), for scrubbing texts."""
    return connection_secrets(getattr(job, "connection", None))


def _short_message(text: Any, secrets: tuple[str, ...] = ()) -> str:
    """First non-empty line, URL query strings and known credentials removed, bounded in length."""
    first_line = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    message = redact(redact_urls(first_line), secrets)
    if len(message) > _MAX_ERROR_MESSAGE_CHARS:
        message = message[: _MAX_ERROR_MESSAGE_CHARS - 3] + "..."
    return message


class OpenEOJobHandler:
    """Default end-of-job behaviour; subclass and override ``on_job_done`` / ``on_job_error`` / ``on_job_cancel``.

    :param root_dir: where job directories go: a local path (a relative one under ``$AIRFLOW_HOME``, the one
        directory every Airflow process agrees on), an ``airflow.sdk.ObjectStoragePath`` or a URL string such as
        ``"s3://my_conn@bucket/results"`` (shared by workers on different machines).
    :param download_results: False keeps only the job metadata file, like MBJM's flag of the same name.
    :param chunk_size: bytes held in memory per read while streaming an asset.
    :param max_error_log_lines: error log entries copied into the task log (all of them go to the file).
    :param resume_attempts: per asset and try, how often a download that broke off mid-file continues at once
        (with ``Range``) while it makes progress; after that the task fails and its retry continues the file.
    :param max_link_refreshes: per asset and try, how often an expired signed link (410 ``ResultLinkExpired``)
        is renewed by re-reading the results document.
    :param max_log_pages: pages of error logs read (``next`` links followed) for ``job_{id}_errors.json``.
    :param output_dir: where a row's files land under ``root_dir`` instead of ``job_{id}``: a format string over
        the row (``"tiles/{tile}/{year}"``; also ``{job_id}``, ``{row_id}``) or a callable of it
        (:mod:`airflow_provider_openeo.handlers.output_naming`); every level must be a safe file name, else the row
        is refused.
    :param asset_name: each asset's file name instead of the backend's: likewise (``"ndvi_{tile}{ext}"``; also
        ``{key}``, ``{name}``, ``{stem}``, ``{ext}``).
    :param stac_collection: keep the batch's STAC collection (``root_dir/stac/<job table>/``, see
        :mod:`airflow_provider_openeo.handlers.stac_collection`): an item per finished row, replaced when the row
        runs again.

    The object holds only plain settings (no connection, no hook), so it pickles, deep-copies and ``repr``s
    without credentials, as operator attributes must.
    """

    #: Class defaults, so a handler pickled before these settings existed keeps working.
    stac_collection: bool = True
    naming: OutputNaming = OutputNaming()

    def __init__(
        self,
        root_dir: str | os.PathLike[str] | ObjectStoragePath = ".",
        download_results: bool = True,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_error_log_lines: int = 100,
        resume_attempts: int = 3,
        max_link_refreshes: int = 3,
        max_log_pages: int = MAX_LOG_PAGES,
        stac_collection: bool = True,
        output_dir: Rule | None = None,
        asset_name: Rule | None = None,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size!r}")
        for name, value in (
            ("max_error_log_lines", max_error_log_lines),
            ("resume_attempts", resume_attempts),
            ("max_link_refreshes", max_link_refreshes),
        ):
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value!r}")
        if max_log_pages < 1:
            raise ValueError(f"max_log_pages must be at least 1, got {max_log_pages!r}")
        self.root_dir = root_dir
        self.download_results = bool(download_results)
        self.chunk_size = chunk_size
        self.max_error_log_lines = max_error_log_lines
        self.resume_attempts = resume_attempts
        self.max_link_refreshes = max_link_refreshes
        self.max_log_pages = max_log_pages
        self.stac_collection = bool(stac_collection)
        self.naming = OutputNaming(output_dir, asset_name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root_dir={str(self.root_dir)!r}, download_results={self.download_results!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        """Pickle/deep-copy state; an ``ObjectStoragePath`` travels in its own serialised form.

        Airflow 3.3's ``ObjectStoragePath`` loses its ``conn_id`` when pickled or deep-copied (Airflow deep-copies
        operators), which would silently write results with the wrong (default) credentials.
        """
        state = dict(vars(self))
        if is_object_storage(self.root_dir) and hasattr(self.root_dir, "serialize"):
            state["root_dir"] = {_OBJECT_STORAGE_STATE: self.root_dir.serialize()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        root = state.get("root_dir")
        if isinstance(root, dict) and _OBJECT_STORAGE_STATE in root:
            from airflow.sdk import ObjectStoragePath

            state = {**state, "root_dir": ObjectStoragePath.deserialize(dict(root[_OBJECT_STORAGE_STATE]), 1)}
        vars(self).update(state)

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"{type(self).__module__}.{type(self).__qualname__}")

    # -- MBJM's path helpers ----------------------------------------------------------------------------------

    def get_job_dir(self, job_id: str) -> StoragePath:
        """``root_dir/job_{id}``; a job id that is not a plain name is sanitised and made unique by a hash."""
        root = as_storage_path(self.root_dir)
        job_dir = root / f"job_{_safe_paths.safe_job_token(job_id)}"
        _safe_paths.ensure_inside(root, job_dir)
        return job_dir

    def get_job_metadata_path(self, job_id: str) -> StoragePath:
        return self.get_job_dir(job_id) / f"job_{_safe_paths.safe_job_token(job_id)}.json"

    def get_error_log_path(self, job_id: str) -> StoragePath:
        return self.get_job_dir(job_id) / f"job_{_safe_paths.safe_job_token(job_id)}_errors.json"

    def ensure_job_dir_exists(self, job_id: str) -> StoragePath:
        """The job directory, created if missing and swept of partial files an earlier killed writer left."""
        job_dir = self.get_job_dir(job_id)
        make_dirs(job_dir)
        for name in remove_leftover_temporaries(job_dir):
            self.log.info("Removed %s, left in %s by an interrupted earlier download", name, job_dir)
        return job_dir

    def job_dir_for(self, job_id: str, row: JobRowRef | None, values: Mapping[str, Any] | None) -> StoragePath:
        """The row's directory: ``output_dir``'s rule over the row's ``values`` when there is one, else
        :meth:`get_job_dir`. Raises :class:`OutputNamingError` for a name the rule must not give."""
        if self.naming.output_dir is None or values is None:
            return self.get_job_dir(job_id)
        root = as_storage_path(self.root_dir)
        parts = self.naming.directory_parts(values, job_id=job_id, row_id=row.row_id if row is not None else None)
        job_dir = root.joinpath(*parts)
        _safe_paths.ensure_inside(root, job_dir)
        return job_dir

    def prepare_job_dir(self, job_dir: StoragePath) -> StoragePath:
        """Create ``job_dir`` if missing and sweep the partial files an earlier killed writer left."""
        make_dirs(job_dir)
        for name in remove_leftover_temporaries(job_dir):
            self.log.info("Removed %s, left in %s by an interrupted earlier download", name, job_dir)
        return job_dir

    def naming_values(self, row: JobRowRef | None) -> dict[str, Any] | None:
        """The row's values for the naming rules (read only when there is a rule)."""
        if not self.naming or row is None:
            return None
        return row.read()

    def _named_job_dir(self, job: openeo.BatchJob, row: JobRowRef | None) -> tuple[StoragePath, dict[str, Any] | None]:
        """The job's directory by the naming rule; a name the rule must not give fails the task (no retry: the
        row's values will not change) with the reason on the row."""
        values = self.naming_values(row)
        try:
            return self.job_dir_for(job.job_id, row, values), values
        except (OutputNamingError, _safe_paths.UnsafePathError) as error:
            raise self._results_failed(row, job, _short_message(str(error)), AirflowFailException) from None

    # -- the three overridable hooks --------------------------------------------------------------------------

    def on_job_done(
        self,
        context: Mapping[str, Any] | None,
        job: openeo.BatchJob,
        row: JobRowRef | None,
        metadata: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Store the results and metadata of a finished job in its job directory and record it in the row.

        The row goes ``results_state`` downloading -> downloaded, or failed (then :class:`ResultDownloadError`
        is raised so Airflow retries the task, which downloads again), or skipped with
        ``download_results=False``.
        """
        metadata = self.full_metadata(job, metadata)
        job_dir, values = self._named_job_dir(job, row)
        self.prepare_job_dir(job_dir)
        results_state = ResultsState.DOWNLOADING.value if self.download_results else ResultsState.SKIPPED.value
        row_updated = self.update_row(
            row,
            job.job_id,
            {
                "status": RowStatus.FINISHED.value,
                "backend_status": OpenEOJobStatus.FINISHED.value,
                "results_state": results_state,
                "error_message": None,
                "error_category": None,
                **self.usage_values(row, job.job_id, metadata),
            },
        )
        files, note, stac = self._store_finished(job, job_dir, values, row, metadata, row_updated=row_updated)
        if self.download_results:
            done = {"results_state": ResultsState.DOWNLOADED.value, **({"error_message": note} if note else {})}
            row_updated = self.update_row(row, job.job_id, done) and row_updated
            results_state = ResultsState.DOWNLOADED.value
            for name in remove_partials(job_dir):
                self.log.info("Removed %s, a partial file no asset of the stored results needs", name)
        self.log.info("openEO job %s finished; %d file(s) stored in %s", job.job_id, len(files), job_dir)
        return {
            "job_id": job.job_id,
            "status": OpenEOJobStatus.FINISHED.value,
            "job_dir": str(job_dir),
            "files": files,
            "results_state": results_state,
            "row_updated": row_updated,
            **stac,
        }

    def _store_finished(
        self,
        job: openeo.BatchJob,
        job_dir: StoragePath,
        naming_values: Mapping[str, Any] | None,
        row: JobRowRef | None,
        metadata: Mapping[str, Any],
        *,
        row_updated: bool,
    ) -> tuple[list[str], str | None, dict[str, str]]:
        """Write a finished job's files: its results (when downloading), its metadata, its STAC item.

        Returns the files written, a note for the row (what the download had to work around, or None) and the
        STAC item's fields; any failure marks the row's results ``failed`` and raises :class:`ResultDownloadError`,
        so Airflow retries the task, which stores them again.
        """
        files: list[str] = []
        note: str | None = None
        stac: dict[str, str] = {}
        try:
            stored: StoredResults | None = None
            if self.download_results:
                stored = self.store_results(job, job_dir, naming_values=naming_values, row=row)
                files.extend(stored.files)
                note = _short_message(stored.note_text() or "", _connection_secrets(job)) or None
            metadata_path = job_dir / self.get_job_metadata_path(job.job_id).name
            write_json_atomically(metadata_path, dict(metadata), ensure_ascii=False)
            files.append(str(metadata_path))
            if row_updated:  # a handler of an old job must not replace the item of the row's newer job
                stac = self.record_stac_item(job, row, metadata, stored)
        except Exception as error:
            message = _short_message(
                f"downloading results of openEO job {job.job_id} failed: {type(error).__name__}: {error}",
                _connection_secrets(job),
            )
            raise self._results_failed(row, job, message, ResultDownloadError) from None
        return files, note, stac

    def _results_failed(
        self, row: JobRowRef | None, job: openeo.BatchJob, message: str, error: type[Exception]
    ) -> Exception:
        """Storing the job's results failed: the row says so (``results_state`` failed, the reason), and the error
        to raise is returned (``ResultDownloadError`` is retried by Airflow; ``AirflowFailException`` is not)."""
        self.log.error("%s", message)
        self.update_row(row, job.job_id, {"results_state": ResultsState.FAILED.value, "error_message": message})
        return error(message)

    def on_job_error(
        self,
        context: Mapping[str, Any] | None,
        job: openeo.BatchJob,
        row: JobRowRef | None,
        metadata: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Save the job's error logs to ``job_{id}_errors.json``, echo them in the task log, record the row, with
        the failure's ``error_category`` from the logs (:meth:`classify_error`).

        Does not raise: whether an errored job fails the Airflow task, or the row gets another job (the batch's
        failure policy), is the caller's decision.
        """
        metadata = self.full_metadata(job, metadata)
        try:
            job_dir = self.job_dir_for(job.job_id, row, self.naming_values(row))
        except (OutputNamingError, _safe_paths.UnsafePathError) as error:  # the job's error still goes on the row
            self.log.warning("%s; the error logs go to the default directory", _short_message(str(error)))
            job_dir = self.get_job_dir(job.job_id)
        self.prepare_job_dir(job_dir)
        files: list[str] = []
        error_logs = self.fetch_error_logs(job)
        if error_logs is not None:
            error_path = job_dir / self.get_error_log_path(job.job_id).name
            write_json_atomically(error_path, error_logs, indent=2)
            files.append(str(error_path))
            self.log_error_lines(job.job_id, error_logs)
        metadata_path = job_dir / self.get_job_metadata_path(job.job_id).name
        write_json_atomically(metadata_path, dict(metadata), ensure_ascii=False)
        files.append(str(metadata_path))

        error_message = self.summarise_error(job.job_id, error_logs)
        category = self.classify_error(error_logs)
        self.log.error("openEO job %s ended with status error (%s): %s", job.job_id, category.value, error_message)
        row_updated = self.update_row(
            row,
            job.job_id,
            {
                "status": RowStatus.ERROR.value,
                "backend_status": OpenEOJobStatus.ERROR.value,
                "error_message": error_message,
                "error_category": category.value,
                **self.usage_values(row, job.job_id, metadata),
            },
        )
        if row_updated:
            self.drop_stac_item(row)
        return {
            "job_id": job.job_id,
            "status": OpenEOJobStatus.ERROR.value,
            "job_dir": str(job_dir),
            "files": files,
            "error_message": error_message,
            "error_category": category.value,
            "row_updated": row_updated,
        }

    def on_job_cancel(
        self,
        context: Mapping[str, Any] | None,
        job: openeo.BatchJob,
        row: JobRowRef | None,
        metadata: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Record the cancellation (and whatever usage the backend billed); like MBJM, nothing is downloaded."""
        self.log.warning("openEO job %s was canceled", job.job_id)
        metadata = self.full_metadata(job, metadata)
        row_updated = self.update_row(
            row,
            job.job_id,
            {
                "status": RowStatus.CANCELED.value,
                "backend_status": OpenEOJobStatus.CANCELED.value,
                **self.usage_values(row, job.job_id, metadata),
            },
        )
        if row_updated:
            self.drop_stac_item(row)
        return {"job_id": job.job_id, "status": OpenEOJobStatus.CANCELED.value, "row_updated": row_updated}

    # -- building blocks, overridable one by one ----------------------------------------------------------------

    def full_metadata(self, job: openeo.BatchJob, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The backend's own job document (``GET /jobs/{id}``), as MBJM stores it in ``job_{id}.json``.

        Always re-read once: a status event built from the shared ``GET /jobs`` listing carries only some fields
        (backends list ``costs`` but seldom ``usage``), and the row's usage columns come from this document.
        """
        try:
            described = dict(job.describe())
        except Exception as error:
            self.log.warning(
                "Could not re-read metadata of openEO job %s (%s); using the last status report",
                job.job_id,
                _short_message(error, _connection_secrets(job)),
            )
            return dict(metadata)
        # The backend's document as is (MBJM writes exactly this), plus anything only the caller knew.
        return {**described, **{key: value for key, value in metadata.items() if key not in described}}

    def download_job_results(self, job: openeo.BatchJob, job_dir: StoragePath) -> list[str]:
        """Stream every asset, then ``job-results.json`` (the STAC document), into ``job_dir``; return paths."""
        return self.store_results(job, job_dir).files

    def store_results(
        self,
        job: openeo.BatchJob,
        job_dir: StoragePath,
        *,
        naming_values: Mapping[str, Any] | None = None,
        row: JobRowRef | None = None,
    ) -> StoredResults:
        """Fetch every asset (resuming per asset, see ``_asset_download``), then write ``job-results.json``.

        Each asset gets a safe, unique file name (``asset_name``'s rule over the row's ``naming_values`` when
        there is one); a renamed or refused asset gets a note (task log, row) and makes the stored
        ``job-results.json`` name the files as they are on disk.
        """
        results_document = self.read_results_document(job)
        assets = results_document.get("assets") or {}
        if not assets:
            self.log.warning("openEO job %s finished without result assets", job.job_id)
        token = _safe_paths.safe_job_token(job.job_id)
        reserved = [JOB_RESULTS_FILENAME, f"job_{token}.json", f"job_{token}_errors.json"]
        planned, notes = plan_assets(assets, reserved)
        if self.naming.asset_name is not None and naming_values is not None:
            planned, renamed = self._rename_assets(planned, reserved, naming_values, job.job_id, row)
            notes = [*notes, *renamed]
        stored = StoredResults(notes=notes, document=dict(results_document))
        for note in notes:
            self.log.warning("openEO job %s: %s", job.job_id, note.describe())
        for asset in planned:
            target = job_dir / asset.name
            _safe_paths.ensure_inside(job_dir, target)
            transfer = self.download_asset(job, asset, target)
            stored.transfers[asset.key] = transfer
            if transfer.kept:
                self.log.info(
                    "Kept asset %r of openEO job %s: %s is already complete (%d bytes)",
                    asset.key,
                    job.job_id,
                    asset.name,
                    transfer.size,
                )
            else:
                self.log.info(
                    "Stored asset %r of openEO job %s as %s (%d bytes; %d received%s%s)",
                    asset.key,
                    job.job_id,
                    asset.name,
                    transfer.size,
                    transfer.received,
                    f", continued from byte {transfer.resumed_from}" if transfer.resumed_from else "",
                    f", {transfer.link_refreshes} expired link(s) renewed" if transfer.link_refreshes else "",
                )
            stored.files.append(str(target))
            stored.stored.append((asset, target))
        results_path = job_dir / JOB_RESULTS_FILENAME
        renamed = self.naming.asset_name is not None and naming_values is not None
        write_json_atomically(results_path, stored_results_document(results_document, planned, notes, renamed=renamed))
        stored.files.append(str(results_path))
        return stored

    def _rename_assets(
        self,
        planned: list[PlannedAsset],
        reserved: list[str],
        values: Mapping[str, Any],
        job_id: str,
        row: JobRowRef | None,
    ) -> tuple[list[PlannedAsset], list[AssetNote]]:
        """File names by ``asset_name``; two assets given one name are told apart (``_1``) and noted."""
        taken = _safe_paths.reserve_names(reserved)
        renamed: list[PlannedAsset] = []
        notes: list[AssetNote] = []
        for asset in planned:
            wanted = self.naming.file_name(
                values, job_id=job_id, row_id=row.row_id if row is not None else None, key=asset.key, name=asset.name
            )
            name = _safe_paths.unique_name(wanted or asset.name, taken)
            if wanted is not None and name != wanted:
                notes.append(AssetNote(asset.key, name, f"asset_name gave {wanted!r}, already taken by another file"))
            renamed.append(dataclasses.replace(asset, name=name))
        return renamed, notes

    # -- the batch's STAC collection ---------------------------------------------------------------------------

    def batch_collection(self, job_table: str) -> BatchCollection:
        """The STAC collection of the batch whose rows live in ``job_table``, under ``root_dir``."""
        return BatchCollection(as_storage_path(self.root_dir), job_table)

    def record_stac_item(
        self,
        job: openeo.BatchJob,
        row: JobRowRef | None,
        metadata: Mapping[str, Any],
        stored: StoredResults | None,
    ) -> dict[str, str]:
        """Write (or replace) the row's item in the batch's collection; ``{"stac_collection", "stac_item"}``.

        Nothing without a row (a sensor's job), or with ``stac_collection=False``. Assets are the stored files
        (relative hrefs) or, without a download, the backend's hrefs from its results document.
        """
        if not self.stac_collection or row is None:
            return {}
        hook = row.hook()
        try:
            frame = hook.get_by_indices([row.row_id])
            rule = hook.key_rule() or {}
            usage = set(hook.usage_columns())
        finally:
            hook.dispose()
        if frame.empty:
            return {}
        values = frame.iloc[0].to_dict()
        if str(values.get("id")) != str(job.job_id):
            self.log.warning("Not writing the STAC item of %s: it holds another job than %s now", row, job.job_id)
            return {}
        collection = self.batch_collection(row.table)
        if stored is not None:
            document = stored.document
            assets = {
                _stac_asset_key(asset): (collection.href_from_items(target), _asset_fields(document, asset))
                for asset, target in stored.stored
            }
        else:
            document = self.read_results_document(job)
            planned, _ = plan_assets(document.get("assets") or {}, ())
            assets = {_stac_asset_key(a): (a.href, _asset_fields(document, a)) for a in planned}
        geometry_column = getattr(getattr(frame, "geometry", None), "name", None)
        key_fields = [
            name
            for name in (rule.get("columns") or job_defining_columns(frame.columns))
            if name not in usage and name != geometry_column
        ]
        item = build_item(
            row_id=row.row_id,
            row=values,
            crs=getattr(frame, "crs", None) if geometry_column else None,
            key_fields=key_fields,
            job_id=job.job_id,
            job_table=row.table,
            backend=values.get("backend_name"),
            metadata=metadata,
            results_document=document,
            assets=assets,
            collection_id=collection.job_table,
        )
        path = collection.put_item(item)
        self.log.info("STAC item %s of %s written; collection %s", item["id"], row, collection.uri)
        return {"stac_collection": collection.uri, "stac_item": str(path)}

    def drop_stac_item(self, row: JobRowRef | None) -> None:
        """A row run again that ended in error or was canceled is no longer finished: its item (of an earlier job)
        leaves the collection, which lists finished rows only. Logged, never raised: the row's outcome is told."""
        if not self.stac_collection or row is None:
            return
        try:
            collection = self.batch_collection(row.table)
            if collection.remove_item(row.row_id):
                self.log.info("STAC item of %s removed from %s: the row is no longer finished", row, collection.uri)
        except Exception as error:
            self.log.warning("Could not remove the STAC item of %s: %s", row, _short_message(error))

    def read_results_document(self, job: openeo.BatchJob) -> dict[str, Any]:
        """``GET /jobs/{id}/results``: the STAC document whose assets (and signed hrefs) are fetched."""
        document = job.get_results().get_metadata()
        assets = document.get("assets") or {}
        if not isinstance(assets, Mapping):
            raise ValueError(f"the results document lists assets as {type(assets).__name__}, not a mapping")
        return document

    def download_asset(self, job: openeo.BatchJob, asset: PlannedAsset, target: StoragePath) -> AssetTransfer:
        """Fetch one asset into ``target``: keep it if complete, continue a partial file, renew expired links.

        The openeo connection sends its credentials only to URLs under the backend's root URL, never to an
        external (e.g. pre-signed object-store) href.
        """

        def refresh(current: PlannedAsset) -> PlannedAsset:
            fresh = (self.read_results_document(job).get("assets") or {}).get(current.key)
            if not isinstance(fresh, Mapping):
                raise ValueError(f"asset {current.key!r} is gone from the re-read results document")
            return current.with_source(fresh)

        return download_asset(
            job.connection,
            asset,
            target,
            refresh=refresh,
            chunk_size=self.chunk_size,
            max_resumes=self.resume_attempts,
            max_link_refreshes=self.max_link_refreshes,
            log=self.log,
        )

    def fetch_error_logs(self, job: openeo.BatchJob) -> list[dict[str, Any]] | None:
        """The job's error-level log entries across log pages, or None (logged) when the backend will not give them.

        Bounded by ``max_log_pages``; a later page that fails keeps the entries read before it (logged).
        """
        try:
            pages = read_log_pages(job, level="error", max_pages=self.max_log_pages)
        except Exception as error:
            self.log.warning(
                "Could not fetch error logs of openEO job %s: %s",
                job.job_id,
                _short_message(error, _connection_secrets(job)),
            )
            return None
        if pages.truncated:
            why = "" if pages.error is None else f": {_short_message(pages.error, _connection_secrets(job))}"
            self.log.warning(
                "openEO job %s has more error log pages than the %d read (%d entries kept)%s",
                job.job_id,
                pages.pages,
                len(pages.entries),
                why,
            )
        return pages.entries

    def log_error_lines(self, job_id: str, error_logs: list[dict[str, Any]]) -> None:
        """Copy the backend's error log lines into the Airflow task log, where users look first."""
        for entry in error_logs[: self.max_error_log_lines]:
            code = entry.get("code")
            prefix = f"[{code}] " if code else ""
            self.log.error("openEO job %s error log: %s%s", job_id, prefix, entry.get("message", entry))
        hidden = len(error_logs) - self.max_error_log_lines
        if hidden > 0:
            self.log.error(
                "openEO job %s has %d more error log entries in %s",
                job_id,
                hidden,
                self.get_error_log_path(job_id).name,
            )

    def classify_error(self, error_logs: list[dict[str, Any]] | None) -> ErrorCategory:
        """The row's ``error_category`` from the job's error logs (:func:`error_categories.classify`, by its table of
        rules); override to add rules of your own backend."""
        result = classify(error_logs)
        if result.rule is not None:
            self.log.info("error category %s (rule: %s)", result.category.value, result.rule.source)
        return result.category

    def summarise_error(self, job_id: str, error_logs: list[dict[str, Any]] | None) -> str:
        """A short ``error_message`` for the row: the first error line the backend logged."""
        for entry in error_logs or []:
            message = _short_message(entry.get("message", ""))
            if message:
                return message
        if error_logs is None:
            return f"openEO job {job_id} ended with status error; its error logs could not be fetched"
        return f"openEO job {job_id} ended with status error; the backend logged no error message"

    def usage_values(self, row: JobRowRef | None, job_id: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Row values for the job's usage, one column per key as MBJM 0.53 names and writes them, and costs.

        A key reported for the first time gets its column now (``ensure_usage_columns``), so the row update that
        follows carries status and usage together; a key that cannot have a column is left out (warned there)
        and stays in ``job_{id}.json``.
        """
        values = usage_row_values(metadata, job_id=job_id)
        keys = [key for key in values if key != COSTS_COLUMN]
        if row is None or not keys:
            return values
        hook = row.hook()
        try:
            writable = set(hook.ensure_usage_columns(keys))
        finally:
            hook.dispose()
        return {key: value for key, value in values.items() if key == COSTS_COLUMN or key in writable}

    def update_row(self, row: JobRowRef | None, job_id: str, values: Mapping[str, Any]) -> bool:
        """Write ``values`` to the row only while it still holds ``job_id`` (compare-and-set).

        A handler of an old job (a stale retry, a re-run that already created a new job) must never overwrite
        the row of the newer job; such an update is skipped and reported, not raised.
        """
        if row is None:
            return False
        updated = row.compare_and_set(values, expected={"id": job_id})
        if not updated:
            self.log.warning(
                "Not updating %s: it no longer holds openEO job %s (values %s not written)",
                row,
                job_id,
                sorted(values),
            )
        return updated


def _stac_asset_key(asset: PlannedAsset) -> str:
    """The server's key when it is a plain name, else the file name it was stored under (never a hostile key)."""
    return asset.key if _safe_paths.is_safe_file_name(asset.key) else asset.name


def _asset_fields(document: Mapping[str, Any], asset: PlannedAsset) -> dict[str, Any]:
    """The backend's fields of an asset (type, roles, bands ...), and its original key where that was renamed."""
    fields = dict((document.get("assets") or {}).get(asset.key) or {})
    if _stac_asset_key(asset) != asset.key:
        fields[ORIGINAL_KEY_FIELD] = asset.key
    return fields
