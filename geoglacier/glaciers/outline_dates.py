"""How old an inventory's outlines are, compared with a scene's acquisition date.

Inventories date each outline by the imagery it was drawn on: RGI 6.0 in ``BgnDate``
(``YYYYMMDD``, ``99`` for an unknown month or day, ``-9999999`` when unknown), RGI 7.0
and GLIMS in ``src_date`` (ISO 8601, e.g. ``2000-10-30T00:00:00``). Outlines are often
years older than the scene they label, and glaciers change in that time:
:func:`outline_age` measures the gap and :func:`warn_if_outdated` says when it is large.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geoglacier.errors import GeoglacierWarning
from geoglacier.glaciers.dates import DAYS_PER_YEAR

DATE_COLUMNS: tuple[str, ...] = ("BgnDate", "src_date")
"""Outline date columns looked for, in order: RGI 6.0, then RGI 7.0 and GLIMS."""

DEFAULT_TOLERANCE_YEARS: float = 2.0
"""Largest scene-to-outline gap (years) that passes without a warning."""

_FIRST_YEAR, _LAST_YEAR = 1850, 2200
_YMD = re.compile(r"^(\d{4})(\d{2})?(\d{2})?$")


class OutdatedOutlinesWarning(GeoglacierWarning):
    """The outlines were drawn years before (or after) the scene they label."""


def parse_inventory_date(value: Any) -> dt.date | None:
    """An outline's date from an inventory attribute, or ``None`` when it is unknown.

    Accepts RGI 6.0's ``YYYYMMDD`` (an unknown month, ``99``, becomes 1 July; an unknown
    day, ``99``, the 15th), a bare year, ISO 8601 dates and date-times (RGI 7.0, GLIMS),
    and date objects. Missing values (``None``, empty, ``-9999999``, anything before
    1850 or after 2200, anything unreadable) are ``None``: a date is a hint, never an error.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value if _FIRST_YEAR <= value.year <= _LAST_YEAR else None
    text = str(value).strip()
    match = _YMD.match(text)
    if match:
        return _from_parts(*match.groups())
    try:
        day = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return None
    return day if _FIRST_YEAR <= day.year <= _LAST_YEAR else None


def _from_parts(year: str, month: str | None, day: str | None) -> dt.date | None:
    y = int(year)
    if not _FIRST_YEAR <= y <= _LAST_YEAR:
        return None
    m = int(month) if month and 1 <= int(month) <= 12 else None
    if m is None:
        return dt.date(y, 7, 1)  # year only: its middle
    d = int(day) if day else 15
    try:
        return dt.date(y, m, d)
    except ValueError:  # day 99 (unknown) or 31 June
        return dt.date(y, m, 15)


@dataclass(frozen=True)
class OutlineAge:
    """The gap between a scene's date and its outlines' dates.

    Attributes:
        scene_date: the scene's acquisition date (``None``: unknown).
        outlines: outlines compared.
        dated: of those, outlines with a known date.
        first, median, last: earliest, median and latest outline date (``None`` when none is known).
        years: ``(min, median, max)`` of scene date minus outline date, in years (positive:
            the outlines are older); ``None`` when either side is unknown.
    """

    scene_date: dt.date | None
    outlines: int
    dated: int
    first: dt.date | None
    median: dt.date | None
    last: dt.date | None
    years: tuple[float, float, float] | None

    @property
    def largest_gap(self) -> float | None:
        """The largest gap in years, either way (``None`` when unknown)."""
        return None if self.years is None else max(abs(self.years[0]), abs(self.years[2]))

    def describe(self) -> str:
        """A short phrase for summaries, e.g. ``outlines 2000-10-30..2010-04-09, scene 2023-10-15``."""
        if self.first is None:
            outlines = "outline dates unknown"
        elif self.first == self.last:
            outlines = f"outlines {self.first.isoformat()}"
        else:
            outlines = f"outlines {self.first.isoformat()}..{self.last.isoformat()}"  # type: ignore[union-attr]
        if self.dated and self.dated < self.outlines:
            outlines += f" ({self.dated} of {self.outlines} dated)"
        scene = f"scene {self.scene_date.isoformat()}" if self.scene_date else "scene date unknown"
        return f"{outlines}, {scene}"


def outline_age(scene_date: dt.date | None, dates: Sequence[dt.date | None]) -> OutlineAge:
    """Compare ``scene_date`` with the outlines' ``dates`` (``None`` entries: unknown)."""
    known = sorted(d for d in dates if d is not None)
    if not known:
        return OutlineAge(scene_date, len(dates), 0, None, None, None, None)
    median = known[(len(known) - 1) // 2]
    years = None
    if scene_date is not None:
        gaps = [(scene_date - d).days / DAYS_PER_YEAR for d in known]
        years = (min(gaps), statistics.median(gaps), max(gaps))
    return OutlineAge(scene_date, len(dates), len(known), known[0], median, known[-1], years)


def warn_if_outdated(
    age: OutlineAge, scene: str, tolerance_years: float = DEFAULT_TOLERANCE_YEARS, stacklevel: int = 2
) -> bool:
    """Warn once when some outline is more than ``tolerance_years`` from the scene's date.

    Nothing is said when either date is unknown. Returns whether it warned.
    """
    gap = age.largest_gap
    if gap is None or gap <= tolerance_years or age.years is None:
        return False
    lo, mid, hi = age.years
    way = "older" if mid >= 0 else "newer"
    n = f"{age.dated} dated outline{'s' if age.dated != 1 else ''}"
    spread = f"median; {lo:.1f} to {hi:.1f} years over {n}" if hi - lo >= 0.05 else n
    warnings.warn(
        f"{scene}: {age.describe()}: the outlines are {abs(mid):.1f} years {way} than the scene "
        f"({spread}), more than the {tolerance_years:g}-year tolerance; glaciers change in that "
        "time, so the labels may be outdated: use outlines nearer the scene's date, or mark the "
        "uncertain margins nodata with --edge-pixels",
        OutdatedOutlinesWarning,
        stacklevel=stacklevel,
    )
    return True
