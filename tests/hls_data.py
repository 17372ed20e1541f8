"""Seeded generators of tiny HLS v2.0 granules (L30, S30) in LP DAAC's names, and of the Level-1
products that must be refused as HLS.

* :func:`write_hls`: a folder of one granule's single-band COGs (``HLS.L30.T45RVL.2023288T045019.v2.0.B04.tif``
  ...), int16 DN with fill -9999, the ``Fmask`` layer, the angle bands, a browse JPEG and
  the CMR XML, as LP DAAC serves them;
* :func:`write_landsat_l1`, :func:`write_s2_l1c`: Landsat Collection 2 Level-1 and Sentinel-2
  Level-1C folders (top-of-atmosphere products, not HLS).

Every Fmask class sits at its own pixel (:data:`FMASK_MASKED`, :data:`FMASK_KEPT`), so a
test can check each one; DN are smooth seeded fields, so reflectance can be checked by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from tests.products_data import LANDSAT_ORIGIN, dn_field, mtl_dict, write_band

L30_ID = "HLS.L30.T45RVL.2023288T045019.v2.0"  # day 288 of 2023 = 2023-10-15
S30_ID = "HLS.S30.T45RVL.2023290T050701.v2.0"  # day 290 of 2023 = 2023-10-17
ORIGIN = (499980.0, 3100020.0)  # the upper left corner of MGRS tile 45RVL, UTM 45N

#: every band file of a granule (reflectance, thermal, cirrus, coastal), as LP DAAC serves them
L30_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B09", "B10", "B11")
S30_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
ANGLES = ("SAA", "SZA", "VAA", "VZA")

FILL = -9999
FMASK_FILL = 255
FMASK_CLEAR = 0b0100_0000  # aerosol level low (bits 7-6 = 01, i.e. bit 6 set), nothing else
FILL_ROWS = 2  # the first rows are outside the granule's footprint: fill in every band, Fmask 255
BAND_FILL_PIXEL = (30, 30)  # fill in the red band only, Fmask clear
NEGATIVE_PIXEL = (35, 35)  # a slightly negative reflectance (HLS has them over dark targets)
NEGATIVE_DN = -37

#: Fmask class -> (pixel, value): masked as nodata
FMASK_MASKED: dict[str, tuple[tuple[int, int], int]] = {
    "cirrus (bit 0: v1.4's flag, reserved in v2.0)": ((5, 5), FMASK_CLEAR | 1 << 0),
    "cloud": ((5, 20), FMASK_CLEAR | 1 << 1),
    "adjacent": ((20, 5), FMASK_CLEAR | 1 << 2),
    "cloud shadow": ((20, 20), FMASK_CLEAR | 1 << 3),
}
#: Fmask class -> (pixel, value): kept
FMASK_KEPT: dict[str, tuple[tuple[int, int], int]] = {
    "snow/ice": ((40, 40), FMASK_CLEAR | 1 << 4),
    "water": ((40, 50), FMASK_CLEAR | 1 << 5),
    "aerosol climatology": ((45, 40), 0),
    "aerosol moderate": ((45, 50), 0b1000_0000),
    "aerosol high": ((50, 40), 0b1100_0000),
    "snow/ice, water, aerosol high": ((50, 50), 0b1111_0000),
}


@dataclass
class HLSFixture:
    folder: Path
    granule: str
    dn: dict[str, np.ndarray]  # band -> int16 DN
    fmask: np.ndarray
    transform: Affine
    paths: dict[str, Path] = field(default_factory=dict)


def fmask_layer(height: int, width: int) -> np.ndarray:
    """Fmask: clear (low aerosol), fill rows on top, one pixel per class of :data:`FMASK_MASKED` and :data:`FMASK_KEPT`."""
    fmask = np.full((height, width), FMASK_CLEAR, dtype=np.uint8)
    fmask[:FILL_ROWS] = FMASK_FILL
    for (r, c), value in [*FMASK_MASKED.values(), *FMASK_KEPT.values()]:
        fmask[r, c] = value
    return fmask


def _write_hls_band(path: Path, data: np.ndarray, transform: Affine, nodata: float, scale: float) -> Path:
    write_band(path, data, transform, nodata=nodata)
    with rasterio.open(path, "r+") as ds:  # the attributes LP DAAC's COGs carry
        ds.update_tags(scale_factor=str(scale), add_offset="0.0", _FillValue=str(int(nodata)))
    return path


def write_hls(
    parent: Path,
    product: str = "L30",
    *,
    granule: str | None = None,
    height: int = 64,
    width: int = 64,
    seed: int = 0,
    folder_name: str | None = None,
) -> HLSFixture:
    """One HLS v2.0 granule's files in ``parent / (folder_name or granule id)``."""
    granule = granule or (L30_ID if product == "L30" else S30_ID)
    folder = parent / (folder_name or granule)
    folder.mkdir(parents=True, exist_ok=True)
    transform = Affine(30.0, 0.0, ORIGIN[0], 0.0, -30.0, ORIGIN[1])
    fmask = fmask_layer(height, width)
    dn: dict[str, np.ndarray] = {}
    paths: dict[str, Path] = {}
    for i, band in enumerate(L30_BANDS if product == "L30" else S30_BANDS):
        data = dn_field(height, width, seed * 100 + i, 300 + 150 * i, 5000 + 200 * i).astype(np.int16)
        data[:FILL_ROWS] = FILL
        data[NEGATIVE_PIXEL] = NEGATIVE_DN
        if band == "B04":
            data[BAND_FILL_PIXEL] = FILL
        dn[band] = data
        scale = 0.01 if product == "L30" and band in ("B10", "B11") else 0.0001  # L30 thermal: 0.01 degC
        paths[band] = _write_hls_band(folder / f"{granule}.{band}.tif", data, transform, FILL, scale)
    paths["Fmask"] = write_band(folder / f"{granule}.Fmask.tif", fmask, transform, nodata=FMASK_FILL)
    for i, band in enumerate(ANGLES):
        angles = dn_field(height, width, seed * 100 + 50 + i, 1000, 16000)
        paths[band] = write_band(folder / f"{granule}.{band}.tif", angles, transform, nodata=40000)
    (folder / f"{granule}.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    (folder / f"{granule}.cmr.xml").write_text(f"<Granule><GranuleUR>{granule}</GranuleUR></Granule>\n")
    return HLSFixture(folder, granule, dn, fmask, transform, paths)


def reflectance(dn: np.ndarray) -> np.ndarray:
    """HLS reflectance of DN, fill as NaN (what a stacked band must hold)."""
    out = dn.astype(np.float64) * 0.0001
    out[dn == FILL] = np.nan
    return out


# ----------------------------------------------------------------------------- Level-1 products

LANDSAT_L1_ID = "LC08_L1TP_140041_20231015_20231020_02_T1"
S2_L1C_SAFE = "S2A_MSIL1C_20231015T050701_N0509_R019_T45RVL_20231015T070000.SAFE"


def write_landsat_l1(parent: Path, *, size: int = 32) -> Path:
    """A Landsat 8 Collection 2 Level-1 folder: ``<id>_B1.TIF`` ... (no ``SR_``), QA_PIXEL, MTL."""
    folder = parent / LANDSAT_L1_ID
    folder.mkdir(parents=True)
    transform = Affine(30.0, 0.0, LANDSAT_ORIGIN[0], 0.0, -30.0, LANDSAT_ORIGIN[1])
    for n in range(1, 12):
        write_band(folder / f"{LANDSAT_L1_ID}_B{n}.TIF", dn_field(size, size, n, 6000, 20000), transform)
    write_band(folder / f"{LANDSAT_L1_ID}_QA_PIXEL.TIF", np.full((size, size), 21824, np.uint16), transform)
    meta = mtl_dict(LANDSAT_L1_ID, 8, list(range(1, 12)), "2023-10-15")
    meta["LANDSAT_METADATA_FILE"]["PRODUCT_CONTENTS"]["PROCESSING_LEVEL"] = "L1TP"
    (folder / f"{LANDSAT_L1_ID}_MTL.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def write_s2_l1c(parent: Path, *, size: int = 32) -> Path:
    """A Sentinel-2 Level-1C ``.SAFE`` folder: ``MTD_MSIL1C.xml`` and top-of-atmosphere bands."""
    folder = parent / S2_L1C_SAFE
    img = folder / "GRANULE" / "L1C_T45RVL_A043393_20231015T051213" / "IMG_DATA"
    transform = Affine(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1])
    for band in ("B02", "B03", "B04", "B08"):
        write_band(img / f"T45RVL_20231015T050701_{band}.tif", dn_field(size, size, 1, 1000, 5000), transform)
    (folder / "MTD_MSIL1C.xml").write_text(
        '<?xml version="1.0"?>\n<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/'
        'PSD/User_Product_Level-1C.xsd"/>\n',
        encoding="utf-8",
    )
    return folder


# ----------------------------------------------------------------------------- STAC

#: the ``eo:bands`` common names of NASA's HLS STAC items (NASA-IMPACT/hls-cmr_stac): S30's broad
#: B08 is "nir" and its narrow B8A has none, L30's B05 is "nir"
COMMON_NAMES: dict[str, dict[str, str]] = {
    "L30": {
        "B01": "coastal",
        "B02": "blue",
        "B03": "green",
        "B04": "red",
        "B05": "nir",
        "B06": "swir16",
        "B07": "swir22",
        "B09": "cirrus",
        "B10": "lwir11",
        "B11": "lwir12",
    },
    "S30": {
        "B01": "coastal",
        "B02": "blue",
        "B03": "green",
        "B04": "red",
        "B08": "nir",
        "B10": "cirrus",
        "B11": "swir16",
        "B12": "swir22",
    },
}


def write_hls_stac_item(path: Path, fx: HLSFixture, *, platform: str | None = None) -> Path:
    """A STAC item of the granule as NASA serves them: assets keyed by band name (``B04``,
    ``Fmask``, ``browse``, ``metadata``) with :data:`COMMON_NAMES`; a ``platform`` only if
    given (NASA's ``_stac.json`` items carry one, e.g. ``sentinel-2b``); hrefs relative to
    the item."""
    product = fx.granule.split(".")[1]
    assets = {}
    for band, file in fx.paths.items():
        asset: dict = {"href": str(file.relative_to(path.parent)), "title": f"Download {file.name}"}
        eo_band = {"name": band}
        if band in COMMON_NAMES[product]:
            eo_band["common_name"] = COMMON_NAMES[product][band]
        asset["eo:bands"] = [eo_band]
        assets[band] = asset
    assets["browse"] = {"href": f"{fx.granule}.jpg", "type": "image/jpeg"}
    assets["metadata"] = {"href": f"{fx.granule}.cmr.xml", "type": "application/xml"}
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.0.0/schema.json"],
        "id": fx.granule,
        "collection": f"HLS{product}_2.0",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[87.0, 28.0], [87.02, 28.0], [87.02, 28.02], [87.0, 28.02], [87.0, 28.0]]],
        },
        "bbox": [87.0, 28.0, 87.02, 28.02],
        "properties": {
            "datetime": "2023-10-17T05:07:01.000Z",
            "start_datetime": "2023-10-17T05:07:01.000Z",
            "end_datetime": "2023-10-17T05:07:01.000Z",
            "eo:cloud_cover": 3,
            **({"platform": platform} if platform else {}),
        },
        "links": [],
        "assets": assets,
    }
    path.write_text(json.dumps(item, indent=2), encoding="utf-8")
    return path
