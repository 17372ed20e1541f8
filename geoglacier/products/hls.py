"""NASA's Harmonized Landsat Sentinel-2 (HLS v2.0) granules: L30 (Landsat 8/9 OLI) and S30 (Sentinel-2 MSI).

LP DAAC distributes a granule as one single-band Cloud-Optimized GeoTIFF per band, all on
the 30 m grid of one MGRS tile (in its UTM zone)::

    HLS.L30.T45RVL.2023288T045019.v2.0.B04.tif
    HLS.L30.T45RVL.2023288T045019.v2.0.Fmask.tif
    |   |   |      |       |       |    band (B01 ... B12, B8A, Fmask, SAA, SZA, VAA, VZA)
    |   |   |      |       |       version (LP DAAC writes v2.0; the user guide's examples V2.0)
    |   |   |      |       time, UTC (HHMMSS): an identifier, not the tile's sensing time
    |   |   |      year and day of year (2023288 = 2023-10-15), UTC
    |   |   MGRS tile
    |   L30 (Landsat 8/9 OLI) or S30 (Sentinel-2A/B/C MSI)
    the HLS project

The time in the name is, for L30, the sensing time at the centre of one input Landsat
scene and, for S30, the start of the Sentinel-2 datatake (HLS v2.0 User Guide, section
6.1); the tile itself may be sensed minutes later. The acquisition date is the name's.

A folder holding one granule's files, or any one of those files (its siblings in the same
folder are used), is the source. Reflectance is ``DN * 0.0001``; DN -9999 is fill (no data).

The bands read, by sensor (the thermal and coastal bands are not):

=======  ===========  ===========
name     L30          S30
=======  ===========  ===========
blue     B02          B02
green    B03          B03
red      B04          B04
nir      B05          B8A (narrow NIR, the band HLS harmonises with OLI B05)
swir1    B06          B11
swir2    B07          B12
=======  ===========  ===========

Note that L30 ``B11`` is a thermal band (brightness temperature, DN * 0.01 in degrees
Celsius), S30 ``B11`` the first shortwave infrared.

``Fmask`` bits (HLS v2.0 User Guide, Table 9; decoded in :mod:`geoglacier.products.quality`):
0 cirrus, 1 cloud, 2 adjacent to cloud or shadow and 3 cloud shadow are masked (nodata);
4 snow/ice and 5 water are **kept** (the glacier is snow and ice; its lakes are water), as
are the aerosol level bits 6-7. Bit 0 is reserved and unset in v2.0 (cirrus is part of the
cloud bit there); it is masked as cirrus wherever a granule sets it. Fmask 255 is fill.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from geoglacier.errors import ProductError
from geoglacier.products import landsat, sentinel2
from geoglacier.products.product import BandFile, Product, QualityFile

SCALE: float = 0.0001
FILL: float = -9999.0
QUALITY_BAND = "Fmask"

#: product code -> reflectance name -> band
BANDS: dict[str, dict[str, str]] = {
    "L30": {"blue": "B02", "green": "B03", "red": "B04", "nir": "B05", "swir1": "B06", "swir2": "B07"},
    "S30": {"blue": "B02", "green": "B03", "red": "B04", "nir": "B8A", "swir1": "B11", "swir2": "B12"},
}
SENSORS: dict[str, str] = {"L30": "HLS L30 (Landsat 8/9 OLI)", "S30": "HLS S30 (Sentinel-2 MSI)"}

#: the granule id: ``HLS.L30.T45RVL.2023288T045019.v2.0``
GRANULE = re.compile(
    r"^HLS\.(?P<product>[LS]30)\.(?P<tile>T\d{2}[A-Z]{3})\.(?P<year>\d{4})(?P<doy>\d{3})T\d{6}\.[vV](?P<version>\d+\.\d+)$"
)
_FILE = re.compile(
    r"^(?P<granule>HLS\.[LS]30\.T\d{2}[A-Z]{3}\.\d{7}T\d{6}\.[vV]\d+\.\d+)\.(?P<band>[A-Za-z0-9]+)\.(?i:tiff?)$"
)
#: a Landsat Level-1 product id (``LC08_L1TP_...``: its band files are ``..._B4.TIF``, not ``_SR_B4``)
_LANDSAT_L1 = re.compile(r"^L[COTE]0\d_L1[A-Z]{2}_")
_S2_L1C = re.compile(r"MSIL1C|_L1C(?![A-Za-z0-9])", re.IGNORECASE)


@dataclass(frozen=True)
class Granule:
    """What an HLS granule id says: ``HLS.L30.T45RVL.2023288T045019.v2.0``.

    Attributes:
        id: the granule id, as in its file names.
        product: ``L30`` or ``S30``.
        tile: the MGRS tile, ``T45RVL``.
        date: the name's UTC date, ISO 8601 (``2023-10-15``).
        version: ``2.0``.
    """

    id: str
    product: str
    tile: str
    date: str
    version: str

    @property
    def sensor(self) -> str:
        """The ``SENSOR`` tag: ``HLS L30 (Landsat 8/9 OLI)`` or ``HLS S30 (Sentinel-2 MSI)``."""
        return SENSORS[self.product]

    def note(self) -> str:
        """What stacking does with the granule, for the user."""
        return (
            f"HLS {self.product} tile {self.tile}: reflectance DN * {SCALE:g}, fill {FILL:g}; Fmask "
            "cirrus, cloud, adjacent and cloud shadow masked, snow/ice and water kept"
        )

    def file_name(self, band: str) -> str:
        """The LP DAAC name of one of the granule's band files."""
        return f"{self.id}.{band}.tif"


def parse_granule(granule_id: str) -> Granule:
    """Parse an HLS granule id; the date is the name's year and day of year.

    Raises:
        ProductError: not an HLS granule id, an impossible day of year, or not HLS version 2.
    """
    m = GRANULE.match(granule_id)
    if m is None:
        raise ProductError(f"{granule_id!r} is not an HLS granule id (HLS.L30.T45RVL.2023288T045019.v2.0)")
    year, doy = int(m["year"]), int(m["doy"])
    try:
        date = dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)
    except (ValueError, OverflowError):
        date = dt.date.min
    if doy < 1 or date.year != year:
        raise ProductError(f"{granule_id}: day of year {doy:03d} does not exist in {year}")
    if not m["version"].startswith("2."):
        raise ProductError(
            f"{granule_id}: HLS version {m['version']}; geoglacier reads HLS v2.0 (the COGs LP DAAC serves)"
        )
    return Granule(granule_id, m["product"], m["tile"], date.isoformat(), m["version"])


def hls_files(folder: Path) -> dict[str, dict[str, Path]]:
    """The HLS files in ``folder``: granule id -> band -> path."""
    found: dict[str, dict[str, Path]] = {}
    for p in sorted(folder.iterdir()):
        m = _FILE.match(p.name)
        if m and p.is_file():
            found.setdefault(m["granule"], {})[m["band"]] = p
    return found


def is_hls_file(path: Path) -> bool:
    """A file named like an HLS band file (``HLS.L30.T45RVL.2023288T045019.v2.0.B04.tif``)."""
    return _FILE.match(path.name) is not None


def is_hls_folder(folder: Path) -> bool:
    """A folder holding at least one file named like an HLS band file."""
    return any(_FILE.match(p.name) for p in folder.iterdir() if p.is_file())


def _what_else(folder: Path) -> str | None:
    """What a folder without HLS files looks like instead (a product ``stack`` reads otherwise, or Level-1)."""
    # the folder's own files, the folder and those above it (a band deep in a .SAFE)
    names = [*folder.parts, *(p.name for p in folder.iterdir() if p.is_file())]
    if any(_LANDSAT_L1.match(n) for n in names):
        return "a Landsat Level-1 product"
    if any(_S2_L1C.search(n) for n in names):
        return "a Sentinel-2 Level-1C product"
    if landsat.is_landsat(folder):
        return "a Landsat Collection 2 Level-2 product (leave out --kind to stack it as one)"
    if sentinel2.is_safe(folder) or sentinel2.is_cog_folder(folder):
        return "a Sentinel-2 Level-2A product (leave out --kind to stack it as one)"
    return None


def _not_hls(path: Path) -> ProductError:
    folder = path if path.is_dir() else path.parent
    other = _what_else(folder)
    need = (
        "HLS needs the HLS v2.0 surface reflectance files of one granule "
        "(HLS.L30.<tile>.<YYYYDDD>T<HHMMSS>.v2.0.B04.tif ..., or HLS.S30...)"
    )
    if other is not None:
        return ProductError(f"{path}: looks like {other}: {need}")
    below = sorted(g for sub in folder.iterdir() if sub.is_dir() for g in hls_files(sub))
    if below:
        return ProductError(
            f"{path}: no HLS band files here, but its folders hold {len(below)} HLS granules ({below[0]}"
            f"{', ...' if len(below) > 1 else ''}); give one granule's folder, or one of its band files"
        )
    return ProductError(
        f"{path}: no HLS band files here; {need}; if it is another kind of product, leave out --kind"
    )


def _granule_files(path: Path) -> tuple[Path, str, dict[str, Path]]:
    """The folder, granule id and band files of the granule at ``path`` (a folder or one of its files)."""
    if path.is_file():
        m = _FILE.match(path.name)
        if m is None:
            raise _not_hls(path)
        folder = path.parent
        return folder, m["granule"], hls_files(folder)[m["granule"]]
    granules = hls_files(path)
    if not granules:
        raise _not_hls(path)
    if len(granules) > 1:
        ids = sorted(granules)
        raise ProductError(
            f"{path}: mixes {len(ids)} HLS granules ({ids[0]}, {ids[1]}{', ...' if len(ids) > 2 else ''}); "
            "give a folder holding one granule, or one of its band files"
        )
    granule_id, files = next(iter(granules.items()))
    return path, granule_id, files


def read_hls(source: str | Path) -> Product:
    """Describe an HLS v2.0 granule (its folder, or one of its band files) as a :class:`Product`.

    Every reflectance band of the sensor is listed, present or not: ``stack`` reports a band
    the recipe needs that is missing by its expected file name.

    Raises:
        ProductError: no HLS files (a Level-1 or another product is named as such), a folder
            mixing granules, or a granule id that is not HLS v2.
    """
    path = Path(source)
    folder, granule_id, files = _granule_files(path)
    granule = parse_granule(granule_id)
    bands = {
        name: BandFile(str(files.get(band, folder / granule.file_name(band))), SCALE, 0.0, nodata=FILL)
        for name, band in BANDS[granule.product].items()
    }
    fmask = files.get(QUALITY_BAND, folder / granule.file_name(QUALITY_BAND))
    return Product(
        kind="hls",
        source=str(path),
        bands=bands,
        quality=QualityFile(str(fmask), "fmask"),
        acquisition_date=granule.date,
        sensor=granule.sensor,
        product_id=granule.id,
        notes=(granule.note(),),
    )
