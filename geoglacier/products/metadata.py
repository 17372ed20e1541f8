"""Acquisition metadata carried from a product to its scene, and from a scene to its mask.

Scenes written by ``geoglacier stack`` and masks written by ``segment-scene`` carry
three GeoTIFF dataset tags, so that later steps (change over time, comparisons with
an inventory of another year) know what they look at:

* ``ACQUISITION_DATE``: ISO 8601 date of the acquisition, e.g. ``2023-10-15``;
* ``SENSOR``: e.g. ``Landsat 8 OLI``, ``Sentinel-2A MSI``;
* ``SOURCE_PRODUCT``: the product id, e.g. ``LC08_L2SP_140041_20231015_20231020_02_T1``.

The area summary JSON holds the same values as ``acquisition_date``, ``sensor`` and
``source_product``.
"""

from __future__ import annotations

import datetime as dt
import os

import rasterio

from geoglacier.errors import ConfigError

DATE_TAG = "ACQUISITION_DATE"
SENSOR_TAG = "SENSOR"
PRODUCT_TAG = "SOURCE_PRODUCT"
PRODUCT_TAGS: tuple[str, ...] = (DATE_TAG, SENSOR_TAG, PRODUCT_TAG)
SUMMARY_KEYS: dict[str, str] = {
    DATE_TAG: "acquisition_date",
    SENSOR_TAG: "sensor",
    PRODUCT_TAG: "source_product",
}


def check_date(text: str) -> str:
    """Check an ISO 8601 date (``2023-10-15``; a date-time keeps its date); return ``YYYY-MM-DD``.

    Raises:
        ConfigError: not a date.
    """
    value = str(text).strip()
    try:
        return dt.date.fromisoformat(value[:10]).isoformat() if len(value) >= 10 else _bad_date(value)
    except ValueError:
        return _bad_date(value)


def _bad_date(value: str) -> str:
    raise ConfigError(f"--date {value!r} is not an ISO 8601 date; give it as YYYY-MM-DD, e.g. 2023-10-15")


def product_tags(path: str | os.PathLike[str], date: str | None = None) -> dict[str, str]:
    """The acquisition tags of a scene (those it has), with ``date`` replacing its date when given."""
    with rasterio.open(path) as ds:
        tags = ds.tags()
    found = {k: str(tags[k]) for k in PRODUCT_TAGS if tags.get(k)}
    if date is not None:
        found[DATE_TAG] = check_date(date)
    return found


def summary_fields(tags: dict[str, str]) -> dict[str, str | None]:
    """The summary JSON fields for acquisition tags (``None`` for a missing one)."""
    return {key: tags.get(tag) for tag, key in SUMMARY_KEYS.items()}
