"""Seeded generators of tiny satellite products in the real products' names, folders and metadata.

* :func:`write_landsat`: a Landsat Collection 2 Level-2 folder (``<id>_SR_B1.TIF`` ...,
  ``<id>_QA_PIXEL.TIF``, ``<id>_MTL.json`` and/or ``<id>_MTL.txt``);
* :func:`write_safe`: a Sentinel-2 L2A ``.SAFE`` folder (``MTD_MSIL2A.xml``,
  ``GRANULE/*/IMG_DATA/R10m`` and ``R20m`` bands and ``SCL``), as GeoTIFF or JPEG2000;
* :func:`write_s2_cogs`: a folder of Sentinel-2 L2A COGs named as earth-search serves them;
* :func:`write_stac_item`: a STAC item (eo:bands common names) over such files.

Digital numbers are smooth seeded fields well inside the valid ranges, so reflectance
can be checked by hand from the arrays these functions return.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

UTM = "EPSG:32645"
LANDSAT_ID = "LC08_L2SP_140041_20231015_20231020_02_T1"
LANDSAT7_ID = "LE07_L2SP_140041_20030915_20200915_02_T1"
LANDSAT_ORIGIN = (478000.0, 3108150.0)
S2_SAFE = "S2A_MSIL2A_20231015T050701_N0509_R019_T45RVL_20231015T090000.SAFE"
S2_GRANULE = "L2A_T45RVL_A043393_20231015T051213"
S2_PREFIX = "T45RVL_20231015T050701"
S2_ORIGIN = (499980.0, 3100020.0)
S2_COG_ID = "S2B_45RVL_20231015_0_L2A"

#: QA_PIXEL values: clear land (clear bit 6, low confidences), and one per bit tested
QA_CLEAR = (1 << 6) | (1 << 8) | (1 << 10) | (1 << 12) | (1 << 14)  # 21824
QA_FILL = 1
QA_BIT_PIXELS: dict[int, tuple[int, int]] = {
    1: (5, 5),
    2: (5, 20),
    3: (20, 5),
    4: (20, 20),
}  # bit -> (row, col)
QA_SNOW_PIXEL = (40, 40)
QA_FILL_ROWS = 2  # the first rows are fill

#: SCL classes placed at fixed 20 m pixels (row, col) of a 32 x 32 SCL layer
SCL_PIXELS: dict[int, tuple[int, int]] = {
    0: (2, 2),
    1: (2, 10),
    3: (10, 2),
    8: (10, 10),
    9: (10, 20),
    10: (20, 10),
}
SCL_SNOW_PIXEL = (20, 20)
SCL_VEGETATION = 4


def dn_field(height: int, width: int, seed: int, lo: float, hi: float) -> np.ndarray:
    """A smooth uint16 field between ``lo`` and ``hi``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    fy, fx, phase = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3), rng.uniform(0, 6.28)
    wave = 0.5 + 0.5 * np.sin(fy * yy + phase) * np.cos(fx * xx)
    return np.round(lo + (hi - lo) * wave).astype(np.uint16)


def write_band(
    path: Path,
    data: np.ndarray,
    transform: Affine,
    crs: str = UTM,
    nodata: float | None = 0,
    driver: str = "GTiff",
) -> Path:
    """One single-band raster; JPEG2000 is written losslessly."""
    profile: dict = {
        "driver": driver,
        "height": data.shape[0],
        "width": data.shape[1],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    if driver == "GTiff":
        profile.update(tiled=True, blockxsize=32, blockysize=32, compress="deflate")
    elif driver == "JP2OpenJPEG":
        profile.update(QUALITY="100", REVERSIBLE="YES")
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)
    return path


# ----------------------------------------------------------------------------- Landsat


@dataclass
class LandsatFixture:
    folder: Path
    product_id: str
    dn: dict[int, np.ndarray]  # band number -> DN
    qa: np.ndarray
    transform: Affine
    mtl: dict = field(default_factory=dict)


def landsat_qa(height: int, width: int) -> np.ndarray:
    """QA_PIXEL with fill rows on top, one pixel per masked bit and a snow pixel."""
    qa = np.full((height, width), QA_CLEAR, dtype=np.uint16)
    qa[:QA_FILL_ROWS] = QA_FILL
    for bit, (r, c) in QA_BIT_PIXELS.items():
        qa[r, c] = QA_CLEAR | (1 << bit)
    r, c = QA_SNOW_PIXEL
    qa[r, c] = (1 << 5) | (1 << 6) | (1 << 8) | (1 << 12) | (1 << 14)  # snow, clear, low confidences
    return qa


def mtl_dict(product_id: str, spacecraft: int, bands: list[int], date: str) -> dict:
    """The ``LANDSAT_METADATA_FILE`` of a C2 L2 product, values as strings like USGS writes them."""
    sensor = "OLI_TIRS" if spacecraft >= 8 else "ETM"
    contents = {
        "ORIGIN": "Image courtesy of the U.S. Geological Survey",
        "LANDSAT_PRODUCT_ID": product_id,
        "PROCESSING_LEVEL": "L2SP",
        "COLLECTION_NUMBER": "02",
        "COLLECTION_CATEGORY": "T1",
        "OUTPUT_FORMAT": "GEOTIFF",
    }
    for n in bands:
        contents[f"FILE_NAME_BAND_{n}"] = f"{product_id}_SR_B{n}.TIF"
    contents["FILE_NAME_QUALITY_L1_PIXEL"] = f"{product_id}_QA_PIXEL.TIF"
    reflectance = {}
    for n in bands:
        reflectance[f"REFLECTANCE_MAXIMUM_BAND_{n}"] = "1.602213"
        reflectance[f"REFLECTANCE_MINIMUM_BAND_{n}"] = "-0.199972"
    for n in bands:
        reflectance[f"REFLECTANCE_MULT_BAND_{n}"] = "2.75E-05"
        reflectance[f"REFLECTANCE_ADD_BAND_{n}"] = "-0.200000"
    return {
        "LANDSAT_METADATA_FILE": {
            "PRODUCT_CONTENTS": contents,
            "IMAGE_ATTRIBUTES": {
                "SPACECRAFT_ID": f"LANDSAT_{spacecraft}",
                "SENSOR_ID": sensor,
                "WRS_TYPE": "2",
                "WRS_PATH": "140",
                "WRS_ROW": "041",
                "DATE_ACQUIRED": date,
                "SCENE_CENTER_TIME": "04:36:12.1234560Z",
                "CLOUD_COVER": "12.34",
            },
            "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS": reflectance,
        }
    }


def mtl_text(meta: dict) -> str:
    """The ODL text form of an MTL dict (``GROUP = ...``, quoted strings, numbers bare)."""
    lines: list[str] = []

    def emit(group: dict, depth: int) -> None:
        pad = "  " * depth
        for key, value in group.items():
            if isinstance(value, dict):
                lines.append(f"{pad}GROUP = {key}")
                emit(value, depth + 1)
                lines.append(f"{pad}END_GROUP = {key}")
            else:
                bare = value.replace(".", "", 1).replace("-", "", 1).replace("E", "", 1).isdigit()
                bare = bare or key in ("DATE_ACQUIRED",)
                lines.append(f"{pad}{key} = {value}" if bare else f'{pad}{key} = "{value}"')

    emit(meta, 0)
    lines.append("END")
    return "\n".join(lines) + "\n"


def write_landsat(
    parent: Path,
    *,
    spacecraft: int = 8,
    mtl: tuple[str, ...] = ("json", "txt"),
    height: int = 64,
    width: int = 64,
    seed: int = 0,
    date: str = "2023-10-15",
) -> LandsatFixture:
    """A Landsat C2 L2 folder with SR bands, QA_PIXEL and the MTL files asked for."""
    product_id = LANDSAT_ID if spacecraft >= 8 else LANDSAT7_ID
    if spacecraft == 9:
        product_id = product_id.replace("LC08", "LC09")
    folder = parent / product_id
    folder.mkdir(parents=True)
    bands = [1, 2, 3, 4, 5, 6, 7] if spacecraft >= 8 else [1, 2, 3, 4, 5, 7]
    transform = Affine(30.0, 0.0, LANDSAT_ORIGIN[0], 0.0, -30.0, LANDSAT_ORIGIN[1])
    qa = landsat_qa(height, width)
    dn = {}
    for n in bands:
        # 7273..43636 is the valid SR range; keep well inside it
        data = dn_field(height, width, seed * 100 + n, 8000 + 1000 * n, 30000 + 500 * n)
        data[qa == QA_FILL] = 0
        dn[n] = data
        write_band(folder / f"{product_id}_SR_B{n}.TIF", data, transform)
    write_band(folder / f"{product_id}_QA_PIXEL.TIF", qa, transform, nodata=1)
    meta = mtl_dict(product_id, spacecraft, bands, date)
    if "json" in mtl:
        (folder / f"{product_id}_MTL.json").write_text(json.dumps(meta, indent=4), encoding="utf-8")
    if "txt" in mtl:
        (folder / f"{product_id}_MTL.txt").write_text(mtl_text(meta), encoding="utf-8")
    return LandsatFixture(folder, product_id, dn, qa, transform, meta)


# ----------------------------------------------------------------------------- Sentinel-2


@dataclass
class S2Fixture:
    folder: Path
    dn: dict[str, np.ndarray]  # band -> DN (10 m bands 2x the size of 20 m ones)
    scl: np.ndarray
    transform10: Affine
    transform20: Affine
    paths: dict[str, Path] = field(default_factory=dict)


def s2_scl(height: int, width: int) -> np.ndarray:
    scl = np.full((height, width), SCL_VEGETATION, dtype=np.uint8)
    for cls, (r, c) in SCL_PIXELS.items():
        scl[r, c] = cls
    r, c = SCL_SNOW_PIXEL
    scl[r, c] = 11
    return scl


def mtd_msil2a(baseline: str, offset: bool, spacecraft: str = "Sentinel-2A", uri: str = S2_SAFE) -> str:
    """A trimmed ``MTD_MSIL2A.xml`` with the elements a reader needs, in the real structure and namespaces."""
    offsets = ""
    if offset:
        rows = "\n".join(f'        <BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
        offsets = f"      <BOA_ADD_OFFSET_VALUES_LIST>\n{rows}\n      </BOA_ADD_OFFSET_VALUES_LIST>\n"
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>2023-10-15T05:07:01.024Z</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>2023-10-15T05:07:01.024Z</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{uri}</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <GENERATION_TIME>2023-10-15T09:00:00.000000Z</GENERATION_TIME>
      <Datatake datatakeIdentifier="GS2A_20231015T050701_043393_N{baseline.replace(".", "")}">
        <SPACECRAFT_NAME>{spacecraft}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>2023-10-15T05:07:01.024Z</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>19</SENSING_ORBIT_NUMBER>
      </Datatake>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
        <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
{offsets}    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
"""


def _s2_arrays(height10: int, width10: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    dn = {}
    for i, band in enumerate(("B02", "B03", "B04", "B08")):
        dn[band] = dn_field(height10, width10, seed * 100 + i, 1500 + 300 * i, 6000 + 400 * i)
    for i, band in enumerate(("B11", "B12")):
        dn[band] = dn_field(height10 // 2, width10 // 2, seed * 100 + 10 + i, 1200 + 200 * i, 4000 + 300 * i)
    return dn, s2_scl(height10 // 2, width10 // 2)


def write_safe(
    parent: Path,
    *,
    baseline: str = "05.09",
    offset: bool = True,
    driver: str = "GTiff",
    height10: int = 64,
    width10: int = 64,
    seed: int = 0,
) -> S2Fixture:
    """A Sentinel-2 L2A .SAFE folder: MTD_MSIL2A.xml, 10 m B02/B03/B04/B08, 20 m B11/B12/SCL."""
    folder = parent / S2_SAFE
    img = folder / "GRANULE" / S2_GRANULE / "IMG_DATA"
    ext = ".jp2" if driver == "JP2OpenJPEG" else ".tif"
    t10 = Affine(10.0, 0.0, S2_ORIGIN[0], 0.0, -10.0, S2_ORIGIN[1])
    t20 = Affine(20.0, 0.0, S2_ORIGIN[0], 0.0, -20.0, S2_ORIGIN[1])
    dn, scl = _s2_arrays(height10, width10, seed)
    paths = {}
    for band, data in dn.items():
        res = 10 if data.shape[0] == height10 else 20
        paths[band] = write_band(
            img / f"R{res}m" / f"{S2_PREFIX}_{band}_{res}m{ext}",
            data,
            t10 if res == 10 else t20,
            driver=driver,
        )
    paths["SCL"] = write_band(img / "R20m" / f"{S2_PREFIX}_SCL_20m{ext}", scl, t20, driver=driver)
    # files a real product has beside them, which must be ignored
    write_band(img / "R10m" / f"{S2_PREFIX}_AOT_10m{ext}", np.full((height10, width10), 5, np.uint16), t10)
    (folder / "GRANULE" / S2_GRANULE / "MTD_TL.xml").write_text("<Level-2A_Tile_ID/>\n", encoding="utf-8")
    (folder / "MTD_MSIL2A.xml").write_text(mtd_msil2a(baseline, offset), encoding="utf-8")
    (folder / "manifest.safe").write_text("<xfdu:XFDU/>\n", encoding="utf-8")
    return S2Fixture(folder, dn, scl, t10, t20, paths)


def write_s2_cogs(
    parent: Path,
    *,
    metadata: bool = False,
    height10: int = 64,
    width10: int = 64,
    seed: int = 0,
    name: str = S2_COG_ID,
) -> S2Fixture:
    """A folder of Sentinel-2 L2A COGs named as earth-search serves them (``B02.tif`` ... ``SCL.tif``)."""
    folder = parent / name
    t10 = Affine(10.0, 0.0, S2_ORIGIN[0], 0.0, -10.0, S2_ORIGIN[1])
    t20 = Affine(20.0, 0.0, S2_ORIGIN[0], 0.0, -20.0, S2_ORIGIN[1])
    dn, scl = _s2_arrays(height10, width10, seed)
    paths = {}
    for band, data in dn.items():
        paths[band] = write_band(folder / f"{band}.tif", data, t10 if data.shape[0] == height10 else t20)
    paths["SCL"] = write_band(folder / "SCL.tif", scl, t20)
    write_band(folder / "AOT.tif", np.full((height10, width10), 5, np.uint16), t10)
    if metadata:
        (folder / "product_metadata.xml").write_text(
            mtd_msil2a("05.09", True, "Sentinel-2B", S2_SAFE.replace("S2A", "S2B")), encoding="utf-8"
        )
    return S2Fixture(folder, dn, scl, t10, t20, paths)


# ----------------------------------------------------------------------------- STAC

_S2_COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16", "B12": "swir22"}
_LANDSAT_COMMON = {2: "blue", 3: "green", 4: "red", 5: "nir08", 6: "swir16", 7: "swir22"}


def write_stac_item(
    path: Path,
    hrefs: dict[str, str],
    *,
    platform: str,
    item_id: str,
    common: dict[str, str],
    quality: tuple[str, str] | None,
    properties: dict | None = None,
    raster_bands: dict[str, dict] | None = None,
    bbox: tuple[float, float, float, float] = (86.9, 28.0, 87.0, 28.1),
) -> Path:
    """A STAC 1.0 item JSON: one asset per band (key = common name) with ``eo:bands``."""
    assets = {}
    for band, href in hrefs.items():
        key = common[band]
        asset = {
            "href": href,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data", "reflectance"],
            "eo:bands": [{"name": band, "common_name": common[band]}],
        }
        if raster_bands and band in raster_bands:
            asset["raster:bands"] = [raster_bands[band]]
        assets[key] = asset
    if quality is not None:
        key, href = quality
        assets[key] = {"href": href, "type": "image/tiff; application=geotiff", "roles": ["data"]}
    x0, y0, x1, y1 = bbox
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
        "bbox": list(bbox),
        "properties": {"datetime": "2023-10-15T05:07:01.024000Z", "platform": platform, **(properties or {})},
        "links": [],
        "assets": assets,
    }
    path.write_text(json.dumps(item, indent=2), encoding="utf-8")
    return path


def write_s2_stac(parent: Path, properties: dict | None = None, **kwargs) -> tuple[Path, S2Fixture]:
    """A folder of S2 COGs plus a STAC item beside it whose assets point at them (relative hrefs)."""
    fx = write_s2_cogs(parent, name="cogs")
    hrefs = {band: f"cogs/{band}.tif" for band in _S2_COMMON}
    item = write_stac_item(
        parent / "item.json",
        hrefs,
        platform="sentinel-2b",
        item_id=S2_COG_ID,
        common=_S2_COMMON,
        quality=("scl", "cogs/SCL.tif"),
        properties={"s2:processing_baseline": "05.09", "instruments": ["msi"], **(properties or {})},
        **kwargs,
    )
    return item, fx


def write_landsat_stac(parent: Path, **kwargs) -> tuple[Path, LandsatFixture]:
    """A Landsat C2 L2 folder plus a STAC item whose assets point at its files (absolute paths)."""
    fx = write_landsat(parent, mtl=("json",))
    hrefs = {n: str(fx.folder / f"{fx.product_id}_SR_B{n}.TIF") for n in _LANDSAT_COMMON}
    scale = {"scale": 2.75e-05, "offset": -0.2, "nodata": 0, "data_type": "uint16"}
    item = write_stac_item(
        parent / "landsat-item.json",
        hrefs,
        platform="landsat-8",
        item_id=fx.product_id,
        common=_LANDSAT_COMMON,
        quality=("qa_pixel", str(fx.folder / f"{fx.product_id}_QA_PIXEL.TIF")),
        properties={"instruments": ["oli", "tirs"]},
        raster_bands=dict.fromkeys(_LANDSAT_COMMON, scale),
        **kwargs,
    )
    return item, fx


def write_plane_dem(
    path: Path,
    scene_bounds: tuple[float, float, float, float],
    slope_e: float,
    slope_n: float,
    res_deg: float = 0.0005,
    base: float = 5000.0,
    void: tuple[slice, slice] | None = None,
) -> tuple[Path, tuple[float, float]]:
    """A float32 DEM in EPSG:4326 over ``scene_bounds`` (UTM 45N, plus a margin) that is an
    exact plane in UTM metres: ``z = base + slope_e * (E - E0) + slope_n * (N - N0)``, evaluated
    at each DEM sample's projected position (``(E0, N0)``, returned: the scene's centre).

    On the scene's grid its true slope is ``atan(hypot(slope_e, slope_n))``, which only a
    slope computed with ground distances (not degrees) finds. ``void`` (rows, cols of the
    DEM) is set to its nodata, -9999. The default DEM pixel (about 50 m) is coarser than the
    scene's 30 m: GDAL's bilinear is a plain bilinear only when it upsamples.
    """
    from rasterio.warp import transform, transform_bounds

    west, south, east, north = transform_bounds(UTM, "EPSG:4326", *scene_bounds, densify_pts=21)
    west, south, east, north = west - 0.005, south - 0.005, east + 0.005, north + 0.005
    width, height = int((east - west) / res_deg) + 1, int((north - south) / res_deg) + 1
    geo = Affine(res_deg, 0.0, west, 0.0, -res_deg, north)
    rows, cols = np.mgrid[0:height, 0:width]
    lon, lat = geo * (cols.ravel() + 0.5, rows.ravel() + 0.5)
    e, n = transform("EPSG:4326", UTM, lon, lat)
    e0, n0 = (scene_bounds[0] + scene_bounds[2]) / 2, (scene_bounds[1] + scene_bounds[3]) / 2
    z = base + slope_e * (np.asarray(e) - e0) + slope_n * (np.asarray(n) - n0)
    z = z.reshape(height, width).astype(np.float32)
    if void is not None:
        z[void] = -9999.0
    profile = {"driver": "GTiff", "height": height, "width": width, "count": 1, "dtype": "float32"}
    profile |= {"crs": "EPSG:4326", "transform": geo, "nodata": -9999.0}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(z, 1)
    return path, (e0, n0)
