"""The local backend's collections: openeo-driver's dummy catalog plus the names production backends use.

User code written for a production backend names its collections (the README's MultiBackendJobManager script
loads ``SENTINEL2_L2A``, the Copernicus Data Space name); the dummy catalog has the same bands under
``SENTINEL2_L2A_SENTINELHUB`` only. Serving the production name lets that code run here as written: the openeo
client checks a collection's id and bands against ``GET /collections/{id}`` before it builds a graph.
"""

from __future__ import annotations

import copy
from typing import Any

from openeo_driver.dummy.dummy_backend import DummyCatalog

#: Production collection id -> the dummy collection whose metadata (bands, dimensions) it reuses.
PRODUCTION_ALIASES = {"SENTINEL2_L2A": "SENTINEL2_L2A_SENTINELHUB"}


def _with_aliases(collections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {collection["id"]: collection for collection in collections}
    aliases = []
    for alias, source in PRODUCTION_ALIASES.items():
        if alias not in by_id:
            collection = copy.deepcopy(by_id[source])
            collection.update(id=alias, title=f"{alias} (local copy of {source})")
            aliases.append(collection)
    return [*collections, *aliases]


class LocalCatalog(DummyCatalog):
    """The dummy catalog, plus :data:`PRODUCTION_ALIASES`."""

    _COLLECTIONS = _with_aliases(DummyCatalog._COLLECTIONS)
