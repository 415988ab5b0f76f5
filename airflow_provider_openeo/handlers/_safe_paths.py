"""Turn names chosen by a remote openEO server into file names that cannot escape a job directory.

Asset keys, asset hrefs and job ids all come from the backend. Used as path parts unchecked, a key like
``../../etc/cron.d/x`` or ``C:\\x`` writes wherever the server likes. Every name that becomes part of a path
goes through :func:`safe_file_name` (or :func:`safe_job_token` for job ids), and every final path is checked
with :func:`ensure_inside` before anything is written, so a bug in one layer is caught by the other.

Ordinary names (``openEO.tif``, ``j-2403abc``) pass through unchanged, keeping MBJM's on-disk layout.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any

from airflow_provider_openeo.exceptions import UnsafePathError

# Characters Windows refuses in file names (besides the separators, which are handled as separators).
_WINDOWS_FORBIDDEN = re.compile(r'[:<>"|?*]')
_WINDOWS_RESERVED_STEMS = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
)
# Room is left below the usual 255-byte limit for a de-duplication suffix and a temporary-file suffix.
_MAX_NAME_BYTES = 200
_MAX_EXTENSION_CHARS = 16

# A job id made only of these is used verbatim (MBJM layout); anything else gets sanitised plus a hash.
_ORDINARY_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# MBJM (openeo's ResultAsset) keeps an asset key as the file name when it already looks like one.
_FILENAME_LIKE_KEY = re.compile(r"[\w.-]+\.[a-zA-Z0-9]{1,10}")
_KEY_UNSAFE = re.compile(r"[^\w.-]+")

# The extensions openeo's ``ResultAsset`` guesses (a parity test compares against it).
_MEDIA_TYPE_EXTENSIONS = {
    "image/tiff": ".tiff",
    "image/tiff; application=geotiff": ".tiff",
    "image/tiff; application=geotiff; profile=cloud-optimized": ".tiff",
    "image/png": ".png",
    "application/x-netcdf": ".nc",
    "application/json": ".json",
    "application/geo+json": ".json",
    "text/csv": ".csv",
    "x-gis/x-shapefile": ".shp",
    "application/geopackage+sqlite3": ".gpkg",
    "application/parquet; profile=geo": ".parquet",
    "application/zip+zarr": ".zarr",
    "application/zip": ".zip",
}


def _drop_invisible(text: str) -> str:
    """Remove NUL, other control characters, and invisible format characters (e.g. right-to-left overrides)."""
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))


def _truncate_utf8(name: str, limit: int) -> str:
    """Shorten ``name`` to ``limit`` UTF-8 bytes, keeping a short extension so the file type stays visible."""
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > _MAX_EXTENSION_CHARS:
        stem, extension = name, ""
    suffix = f".{extension}" if extension else ""
    budget = limit - len(suffix.encode("utf-8"))
    encoded = stem.encode("utf-8")[:budget]
    return encoded.decode("utf-8", errors="ignore") + suffix


def safe_file_name(name: Any, *, fallback: str) -> str:
    """A single path component derived from ``name`` that is safe on POSIX, Windows and object stores.

    Path separators split the name into parts; empty, ``.`` and ``..`` parts are dropped and the rest joined
    with ``_`` (``sub/dir/b.tif`` -> ``sub_dir_b.tif``, ``../../x`` -> ``x``, ``/etc/passwd`` ->
    ``etc_passwd``). Leading dots are removed so no result is hidden or can look like our temporary files.
    ``fallback`` (itself sanitised) is used when nothing usable remains.
    """
    text = _drop_invisible(str(name) if name is not None else "")
    parts = [part.strip() for part in re.split(r"[/\\]", text)]
    parts = [part for part in parts if part not in ("", ".", "..")]
    candidate = "_".join(parts)
    candidate = _WINDOWS_FORBIDDEN.sub("_", candidate)
    candidate = candidate.strip().lstrip(".").rstrip(". ")
    if not candidate:
        if fallback == name:
            raise UnsafePathError(f"no safe file name can be made from {name!r}")
        return safe_file_name(fallback, fallback="file")
    if candidate.split(".", 1)[0].strip().upper() in _WINDOWS_RESERVED_STEMS:
        candidate = f"_{candidate}"
    return _truncate_utf8(candidate, _MAX_NAME_BYTES)


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem_N.ext`` when a name differing only in case is taken; records the result in ``taken``.

    Case-insensitive because two assets ``a.tif`` and ``A.tif`` overwrite each other on Windows and macOS.
    """
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        stem, dot, extension = name, "", ""
    candidate, counter = name, 1
    while candidate.casefold() in taken:
        candidate = f"{stem}_{counter}{dot}{extension}"
        counter += 1
    taken.add(candidate.casefold())
    return candidate


def safe_job_token(job_id: Any) -> str:
    """The text that goes after ``job_`` in the job directory and metadata file names.

    An ordinary id is returned unchanged (MBJM's ``job_{id}`` layout). Any other id is sanitised and a short
    hash of the original appended, so two hostile ids that sanitise alike (``../x`` and ``x``) still get
    different directories instead of overwriting each other's results.
    """
    text = str(job_id)
    if _ORDINARY_JOB_ID.fullmatch(text) and text not in (".", ".."):
        return text
    digest = hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:10]
    cleaned = safe_file_name(text, fallback="id")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", cleaned)[:64]
    return f"{cleaned}-{digest}"


def _basename_from_href(href: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlparse(href).path)
    parts = [part for part in path.split("/") if part]
    return parts[-1] if parts else ""


def asset_file_name(key: Any, href: str, media_type: str | None) -> str:
    """The file name MBJM (openeo's ``ResultAsset``) would pick for an asset, made safe.

    A key that already looks like a file name is used as is; otherwise the name is built from the key and the
    last part of the href, with an extension guessed from the media type when none is present.
    """
    key_text = _drop_invisible(str(key))
    if _FILENAME_LIKE_KEY.fullmatch(key_text):
        proposed = key_text
    else:
        proposed = f"{_KEY_UNSAFE.sub('', key_text)}-{_KEY_UNSAFE.sub('', _basename_from_href(href))}"
        if not re.fullmatch(r".*\.[a-zA-Z0-9]{1,10}", proposed):
            proposed += _MEDIA_TYPE_EXTENSIONS.get((media_type or "").strip(), "")
    return safe_file_name(proposed, fallback="asset")


def is_safe_file_name(name: Any) -> bool:
    """True when ``name`` would be stored as itself: one plain, visible path component (see safe_file_name)."""
    try:
        return isinstance(name, str) and safe_file_name(name, fallback=name) == name
    except UnsafePathError:
        return False


def unsafe_name_reason(name: Any) -> str:
    """Why ``name`` cannot be a file name as is, in words for a row's note and the task log."""
    text = str(name)
    parts = re.split(r"[/\\]", text)
    if text.strip() in ("", ".", ".."):
        return "it names no file"
    if re.match(r"^([/\\]|[A-Za-z]:)", text):
        return "it is an absolute path"
    if ".." in (part.strip() for part in parts):
        return "it climbs out of the job directory ('..')"
    if len(parts) > 1:
        return "it names a sub-directory"
    if text != _drop_invisible(text):
        return "it holds control or invisible characters"
    if text.lstrip().startswith("."):
        return "a leading dot would hide the file"
    if _WINDOWS_FORBIDDEN.search(text):
        return "it holds characters Windows forbids in file names"
    if text.split(".", 1)[0].strip().upper() in _WINDOWS_RESERVED_STEMS:
        return "it is a reserved device name on Windows"
    if len(text.encode("utf-8")) > _MAX_NAME_BYTES:
        return f"it is longer than {_MAX_NAME_BYTES} bytes"
    return "it is not a plain file name"


def is_object_storage(path: Any) -> bool:
    """True for an Airflow ``ObjectStoragePath`` (or any fsspec-backed path), False for a local path."""
    # Looked up on the type: evaluating ``path.fs`` would resolve (and may fail to find) the filesystem.
    kind = type(path)
    return not isinstance(path, PurePath) and hasattr(kind, "fs") and hasattr(kind, "protocol")


def ensure_inside(directory: Any, candidate: Any) -> None:
    """Raise :class:`UnsafePathError` unless ``candidate`` is strictly inside ``directory``.

    Local paths are compared after resolving symlinks (a link planted in the job directory must not lead
    out); object-storage paths, which have no symlinks, after normalising ``..`` away on the same store.
    """
    if is_object_storage(directory):
        if not is_object_storage(candidate) or candidate.protocol != directory.protocol:
            raise UnsafePathError(f"{candidate!s} is not on the same store as {directory!s}")
        if getattr(candidate, "conn_id", None) != getattr(directory, "conn_id", None):
            raise UnsafePathError(f"{candidate!s} is not on the same connection as {directory!s}")
        base = posixpath.normpath(str(directory))
        target = posixpath.normpath(str(candidate))
        inside = target.startswith(base.rstrip("/") + "/") and target != base
    else:
        base_path = Path(os.path.realpath(directory))
        target_path = Path(os.path.realpath(candidate))
        inside = target_path != base_path and target_path.is_relative_to(base_path)
    if not inside:
        raise UnsafePathError(f"refusing to write {candidate!s}: it is outside {directory!s}")


def reserve_names(names: Iterable[str]) -> set[str]:
    """A ``taken`` set for :func:`unique_name` pre-filled with names assets must never overwrite."""
    return {name.casefold() for name in names}
