"""Sentinel-2 Level-2A products: a ``.SAFE`` folder, or a folder of Cloud-Optimized GeoTIFFs.

``.SAFE`` layout (only what is read)::

    S2A_MSIL2A_20231015T050701_N0509_R019_T45RVL_20231015T090000.SAFE/
        MTD_MSIL2A.xml
        GRANULE/L2A_T45RVL_A043393_20231015T051213/IMG_DATA/
            R10m/T45RVL_20231015T050701_B02_10m.jp2   (B03, B04, B08)
            R20m/T45RVL_20231015T050701_B11_20m.jp2   (B12, SCL)

A COG folder, as earth-search (Element 84) serves Sentinel-2 L2A, holds ``B02.tif`` ...
``B12.tif`` and ``SCL.tif``, and optionally the product metadata as
``product_metadata.xml`` or ``MTD_MSIL2A.xml``; its name (``S2A_45RVL_20231015_0_L2A``)
gives the date and spacecraft when there is no metadata.

Reflectance is ``(DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE``. The quantification
is 10000; the offset, -1000 from processing baseline 04.00 on, is read from
``MTD_MSIL2A.xml`` and is 0 for a product whose metadata does not list it (older
baselines, or a COG folder without metadata). A COG folder without metadata whose band
files declare their own scale and offset (GDAL metadata, as earth-search's Collection 1
COGs and ``gdal_translate -a_scale -a_offset`` write) uses those. DN 0 is no data.

Scene classification (``SCL``) classes masked (decoded in :mod:`geoglacier.products.quality`): 0 no data and 1 saturated or defective
(no data); 3 cloud shadow, 8 cloud medium probability, 9 cloud high probability and
10 thin cirrus (cloud). Class 11, snow and ice, is **kept**: it is the glacier.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError

from geoglacier.errors import ProductError
from geoglacier.products.product import BandFile, Product, QualityFile

QUANTIFICATION: float = 10000.0

#: reflectance name -> (band, resolution in m)
BANDS: dict[str, tuple[str, int]] = {
    "blue": ("B02", 10),
    "green": ("B03", 10),
    "red": ("B04", 10),
    "nir": ("B08", 10),
    "swir1": ("B11", 20),
    "swir2": ("B12", 20),
}
#: band -> band_id in MTD_MSIL2A.xml (BOA_ADD_OFFSET band_id)
BAND_IDS: dict[str, int] = {
    "B01": 0, "B02": 1, "B03": 2, "B04": 3, "B05": 4, "B06": 5, "B07": 6,
    "B08": 7, "B8A": 8, "B09": 9, "B10": 10, "B11": 11, "B12": 12,
}  # fmt: skip
_RASTER_EXT = (".jp2", ".tif", ".tiff")
_COG_BAND = re.compile(r"^(B0[1-9]|B1[0-2]|B8A|SCL)\.tiff?$", re.IGNORECASE)
_COG_NAME = re.compile(r"^S2([ABCD])_(\d{1,2}[A-Z]{3})_(\d{8})_\d+_L2A$")
_SAFE_NAME = re.compile(r"^S2([ABCD])_MSIL2A_(\d{8})T\d{6}_")
_L1C_NAME = re.compile(r"(_L1C$|_MSIL1C_)")
_METADATA_NAMES = ("MTD_MSIL2A.xml", "product_metadata.xml")


@dataclass(frozen=True)
class L2AMetadata:
    """What stacking needs from ``MTD_MSIL2A.xml``."""

    product_id: str | None = None
    date: str | None = None
    spacecraft: str | None = None
    baseline: str | None = None
    quantification: float = QUANTIFICATION
    offsets: dict[str, float] = field(default_factory=dict)  # band -> BOA_ADD_OFFSET

    @property
    def sensor(self) -> str | None:
        return f"{self.spacecraft} MSI" if self.spacecraft else None

    def band_file(self, path: Path | str, band: str) -> BandFile:
        q = self.quantification
        return BandFile(str(path), 1.0 / q, self.offsets.get(band, 0.0) / q, nodata=0.0)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_l2a_metadata(path: Path) -> L2AMetadata:
    """Parse ``MTD_MSIL2A.xml`` (namespaces ignored).

    Raises:
        ProductError: unreadable XML, or Level-1C metadata.
    """
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ProductError(
            f"{path}: unreadable Sentinel-2 metadata ({exc}); re-download the product"
        ) from exc
    if "Level-1C" in _local(root.tag):
        raise ProductError(f"{path}: a Level-1C product; 'geoglacier stack' needs Sentinel-2 Level-2A")
    text: dict[str, str] = {}
    offsets: dict[str, float] = {}
    names = {v: k for k, v in BAND_IDS.items()}
    for el in root.iter():
        name = _local(el.tag)
        if name == "BOA_ADD_OFFSET" and el.text:
            band = names.get(int(el.get("band_id", "-1")))
            if band:
                offsets[band] = float(el.text)
        elif el.text and el.text.strip() and name not in text:
            text[name] = el.text.strip()
    start = text.get("PRODUCT_START_TIME") or text.get("DATATAKE_SENSING_START")
    uri = text.get("PRODUCT_URI")
    try:
        quantification = float(text.get("BOA_QUANTIFICATION_VALUE", QUANTIFICATION))
    except ValueError as exc:
        raise ProductError(f"{path}: BOA_QUANTIFICATION_VALUE is not a number") from exc
    return L2AMetadata(
        product_id=uri.removesuffix(".SAFE") if uri else None,
        date=start[:10] if start else None,
        spacecraft=text.get("SPACECRAFT_NAME"),
        baseline=text.get("PROCESSING_BASELINE"),
        quantification=quantification,
        offsets=offsets,
    )


def is_safe(folder: Path) -> bool:
    """A ``.SAFE`` folder or one holding ``MTD_MSIL2A.xml``/``MTD_MSIL1C.xml``."""
    return folder.suffix.upper() == ".SAFE" or any(
        (folder / n).exists() for n in ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")
    )


def is_cog_folder(folder: Path) -> bool:
    """A folder holding Sentinel-2 band COGs named like ``B02.tif``."""
    return any(_COG_BAND.match(p.name) for p in folder.iterdir() if p.is_file())


def _find_safe_band(granules: list[Path], band: str, resolution: int) -> Path:
    for granule in granules:
        folder = granule / "IMG_DATA" / f"R{resolution}m"
        for candidate in sorted(folder.glob(f"*_{band}_{resolution}m.*")):
            if candidate.suffix.lower() in _RASTER_EXT:
                return candidate
    base = granules[0] if granules else Path("GRANULE/*")
    return base / "IMG_DATA" / f"R{resolution}m" / f"*_{band}_{resolution}m.jp2"


def read_safe(folder: str | Path) -> Product:
    """Describe a Sentinel-2 L2A ``.SAFE`` folder (or its ``MTD_MSIL2A.xml``) as a :class:`Product`.

    Raises:
        ProductError: no ``MTD_MSIL2A.xml`` (or a Level-1C product), unreadable metadata, no GRANULE.
    """
    path = Path(folder)
    if path.is_file() and path.name.startswith("MTD_MSIL"):
        path = path.parent
    if (path / "MTD_MSIL1C.xml").exists():
        raise ProductError(
            f"{path}: a Level-1C product; 'geoglacier stack' needs Sentinel-2 Level-2A (MSIL2A)"
        )
    mtd = path / "MTD_MSIL2A.xml"
    if not mtd.exists():
        raise ProductError(f"{path}: no MTD_MSIL2A.xml; a Sentinel-2 L2A .SAFE folder holds it at its top")
    meta = read_l2a_metadata(mtd)
    granules = sorted(p for p in (path / "GRANULE").glob("*") if p.is_dir())
    if not granules:
        raise ProductError(
            f"{path}: no GRANULE/*/IMG_DATA folder; the .SAFE folder is incomplete, re-download it"
        )
    bands = {
        name: meta.band_file(_find_safe_band(granules, band, res), band)
        for name, (band, res) in BANDS.items()
    }
    scl = _find_safe_band(granules, "SCL", 20)
    return Product(
        kind="sentinel2-safe",
        source=str(path),
        bands=bands,
        quality=QualityFile(str(scl), "scl"),
        acquisition_date=meta.date,
        sensor=meta.sensor,
        product_id=meta.product_id or path.name.removesuffix(".SAFE"),
        notes=_offset_note(meta),
    )


def _offset_note(meta: L2AMetadata) -> tuple[str, ...]:
    if meta.offsets:
        return (
            f"BOA_ADD_OFFSET {sorted(set(meta.offsets.values()))[0]:g} applied (baseline {meta.baseline})",
        )
    return (f"no BOA_ADD_OFFSET in the metadata (baseline {meta.baseline or 'unknown'}): none applied",)


def _declared_scaling(path: Path) -> tuple[float, float] | None:
    """The scale and offset a band file declares in its GDAL metadata, ``None`` when it declares
    none (1 and 0) or cannot be read (stacking reports that file)."""
    try:
        with rasterio.open(path) as ds:
            scale, offset = float(ds.scales[0]), float(ds.offsets[0])
    except (RasterioIOError, OSError):
        return None
    return None if (scale, offset) == (1.0, 0.0) else (scale, offset)


def read_cog_folder(folder: str | Path) -> Product:
    """Describe a folder of Sentinel-2 L2A COGs (``B02.tif`` ... ``SCL.tif``) as a :class:`Product`.

    Raises:
        ProductError: no band COG at all (another kind of product), a Level-1C folder, unreadable
            metadata XML.
    """
    path = Path(folder)
    files = {
        p.name.upper().split(".")[0]: p for p in path.iterdir() if p.is_file() and _COG_BAND.match(p.name)
    }
    if not files:
        raise ProductError(
            f"{path}: no Sentinel-2 band COGs (B02.tif ... B12.tif, SCL.tif) in this folder; "
            "if it is another kind of product, leave out --kind to detect it"
        )
    if _L1C_NAME.search(path.name):
        raise ProductError(f"{path}: a Level-1C product; 'geoglacier stack' needs Sentinel-2 Level-2A (L2A)")
    meta = L2AMetadata()
    has_metadata = False
    for name in _METADATA_NAMES:
        if (path / name).exists():
            meta = read_l2a_metadata(path / name)
            has_metadata = True
            break
    else:
        m = _COG_NAME.match(path.name) or _SAFE_NAME.match(path.name)
        if m:
            day = m.group(3) if m.re is _COG_NAME else m.group(2)
            meta = L2AMetadata(
                product_id=path.name,
                date=f"{day[:4]}-{day[4:6]}-{day[6:]}",
                spacecraft=f"Sentinel-2{m.group(1)}",
            )
    bands = {
        name: meta.band_file(files.get(band, path / f"{band}.tif"), band) for name, (band, _) in BANDS.items()
    }
    notes = _offset_note(meta)
    if not has_metadata:
        declared = {name: _declared_scaling(Path(b.path)) for name, b in bands.items()}
        for name, scaling in declared.items():
            if scaling is not None:
                bands[name] = BandFile(bands[name].path, *scaling, nodata=0.0)
        found = sorted({v for v in declared.values() if v is not None})
        if found:
            notes = (f"scale and offset {', '.join(f'{s:g} / {o:g}' for s, o in found)} from the band files",)
    return Product(
        kind="sentinel2-cogs",
        source=str(path),
        bands=bands,
        quality=QualityFile(str(files.get("SCL", path / "SCL.tif")), "scl"),
        acquisition_date=meta.date,
        sensor=meta.sensor,
        product_id=meta.product_id or path.name,
        notes=notes,
    )
