"""A STAC item (JSON, read with pystac) of a Landsat C2 L2 or Sentinel-2 L2A acquisition.

Assets are matched to the recipe's reflectance bands by their ``eo:bands`` common names
(STAC 1.0: ``eo:bands[].common_name``; STAC 1.1: ``bands[].eo:common_name``; failing
both, an asset key that is a common name). STAC spells the shortwave infrared
``swir16`` and ``swir22`` and Landsat's near infrared ``nir08``; those map to ``swir1``,
``swir2`` and ``nir``. The quality layer is the asset keyed ``qa_pixel`` (Landsat) or
``scl`` (Sentinel-2), in any case.

Scale and offset come from the asset's ``raster:bands`` when given; otherwise from the
platform: Landsat C2 L2 ``0.0000275`` / ``-0.2``; Sentinel-2 ``1/10000`` and, when
``s2:processing_baseline`` is 04.00 or later, an offset of ``-1000/10000``. An Earth Search
item whose ``earthsearch:boa_offset_applied`` is true holds DN with the offset already
added, although its ``raster:bands`` still declare ``-0.1``: no offset is applied then, and
the note says so (a second one would put every reflectance 0.1 too low).

Level-1 items (an id such as ``LC08_L1TP_...`` or ``..._L1C``, a ``landsat-c2-l1`` or
``sentinel-2-l1c`` collection, ``landsat:correction`` / ``s2:product_type`` saying so) are
refused: their DN are top-of-atmosphere, not surface reflectance.

An item of an HLS v2.0 granule (its id ``HLS.L30.T45RVL.2023288T045019.v2.0``, as NASA's
CMR-STAC serves them) is read by its asset keys, which are the band names (``B04``,
``B8A`` ..., ``Fmask``), with the sensor's band numbering, scale and fill of
:mod:`geoglacier.products.hls`: common names would give S30's broad ``B08`` as ``nir``.

Asset hrefs may be local files (relative to the item, percent-encoded or not, or
``file://`` URIs) or URLs GDAL reads (``https://`` through ``/vsicurl/``, ``s3://`` ...).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from geoglacier.errors import ProductError
from geoglacier.products import hls, landsat, sentinel2
from geoglacier.products.product import BandFile, Product, QualityFile

#: our reflectance name -> STAC common names that stand for it, preferred first
COMMON_NAMES: dict[str, tuple[str, ...]] = {
    "blue": ("blue",),
    "green": ("green",),
    "red": ("red",),
    "nir": ("nir", "nir08"),
    "swir1": ("swir16", "swir1"),
    "swir2": ("swir22", "swir2"),
}
QUALITY_KEYS: dict[str, str] = {"qa_pixel": "qa_pixel", "scl": "scl"}


def is_stac_item(path: Path) -> bool:
    """A JSON file whose top level says ``"type": "Feature"`` with a ``stac_version``."""
    if path.suffix.lower() not in (".json", ".geojson") or not path.is_file():
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:1_000_000]
    except OSError:
        return False
    return '"stac_version"' in head and re.search(r'"type"\s*:\s*"Feature"', head) is not None


def _common_names(asset: Any) -> list[str]:
    fields = asset.extra_fields
    names = [b.get("common_name") for b in fields.get("eo:bands", []) if isinstance(b, dict)]
    names += [b.get("eo:common_name") for b in fields.get("bands", []) if isinstance(b, dict)]
    return [str(n).lower() for n in names if n]


def _single_band(asset: Any) -> bool:
    fields = asset.extra_fields
    return len(fields.get("eo:bands", [])) <= 1 and len(fields.get("bands", [])) <= 1


def _rank(key: str, asset: Any) -> int:
    """Prefer GeoTIFF assets over JPEG2000 copies (earth-search lists both)."""
    media = str(asset.media_type or "").lower()
    return 0 if ("tiff" in media or not media) and "jp2" not in key.lower() else 1


def _find_asset(assets: dict[str, Any], names: tuple[str, ...]) -> tuple[str, Any] | None:
    for wanted in names:
        hits = [
            (k, a)
            for k, a in assets.items()
            if _single_band(a) and (wanted in _common_names(a) or k.lower() == wanted)
        ]
        if hits:
            return min(hits, key=lambda ka: _rank(*ka))
    return None


def _href(asset: Any) -> str:
    """The asset's file as GDAL opens it.

    Hrefs are URI references, so a local one may be percent-encoded (``my%20scenes/B04.tif``)
    or a ``file://`` URI; both are decoded to a path. A local name that itself holds a ``%``
    and exists is kept as it is.
    """
    href = asset.get_absolute_href() or asset.href
    parsed = urlparse(href)
    if parsed.scheme == "file":
        return url2pathname(parsed.path)
    if not parsed.scheme and "%" in href and not Path(href).exists():
        return unquote(href)
    return href


def _raster_band(asset: Any) -> dict[str, Any]:
    fields = asset.extra_fields
    bands = fields.get("raster:bands") or fields.get("bands") or []
    return bands[0] if bands and isinstance(bands[0], dict) else {}


def _platform(item: Any) -> tuple[str, int | None]:
    raw = str(item.properties.get("platform", "")).lower().replace("_", "-")
    if "landsat" in raw:
        number = re.sub(r"\D", "", raw)
        return "landsat", int(number) if number else None
    if "sentinel-2" in raw or raw.startswith("s2"):
        return "sentinel2", None
    return raw, None


def _sensor(item: Any, family: str, number: int | None) -> str | None:
    props = item.properties
    if family == "landsat" and number:
        instruments = " ".join(str(i) for i in props.get("instruments", [])).upper()
        return landsat.sensor_name(f"LANDSAT_{number}", instruments or ("OLI" if number >= 8 else "ETM"))
    if family == "sentinel2":
        unit = str(props.get("platform", "")).strip()[-1:].upper()
        return f"Sentinel-2{unit} MSI" if unit.isalpha() else "Sentinel-2 MSI"
    return props.get("platform")


def _baseline_offset(item: Any) -> float:
    baseline = str(item.properties.get("s2:processing_baseline", "") or "")
    try:
        return -1000.0 if float(baseline) >= 4.0 else 0.0
    except ValueError:
        return 0.0


#: Earth Search's flag: the BOA offset was added to the COGs' DN when they were made
BOA_OFFSET_APPLIED = "earthsearch:boa_offset_applied"


def _offset_already_applied(item: Any) -> bool:
    return item.properties.get(BOA_OFFSET_APPLIED) is True


def _offset_notes(item: Any) -> tuple[str, ...]:
    if not _offset_already_applied(item):
        return ()
    return (f"{BOA_OFFSET_APPLIED} is true: the DN already hold the BOA offset, so no offset is applied",)


#: a Level-1 product in an id or a property: LC08_L1TP_..., S2B_..._L1C, landsat-c2-l1, S2MSI1C
_LEVEL1 = re.compile(r"(?:^|[_\-:])(?:L1(?:TP|GT|GS|C)?|MSIL1C|S2MSI1C)(?:$|[_\-])", re.IGNORECASE)
_LEVEL_FIELDS = ("landsat:correction", "s2:product_type", "processing:level")


def _level1_evidence(item: Any) -> str | None:
    """What says the item is Level-1 (top-of-atmosphere: its DN are not surface reflectance), if anything."""
    candidates = [("id", item.id), ("collection", item.collection_id)]
    candidates += [(key, item.properties.get(key)) for key in _LEVEL_FIELDS]
    for what, value in candidates:
        if value and _LEVEL1.search(str(value)):
            return f"{what} {value}"
    return None


def read_stac_item(path: str | Path) -> Product:
    """Describe a STAC item file as a :class:`Product` (only the assets that were found).

    Raises:
        ProductError: not a readable STAC item, a platform other than Landsat / Sentinel-2, or a
            Level-1 item.
    """
    import pystac

    p = Path(path)
    try:
        item = pystac.Item.from_file(str(p))
    except Exception as exc:  # noqa: BLE001 - pystac raises many types for bad JSON
        raise ProductError(f"{p}: not a readable STAC item ({type(exc).__name__}: {exc})") from exc
    if hls.GRANULE.match(item.id):
        return _read_hls_item(item, p)
    family, number = _platform(item)
    if family not in ("landsat", "sentinel2"):
        raise ProductError(
            f"{p}: platform {item.properties.get('platform')!r} is not Landsat or Sentinel-2; "
            "'geoglacier stack' reads Landsat C2 L2 and Sentinel-2 L2A items"
        )
    level1 = _level1_evidence(item)
    if level1 is not None:
        raise ProductError(
            f"{p}: a Level-1 item ({level1}); 'geoglacier stack' needs surface reflectance: Landsat "
            "Collection 2 Level-2 or Sentinel-2 Level-2A items (collections such as landsat-c2-l2, sentinel-2-l2a)"
        )
    assets = dict(item.assets)
    bands: dict[str, BandFile] = {}
    for name, commons in COMMON_NAMES.items():
        found = _find_asset(assets, commons)
        if found is None:
            continue
        _, asset = found
        raster = _raster_band(asset)
        if family == "landsat":
            scale, offset = landsat.SCALE, landsat.OFFSET
        else:
            scale, offset = 1.0 / sentinel2.QUANTIFICATION, _baseline_offset(item) / sentinel2.QUANTIFICATION
        scale = float(raster.get("scale", scale))
        offset = 0.0 if _offset_already_applied(item) else float(raster.get("offset", offset))
        nodata = raster.get("nodata", 0.0)
        bands[name] = BandFile(_href(asset), scale, offset, nodata)
    quality = None
    qkey = "qa_pixel" if family == "landsat" else "scl"
    for key, asset in assets.items():
        if key.lower() == qkey:
            quality = QualityFile(_href(asset), QUALITY_KEYS[qkey])  # type: ignore[arg-type]
    when = item.datetime or item.common_metadata.start_datetime
    return Product(
        kind="stac",
        source=str(p),
        bands=bands,
        quality=quality,
        acquisition_date=when.date().isoformat() if when else None,
        sensor=_sensor(item, family, number),
        product_id=item.id,
        notes=(f"{family} item {item.id} with {len(assets)} assets", *_offset_notes(item)),
    )


def _read_hls_item(item: Any, path: Path) -> Product:
    """An HLS v2.0 granule's item: assets keyed by band name (``B04``, ``B8A``, ``Fmask``; any case)."""
    granule = hls.parse_granule(item.id)
    assets = {key.lower(): asset for key, asset in item.assets.items()}
    bands = {
        name: BandFile(_href(assets[band.lower()]), hls.SCALE, 0.0, nodata=hls.FILL)
        for name, band in hls.BANDS[granule.product].items()
        if band.lower() in assets
    }
    fmask = assets.get(hls.QUALITY_BAND.lower())
    return Product(
        kind="stac",
        source=str(path),
        bands=bands,
        quality=QualityFile(_href(fmask), "fmask") if fmask is not None else None,
        acquisition_date=granule.date,
        sensor=granule.sensor,
        product_id=item.id,
        notes=(f"HLS item {item.id} with {len(assets)} assets", granule.note()),
    )
