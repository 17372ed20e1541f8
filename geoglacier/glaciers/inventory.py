"""Read a glacier inventory (RGI 6.0 / 7.0, GLIMS, any polygon layer GDAL reads).

:func:`read_inventory` opens a GeoPackage, shapefile, zipped shapefile (as RGI ships
them), GeoJSON or anything else OGR reads, finds the id, name and area columns,
repairs or drops bad geometries (with one warning that says how many), reprojects
the outlines onto a target CRS (the mask's) and keeps those that reach a given
footprint. Every outline gets its true (geodesic) area and perimeter, measured on the
ellipsoid of the target CRS after densifying its edges, so they agree with
:mod:`geoglacier.measure.areas` whatever the projection.

Problems with the file itself are :class:`~geoglacier.errors.InventoryError` (a
``ValueError``) with a one-line message that names the file and the fix.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely
from affine import Affine
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from geoglacier.errors import (
    CRSMissingError,
    GeoglacierWarning,
    InventoryError,
    NoOverlapError,
    SceneNotFoundError,
)
from geoglacier.glaciers.outline_dates import DATE_COLUMNS, parse_inventory_date
from geoglacier.measure.areas import CRSLike, crs_label, to_pyproj_crs

ID_COLUMNS: tuple[str, ...] = ("RGIId", "rgi_id", "glac_id", "anlys_id")
"""Id columns looked for, in order: RGI 6.0, RGI 7.0, GLIMS (glacier id, then analysis id)."""

FEATURE_NUMBER: str = "(feature number)"
"""The :attr:`Inventory.id_column` of outlines numbered in file order (no id column needed)."""

NAME_COLUMNS: tuple[str, ...] = ("Name", "glac_name", "name")
AREA_COLUMNS: tuple[str, ...] = ("Area", "area_km2", "db_area")
"""Inventory area attributes (km2) carried into the table: RGI 6.0, RGI 7.0, GLIMS."""

GLIMS_LINE_TYPE: str = "line_type"
GLIMS_GLACIER: str = "glac_bound"
GLIMS_ROCK: str = "intrnl_rock"
"""GLIMS downloads hold one ``glac_bound`` polygon per analysis and its nunataks as
separate ``intrnl_rock`` polygons (plus debris cover, lakes ... as other line types)."""

VECTOR_SUFFIXES: tuple[str, ...] = (".shp", ".gpkg", ".geojson", ".json", ".fgb", ".gml", ".kml")

SEGMENT_M: float = 500.0
"""Longest outline segment, in metres, before reprojection (straight lines bend between CRSs)."""

Bounds = tuple[float, float, float, float]


class InventoryWarning(GeoglacierWarning):
    """Some outlines of an inventory were repaired or dropped."""


@dataclass(frozen=True)
class Inventory:
    """Glacier outlines on a target CRS, one row per glacier, in the file's order.

    Attributes:
        source: the file (or GDAL path) read.
        layer: the layer read.
        id_column, name_column, area_column: the columns used (``None``: not in the file).
        crs: the CRS of :attr:`geometries` (the mask's).
        ids: glacier ids, as strings, unique.
        names: glacier names (``None`` where the file has none).
        inventory_area_km2: the inventory's own area attribute (NaN where absent).
        geometries: (Multi)Polygons in :attr:`crs`.
        outline_area_km2: true (geodesic) area of each whole outline.
        perimeter_km: true (geodesic) length of each outline, holes included.
        total_read: features read before the footprint filter (after the bbox prefilter).
        dropped_empty: features dropped because their geometry was empty or not polygonal.
        repaired: features whose invalid geometry was repaired (``shapely.make_valid``).
        date_column: the outline date column (RGI 6.0 ``BgnDate``, RGI 7.0 / GLIMS
            ``src_date``; ``None``: not in the file).
        dates: each outline's date (``None`` where unknown; see
            :func:`~geoglacier.glaciers.outline_dates.parse_inventory_date`).
    """

    source: str
    layer: str
    id_column: str
    name_column: str | None
    area_column: str | None
    crs: pyproj.CRS
    ids: tuple[str, ...]
    names: tuple[str | None, ...]
    inventory_area_km2: np.ndarray
    geometries: np.ndarray
    outline_area_km2: np.ndarray
    perimeter_km: np.ndarray
    total_read: int = 0
    dropped_empty: int = 0
    repaired: int = 0
    date_column: str | None = None
    dates: tuple[dt.date | None, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: np.ndarray) -> Inventory:
        """The glaciers where the boolean array ``keep`` is true, in the same order."""
        keep = np.asarray(keep, dtype=bool)
        return replace(
            self,
            ids=tuple(i for i, k in zip(self.ids, keep, strict=True) if k),
            names=tuple(n for n, k in zip(self.names, keep, strict=True) if k),
            inventory_area_km2=self.inventory_area_km2[keep],
            geometries=self.geometries[keep],
            outline_area_km2=self.outline_area_km2[keep],
            perimeter_km=self.perimeter_km[keep],
            dates=tuple(d for d, k in zip(self.dates, keep, strict=True) if k) if self.dates else (),
        )


def _segment_length(crs: pyproj.CRS) -> float:
    """:data:`SEGMENT_M` in the CRS's units."""
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else None
    if crs.is_geographic:
        return SEGMENT_M / (crs.ellipsoid.semi_major_metre * (factor or math.pi / 180))
    return SEGMENT_M / (factor or 1.0)


def _transform_geoms(geoms: np.ndarray, transformer: pyproj.Transformer) -> np.ndarray:
    def move(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1], errcheck=False)
        return np.column_stack([x, y])

    return shapely.transform(geoms, move)


def reproject_geometries(
    geoms: Sequence[BaseGeometry] | np.ndarray, src: CRSLike, dst: CRSLike
) -> np.ndarray:
    """Reproject geometries from ``src`` to ``dst``, densifying edges first (:data:`SEGMENT_M`)."""
    src_crs, dst_crs = to_pyproj_crs(src), to_pyproj_crs(dst)
    arr = np.asarray(geoms, dtype=object)
    if src_crs == dst_crs:
        return arr
    dense = shapely.segmentize(arr, _segment_length(src_crs))
    return _transform_geoms(dense, pyproj.Transformer.from_crs(src_crs, dst_crs, always_xy=True))


def geodesic_area_perimeter(
    geoms: Sequence[BaseGeometry] | np.ndarray, crs: CRSLike
) -> tuple[np.ndarray, np.ndarray]:
    """True area (km2) and perimeter (km) of polygons in ``crs``, on that CRS's ellipsoid.

    Edges are densified to :data:`SEGMENT_M` before they are moved to longitude/latitude,
    so a straight map edge is measured as the curve it is on the ellipsoid.
    """
    pcrs = to_pyproj_crs(crs)
    geodetic = pcrs.geodetic_crs
    geod = geodetic.get_geod()
    arr = np.asarray(geoms, dtype=object)
    if pcrs.is_geographic:
        lonlat = _transform_geoms(arr, pyproj.Transformer.from_crs(pcrs, geodetic, always_xy=True))
    else:
        lonlat = reproject_geometries(arr, pcrs, geodetic)
    areas = np.zeros(len(arr))
    perims = np.zeros(len(arr))
    for i, geom in enumerate(lonlat):
        if geom is None or geom.is_empty:
            continue
        for part in getattr(geom, "geoms", [geom]):
            if part.geom_type != "Polygon" or part.is_empty:
                continue
            a, p = geod.geometry_area_perimeter(orient(part, sign=1.0))
            areas[i] += a
            perims[i] += p
    return areas / 1e6, perims / 1e3


def _open_path(path: str | os.PathLike[str], layer: str | None) -> tuple[str, str | None]:
    """The GDAL path of the vector data (zip archives through /vsizip/) and the layer hint."""
    text = os.fspath(path)
    if text.startswith(("/vsi", "zip://", "zip+")):
        return text, layer
    p = Path(text)
    if not p.exists():
        raise SceneNotFoundError(f"{p}: inventory not found; check the path")
    if p.suffix.lower() != ".zip":
        return str(p), layer
    try:
        with zipfile.ZipFile(p) as zf:
            members = [n for n in zf.namelist() if Path(n).suffix.lower() in VECTOR_SUFFIXES]
    except zipfile.BadZipFile as exc:
        raise InventoryError(
            f"{p}: not a readable zip archive ({exc}); download the inventory again"
        ) from exc
    if not members:
        raise InventoryError(
            f"{p}: the zip archive holds no vector file ({', '.join(VECTOR_SUFFIXES)}); "
            "unpack it and pass the outline file"
        )
    if len(members) > 1 and layer is not None:
        chosen = [m for m in members if Path(m).stem == layer]
        if chosen:
            return f"/vsizip/{p.resolve()}/{chosen[0]}", None
    if len(members) > 1:
        raise InventoryError(
            f"{p}: the zip archive holds {len(members)} vector files ({', '.join(members[:5])}); "
            "pass --layer with the one to use (its name without extension)"
        )
    return f"/vsizip/{p.resolve()}/{members[0]}", layer


def _pick_layer(gdal_path: str, shown: str, layer: str | None) -> str:
    import fiona

    try:
        layers = fiona.listlayers(gdal_path)
    except Exception as exc:  # noqa: BLE001 - fiona raises several DriverError flavours
        raise InventoryError(
            f"{shown}: not a vector file GDAL can read ({str(exc).splitlines()[0] if str(exc) else exc}); "
            "pass a GeoPackage, shapefile (or its .zip) or GeoJSON of glacier outlines"
        ) from exc
    if layer is not None:
        if layer not in layers:
            raise InventoryError(f"{shown}: no layer {layer!r}; its layers are {', '.join(layers)}")
        return layer
    if len(layers) == 1:
        return layers[0]
    if "glaciers" in layers:
        return "glaciers"
    raise InventoryError(
        f"{shown}: {len(layers)} layers ({', '.join(layers[:6])}); pass --layer with the one holding the outlines"
    )


def _find_column(columns: Sequence[str], wanted: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for name in wanted:
        if name in columns:
            return name
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def _choose_id_column(
    columns: Sequence[str], values: dict[str, list[Any]], id_column: str | None, shown: str
) -> str:
    if id_column is not None:
        if id_column not in columns:
            held = f"its columns are {', '.join(columns)}" if columns else "it has no attribute columns"
            raise InventoryError(f"{shown}: no column {id_column!r} for --id-column; {held}")
        return id_column
    present = []
    for name in ID_COLUMNS:
        col = _find_column(columns, [name])
        if col is not None and col not in present:
            present.append(col)
    if not columns:
        raise InventoryError(
            f"{shown}: the outlines have no attribute columns, so nothing names the glaciers; "
            "add an id column (e.g. RGIId) and name it with --id-column"
        )
    if not present:
        raise InventoryError(
            f"{shown}: no glacier id column ({', '.join(ID_COLUMNS)}); its columns are "
            f"{', '.join(columns[:12])}; name one with --id-column"
        )
    for col in present:  # GLIMS: glac_id repeats across analyses, anlys_id does not
        vals = values[col]
        if None not in vals and len(set(map(str, vals))) == len(vals):
            return col
    return present[0]


def _warn_repeated_glacier_ids(
    columns: Sequence[str], values: dict[str, list[Any]], id_col: str, shown: str
) -> None:
    """Warn when GLIMS ``glac_id`` repeats and each analysis became a glacier of its own.

    Analyses of one glacier at several dates overlap; a pixel goes to the one listed
    first, so the others show too little area and a low coverage in a clear scene.
    """
    glac = _find_column(columns, ["glac_id"])
    if glac is None or glac == id_col:
        return
    counts: dict[str, int] = {}
    for v in values[glac]:
        counts[str(v)] = counts.get(str(v), 0) + 1
    repeated = [k for k, n in counts.items() if n > 1]
    if not repeated:
        return
    n = len(repeated)
    warnings.warn(
        f"{shown}: {n} glacier{'' if n == 1 else 's'} (e.g. {repeated[0]}) "
        f"{'has' if n == 1 else 'have'} several analyses ({glac} repeats), so each analysis is a row, "
        f"named by {id_col}; where analyses of one glacier overlap, the pixels go to the one listed "
        "first and the others show too little area; keep one analysis per glacier (e.g. "
        "ogr2ogr -where \"anlys_time >= '2015'\") for per-glacier areas",
        InventoryWarning,
        stacklevel=3,
    )


def _check_ids(ids: list[Any], column: str, shown: str) -> tuple[str, ...]:
    missing = sum(v is None or (isinstance(v, str) and not v.strip()) for v in ids)
    if missing:
        raise InventoryError(
            f"{shown}: {missing} glacier(s) have no value in id column {column!r}; "
            "fill it in or name another column with --id-column"
        )
    out = tuple(str(v) for v in ids)
    seen: set[str] = set()
    dups: list[str] = []
    for v in out:
        if v in seen:
            dups.append(v)
        seen.add(v)
    if dups:
        shown_dups = ", ".join(sorted(set(dups))[:3])
        raise InventoryError(
            f"{shown}: id column {column!r} is not unique ({len(dups)} repeated, e.g. {shown_dups}); "
            "name a unique column with --id-column"
        )
    return out


def _ids_or_numbers(
    columns: Sequence[str], values: dict[str, list[Any]], count: int, shown: str
) -> tuple[str, tuple[str, ...]]:
    """The usual id column where there is a unique one, else feature numbers ``1..n``."""
    try:
        col = _choose_id_column(columns, values, None, shown)
        return col, _check_ids(values[col], col, shown)
    except InventoryError:
        return FEATURE_NUMBER, tuple(str(i + 1) for i in range(count))


def _polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygonal part of a geometry (make_valid may return a collection), or None."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return None if geom.is_empty else geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return None
    merged = shapely.union_all(parts)
    return None if merged.is_empty else merged


def footprint(transform: Affine, height: int, width: int) -> BaseGeometry:
    """The polygon a grid covers, in its own CRS (rotated grids included)."""
    corners = [
        transform * (0, 0),
        transform * (width, 0),
        transform * (width, height),
        transform * (0, height),
    ]
    return shapely.Polygon(corners)


def area_outside_km2(inventory: Inventory, region: BaseGeometry) -> np.ndarray:
    """True area (km2) of each outline outside ``region`` (0 for outlines within it).

    With a grid's :func:`footprint` as ``region``, ``zone area + this`` is the outline's
    area as the grid would see it whole: the denominator of a coverage that scene edges
    lower but pixel discretization and overlaps with other outlines do not.
    """
    out = np.zeros(len(inventory))
    partial = ~shapely.within(inventory.geometries, region)
    if partial.any():
        inside = shapely.intersection(inventory.geometries[partial], region)
        inside_area, _ = geodesic_area_perimeter(inside, inventory.crs)
        out[partial] = np.maximum(inventory.outline_area_km2[partial] - inside_area, 0.0)
    return out


def read_inventory(
    path: str | os.PathLike[str],
    crs: CRSLike | None,
    *,
    region: BaseGeometry | None = None,
    id_column: str | None = None,
    layer: str | None = None,
    ids_required: bool = True,
) -> Inventory:
    """Read glacier outlines, reproject them to ``crs`` and keep those that touch ``region``.

    Args:
        path: GeoPackage, shapefile, zipped shapefile, GeoJSON, ... (any OGR vector source;
            ``/vsizip/`` paths too).
        crs: target CRS (the mask's), in which geometries, ``region`` and the areas live;
            ``None`` keeps the file's own CRS (to check an inventory before any mask exists).
        region: polygon in ``crs`` (a mask's :func:`footprint`); ``None`` keeps everything.
        id_column: the id column; default the first of :data:`ID_COLUMNS` present and unique.
        layer: the layer (or, in a zip with several files, the file stem) to read.
        ids_required: ``False`` where glaciers need no names (burning labels): without
            ``id_column`` and without a unique id column, outlines are numbered from 1
            (:data:`FEATURE_NUMBER`) instead of refused.

    Returns:
        An :class:`Inventory` in ``crs``.

    Raises:
        SceneNotFoundError: ``path`` does not exist.
        InventoryError: unreadable file, no CRS, id column missing or not unique, no
            polygon left, or none of the outlines touches ``region``.

    Warns:
        InventoryWarning: outlines with empty or non-polygonal geometry were dropped, or
        invalid ones repaired; or, in a GLIMS download, nunataks were cut out of their
        glaciers and other line types left out; the warning says how many.
    """
    shown = os.fspath(path)
    layer_name, src_crs, target, columns, features = _read_layer(path, crs, layer, shown)
    props, geoms = _glims_glaciers(columns, *features, shown)
    values = {c: [p.get(c) for p in props] for c in columns}
    if ids_required or id_column is not None:
        id_col = _choose_id_column(columns, values, id_column, shown)
        ids = _check_ids(values[id_col], id_col, shown)
        if id_column is None:
            _warn_repeated_glacier_ids(columns, values, id_col, shown)
    else:
        id_col, ids = _ids_or_numbers(columns, values, len(props), shown)
    name_col = _find_column(columns, NAME_COLUMNS)
    area_col = _find_column(columns, AREA_COLUMNS)
    date_col = _find_column(columns, DATE_COLUMNS)
    total = len(ids)

    keep, polys, repaired, empty = _clean_geometries(geoms)
    if empty or repaired:
        what = []
        if empty:
            what.append(f"dropped {empty} with empty or non-polygon geometry")
        if repaired:
            what.append(f"repaired {repaired} invalid geometr{'y' if repaired == 1 else 'ies'}")
        warnings.warn(f"{shown}: {' and '.join(what)} (of {total} glaciers)", InventoryWarning, stacklevel=2)
    if not polys:
        raise InventoryError(f"{shown}: no usable glacier polygon among {total} features; check the layer")

    keep, moved = _place_outlines(keep, polys, src_crs, target, region, shown, total - empty)
    area, perim = geodesic_area_perimeter(moved, target)
    inv_area = _inventory_areas(values, area_col, keep)
    names = tuple(
        (None if values[name_col][k] in (None, "") else str(values[name_col][k])) if name_col else None
        for k in keep
    )
    return Inventory(
        source=shown,
        layer=layer_name,
        id_column=id_col,
        name_column=name_col,
        area_column=area_col,
        crs=target,
        ids=tuple(ids[k] for k in keep),
        names=names,
        inventory_area_km2=inv_area,
        geometries=moved,
        outline_area_km2=area,
        perimeter_km=perim,
        total_read=total,
        dropped_empty=empty,
        repaired=repaired,
        date_column=date_col,
        dates=tuple(parse_inventory_date(values[date_col][k]) if date_col else None for k in keep),
    )


def _read_layer(
    path: str | os.PathLike[str], crs: CRSLike | None, layer: str | None, shown: str
) -> tuple[str, pyproj.CRS, pyproj.CRS, list[str], tuple[list[dict[str, Any]], list[BaseGeometry | None]]]:
    """Open the layer and read it whole: ``(layer name, source CRS, target CRS, columns, features)``."""
    import fiona

    gdal_path, layer_hint = _open_path(path, layer)
    layer_name = _pick_layer(gdal_path, shown, layer_hint)
    try:
        with fiona.open(gdal_path, layer=layer_name) as src:
            if not src.crs:
                raise InventoryError(
                    f"{shown}: the outlines have no CRS; assign one (e.g. ogr2ogr -a_srs EPSG:4326 ...)"
                )
            src_crs = pyproj.CRS.from_user_input(src.crs.to_wkt())
            target = src_crs if crs is None else to_pyproj_crs(crs)
            columns = list(src.schema["properties"])
            features = _read_features(src)
    except InventoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - fiona/GDAL read errors become one line
        raise InventoryError(
            f"{shown}: cannot read layer {layer_name!r} ({str(exc).splitlines()[0] if str(exc) else exc}); "
            "check the file (e.g. with ogrinfo)"
        ) from exc
    return layer_name, src_crs, target, columns, features


def _glims_glaciers(
    columns: list[str], props: list[dict[str, Any]], geoms: list[BaseGeometry | None], shown: str
) -> tuple[list[dict[str, Any]], list[BaseGeometry | None]]:
    """The glaciers of a GLIMS download: its ``glac_bound`` polygons, nunataks cut out.

    GLIMS gives each analysis one boundary polygon and its internal rock outcrops as
    separate ``intrnl_rock`` features with the same ``anlys_id`` (or ``glac_id``); taking
    every feature as a glacier would repeat ids and count nunatak, debris and lake
    polygons as glaciers. Files without a GLIMS ``line_type`` column pass unchanged.

    Warns:
        InventoryWarning: rock outcrops were cut out or other line types left out (with counts).
    """
    col = _find_column(columns, [GLIMS_LINE_TYPE])
    kinds = [str(p.get(col) or "").strip().lower() for p in props] if col else []
    if GLIMS_GLACIER not in kinds:
        return props, geoms
    key = _find_column(columns, ["anlys_id"]) or _find_column(columns, ["glac_id"])
    rocks: dict[Any, list[BaseGeometry]] = {}
    others: dict[str, int] = {}
    for p, g, kind in zip(props, geoms, kinds, strict=True):
        if kind == GLIMS_ROCK:
            if g is not None and not g.is_empty:
                rocks.setdefault(p.get(key) if key else None, []).append(shapely.make_valid(g))
        elif kind != GLIMS_GLACIER:
            others[kind or "(none)"] = others.get(kind or "(none)", 0) + 1
    out_props, out_geoms, cut = [], [], set()
    for p, g, kind in zip(props, geoms, kinds, strict=True):
        if kind != GLIMS_GLACIER:
            continue
        holes = rocks.get(p.get(key) if key else None, [])
        if g is not None and not g.is_empty and holes:
            glacier = shapely.make_valid(g)
            inside = [r for r in holes if r.intersects(glacier)]
            if inside:
                g = glacier.difference(shapely.union_all(inside))
                cut.update(id(r) for r in inside)  # a rock inside two outlines counts once
        out_props.append(p)
        out_geoms.append(g)
    n_rocks = sum(len(v) for v in rocks.values())
    if n_rocks or others:
        what = [f"kept {len(out_props)} glacier outlines ({GLIMS_GLACIER})"]
        if n_rocks:
            what.append(f"cut {len(cut)} internal rock outcrop(s) ({GLIMS_ROCK}) out of them")
            if n_rocks > len(cut):
                what.append(
                    f"left out {n_rocks - len(cut)} {GLIMS_ROCK} polygon(s) inside no glacier of their analysis"
                )
        if others:
            listed = ", ".join(f"{n} {k}" for k, n in sorted(others.items()))
            what.append(f"left out {sum(others.values())} other feature(s) ({listed})")
        warnings.warn(f"{shown}: GLIMS line types: {'; '.join(what)}", InventoryWarning, stacklevel=3)
    return out_props, out_geoms


def _clean_geometries(
    geoms: list[BaseGeometry | None],
) -> tuple[list[int], list[BaseGeometry], int, int]:
    """Polygonal outlines, invalid ones repaired: ``(kept indices, polygons, repaired, empty)``."""
    keep, polys, repaired, empty = [], [], 0, 0
    for i, g in enumerate(geoms):
        if g is None or g.is_empty:
            empty += 1
            continue
        if not g.is_valid:
            g = shapely.make_valid(g)
            repaired += 1
        g = _polygonal(g)
        if g is None:
            empty += 1
            continue
        keep.append(i)
        polys.append(g)
    return keep, polys, repaired, empty


def _place_outlines(
    keep: list[int],
    polys: list[BaseGeometry],
    src_crs: pyproj.CRS,
    target: pyproj.CRS,
    region: BaseGeometry | None,
    shown: str,
    usable: int,
) -> tuple[list[int], np.ndarray]:
    """Keep the outlines near ``region``, reproject them to ``target`` and keep those touching it.

    Raises:
        NoOverlapError: none of the ``usable`` outlines of ``shown`` touches ``region``.
    """
    near = _near_region(polys, src_crs, target, region)
    keep = [k for k, ok in zip(keep, near, strict=True) if ok]
    polys = [g for g, ok in zip(polys, near, strict=True) if ok]
    if not polys:
        raise NoOverlapError(
            f"{shown}: none of its {usable} outlines overlaps the mask "
            f"({crs_label(target)}); is it the inventory of this region?"
        )
    moved = reproject_geometries(np.asarray(polys, dtype=object), src_crs, target)
    valid_now = shapely.is_valid(moved)
    if not valid_now.all():  # reprojection can fold tiny slivers; keep only polygonal parts
        fixed = [
            g if ok else (_polygonal(shapely.make_valid(g)) or g)
            for g, ok in zip(moved, valid_now, strict=True)
        ]
        moved = np.asarray(fixed, dtype=object)
    if region is not None:
        inside = shapely.intersects(moved, region)
        if not inside.any():
            raise NoOverlapError(
                f"{shown}: none of its {usable} outlines overlaps the mask "
                f"({crs_label(target)}); is it the inventory of this region?"
            )
        keep = [k for k, ok in zip(keep, inside, strict=True) if ok]
        moved = moved[inside]
    return keep, moved


def _inventory_areas(values: dict[str, list[Any]], area_col: str | None, keep: list[int]) -> np.ndarray:
    """The inventory's own area attribute of the kept outlines (NaN where absent or not a number)."""
    inv_area = np.full(len(keep), np.nan)
    if area_col is not None:
        for j, k in enumerate(keep):
            v = values[area_col][k]
            try:
                inv_area[j] = float(v) if v is not None else np.nan
            except (TypeError, ValueError):
                inv_area[j] = np.nan
    return inv_area


def _read_features(src: Any) -> tuple[list[dict[str, Any]], list[BaseGeometry | None]]:
    """Properties and shapely geometries of every feature (null geometries included)."""
    props: list[dict[str, Any]] = []
    geoms: list[BaseGeometry | None] = []
    for feat in src:
        props.append(dict(feat.properties))
        geoms.append(None if feat.geometry is None else shape(feat.geometry))
    return props, geoms


def _near_region(
    geoms: list[BaseGeometry], src_crs: pyproj.CRS, target: pyproj.CRS, region: BaseGeometry | None
) -> np.ndarray:
    """Cheap prefilter in the inventory's CRS: outlines near the region's bounding box.

    Only these are reprojected (a region's inventory against one scene); the exact test
    follows after reprojection.
    """
    keep = np.ones(len(geoms), dtype=bool)
    if region is None or src_crs == target:
        return keep
    try:
        to_src = pyproj.Transformer.from_crs(target, src_crs, always_xy=True)
        x0, y0, x1, y1 = to_src.transform_bounds(*region.bounds, densify_pts=21)
    except pyproj.exceptions.ProjError:
        return keep
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x0 >= x1 or y0 >= y1:
        return keep  # e.g. across the antimeridian: reproject everything
    margin = 0.05 * max(x1 - x0, y1 - y0)
    return shapely.intersects(
        np.asarray(geoms, dtype=object), shapely.box(x0 - margin, y0 - margin, x1 + margin, y1 + margin)
    )


def read_inventory_for_mask(
    path: str | os.PathLike[str],
    mask: str | os.PathLike[str],
    *,
    id_column: str | None = None,
    layer: str | None = None,
) -> Inventory:
    """:func:`read_inventory` onto the CRS and footprint of a mask file.

    Raises:
        CRSMissingError: the mask has no CRS (outlines cannot be placed on it).
        InventoryError, SceneNotFoundError: see :func:`read_inventory`.
    """
    from geoglacier.io.masks import inspect_mask

    info = inspect_mask(mask)
    if info.crs is None:
        raise CRSMissingError(
            f"{info.path} has no CRS, so inventory outlines cannot be placed on it; assign the CRS "
            "(e.g. gdal_edit.py -a_srs EPSG:XXXX)"
        )
    return read_inventory(
        path,
        info.crs,
        region=footprint(info.transform, info.height, info.width),
        id_column=id_column,
        layer=layer,
    )
