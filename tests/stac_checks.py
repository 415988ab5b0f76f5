"""Checks of a batch's STAC collection shared by unit, example and live tests: it validates offline, as pystac reads it.

pystac (1.15) ships the STAC 1.1 core and GeoJSON JSON schemas (``pystac.validation.local_validator``) and its
``JsonSchemaSTACValidator`` looks them up before any network fetch; the items declare no STAC extension, so
``validate_all`` needs nothing from the network (which the tests could not reach).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pystac
import pystac.validation
from pystac.validation.local_validator import get_local_schema_cache


def assert_validates_offline(collection_path: Path | str) -> pystac.Collection:
    """``pystac.validation.validate_all`` on the collection and every item, with only the bundled schemas."""
    document = json.loads(Path(collection_path).read_text())
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
        pystac.validation.validate_all(document, str(collection_path))
    finally:
        validator._get_schema = original  # type: ignore[attr-defined]
    assert not fetched, f"validation wanted schemas from the network: {fetched}"
    return pystac.Collection.from_file(str(collection_path))


def items_by_row(collection: pystac.Collection) -> dict[Any, pystac.Item]:
    """The collection's items keyed by the row id they record."""
    items = list(collection.get_items())
    by_row = {item.properties["openeo_provider:row_id"]: item for item in items}
    assert len(by_row) == len(items), "one item per row"
    return by_row
