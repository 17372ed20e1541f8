"""Write single-band rasters row by row and publish them as Cloud-Optimized GeoTIFFs.

A COG needs its overviews and the full-resolution tiles laid out in a fixed order,
which cannot be produced while data is still arriving. Data therefore goes into a
tiled *staging* GeoTIFF beside the target, either as whole tiles in any order
(:class:`TileWriter`, memory independent of the raster size) or as consecutive rows
buffered into whole block rows (:class:`BlockRowWriter`, memory one block row of the
full width); either way GDAL never rewrites a compressed tile. Then :meth:`CogWriter.finish` builds the final file from
it with GDAL's ``COG`` driver. Both files live under :mod:`geoglacier.io.atomic` names:
the final COG appears under the user's name only when everything succeeded, the
staging file is always removed, and both carry the temporary prefix so that a run
after a SIGKILL clears them (:func:`geoglacier.io.atomic.remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geoglacier.io.atomic import TMP_PREFIX, atomic_output

#: Tile edge for large outputs, and for outputs smaller than :data:`LARGE_MIN_SIDE` on a side.
LARGE_BLOCK: int = 512
SMALL_BLOCK: int = 256
LARGE_MIN_SIDE: int = 1024

BlockCallback = Callable[[np.ndarray, int, int], None]


def cog_blocksize(height: int, width: int) -> int:
    """Tile edge for a ``height`` x ``width`` output: 512, or 256 when a side is under 1024 px.

    Small tiles keep small rasters from being mostly padding; large ones cut the tile
    count (and index size) of big scenes.
    """
    return LARGE_BLOCK if min(height, width) >= LARGE_MIN_SIDE else SMALL_BLOCK


@dataclass(frozen=True)
class RasterSpec:
    """Grid and encoding of a single-band output raster.

    Attributes:
        height, width, crs, transform: the grid, copied from the input scene.
        dtype: numpy/GDAL dtype name (``"uint8"``, ``"float32"``).
        nodata: nodata value written to the file (``255``, ``nan``).
        resampling: overview resampling for the COG driver (``"NEAREST"``, ``"AVERAGE"``, ``"MODE"``).
        description: band description.
        tags: dataset metadata tags.
        blocksize: tile edge; ``None`` picks :func:`cog_blocksize`.
        colormap: a colour table ``{value: (r, g, b, a)}`` for class rasters (uint8 only).
        gcps: ground control points and their CRS, for a grid georeferenced by them
            alone (the COG driver copies them from the staging file).
    """

    height: int
    width: int
    crs: CRS | None
    transform: Affine
    dtype: str
    nodata: float | None
    resampling: str = "NEAREST"
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    blocksize: int | None = None
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    gcps: tuple[tuple[Any, ...], CRS | None] = ((), None)

    @property
    def block(self) -> int:
        return self.blocksize or cog_blocksize(self.height, self.width)


def staging_path(target: str | os.PathLike[str]) -> Path:
    """A free temporary name beside ``target`` that stale-temporary cleanup recognises."""
    t = Path(target)
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{t.name}.stage-", suffix=".tif", dir=t.parent)
    os.close(fd)
    return Path(name)


class BlockRowWriter:
    """Accept consecutive rows of any height; write them to a tiled dataset in whole block rows.

    Writing partial tiles of a compressed GeoTIFF makes GDAL decompress and append
    the tile again when its other half arrives; buffering up to one block row of the
    full width avoids that and bounds memory by ``block x width``.

    Args:
        dataset: a single-band dataset opened for writing.
        block_height: the dataset's tile height.
        on_block: called with ``(block, row_off, col_off)`` after each block row is
            written (used to feed an area accumulator without reading the file back).
    """

    def __init__(self, dataset: Any, block_height: int, on_block: BlockCallback | None = None) -> None:
        self._ds = dataset
        self._height = int(dataset.height)
        self._width = int(dataset.width)
        self._block = int(block_height)
        self._dtype = np.dtype(dataset.dtypes[0])
        self._pending = np.empty((min(self._block, self._height), self._width), dtype=self._dtype)
        self._n = 0  # rows held in _pending
        self._start = 0  # scene row of _pending[0]
        self._on_block = on_block

    @property
    def rows_written(self) -> int:
        """Rows handed to :meth:`write` so far."""
        return self._start + self._n

    def write(self, rows: np.ndarray, row_off: int) -> None:
        """Add ``rows`` (``(h, width)``) starting at scene row ``row_off`` (must follow the last)."""
        if row_off != self.rows_written:
            raise ValueError(f"rows must arrive in order: expected row {self.rows_written}, got {row_off}")
        if rows.ndim != 2 or rows.shape[1] != self._width:
            raise ValueError(f"rows must be (h, {self._width}), got {rows.shape}")
        if row_off + rows.shape[0] > self._height:
            raise ValueError(f"rows {row_off}..{row_off + rows.shape[0]} exceed the height {self._height}")
        i = 0
        while i < rows.shape[0]:
            target = min(self._block, self._height - self._start)
            take = min(target - self._n, rows.shape[0] - i)
            self._pending[self._n : self._n + take] = rows[i : i + take]
            self._n += take
            i += take
            if self._n == target:
                self._flush()

    def _flush(self) -> None:
        if self._n == 0:
            return
        block = self._pending[: self._n]
        self._ds.write(block, 1, window=Window(0, self._start, self._width, self._n))
        if self._on_block is not None:
            self._on_block(block, self._start, 0)
        self._start += self._n
        self._n = 0

    def close(self) -> None:
        """Write what is pending; check that every row arrived."""
        self._flush()
        if self._start != self._height:
            raise ValueError(f"only {self._start} of {self._height} rows were written")


class TileWriter:
    """Accept the whole tiles of a tiled dataset, in any order, and write each one once.

    Nothing is buffered, so memory does not depend on the raster's size; tiles on the
    right and bottom edges are clipped to the raster.

    Args:
        dataset: a single-band dataset opened for writing, tiled ``tile`` x ``tile``.
        tile: the dataset's tile edge.
        on_block: called with ``(tile, row_off, col_off)`` after each tile is written.
        written: ``(tiles_y, tiles_x)`` bool of tiles the dataset already holds (a
            resumed run); :meth:`replay` hands them to ``on_block``.
    """

    def __init__(
        self,
        dataset: Any,
        tile: int,
        on_block: BlockCallback | None = None,
        written: np.ndarray | None = None,
    ) -> None:
        self._ds = dataset
        self._height = int(dataset.height)
        self._width = int(dataset.width)
        self._tile = int(tile)
        shape = (-(-self._height // self._tile), -(-self._width // self._tile))
        self._written = np.zeros(shape, dtype=bool) if written is None else np.array(written, dtype=bool)
        if self._written.shape != shape:
            raise ValueError(f"written tiles {self._written.shape} do not match the tile grid {shape}")
        self._on_block = on_block

    @property
    def written(self) -> np.ndarray:
        """``(tiles_y, tiles_x)`` bool: the tiles written so far (a copy)."""
        return self._written.copy()

    def replay(self) -> None:
        """Read back the tiles the dataset held from the start and hand each to ``on_block``."""
        if self._on_block is None:
            return
        t = self._tile
        for ty, tx in np.argwhere(self._written).tolist():
            r0, c0 = ty * t, tx * t
            window = Window(c0, r0, min(t, self._width - c0), min(t, self._height - r0))
            self._on_block(self._ds.read(1, window=window), r0, c0)

    def write(self, tile: np.ndarray, row_off: int, col_off: int) -> None:
        """Write the tile whose top-left pixel is ``(row_off, col_off)`` (a multiple of the tile edge)."""
        t = self._tile
        if row_off % t or col_off % t or not (0 <= row_off < self._height and 0 <= col_off < self._width):
            raise ValueError(f"({row_off}, {col_off}) is not the corner of a {t} px tile of the raster")
        shape = (min(t, self._height - row_off), min(t, self._width - col_off))
        if tile.shape != shape:
            raise ValueError(f"the tile at ({row_off}, {col_off}) must be {shape}, got {tile.shape}")
        index = (row_off // t, col_off // t)
        if self._written[index]:
            raise ValueError(f"the tile at ({row_off}, {col_off}) was already written")
        self._ds.write(tile, 1, window=Window(col_off, row_off, shape[1], shape[0]))
        self._written[index] = True
        if self._on_block is not None:
            self._on_block(tile, row_off, col_off)

    def close(self) -> None:
        """Check that every tile arrived."""
        if not self._written.all():
            missing = int((~self._written).sum())
            raise ValueError(f"{missing} of {self._written.size} tiles were never written")


def cog_options(spec: RasterSpec) -> dict[str, str]:
    """Creation options of GDAL's COG driver for ``spec``."""
    options = {
        "COMPRESS": "DEFLATE",
        "BLOCKSIZE": str(spec.block),
        "OVERVIEW_RESAMPLING": spec.resampling,
        "BIGTIFF": "IF_SAFER",
    }
    if np.dtype(spec.dtype).kind == "f":
        options["PREDICTOR"] = "YES"  # the floating-point predictor
    return options


def translate_to_cog(src: str | os.PathLike[str], dst: str | os.PathLike[str], spec: RasterSpec) -> None:
    """Build a COG at ``dst`` (which must not exist) from the tiled GeoTIFF ``src``."""
    rasterio.shutil.copy(str(src), str(dst), driver="COG", **cog_options(spec))


class CogWriter:
    """Rows in, a COG out: a staging GeoTIFF plus the final file's temporary name.

    Use through :func:`cog_output`. Call :meth:`write` with consecutive rows, or
    :meth:`write_tile` with whole tiles in any order, then
    :meth:`finish` to build the COG (it returns the temporary path, so a caller can
    derive more outputs from the finished raster before it is renamed into place).
    """

    def __init__(
        self,
        final_tmp: Path,
        stage: Path,
        spec: RasterSpec,
        on_block: BlockCallback | None,
        done: np.ndarray | None = None,
        keep_stage: bool = False,
    ) -> None:
        self.final_tmp = final_tmp
        self.stage = stage
        self.spec = spec
        self.keep_stage = keep_stage  # a resumable run's: its owner removes it once all outputs are done
        self._on_block = on_block
        self._sink: BlockRowWriter | TileWriter | None = None
        self.finished = False
        if done is not None and stage.exists():
            self._ds = rasterio.open(stage, "r+")  # an interrupted run's tiles: kept, fed to on_block
            self._sink = TileWriter(self._ds, spec.block, on_block, written=done)
            self._sink.replay()
            return
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "height": spec.height,
            "width": spec.width,
            "count": 1,
            "dtype": spec.dtype,
            "nodata": spec.nodata,
            "transform": spec.transform,
            "tiled": True,
            "blockxsize": spec.block,
            "blockysize": spec.block,
            "compress": "deflate",
            "zlevel": 1,  # the staging file is read once; speed over size
            "bigtiff": "IF_SAFER",
        }
        if spec.crs is not None:
            profile["crs"] = spec.crs
        self._ds = rasterio.open(stage, "w", **profile)
        if spec.description:
            self._ds.set_band_description(1, spec.description)
        if spec.tags:
            self._ds.update_tags(**spec.tags)
        if spec.colormap:
            self._ds.write_colormap(1, spec.colormap)  # the COG driver copies it from here
        if spec.gcps[0]:
            self._ds.gcps = (list(spec.gcps[0]), spec.gcps[1])

    def write(self, rows: np.ndarray, row_off: int) -> None:
        """Add consecutive rows (see :class:`BlockRowWriter`)."""
        if self._sink is None:
            self._sink = BlockRowWriter(self._ds, self.spec.block, self._on_block)
        if not isinstance(self._sink, BlockRowWriter):
            raise ValueError("this writer already takes tiles; rows and tiles cannot be mixed")
        self._sink.write(rows, row_off)

    def write_tile(self, tile: np.ndarray, row_off: int, col_off: int) -> None:
        """Add one whole tile of :attr:`spec`'s block size, in any order (see :class:`TileWriter`)."""
        if self._sink is None:
            self._sink = TileWriter(self._ds, self.spec.block, self._on_block)
        if not isinstance(self._sink, TileWriter):
            raise ValueError("this writer already takes rows; rows and tiles cannot be mixed")
        self._sink.write(tile, row_off, col_off)

    def finish(self) -> Path:
        """Close the staging file, build the COG at :attr:`final_tmp`, remove the staging file."""
        if not self.finished:
            if self._sink is None:
                raise ValueError("nothing was written")
            self._sink.close()
            self._ds.close()
            translate_to_cog(self.stage, self.final_tmp, self.spec)
            if not self.keep_stage:
                self.stage.unlink(missing_ok=True)
            self.finished = True
        return self.final_tmp

    @property
    def tiles_written(self) -> np.ndarray | None:
        """``(tiles_y, tiles_x)`` bool of the tiles written (None when written by rows)."""
        if self._sink is None:
            b = self.spec.block
            return np.zeros((-(-self.spec.height // b), -(-self.spec.width // b)), dtype=bool)
        return self._sink.written if isinstance(self._sink, TileWriter) else None

    def keep(self) -> None:
        """Close the staging file and leave it for a resumed run (after an interrupt)."""
        if not self._ds.closed:
            self._ds.close()

    def discard(self) -> None:
        """Close and remove the staging file (after a failure)."""
        with contextlib.suppress(Exception):
            if not self._ds.closed:
                self._ds.close()
        self.stage.unlink(missing_ok=True)


@contextlib.contextmanager
def cog_output(
    target: str | os.PathLike[str],
    spec: RasterSpec,
    overwrite: bool = False,
    on_block: BlockCallback | None = None,
    resumable: tuple[Path, np.ndarray | None] | None = None,
) -> Iterator[CogWriter]:
    """Write a COG to ``target`` atomically, row by row.

    Yields a :class:`CogWriter`; when the block ends without error, :meth:`CogWriter.finish`
    runs (if the caller did not call it) and the COG is renamed onto ``target``. On any
    exception or interrupt neither the COG nor the staging file is left behind, except
    with ``resumable``: ``(stage, done)``, a staging path of the caller's, kept after an
    interrupt (``KeyboardInterrupt``) and after any failure of a resumed run (``done``
    given: the tiles it marks are never rewritten), and left to the caller on success;
    ``done`` marks the tiles the stage already holds, which the writer reopens instead
    of starting empty.

    Raises:
        OutputExistsError: ``target`` exists and ``overwrite`` is False.
        OutputPathError: the folder is missing or not writable.
    """
    with atomic_output(target, overwrite) as final_tmp:
        stage, done = resumable if resumable is not None else (staging_path(target), None)
        writer: CogWriter | None = None
        keep = False
        try:
            if done is None:
                stage.unlink(missing_ok=True)  # GDAL creates the file itself
            writer = CogWriter(final_tmp, stage, spec, on_block, done, keep_stage=resumable is not None)
            yield writer
            writer.finish()
        except BaseException as exc:
            keep = resumable is not None and (isinstance(exc, KeyboardInterrupt) or done is not None)
            if keep and writer is not None:
                writer.keep()
            raise
        finally:
            if writer is not None and not keep:
                writer.discard()
            if not keep:
                stage.unlink(missing_ok=True)
            # GDAL's COG driver keeps overviews in "<dst>.ovr.tmp" while it works.
            Path(f"{final_tmp}.ovr.tmp").unlink(missing_ok=True)
