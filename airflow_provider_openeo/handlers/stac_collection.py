"""A batch's results as one STAC collection, kept up to date while many ``results`` tasks finish at once.

Layout, under the batch's ``root_dir`` (a local directory or an ``ObjectStoragePath``)::

    root_dir/stac/<job table>/collection.json        the collection: extent and one ``item`` link per row
    root_dir/stac/<job table>/items/row_<id>.json    one item per finished row (its job's assets, geometry, time)
    root_dir/job_<id>/...                            the assets, where the handler stores them

Hrefs are relative (``./items/row_3.json``, ``../../../job_j-1/result.tif``), so the product can be moved or
served as it is; with ``download_results=False`` the assets point at the backend's own hrefs.

**Why no item is lost.** Each row writes only its own item file (atomically: a temporary name, then a rename, or
copy-and-delete on object stores), so writers never share a file but the collection. The collection is never
edited in place: it is *derived*, rebuilt from whatever item files exist, and :meth:`BatchCollection.refresh`
repeats ``read the items, read the collection, write the rebuild if they differ`` until a read finds the stored
collection equal to the rebuild of the items read just before it. Whoever writes the collection last checks it
against the items afterwards, and any item written after that check makes its own writer refresh later; so once
the last writer is done, the stored collection is the rebuild of every item. (A refresh that still sees changes
after :data:`MAX_REFRESH_ROUNDS` rounds stops: changes mean other writers are at work, and the last of them
links every item written before its check, ours included.)

This needs no lock, only what local disks and today's object stores (S3, GCS, Azure: read-after-write and
listings consistent) give: an atomic replace and fresh reads. Listings of
fsspec stores are read past their cache. A writer killed between its item and the collection leaves the item
file, which the next refresh (its retry, another row, the batch's ``summary``) links.

The cost is a read of every item per refresh: one listing and a small JSON file per finished row; with 2,000
items on a local disk a refresh that writes takes 0.27 s, one that finds the collection current 0.05 s. On object
storage the reads go out together (``fsspec``'s ``cat``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_openeo.handlers._result_storage import (
    StoragePath,
    make_dirs,
    remove_quietly,
    write_json_atomically,
)
from airflow_provider_openeo.handlers._safe_paths import ensure_inside, is_object_storage, safe_file_name
from airflow_provider_openeo.handlers._stac_item import STAC_VERSION, item_id_for

log = logging.getLogger(__name__)

__all__ = ["COLLECTION_FILENAME", "BatchCollection", "collection_rows", "open_collection"]

STAC_DIRNAME = "stac"
COLLECTION_FILENAME = "collection.json"
ITEMS_DIRNAME = "items"
#: Rounds of read-compare-write before a refresh leaves the collection to the writers still changing it.
MAX_REFRESH_ROUNDS = 12
_WORLD = [-180.0, -90.0, 180.0, 90.0]


class BatchCollection:
    """The STAC collection of one batch (one job table) under ``root``."""

    def __init__(self, root: StoragePath, job_table: str) -> None:
        self.root = root
        self.job_table = job_table
        self.directory = root / STAC_DIRNAME / safe_file_name(job_table, fallback="batch")
        ensure_inside(root, self.directory)
        self.collection_path = self.directory / COLLECTION_FILENAME
        self.items_dir = self.directory / ITEMS_DIRNAME

    @property
    def uri(self) -> str:
        """Where the collection is: an absolute local path, or the object store's URL (``s3://conn@bucket/...``)."""
        return str(self.collection_path)

    def item_path(self, row_id: Any) -> StoragePath:
        path = self.items_dir / f"{item_id_for(row_id)}.json"
        ensure_inside(self.items_dir, path)
        return path

    def href_from_items(self, target: StoragePath) -> str:
        """``target`` relative to the items directory (what an item's asset href says)."""
        return posixpath.relpath(str(target), str(self.items_dir))

    # -- writing ------------------------------------------------------------------------------------------------

    def put_item(self, item: Mapping[str, Any]) -> StoragePath:
        """Write (or replace) the row's item, then bring the collection up to date; return the item's path."""
        make_dirs(self.items_dir)
        path = self.items_dir / f"{item['id']}.json"
        ensure_inside(self.items_dir, path)
        write_json_atomically(path, dict(item), indent=1, ensure_ascii=False)
        self.refresh()
        return path

    def remove_item(self, row_id: Any) -> bool:
        """Drop the row's item (its row is no longer finished) and bring the collection up to date; whether one
        was there."""
        path = self.item_path(row_id)
        if not path.exists():
            return False
        remove_quietly(path)
        self.refresh()
        return True

    def refresh(self) -> dict[str, Any]:
        """Make the stored collection the rebuild of the item files there now; return it (see the module doc)."""
        make_dirs(self.directory)
        for round_number in range(MAX_REFRESH_ROUNDS):
            built = self.build(self.read_items())
            if self.read_collection() == built:
                return built
            if round_number:
                time.sleep(random.uniform(0.01, 0.05) * round_number)  # writers racing: spread them out
            write_json_atomically(self.collection_path, built, indent=1, ensure_ascii=False)
        built = self.build(self.read_items())
        if self.read_collection() != built:
            # Others kept writing items all along: each wrote its item before our last read, and the last of them
            # to write the collection checks it afterwards, so the items read here end up linked without us.
            log.warning(
                "The STAC collection %s kept changing for %d rounds (other rows finishing); left to its last writer",
                self.uri,
                MAX_REFRESH_ROUNDS,
            )
        return built

    # -- reading ------------------------------------------------------------------------------------------------

    def read_collection(self) -> dict[str, Any] | None:
        try:
            return json.loads(_read_bytes(self.collection_path))
        except FileNotFoundError:
            return None
        except ValueError:  # not JSON (written by something else): rebuilt over
            return None

    def read_items(self) -> list[dict[str, Any]]:
        """Every item file, by id; a file that is not a readable item is skipped with a warning."""
        paths = _list_json(self.items_dir)
        items = []
        for path, payload in zip(paths, _read_many(paths), strict=True):
            if payload is None:
                continue  # gone between listing and reading: a concurrent replace; the next round sees it
            try:
                item = json.loads(payload)
            except ValueError:
                log.warning("Skipping %s: not JSON", path)
                continue
            if isinstance(item, dict) and item.get("type") == "Feature" and isinstance(item.get("id"), str):
                items.append(item)
            else:
                log.warning("Skipping %s: not a STAC item", path)
        return sorted(items, key=lambda item: item["id"])

    # -- the derived collection ---------------------------------------------------------------------------------

    def build(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The collection of ``items``: deterministic (no clock), so equal items give an equal document."""
        links = [{"rel": "root", "href": f"./{COLLECTION_FILENAME}", "type": "application/json"}]
        links += [
            {"rel": "item", "href": f"./{ITEMS_DIRNAME}/{item['id']}.json", "type": "application/geo+json"}
            for item in items
        ]
        collection = {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "id": self.job_table,
            "title": f"openEO batch {self.job_table}",
            "description": (
                f"Results of the openEO batch jobs of job table {self.job_table!r}, one item per finished row "
                "(airflow-provider-openeo)."
            ),
            "license": "other",
            "extent": {
                "spatial": {"bbox": [_union_bbox(items)]},
                "temporal": {"interval": [_interval(items)]},
            },
            "links": links,
        }
        return json.loads(json.dumps(collection))


def _union_bbox(items: Sequence[Mapping[str, Any]]) -> list[float]:
    boxes = [item["bbox"] for item in items if isinstance(item.get("bbox"), list) and len(item["bbox"]) == 4]
    if not boxes:
        return list(_WORLD)
    return [
        min(box[0] for box in boxes),
        min(box[1] for box in boxes),
        max(box[2] for box in boxes),
        max(box[3] for box in boxes),
    ]


def _interval(items: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """From the earliest start to the latest end (RFC 3339 UTC strings sort as times); open where an item is."""
    starts, ends = [], []
    for item in items:
        properties = item.get("properties") or {}
        instant = properties.get("datetime")
        starts.append(instant or properties.get("start_datetime"))
        ends.append(instant or properties.get("end_datetime"))
    if not items:
        return [None, None]
    start = None if any(s is None for s in starts) else min(starts)
    end = None if any(e is None for e in ends) else max(ends)
    return [start, end]


def _list_json(directory: StoragePath) -> list[StoragePath]:
    """The ``*.json`` files of ``directory`` (not hidden temporaries), read past an fsspec listing cache."""
    if is_object_storage(directory):
        with contextlib.suppress(Exception):  # a store without a cache
            directory.fs.invalidate_cache(directory.path)
    try:
        if not directory.exists():
            return []
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return []
    return sorted(
        (entry for entry in entries if entry.name.endswith(".json") and not entry.name.startswith(".")),
        key=lambda entry: entry.name,
    )


def _read_bytes(path: StoragePath) -> bytes:
    if is_object_storage(path):
        return path.fs.cat_file(path.path)
    return path.read_bytes()


def _read_many(paths: Sequence[StoragePath]) -> list[bytes | None]:
    """Each file's bytes (None: gone meanwhile); object stores fetch them in one concurrent ``cat``."""
    if not paths:
        return []
    if is_object_storage(paths[0]):
        fs = paths[0].fs
        found = fs.cat([p.path for p in paths], on_error="return")
        found = found if isinstance(found, dict) else {}
        payloads: list[bytes | None] = []
        for path in paths:
            value = found.get(path.path, found.get(fs._strip_protocol(path.path)))
            if value is None:  # keyed otherwise by this store: read it alone
                try:
                    value = fs.cat_file(path.path)
                except FileNotFoundError:
                    value = None
            payloads.append(value if isinstance(value, bytes) else None)
        return payloads
    payloads = []
    for path in paths:
        try:
            payloads.append(path.read_bytes())
        except FileNotFoundError:
            payloads.append(None)
    return payloads


# -- reading the product downstream -----------------------------------------------------------------------------


def open_collection(uri: str | StoragePath) -> Any:
    """The batch's collection as a ``pystac.Collection``, from a local path or an object store's URL.

    What an asset event's ``stac_collection`` says is enough: pystac reads local paths and http(s) URLs itself;
    other URLs (``s3://conn@bucket/...``) are read through Airflow's ``ObjectStoragePath`` and its connection.
    """
    import pystac

    return pystac.Collection.from_file(str(uri), stac_io=_storage_stac_io()())


def collection_rows(uri: str | StoragePath) -> Any:
    """One row per item of a batch's collection, for the ``job_source`` of a batch that works on its results.

    Columns: the item's row key fields (``openeo_provider:row``, e.g. ``temporal_extent``), ``title``,
    ``upstream_item`` (the item's absolute href: what ``load_stac`` reads), ``upstream_job_id``, and the item's
    geometry (WGS 84), in item order.
    """
    import geopandas as gpd
    import shapely.geometry

    records: list[dict[str, Any]] = []
    geometries: list[Any] = []
    for item in sorted(open_collection(uri).get_items(), key=lambda item: item.id):
        properties = item.properties
        record = dict(properties.get("openeo_provider:row") or {})
        record["title"] = properties.get("title") or item.id
        record["upstream_item"] = item.get_self_href()
        record["upstream_job_id"] = properties.get("openeo_provider:job_id")
        records.append(record)
        geometries.append(shapely.geometry.shape(item.geometry) if item.geometry else None)
    return gpd.GeoDataFrame(records, geometry=geometries, crs="EPSG:4326")


def _storage_stac_io() -> type:
    """Built when first needed, so importing this module (every results task does) does not import pystac."""
    import pystac.stac_io

    class StorageStacIO(pystac.stac_io.DefaultStacIO):
        """pystac's reader and writer, with object-store URLs going through ``ObjectStoragePath``."""

        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            href = str(source)
            if _on_object_storage(href):
                from airflow_provider_openeo.handlers._result_storage import as_storage_path

                return _read_bytes(as_storage_path(href)).decode("utf-8")
            return super().read_text(source, *args, **kwargs)

    return StorageStacIO


def _on_object_storage(href: str) -> bool:
    scheme = href.split("://", 1)[0].lower() if "://" in href else ""
    return bool(scheme) and scheme not in ("http", "https", "file")
