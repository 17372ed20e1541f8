"""Landsat Collection 2 Level-2 products (Landsat 8/9 OLI, Landsat 7 ETM+, Landsat 4/5 TM).

A product is a folder named by its product id, e.g.
``LC08_L2SP_140041_20231015_20231020_02_T1/``, holding one GeoTIFF per band
(``<id>_SR_B1.TIF`` ...), the pixel quality band ``<id>_QA_PIXEL.TIF`` and the metadata
in ``<id>_MTL.json`` and/or ``<id>_MTL.txt`` (the ODL text form).

Surface reflectance is ``DN * 0.0000275 - 0.2`` (the ``REFLECTANCE_MULT_BAND_n`` and
``REFLECTANCE_ADD_BAND_n`` of the MTL, which are read when present); DN 0 is fill.

``QA_PIXEL`` bits used here (bit 0 is the lowest; decoded in :mod:`geoglacier.products.quality`):

====  ================  ========
bit   meaning           stacking
====  ================  ========
0     fill              no data
1     dilated cloud     masked
2     cirrus            masked
3     cloud             masked
4     cloud shadow      masked
5     snow              **kept** (snow and ice are what we map)
====  ================  ========
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from geoglacier.errors import ProductError
from geoglacier.products.product import BandFile, Product, QualityFile

SCALE: float = 0.0000275
OFFSET: float = -0.2

#: reflectance name -> band number, Landsat 8/9 OLI
OLI_BANDS: dict[str, int] = {"blue": 2, "green": 3, "red": 4, "nir": 5, "swir1": 6, "swir2": 7}
#: reflectance name -> band number, Landsat 7 ETM+ and Landsat 4/5 TM (no band 6 in SR)
ETM_BANDS: dict[str, int] = {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5, "swir2": 7}

_PRODUCT_ID = re.compile(r"^L[COTE]0[4-9]_L\d[A-Z]{2}_\d{6}_\d{8}_\d{8}_\d{2}_[A-Z0-9]{2}$")
_MTL_SUFFIXES = ("_MTL.json", "_MTL.txt")


def parse_mtl_text(text: str) -> dict[str, Any]:
    """Parse the ODL ``_MTL.txt`` (``GROUP = X`` ... ``END_GROUP = X``, ``KEY = value``) into nested dicts.

    Values stay strings (quotes removed), as in ``_MTL.json``.
    """
    root: dict[str, Any] = {}
    stack: list[dict[str, Any]] = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == "END":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip().strip('"')
        if key == "GROUP":
            child: dict[str, Any] = {}
            stack[-1][value] = child
            stack.append(child)
        elif key == "END_GROUP":
            if len(stack) > 1:
                stack.pop()
        else:
            stack[-1][key] = value
    return root


def find_mtl(folder: Path) -> Path | None:
    """The product's ``_MTL.json`` (preferred) or ``_MTL.txt``, if any."""
    for suffix in _MTL_SUFFIXES:
        found = sorted(folder.glob(f"*{suffix}"))
        if found:
            return found[0]
    return None


def read_mtl(path: Path) -> dict[str, Any]:
    """The ``LANDSAT_METADATA_FILE`` group of an ``_MTL.json`` or ``_MTL.txt``.

    Raises:
        ProductError: unreadable or without that group.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        raw = json.loads(text) if path.name.endswith(".json") else parse_mtl_text(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise ProductError(f"{path}: unreadable Landsat metadata ({exc}); re-download the product") from exc
    meta = raw.get("LANDSAT_METADATA_FILE") if isinstance(raw, dict) else None
    if not isinstance(meta, dict):
        raise ProductError(
            f"{path}: no LANDSAT_METADATA_FILE group; is this a Landsat Collection 2 MTL file?"
        )
    return meta


def is_landsat(folder: Path) -> bool:
    """A folder with an ``_MTL.json``/``_MTL.txt``, or named like a Landsat product id."""
    return find_mtl(folder) is not None or bool(_PRODUCT_ID.match(folder.name))


def sensor_name(spacecraft: str, sensor_id: str) -> str:
    """``LANDSAT_8`` + ``OLI_TIRS`` -> ``Landsat 8 OLI``; ``LANDSAT_7`` + ``ETM`` -> ``Landsat 7 ETM+``."""
    number = re.sub(r"\D", "", spacecraft) or "?"
    instrument = "OLI" if "OLI" in sensor_id else "ETM+" if "ETM" in sensor_id else sensor_id or "TM"
    return f"Landsat {number} {instrument}"


def _band_path(folder: Path, product_id: str, contents: dict[str, Any], number: int) -> Path:
    listed = contents.get(f"FILE_NAME_BAND_{number}")
    if listed:
        return folder / str(listed)
    for ext in (".TIF", ".tif"):
        candidate = folder / f"{product_id}_SR_B{number}{ext}"
        if candidate.exists():
            return candidate
    return folder / f"{product_id}_SR_B{number}.TIF"


def _id_from_mtl_name(name: str) -> str:
    """``<id>_MTL.json`` or ``<id>_MTL.txt`` -> ``<id>``."""
    for suffix in _MTL_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_landsat(folder: str | Path) -> Product:
    """Describe a Landsat Collection 2 Level-2 folder (or its MTL file) as a :class:`Product`.

    Raises:
        ProductError: no MTL file, unreadable metadata, a Level-1 product, or an unknown spacecraft.
    """
    path = Path(folder)
    if path.is_file() and path.name.endswith(_MTL_SUFFIXES):
        path = path.parent
    mtl = find_mtl(path)
    if mtl is None:
        raise ProductError(
            f"{path}: no *_MTL.json or *_MTL.txt; a Landsat Collection 2 Level-2 folder holds its MTL file "
            "beside the bands"
        )
    meta = read_mtl(mtl)
    contents = meta.get("PRODUCT_CONTENTS", {})
    image = meta.get("IMAGE_ATTRIBUTES", {})
    product_id = str(contents.get("LANDSAT_PRODUCT_ID") or _id_from_mtl_name(mtl.name))
    id_level = product_id.split("_")[1] if "_" in product_id else ""
    level = str(contents.get("PROCESSING_LEVEL") or id_level)
    if level and not level.startswith("L2"):
        raise ProductError(
            f"{path}: {product_id} is a {level} product; 'geoglacier stack' needs Collection 2 Level-2 "
            "surface reflectance (L2SP or L2SR)"
        )
    spacecraft = str(image.get("SPACECRAFT_ID") or f"LANDSAT_{product_id[2:4]}")
    number = int(re.sub(r"\D", "", spacecraft) or 0)
    if number not in (4, 5, 7, 8, 9):
        raise ProductError(
            f"{mtl}: unknown spacecraft {spacecraft!r}; Landsat 4, 5, 7, 8 and 9 are supported"
        )
    mapping = OLI_BANDS if number >= 8 else ETM_BANDS
    reflectance = meta.get("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS", {})
    bands = {}
    for name, n in mapping.items():
        scale = float(reflectance.get(f"REFLECTANCE_MULT_BAND_{n}", SCALE))
        offset = float(reflectance.get(f"REFLECTANCE_ADD_BAND_{n}", OFFSET))
        bands[name] = BandFile(str(_band_path(path, product_id, contents, n)), scale, offset, nodata=0.0)
    qa_name = contents.get("FILE_NAME_QUALITY_L1_PIXEL") or f"{product_id}_QA_PIXEL.TIF"
    qa_path = path / str(qa_name)
    if not qa_path.exists() and (path / f"{product_id}_QA_PIXEL.tif").exists():
        qa_path = path / f"{product_id}_QA_PIXEL.tif"
    date = image.get("DATE_ACQUIRED")
    return Product(
        kind="landsat",
        source=str(path),
        bands=bands,
        quality=QualityFile(str(qa_path), "qa_pixel"),
        acquisition_date=str(date)[:10] if date else None,
        sensor=sensor_name(spacecraft, str(image.get("SENSOR_ID", ""))),
        product_id=product_id,
    )
