"""Acquisition dates of masks and the time between two of them.

Masks carry their scene's acquisition date in the GeoTIFF dataset tag
``ACQUISITION_DATE`` (ISO 8601, e.g. ``2023-10-15``; ``segment-scene`` copies it from
the scene or sets it with ``--date``). A full timestamp (``2023-10-15T04:12:33Z``) is
accepted and cut to its date: change rates are per year, so the time of day is noise.
"""

from __future__ import annotations

import datetime as dt
import os

import rasterio

from geoglacier.errors import ConfigError

DATE_TAG: str = "ACQUISITION_DATE"
DAYS_PER_YEAR: float = 365.25
"""Julian year: rates are change per 365.25 days."""


def parse_date(value: str | dt.date, source: str = "the date") -> dt.date:
    """An ISO 8601 date (or date-time, cut to its date) as :class:`datetime.date`.

    Raises:
        ConfigError: ``value`` is not an ISO 8601 date.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        if "T" in text or " " in text:
            return dt.datetime.fromisoformat(text).date()
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{source}: {text!r} is not an ISO 8601 date; write it as YYYY-MM-DD (e.g. 2023-10-15)"
        ) from None


def read_date(path: str | os.PathLike[str]) -> dt.date | None:
    """The ``ACQUISITION_DATE`` tag of a raster, or ``None`` when it has none.

    Raises:
        ConfigError: the tag is there but is not an ISO 8601 date.
    """
    with rasterio.open(path) as ds:
        value = ds.tags().get(DATE_TAG)
    if value is None or not str(value).strip():
        return None
    return parse_date(value, f"{path} tag {DATE_TAG} (override it with --t0-date/--t1-date)")


def years_between(t0: dt.date, t1: dt.date) -> float:
    """Years from ``t0`` to ``t1`` (days / 365.25).

    Raises:
        ConfigError: ``t1`` is not after ``t0`` (the masks are in the wrong order, or the
            same date twice, where a rate per year means nothing).
    """
    days = (t1 - t0).days
    if days <= 0:
        raise ConfigError(
            f"the t1 date {t1.isoformat()} is not after the t0 date {t0.isoformat()}; give the earlier "
            "mask first (or fix --t0-date/--t1-date)"
        )
    return days / DAYS_PER_YEAR
