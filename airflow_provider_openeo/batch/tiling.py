"""A job source made of tiles: an area of interest split by openeo's own ``split_area``, one row per tile.

Tiling a region into jobs is the commonest batch there is, and openeo (0.50+) ships the splitting itself
(``openeo.extra.job_management.split_area``: a tile size in a projection, or a grid of your own). This module only
brings the area into the form ``split_area`` takes, names the tiles, and gives rows ``openeo_job_batch`` loads::

    job_source=TiledArea({"west": 5.0, "south": 51.0, "east": 5.2, "north": 51.1}, tile_size=0.05,
                         projection="EPSG:4326", columns={"temporal_extent": ["2024-05-01", "2024-09-01"]})

The area may be a bounding-box dict (``west``/``south``/``east``/``north``, optional ``crs``), GeoJSON (a geometry,
a Feature or a FeatureCollection: WGS 84 by definition), a shapely geometry (in ``aoi_crs``), a GeoDataFrame or
GeoSeries (in its own CRS), or a path to a file geopandas reads. The tiles are split in the grid's projection and
handed to the rows in ``output_crs`` (WGS 84 by default: a GeoJSON process parameter, which
``ProcessBasedJobCreator`` fills from the geometry column, must be in WGS 84). The split runs once, when the DAG
file is parsed, so a bad area or tile size is an import error naming it, not a failed run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import geopandas as gpd
import shapely
import shapely.geometry

from airflow_provider_openeo.exceptions import TilingError

__all__ = ["TiledArea", "TilingError"]

_BBOX_KEYS = frozenset({"west", "south", "east", "north"})
_GEOJSON_GEOMETRIES = frozenset({"Polygon", "MultiPolygon", "GeometryCollection"})


class TiledArea:
    """A job source: one row per tile of ``aoi``; call it (``(context) -> GeoDataFrame``) or pass it as it is.

    :param aoi: the area of interest (see the module doc for the forms it may take).
    :param tile_size: tile edge length in the unit of ``projection`` (metres for most projected CRSs, degrees for
        EPSG:4326); with ``projection``, instead of ``tile_grid``.
    :param projection: the CRS the tiles are cut in, e.g. ``"EPSG:3035"``.
    :param tile_grid: a grid of your own (a GeoDataFrame with a CRS: the tiles that touch the area are the rows).
    :param aoi_crs: the CRS of a shapely ``aoi`` (GeoJSON is always WGS 84; frames carry their own).
    :param output_crs: the CRS of the rows' geometry; None keeps the grid's.
    :param columns: values every row gets (``{"temporal_extent": [...]}``); a column of the grid keeps its values.
    :param title: the rows' ``title`` (their label in the UI), formatted with ``index``.
    """

    def __init__(
        self,
        aoi: Any,
        *,
        tile_size: float | None = None,
        projection: str | int | None = None,
        tile_grid: gpd.GeoDataFrame | None = None,
        aoi_crs: str | int = "EPSG:4326",
        output_crs: str | int | None = "EPSG:4326",
        columns: Mapping[str, Any] | None = None,
        title: str = "tile {index}",
    ) -> None:
        if tile_grid is None and (tile_size is None or projection is None):
            raise TilingError("tiling: give tile_size and projection (tiles cut to size), or tile_grid (your grid)")
        if tile_grid is not None and (tile_size is not None or projection is not None):
            raise TilingError("tiling: tile_grid cannot be combined with tile_size or projection")
        if tile_size is not None and (isinstance(tile_size, bool) or not isinstance(tile_size, (int, float))):
            raise TilingError(f"tiling: tile_size must be a number, got {tile_size!r}")
        if tile_grid is not None and (not isinstance(tile_grid, gpd.GeoDataFrame) or tile_grid.crs is None):
            raise TilingError("tiling: tile_grid must be a GeoDataFrame with a CRS")
        self.tile_size = tile_size
        self.projection = projection
        self.tile_grid = tile_grid
        self.aoi_crs = aoi_crs
        self.output_crs = output_crs
        self.columns = dict(columns or {})
        self.title = title
        self.aoi = aoi
        self._tiles = self._split()

    def __call__(self, context: Any = None) -> gpd.GeoDataFrame:
        return self._tiles.copy()

    def __len__(self) -> int:
        return len(self._tiles)

    def __repr__(self) -> str:
        how = f"tile_size={self.tile_size!r}, projection={self.projection!r}" if self.tile_grid is None else "grid"
        return f"TiledArea({len(self)} tiles, {how})"

    @property
    def __name__(self) -> str:  # job_source's label in the init task's log
        return repr(self)

    def _split(self) -> gpd.GeoDataFrame:
        from openeo.extra.job_management import split_area
        from openeo.extra.job_management._job_splitting import JobSplittingFailure

        grid_crs = self.tile_grid.crs if self.tile_grid is not None else self.projection
        area = _area_in(self.aoi, self.aoi_crs, grid_crs)
        try:
            with _quiet_about_crs():
                if self.tile_grid is not None:
                    tiles = split_area(area, tile_grid=self.tile_grid)
                else:
                    tiles = split_area(
                        area, projection=str(_crs_text(self.projection)), tile_size=float(self.tile_size)
                    )
        except JobSplittingFailure as exc:
            raise TilingError(f"tiling: {exc}") from None
        if len(tiles) == 0:
            raise TilingError("tiling: no tile touches the area of interest")
        tiles = tiles.reset_index(drop=True)
        if self.output_crs is not None:
            tiles = tiles.to_crs(self.output_crs)
        for name, value in self.columns.items():
            tiles[name] = [value] * len(tiles)
        if "title" not in tiles.columns:
            try:
                tiles["title"] = [self.title.format(index=i) for i in range(len(tiles))]
            except (KeyError, IndexError, ValueError) as exc:
                raise TilingError(f"tiling: title {self.title!r} cannot be formatted with index: {exc}") from None
        geometry = tiles.geometry.name
        return tiles[[*(c for c in tiles.columns if c != geometry), geometry]]


@contextlib.contextmanager
def _quiet_about_crs() -> Iterator[None]:
    """``split_area`` warns that a bare polygon is "assumed" to be in the grid's CRS; ours is, by
    :func:`_area_in`'s reprojection, and the DAG processor would log that warning at every parse."""
    splitting_log = logging.getLogger("openeo.extra.job_management._job_splitting")
    level = splitting_log.level
    splitting_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        splitting_log.setLevel(level)


def _crs_text(crs: str | int) -> str:
    return f"EPSG:{crs}" if isinstance(crs, int) else str(crs)


def _area_in(aoi: Any, aoi_crs: str | int, grid_crs: Any) -> Any:
    """The area as ``split_area`` takes it: a bbox dict (it reprojects those itself) or a polygon in the grid's CRS."""
    if isinstance(aoi, Mapping) and set(aoi) >= _BBOX_KEYS:
        # A bbox without a CRS is in aoi_crs (split_area would take it for the grid's own units).
        return {**aoi, "crs": aoi.get("crs") or _crs_text(aoi_crs)}
    if isinstance(aoi, (str, os.PathLike)):
        try:
            aoi = gpd.read_file(aoi) if not str(aoi).endswith(".parquet") else gpd.read_parquet(aoi)
        except Exception as exc:
            raise TilingError(f"tiling: cannot read the area of interest from {str(aoi)!r}: {exc}") from None
    if isinstance(aoi, Mapping):
        frame = _geojson_frame(aoi)
    elif isinstance(aoi, (gpd.GeoDataFrame, gpd.GeoSeries)):
        if aoi.crs is None:
            raise TilingError("tiling: the area of interest's GeoDataFrame has no CRS")
        frame = gpd.GeoDataFrame(geometry=gpd.GeoSeries(aoi.geometry), crs=aoi.crs)
    elif isinstance(aoi, shapely.Geometry):
        frame = gpd.GeoDataFrame(geometry=[aoi], crs=_crs_text(aoi_crs) if isinstance(aoi_crs, int) else aoi_crs)
    else:
        raise TilingError(
            f"tiling: the area of interest must be a bbox dict, GeoJSON, a shapely geometry, a GeoDataFrame or a "
            f"file path, got {type(aoi).__name__}"
        )
    area = frame.to_crs(grid_crs).geometry.union_all()
    if area.is_empty or area.geom_type not in ("Polygon", "MultiPolygon"):
        raise TilingError(f"tiling: the area of interest must be polygonal, got {area.geom_type}")
    return area


def _geojson_frame(document: Mapping[str, Any]) -> gpd.GeoDataFrame:
    kind = document.get("type")
    try:
        if kind == "FeatureCollection":
            return gpd.GeoDataFrame.from_features(document["features"], crs="EPSG:4326")
        if kind == "Feature":
            return gpd.GeoDataFrame.from_features([document], crs="EPSG:4326")
        if kind in _GEOJSON_GEOMETRIES:
            return gpd.GeoDataFrame(geometry=[shapely.geometry.shape(document)], crs="EPSG:4326")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TilingError(f"tiling: the area of interest is not valid GeoJSON: {exc}") from None
    raise TilingError(
        f"tiling: the area of interest is a dict but neither a bbox (west, south, east, north) nor polygonal GeoJSON "
        f"(type {kind!r})"
    )
