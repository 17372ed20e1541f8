"""Tests for geoglacier.io.cog: whole tiles in any order make the same COG as consecutive rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from geoglacier.io.cog import RasterSpec, cog_output
from tests.data import UTM_TRANSFORM


def spec(height: int, width: int) -> RasterSpec:
    return RasterSpec(height, width, CRS.from_epsg(32645), UTM_TRANSFORM, "uint8", 255, blocksize=32)


def test_tiles_in_any_order_equal_rows(tmp_path: Path) -> None:
    height, width = 70, 100  # clipped tiles on the right and bottom
    data = np.random.default_rng(0).integers(0, 3, (height, width)).astype(np.uint8)
    seen: list[tuple[int, int, tuple[int, int]]] = []
    with cog_output(tmp_path / "rows.tif", spec(height, width)) as out:
        out.write(data[:50], 0)
        out.write(data[50:], 50)
    corners = [(r, c) for r in range(0, height, 32) for c in range(0, width, 32)]
    order = np.random.default_rng(1).permutation(len(corners))
    with cog_output(
        tmp_path / "tiles.tif", spec(height, width), on_block=lambda b, r, c: seen.append((r, c, b.shape))
    ) as out:
        for i in order:
            r, c = corners[i]
            out.write_tile(data[r : r + 32, c : c + 32], r, c)
    with rasterio.open(tmp_path / "rows.tif") as a, rasterio.open(tmp_path / "tiles.tif") as b:
        assert a.profile == b.profile
        assert np.array_equal(a.read(1), b.read(1))
        assert np.array_equal(b.read(1), data)
    assert sorted((r, c) for r, c, _ in seen) == sorted(corners)
    assert sum(h * w for _, _, (h, w) in seen) == height * width


def test_tile_writer_rejects_misplaced_repeated_and_missing_tiles(tmp_path: Path) -> None:
    tile = np.zeros((32, 32), np.uint8)
    with (
        pytest.raises(ValueError, match="never written"),
        cog_output(tmp_path / "m.tif", spec(64, 64)) as out,
    ):
        with pytest.raises(ValueError, match="corner"):
            out.write_tile(tile, 16, 0)
        with pytest.raises(ValueError, match="must be"):
            out.write_tile(tile[:10], 0, 0)
        out.write_tile(tile, 0, 0)
        with pytest.raises(ValueError, match="already"):
            out.write_tile(tile, 0, 0)
        with pytest.raises(ValueError, match="mixed"):
            out.write(np.zeros((1, 64), np.uint8), 0)
    assert not list(tmp_path.iterdir())  # nothing half-written
