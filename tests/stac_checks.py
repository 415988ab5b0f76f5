"""Checks of a batch's STAC collection shared by unit, example and live tests: it validates offline, as pystac reads it.

pystac (1.15) ships the STAC 1.1 core and GeoJSON JSON schemas (``pystac.validation.local_validator``) and its
``JsonSchemaSTACValidator`` looks them up before any network fetch; the items declare no STAC extension, so
validation needs nothing from the network (which the tests could not reach). A schema it would still fetch fails
the check, naming it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pystac
import pystac.validation
from pystac.validation.local_validator import get_local_schema_cache


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    cached = set(get_local_schema_cache())
    validator = pystac.validation.RegisteredValidator.get_validator()
    fetched: list[str] = []
    original = validator._get_schema  # type: ignore[attr-defined]

    def offline(uri: str) -> dict[str, Any]:
        if uri not in cached:
            fetched.append(uri)
        return original(uri)

    validator._get_schema = offline  # type: ignore[attr-defined]
    try:
        yield
    finally:
        validator._get_schema = original  # type: ignore[attr-defined]
    assert not fetched, f"validation wanted schemas from the network: {fetched}"


def assert_validates_offline(collection_path: Any) -> pystac.Collection:
    """Validate the collection and every item it links with only the bundled schemas; return it as pystac reads it.

    A local path goes through ``pystac.validation.validate_all`` and ``Collection.from_file``; an object-store path
    (a ``UPath``: pystac cannot reach its endpoint) is read through its own filesystem, each document validated
    with ``validate_dict`` and the collection assembled from them.
    """
    if isinstance(collection_path, (str, Path)):
        document = json.loads(Path(collection_path).read_text())
        with _offline():
            pystac.validation.validate_all(document, str(collection_path))
        return pystac.Collection.from_file(str(collection_path))
    document = json.loads(collection_path.read_text())
    items = []
    with _offline():
        pystac.validation.validate_dict(document)
        for link in document["links"]:
            if link["rel"] == "item":
                item = json.loads((collection_path.parent / link["href"].removeprefix("./")).read_text())
                pystac.validation.validate_dict(item)
                items.append(item)
    collection = pystac.Collection.from_dict({**document, "links": []})
    collection.add_items([pystac.Item.from_dict({**item, "links": []}) for item in items])
    return collection


def items_by_row(collection: pystac.Collection) -> dict[Any, pystac.Item]:
    """The collection's items keyed by the row id they record."""
    items = list(collection.get_items())
    by_row = {item.properties["openeo_provider:row_id"]: item for item in items}
    assert len(by_row) == len(items), "one item per row"
    return by_row
