"""Cloud and bad-pixel masks from the products' quality layers.

Each decoder returns per-pixel classes: :data:`CLEAR` (kept), :data:`INVALID` (no data:
fill, saturated or defective) and :data:`CLOUD` (cloud, cirrus, cloud shadow: the part
``--cloud-buffer`` grows). Snow and ice are always :data:`CLEAR`: they are the glacier.

Landsat Collection 2 ``QA_PIXEL`` (bit 0 is the lowest): bit 0 fill -> INVALID; bits 1
dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow -> CLOUD; bit 5 snow -> kept.

Sentinel-2 L2A scene classification ``SCL``: 0 no data and 1 saturated or defective ->
INVALID; 3 cloud shadow, 8 cloud medium probability, 9 cloud high probability, 10 thin
cirrus -> CLOUD; 11 snow and ice -> kept (as are 2, 4-7).

HLS v2.0 ``Fmask`` (bit 0 is the lowest): 255 fill -> INVALID; bits 0 cirrus, 1 cloud, 2
adjacent to cloud or shadow, 3 cloud shadow -> CLOUD; bit 4 snow/ice, bit 5 water and bits
6-7 aerosol level -> kept. Bit 0 was the cirrus flag of HLS v1.4 and is "reserved, but not
used in HLS V2.0" (HLS v2.0 User Guide, Table 9: v2.0 folds cirrus into the cloud bit), so
a v2.0 granule never sets it; it is still read as cirrus, so that a granule (or a
reprocessing) that flags cirrus there is masked rather than mapped as bright ice.
"""

from __future__ import annotations

import numpy as np

CLEAR, INVALID, CLOUD = 0, 1, 2

QA_FILL_BIT = 0
QA_CLOUD_BITS: tuple[int, ...] = (1, 2, 3, 4)  # dilated cloud, cirrus, cloud, cloud shadow
QA_SNOW_BIT = 5
SCL_INVALID: tuple[int, ...] = (0, 1)
SCL_CLOUD: tuple[int, ...] = (3, 8, 9, 10)
SCL_SNOW = 11
FMASK_FILL = 255
#: cirrus (v1.4; reserved and unset in v2.0), cloud, adjacent to cloud/shadow, cloud shadow
FMASK_CLOUD_BITS: tuple[int, ...] = (0, 1, 2, 3)
FMASK_SNOW_BIT, FMASK_WATER_BIT = 4, 5


def qa_pixel_classes(qa: np.ndarray) -> np.ndarray:
    """Classes (uint8) of Landsat ``QA_PIXEL`` values."""
    q = np.asarray(qa).astype(np.uint16, copy=False)
    cloud_bits = np.uint16(sum(1 << b for b in QA_CLOUD_BITS))
    out = np.full(q.shape, CLEAR, dtype=np.uint8)
    out[(q & cloud_bits) != 0] = CLOUD
    out[(q & np.uint16(1 << QA_FILL_BIT)) != 0] = INVALID
    return out


def scl_classes(scl: np.ndarray) -> np.ndarray:
    """Classes (uint8) of Sentinel-2 ``SCL`` values."""
    s = np.asarray(scl)
    out = np.full(s.shape, CLEAR, dtype=np.uint8)
    out[np.isin(s, SCL_CLOUD)] = CLOUD
    out[np.isin(s, SCL_INVALID)] = INVALID
    return out


def fmask_classes(fmask: np.ndarray) -> np.ndarray:
    """Classes (uint8) of HLS v2.0 ``Fmask`` values (snow/ice, water and aerosol are kept)."""
    f = np.asarray(fmask).astype(np.uint8, copy=False)
    cloud_bits = np.uint8(sum(1 << b for b in FMASK_CLOUD_BITS))
    out = np.full(f.shape, CLEAR, dtype=np.uint8)
    out[(f & cloud_bits) != 0] = CLOUD
    out[f == FMASK_FILL] = INVALID
    return out
