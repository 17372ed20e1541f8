"""Typed exceptions and warnings raised by the library.

Every exception subclasses a built-in so callers can catch it generically, and a
common :class:`GeoglacierError` base so the CLI can turn any of them into a
one-line message. Messages say what was expected and how to fix it.
"""

from __future__ import annotations


class GeoglacierError(Exception):
    """Base class for every error the library raises on bad input."""


class SceneNotFoundError(GeoglacierError, FileNotFoundError):
    """A scene, mask or data file does not exist."""


class InvalidRasterError(GeoglacierError, ValueError):
    """A file is not a readable raster, is corrupt, or has the wrong shape or dtype."""


class BandCountError(InvalidRasterError):
    """A raster has a different number of bands than expected."""


class MaskError(GeoglacierError, ValueError):
    """A mask has unexpected values, bands or grid."""


class GridMismatchError(MaskError):
    """A mask is not on the grid of its scene (shape, transform or CRS differ)."""


class LayoutError(GeoglacierError, ValueError):
    """A data directory does not follow one of the supported layouts."""


class CheckpointError(GeoglacierError, ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model or data."""


class ConfigError(GeoglacierError, ValueError):
    """An option value is out of range (window size, overlap, batch size, device ...)."""


class EngineUnavailableError(GeoglacierError, ImportError):
    """An optional inference engine (onnxruntime, OpenVINO) is not installed."""


class WeightsUnavailableError(GeoglacierError, RuntimeError):
    """Pretrained encoder weights could not be obtained (for example, no network)."""


class OutputExistsError(GeoglacierError, FileExistsError):
    """An output file exists and ``overwrite`` was not requested."""


class OutputPathError(GeoglacierError, OSError):
    """An output cannot be written where asked (missing or read-only folder)."""


class CRSMissingError(GeoglacierError, ValueError):
    """A scene has no CRS and no pixel size was given, so areas cannot be computed."""


class DistributedError(GeoglacierError, RuntimeError):
    """A process of a distributed (torchrun) job failed or waited past its timeout."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with a message for the user about what was kept.

    A ``KeyboardInterrupt`` so that every ``finally`` and temporary-file cleanup runs as
    for a plain Ctrl-C; the CLI prints its message and exits 130.
    """


class InventoryError(GeoglacierError, ValueError):
    """A glacier inventory cannot be used: unreadable, no CRS, no usable id column, no overlap."""


class NoOverlapError(InventoryError, MaskError):
    """Two inputs that must meet on the ground do not: masks of two dates, or an
    inventory whose outlines reach none of the mask."""


class RecipeError(ConfigError):
    """A band recipe names an unknown band, repeats one, or is empty."""


class RecipeMismatchError(GeoglacierError, ValueError):
    """A scene's bands (its band descriptions) differ from the recipe a checkpoint was trained on."""


class ProductError(GeoglacierError, ValueError):
    """A satellite product is not one ``geoglacier stack`` knows, or its metadata is unreadable."""


class MissingBandError(ProductError):
    """A product lacks a band (or quality layer) that the band recipe or cloud mask needs."""


class FootprintError(ProductError):
    """A product's bands, or the requested bounds, do not share a footprint."""


class GeoglacierWarning(UserWarning):
    """Something odd but usable: a 0/255 mask, a scene without CRS, ..."""


class DemError(ProductError):
    """A DEM given to ``stack --dem`` is missing, unreadable, has no CRS or does not overlap the output."""


class DemCoverageWarning(GeoglacierWarning):
    """Much of a stacked scene has no DEM (void or outside it): its terrain bands, and so its pixels, are nodata."""
