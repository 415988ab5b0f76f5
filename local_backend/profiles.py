"""Profiles: which production openEO server a local backend imitates, and how its job listing behaves.

The provider is tested against this server, so whatever production servers do differently from the
local default has to be reproducible here, or the provider will only ever be right for the default
(newest first, ``limit`` + ``next`` cursor, a linear ``progress``). Each profile fixes the listing shape,
paging and order plus whether running jobs report progress; the facts come from the servers' own sources
(openeo-python-driver, openeo-geopyspark-driver, openeo-aggregator, openeo-fastapi; issue 11). Standard
library only: the launcher validates profile names in the main virtualenv and the unit tests run these
functions in-process.

- ``default``: the local backend as it always was (its listing code lives in ``jobs.py``, untouched).
- ``geopyspark`` (Copernicus Data Space, Terrascope): listing entries carry only id, status, created,
  updated, title; ``?limit=&page=`` paging (page numbers from 0, a ``next`` link with ``page``; no
  ``limit``: every job, no link); oldest first; no progress for running jobs, in listings or per job.
- ``aggregator`` (openEO Platform): ids ``<upstream>-<id>``; ``limit`` honoured but never a ``next`` link;
  a listing names unreachable upstreams under ``federation:missing`` (see ``federation.py``).
- ``fastapi`` (EODC openeo-fastapi): ``limit`` ignored, every job with its process graph, ``links: []``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

DEFAULT, GEOPYSPARK, AGGREGATOR, FASTAPI = "default", "geopyspark", "aggregator", "fastapi"
NEWEST_FIRST, OLDEST_FIRST, UNORDERED = "newest_first", "oldest_first", "unordered"
LISTING_ORDERS = (NEWEST_FIRST, OLDEST_FIRST, UNORDERED)

# How ``GET /jobs`` treats ``limit``:
CURSOR = "cursor"  # limit + ``next`` link carrying the last job shown (default profile, in jobs.py)
PAGES = "pages"  # limit + ``page`` number; ``next`` link with page + 1; no limit: every job
TRUNCATE = "truncate"  # the first ``limit`` jobs, never a ``next`` link
IGNORE = "ignore"  # every job whatever the limit, never a ``next`` link

PAGE_PARAMETER = "page"
GEOPYSPARK_FIELDS = ("id", "status", "created", "updated", "title")


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    listing_order: str  # the order when the setting ``listing_order`` is None
    paging: str
    listing_fields: tuple[str, ...] | None = None  # None: openeo-driver's short job form
    listing_process: bool = False  # each listed job carries its ``process`` (graph)
    running_progress: bool = True  # running jobs report ``progress`` (linear in elapsed time)
    federated: bool = False  # upstream-prefixed ids, outages, ``federation:missing``


PRODUCTION_PROFILES = (GEOPYSPARK, AGGREGATOR, FASTAPI)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(DEFAULT, NEWEST_FIRST, CURSOR),
        Profile(GEOPYSPARK, OLDEST_FIRST, PAGES, listing_fields=GEOPYSPARK_FIELDS, running_progress=False),
        Profile(AGGREGATOR, NEWEST_FIRST, TRUNCATE, federated=True),
        Profile(FASTAPI, OLDEST_FIRST, IGNORE, listing_process=True),
    )
}


class ListingError(ValueError):
    """A listing request the profile's paging cannot answer (e.g. ``page=abc``); the server answers 400."""


def profile_of(settings: Mapping[str, Any]) -> Profile:
    return PROFILES[settings["profile"]]


def listing_order_of(settings: Mapping[str, Any]) -> str:
    """The ``listing_order`` setting, or the profile's own order when it is None."""
    return settings["listing_order"] or profile_of(settings).listing_order


T = TypeVar("T")


def order_jobs(jobs: Sequence[T], order: str, key: Callable[[T], tuple[float, str]], seed: int | None) -> list[T]:
    """``key`` gives (created, id). ``unordered`` is a seeded hash order: stable between the pages of one
    listing and between polls (a shuffle per request would make paging meaningless), unrelated to age,
    and a new job lands at an arbitrary place, as in a registry whose order no one defined."""
    if order == NEWEST_FIRST:
        return sorted(jobs, key=key, reverse=True)
    if order == OLDEST_FIRST:
        return sorted(jobs, key=key)
    salt = f"{seed if seed is not None else 0}/"
    return sorted(jobs, key=lambda j: hashlib.sha256((salt + key(j)[1]).encode()).digest())


def page_of(
    jobs: Sequence[T], paging: str, limit: int | None, parameters: Mapping[str, Any]
) -> tuple[list[T], dict[str, Any] | None]:
    """The jobs one ``GET /jobs`` answers with, and the query parameters of its ``next`` link (or None)."""
    if paging == IGNORE or not limit or limit <= 0:
        return list(jobs), None
    if paging == TRUNCATE:
        return list(jobs[:limit]), None
    if paging != PAGES:
        raise ValueError(f"paging {paging!r} is not served by page_of")
    raw = parameters.get(PAGE_PARAMETER)
    try:
        page = 0 if raw in (None, "") else int(raw)
    except (TypeError, ValueError):
        raise ListingError(f"Invalid {PAGE_PARAMETER!r} parameter {raw!r}: expected an integer >= 0.") from None
    if page < 0:
        raise ListingError(f"Invalid {PAGE_PARAMETER!r} parameter {raw!r}: expected an integer >= 0.")
    start = page * limit
    shown = list(jobs[start : start + limit])
    more = len(jobs) > start + limit
    return shown, ({"limit": limit, PAGE_PARAMETER: page + 1} if more else None)


class ListedJob:
    """One entry of a profile's listing, in the shape openeo-driver's ``GET /jobs`` view serialises.

    That view calls ``to_api_dict(full=False, ...)`` on every entry of a dict listing, and its own
    ``BatchJobMetadata.to_api_dict`` always adds a ``progress`` (0 / 100 for created, queued, finished),
    so a profile whose listing has fewer fields (geopyspark) or more (fastapi: the process graph) wraps
    the metadata and trims or extends the dict.
    """

    def __init__(self, metadata: Any, fields: tuple[str, ...] | None = None, extra: dict[str, Any] | None = None):
        self._metadata = metadata
        self._fields = fields
        self._extra = extra or {}

    def to_api_dict(self, full: bool = False, api_version: Any = None) -> dict[str, Any]:
        data = self._metadata.to_api_dict(full=False, api_version=api_version)
        if self._fields is not None:
            data = {k: data[k] for k in self._fields if data.get(k) is not None}
        data.update(self._extra)
        return data
