"""Which file each result asset becomes, what the STAC says it must look like, and what the stored copy says.

A results document (``GET /jobs/{id}/results``) comes from the server: its asset keys are not file names we may
trust, its hrefs may point anywhere. Each asset is planned once, before any byte moves:

- stored under a safe, unique name (:mod:`_safe_paths`); when that name is not the one the key asks for
  (a key such as ``../../escape.txt``, or a name another asset already took), the asset is **renamed** and a
  note says which key, what it became and why;
- **refused** (not fetched, noted) when its href is no http(s) URL: there is nothing safe to download;
- checked against ``file:size`` and ``file:checksum`` (multihash sha2-256) when the STAC gives them.

When any asset was renamed or refused, the stored ``job-results.json`` is rewritten to name the files as they
are on disk (keys and relative hrefs), so nothing that later builds paths from it meets a hostile key.
Otherwise it is the backend's document unchanged, as MBJM stores it.
"""

from __future__ import annotations

import copy
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_openeo.handlers import _safe_paths

#: multihash of sha2-256: function code 0x12, digest length 0x20, then 32 bytes (hex).
_SHA2_256_MULTIHASH = re.compile(r"1220([0-9a-fA-F]{64})")
_FETCHABLE_SCHEMES = frozenset({"http", "https"})
#: Fields of an asset in a rewritten document that record where it came from.
ORIGINAL_KEY_FIELD = "openeo_provider:original_key"
REFUSED_FIELD = "openeo_provider:refused_assets"


@dataclass(frozen=True)
class PlannedAsset:
    """One asset to fetch: the server's key and href, our file name, what the STAC promises about it."""

    key: str
    href: str
    name: str
    size: int | None = None
    sha256: str | None = None

    def with_source(self, asset: Mapping[str, Any]) -> PlannedAsset:
        """The same file, fetched from a re-read document's entry (a fresh signed href, maybe new facts)."""
        href = asset.get("href")
        if not isinstance(href, str) or not href:
            raise ValueError(f"asset {self.key!r} has no usable href in the re-read results document")
        return PlannedAsset(self.key, href, self.name, expected_size(asset), expected_sha256(asset))


@dataclass(frozen=True)
class AssetNote:
    """An asset not stored under the name its key asks for (``stored_as``), or not stored at all (None)."""

    key: str
    stored_as: str | None
    reason: str

    def describe(self) -> str:
        # repr: a key may hold newlines or control characters that would forge log lines
        if self.stored_as is None:
            return f"asset {self.key!r} refused: {self.reason}"
        return f"asset {self.key!r} stored as {self.stored_as!r}: {self.reason}"


def expected_size(asset: Mapping[str, Any]) -> int | None:
    """``file:size`` when it is a non-negative integer, else None (unknown)."""
    size = asset.get("file:size")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or size < 0 or not float(size).is_integer():
        return None
    return int(size)


def expected_sha256(asset: Mapping[str, Any]) -> str | None:
    """Hex sha256 from ``file:checksum`` when it is a sha2-256 multihash; other hash functions are not checked."""
    checksum = asset.get("file:checksum")
    match = _SHA2_256_MULTIHASH.fullmatch(checksum.strip()) if isinstance(checksum, str) else None
    return match.group(1).lower() if match else None


def _refusal(href: Any) -> str | None:
    if not isinstance(href, str) or not href.strip():
        return "it has no href"
    scheme = urllib.parse.urlparse(href).scheme.lower()
    if scheme not in _FETCHABLE_SCHEMES:
        return f"its href is no http(s) URL (scheme {scheme or 'none'!r})"
    return None


def plan_assets(assets: Mapping[Any, Any], reserved: Iterable[str]) -> tuple[list[PlannedAsset], list[AssetNote]]:
    """File names for every asset of a results document, and a note for each renamed or refused one.

    :param reserved: names assets must never take (the job's own files: ``job-results.json``, metadata).
    """
    taken = _safe_paths.reserve_names(reserved)
    planned: list[PlannedAsset] = []
    notes: list[AssetNote] = []
    for raw_key, raw_asset in assets.items():
        key = str(raw_key)
        asset = raw_asset if isinstance(raw_asset, Mapping) else {}
        refusal = "its entry is not an object" if not isinstance(raw_asset, Mapping) else _refusal(asset.get("href"))
        if refusal:
            notes.append(AssetNote(key, None, refusal))
            continue
        href = asset["href"]
        wanted = _safe_paths.asset_file_name(key, href, asset.get("type"))
        name = _safe_paths.unique_name(wanted, taken)
        if not _safe_paths.is_safe_file_name(key):
            notes.append(AssetNote(key, name, _safe_paths.unsafe_name_reason(key)))
        elif name != wanted:
            notes.append(AssetNote(key, name, f"the name {wanted!r} was already taken by another file of the job"))
        planned.append(PlannedAsset(key, href, name, expected_size(asset), expected_sha256(asset)))
    return planned, notes


def stored_results_document(
    document: Mapping[str, Any],
    planned: Iterable[PlannedAsset],
    notes: Iterable[AssetNote],
    *,
    renamed: bool = False,
) -> dict[str, Any]:
    """The ``job-results.json`` to store: the backend's document, or its local copy when names changed.

    The local copy lists every stored asset under its file name with that name as (relative) href and the
    server's key in ``openeo_provider:original_key`` where it differs; refused assets are listed, with why,
    under ``openeo_provider:refused_assets``, not as assets. ``renamed``: the user's naming rule gave the files
    their names, so the local copy is written even without notes.
    """
    notes = list(notes)
    result = copy.deepcopy(dict(document))
    if not notes and not renamed:
        return result
    source = document.get("assets") or {}
    local: dict[str, Any] = {}
    for asset in planned:
        entry = dict(copy.deepcopy(source.get(asset.key, {})))
        entry["href"] = asset.name
        if asset.name != asset.key:
            entry[ORIGINAL_KEY_FIELD] = asset.key
        local[asset.name] = entry
    result["assets"] = local
    refused = [{"key": note.key, "reason": note.reason} for note in notes if note.stored_as is None]
    if refused:
        result[REFUSED_FIELD] = refused
    return result
