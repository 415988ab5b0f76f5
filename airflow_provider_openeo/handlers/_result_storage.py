"""Where job results are written: a local directory or an Airflow ``ObjectStoragePath``, written atomically.

Results must be shareable between workers on different machines, so ``root_dir`` may be object storage
(``s3://...``). Each file is streamed to a hidden temporary name next to its target and renamed only once
complete: an interrupted download (a killed worker, a dropped connection) never leaves a file under the real
name that looks finished, and a re-run simply writes it again. On object stores the rename is copy-and-delete,
which still makes the final key appear only with complete content.

Large assets are the exception to "write again": their bytes go to a stable hidden sibling
(``.{name}.partial``) that an interrupted download leaves in place, so the next attempt continues with an HTTP
``Range`` instead of moving every byte again. It too becomes the real name only once complete and verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from airflow_provider_openeo._deployment_paths import deployment_path
from airflow_provider_openeo.exceptions import IncompleteDownloadError
from airflow_provider_openeo.handlers._safe_paths import is_object_storage

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

StoragePath = Union[Path, "ObjectStoragePath"]

TEMPORARY_MARKER = ".part-"
PARTIAL_SUFFIX = ".partial"
_HASH_BLOCK = 1024 * 1024


def as_storage_path(root: str | os.PathLike[str] | ObjectStoragePath) -> StoragePath:
    """A local ``Path`` for plain paths (a relative one under ``$AIRFLOW_HOME``:
    :mod:`~airflow_provider_openeo._deployment_paths`), an ``ObjectStoragePath`` for URLs (``s3://conn@bucket/dir``).

    Accepting a URL string lets ``root_dir`` come from a DAG Param or a template, where an object cannot.
    """
    if is_object_storage(root):
        return root  # type: ignore[return-value]
    text = os.fspath(root)
    if "://" in text:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(text)
    return deployment_path(text)


def make_dirs(path: StoragePath) -> None:
    path.mkdir(parents=True, exist_ok=True)


def remove_quietly(path: StoragePath) -> None:
    """Delete ``path`` if it is there (local or object storage)."""
    try:
        if is_object_storage(path):
            path.fs.rm(path.path)
        else:
            path.unlink(missing_ok=True)
    except FileNotFoundError:
        pass


def remove_leftover_temporaries(directory: StoragePath) -> list[str]:
    """Delete partial files a killed writer left behind (a SIGKILL runs no cleanup); return their names.

    Called before a job directory is written again, by the row's one writer, so no live download is touched.
    Resumable partial files (``PARTIAL_SUFFIX``) stay: the next download continues them.
    """
    if not directory.exists():
        return []
    removed = []
    for entry in directory.iterdir():
        if entry.name.startswith(".") and TEMPORARY_MARKER in entry.name and not entry.name.endswith(PARTIAL_SUFFIX):
            remove_quietly(entry)
            removed.append(entry.name)
    return removed


def move_into_place(temporary: StoragePath, target: StoragePath) -> None:
    if is_object_storage(target):
        target.fs.mv(temporary.path, target.path)
    else:
        os.replace(temporary, target)


def temporary_name_for(target: StoragePath) -> StoragePath:
    """A hidden sibling of ``target``; unique so two writers of the same file never share a partial file."""
    return target.parent / f".{target.name}{TEMPORARY_MARKER}{uuid.uuid4().hex[:12]}"


def write_chunks_atomically(target: StoragePath, chunks: Iterable[bytes], *, expected_size: int | None = None) -> int:
    """Stream ``chunks`` into ``target`` through a temporary file; return the number of bytes written.

    Only one chunk is held in memory at a time. On any failure (including KeyboardInterrupt or Airflow's
    SIGTERM exception) the temporary file is removed and ``target`` is left as it was.
    """
    temporary = temporary_name_for(target)
    written = 0
    try:
        with temporary.open("wb") as handle:
            for chunk in chunks:
                if chunk:
                    handle.write(chunk)
                    written += len(chunk)
        if expected_size is not None and written != expected_size:
            raise IncompleteDownloadError(
                f"received {written} bytes for {target.name!r}, the server announced {expected_size}"
            )
        move_into_place(temporary, target)
    except BaseException:
        remove_quietly(temporary)
        raise
    return written


def write_json_atomically(target: StoragePath, document: Any, **dump_options: Any) -> None:
    payload = json.dumps(document, **dump_options).encode("utf-8")
    write_chunks_atomically(target, [payload], expected_size=len(payload))


def partial_path_for(target: StoragePath) -> StoragePath:
    """The resumable partial file of ``target``: stable across attempts (the row has one writer at a time)."""
    return target.parent / f".{target.name}{PARTIAL_SUFFIX}"


def size_of(path: StoragePath) -> int | None:
    """Size in bytes, or None when there is no such file."""
    try:
        if is_object_storage(path):
            return int(path.fs.size(path.path)) if path.exists() else None
        return path.stat().st_size if path.is_file() else None
    except FileNotFoundError:
        return None


def open_partial(path: StoragePath, *, append: bool) -> Any | None:
    """``path`` opened for writing, at its end with ``append``; None when the store cannot append.

    Local files always can; fsspec stores differ (memory can, many object stores cannot): then the caller
    starts that file over.
    """
    if not append:
        return path.open("wb")
    try:
        return path.open("ab")
    except (NotImplementedError, ValueError, TypeError, OSError):
        if not is_object_storage(path):
            raise
        return None


def sha256_of(path: StoragePath) -> str:
    """Hex sha256 of a stored file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_partials(directory: StoragePath) -> list[str]:
    """Delete resumable partial files (once a job's results are complete none is needed); return their names."""
    if not directory.exists():
        return []
    removed = []
    for entry in directory.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX):
            remove_quietly(entry)
            removed.append(entry.name)
    return removed
