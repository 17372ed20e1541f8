"""``train --error-folds K``: spatial folds that measure the recipe's error per glacier.

Every scene of a scene-layout data folder is cut into ``K`` horizontal strips; fold
``k`` holds out strip ``k`` of every scene (whole valley sections, as
``benchmarks/cv_everest.py`` does), trains a network on the rest (``gap`` rows on both
sides of the held-out strip left out, so no training window touches it), and maps the
held-out strip. Each glacier of the inventory is then measured twice on that strip: in
the fold's map and in the training mask. Those out-of-fold residuals calibrate the
:class:`~geoglacier.glaciers.error_model.ErrorModel` stored in the final network's
checkpoint (trained on all the data, as without ``--error-folds``).

The fold networks stay beside the checkpoint (``m.fold1.pth``, ...): together they are a
cross-validation committee, usable as an ensemble with ``segment-scene --model m.fold*.pth``.

Everything that can be checked is checked before the first epoch: the layout, the
inventory, the folds' glaciers and training strips, and every output path.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from geoglacier.errors import ConfigError, NoOverlapError
from geoglacier.glaciers.error_model import DEFAULT_LEVEL, ErrorModel, check_level, min_glaciers

DEFAULT_GAP: int = 16
"""Rows left out on both sides of a held-out strip."""

MIN_COVERAGE: float = 0.2
"""A glacier part calibrates when at least this share of its outline lies in the strip."""

MIN_REFERENCE_KM2: float = 0.1
"""... and the training mask holds at least this much glacier inside its outline there."""


def fold_paths(out: str | os.PathLike[str], folds: int) -> list[Path]:
    """``model.pth`` -> ``model.fold1.pth``, ``model.fold2.pth``, ... (one network per fold)."""
    p = Path(out)
    return [p.with_name(f"{p.stem}.fold{k}{p.suffix}") for k in range(1, folds + 1)]


@dataclass(frozen=True)
class Fold:
    """One fold: its training data folder and the held-out strips (scene, mask) of each scene."""

    index: int
    data: Path
    tests: tuple[tuple[str, Path, Path], ...]
    reference: pd.DataFrame


def strips(height: int, folds: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of ``folds`` horizontal strips of near-equal height."""
    edges = [round(height * k / folds) for k in range(folds + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def crop_rows(src_path: Path, rows: tuple[int, int], dst: Path) -> Path:
    """Write rows ``[a, b)`` of a GeoTIFF (its georeferencing, nodata and band names) to ``dst``."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src_path) as src:
        window = Window(0, rows[0], src.width, rows[1] - rows[0])
        profile = src.profile | {"height": rows[1] - rows[0], "transform": src.window_transform(window)}
        profile.update(tiled=False, driver="GTiff")
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        with rasterio.open(dst, "w", **profile) as out:
            out.write(src.read(window=window))
            for i, name in enumerate(src.descriptions, start=1):
                if name:
                    out.set_band_description(i, name)
    return dst


def prepare_folds(
    data_dir: str | os.PathLike[str],
    inventory: str | os.PathLike[str],
    folds: int,
    work: Path,
    *,
    patch_size: int,
    gap: int = DEFAULT_GAP,
    level: float = DEFAULT_LEVEL,
    id_column: str | None = None,
) -> list[Fold]:
    """Cut the folds' data into ``work`` and check they can calibrate an error model.

    Raises:
        ConfigError: fewer than 2 folds, not a scene layout, a fold without training
            strips or without any glacier, or too few glaciers in all for ``level``.
        NoOverlapError: no outline of the inventory reaches any scene.
    """
    from geoglacier.io.layouts import detect_layout, scene_pairs

    if folds < 2:
        raise ConfigError(f"--error-folds must be at least 2, got {folds}")
    if detect_layout(data_dir) != "scenes":
        raise ConfigError(
            f"{data_dir}: --error-folds needs the images/ + masks/ scene layout (georeferenced "
            "scenes the inventory's outlines can be placed on), not classic .npy pairs"
        )
    pairs = scene_pairs(data_dir)
    out = []
    for k in range(folds):
        fold = _cut_fold(pairs, k, folds, work / f"fold{k + 1}", patch_size, gap)
        reference = _fold_reference(fold, inventory, id_column)
        if reference.empty:
            raise ConfigError(
                f"fold {k + 1} of {folds} (rows {_rows_text(pairs, k, folds)}) holds no inventory glacier "
                f"with >= {MIN_REFERENCE_KM2} km2 of glacier in the mask; use fewer --error-folds"
            )
        out.append(Fold(k + 1, fold.data, fold.tests, reference))
    total = sum(len(f.reference) for f in out)
    need = min_glaciers(level, "symmetric")
    if total < need:
        raise ConfigError(
            f"the folds hold {total} glaciers to calibrate on; a {level:.0%} interval needs at least "
            f"{need}; add scenes or lower --error-level"
        )
    return out


def _rows_text(pairs: list[Any], k: int, folds: int) -> str:
    return ", ".join(f"{a}-{b}" for a, b in (strips(p.info.height, folds)[k] for p in pairs))


def _cut_fold(pairs: list[Any], k: int, folds: int, root: Path, patch_size: int, gap: int) -> Fold:
    """The fold's training strips (``root/data``) and held-out strips (``root/test``)."""
    for sub in ("data/images", "data/masks", "test"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    tests = []
    for pair in pairs:
        a, b = strips(pair.info.height, folds)[k]
        for name, rows in (("above", (0, a - gap)), ("below", (b + gap, pair.info.height))):
            if rows[1] - rows[0] >= patch_size:
                crop_rows(pair.image, rows, root / "data" / "images" / f"{pair.name}_{name}.tif")
                crop_rows(pair.mask, rows, root / "data" / "masks" / f"{pair.name}_{name}.tif")
        scene = crop_rows(pair.image, (a, b), root / "test" / f"{pair.name}_scene.tif")
        mask = crop_rows(pair.mask, (a, b), root / "test" / f"{pair.name}_mask.tif")
        tests.append((pair.name, scene, mask))
    if not any((root / "data" / "images").iterdir()):
        raise ConfigError(
            f"fold {k + 1} of {folds}: no strip outside the held-out rows is {patch_size} rows tall "
            f"(with a gap of {gap} rows); use fewer --error-folds or a smaller --patch-size"
        )
    return Fold(k + 1, root / "data", tuple(tests), pd.DataFrame())


def _fold_reference(fold: Fold, inventory: str | os.PathLike[str], id_column: str | None) -> pd.DataFrame:
    """Glaciers of the fold's held-out strips that calibrate: reference area and coverage."""
    from geoglacier.glaciers.areas import glacier_areas
    from geoglacier.glaciers.inventory import read_inventory_for_mask

    rows = []
    for name, _, mask in fold.tests:
        try:
            inv = read_inventory_for_mask(inventory, mask, id_column=id_column)
            table = glacier_areas(mask, inv).table
        except NoOverlapError:
            continue
        table = table[(table["coverage"] >= MIN_COVERAGE) & (table["mapped_area_km2"] >= MIN_REFERENCE_KM2)]
        rows.append(
            pd.DataFrame(
                {"scene": name, "glacier_id": table["glacier_id"], "reference_km2": table["mapped_area_km2"]}
            )
        )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def out_of_fold_table(
    fold: Fold,
    checkpoint: Path,
    inventory: str | os.PathLike[str],
    work: Path,
    device: str,
    id_column: str | None,
) -> pd.DataFrame:
    """Map the fold's held-out strips with its network: the calibrating glaciers' rows with ``reference_km2``."""
    from geoglacier.glaciers.areas import glacier_areas
    from geoglacier.glaciers.inventory import read_inventory_for_mask
    from geoglacier.inference.segment import segment_scene

    tables = []
    for name, scene, mask in fold.tests:
        ref = fold.reference[fold.reference["scene"] == name]
        if ref.empty:
            continue
        pred, prob = work / f"fold{fold.index}_{name}_pred.tif", work / f"fold{fold.index}_{name}_prob.tif"
        segment_scene(
            scene, checkpoint, pred, probabilities=prob, device=device, overwrite=True, progress=False
        )
        inv = read_inventory_for_mask(inventory, mask, id_column=id_column)
        table = glacier_areas(pred, inv, probabilities=prob).table
        table = table.merge(ref[["glacier_id", "reference_km2"]], on="glacier_id", how="inner")
        table["fold"] = fold.index
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def fit_out_of_fold(tables: list[pd.DataFrame], level: float, source: str) -> ErrorModel:
    """The error model of the pooled out-of-fold rows.

    The scale is fitted on all rows, not cross-fitted across folds: on the Everest west
    folds cross-fitting over-covered (100 % at 90 %) with 20 % wider intervals
    (``benchmarks/results/error_model_unclipped.md``).
    """
    from geoglacier.glaciers.error_model import fit_error_model

    pooled = pd.concat(tables, ignore_index=True)
    return fit_error_model(pooled, pooled["reference_km2"].to_numpy(), level=level, source=source)


def train_with_error_folds(
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    inventory: str | os.PathLike[str],
    folds: int,
    *,
    level: float = DEFAULT_LEVEL,
    gap: int = DEFAULT_GAP,
    id_column: str | None = None,
    overwrite: bool = False,
    log: Any = print,
    **overrides: Any,
) -> tuple[Any, ErrorModel]:
    """Train ``folds`` spatial fold networks and the final one; store the error model in ``out``.

    Args:
        data_dir: scene-layout training data (images/ + masks/, georeferenced).
        out: the final checkpoint; the fold networks go beside it (:func:`fold_paths`).
        inventory: glacier outlines of the training area (any vector file, any CRS).
        folds: number of strips each scene is cut into (at least 2).
        level: the interval's coverage, in (0, 1).
        gap: rows left out on both sides of a held-out strip.
        id_column: the inventory's id column (found automatically for RGI and GLIMS).
        overwrite: replace existing outputs.
        log: receives progress lines.
        **overrides: fields of :class:`~geoglacier.training.config.TrainConfig`.

    Returns:
        The final network's :class:`~geoglacier.training.config.TrainResult` and the error model.

    Raises:
        ConfigError, NoOverlapError, OutputExistsError: see :func:`prepare_folds`; an
            output in the way (without ``overwrite``). All before any training.
    """
    from geoglacier.glaciers.error_model import store_error_model
    from geoglacier.training.checks import check_outputs_outside_data
    from geoglacier.training.config import TrainConfig, TrainPaths
    from geoglacier.training.loop import train
    from geoglacier.training.state import check_outputs

    config = TrainConfig().with_overrides(**overrides).validate()
    check_level(level)
    paths = [Path(out), *fold_paths(out, folds)]
    for path in paths:
        member = TrainPaths.for_checkpoint(path)
        check_outputs_outside_data(data_dir, member.all())
        check_outputs(member, overwrite, False)
    with tempfile.TemporaryDirectory(prefix="geoglacier-error-folds-") as tmp:
        work = Path(tmp)
        prepared = prepare_folds(
            data_dir,
            inventory,
            folds,
            work,
            patch_size=config.patch_size,
            gap=gap,
            level=level,
            id_column=id_column,
        )
        tables = []
        for fold, path in zip(prepared, paths[1:], strict=True):
            log(f"Error fold {fold.index} of {folds}: {path} ({len(fold.reference)} glaciers held out)")
            train(fold.data, path, config, overwrite=overwrite, log=log)
            tables.append(out_of_fold_table(fold, path, inventory, work, config.device, id_column))
        log(f"Final network on all the data: {out}")
        result = train(data_dir, out, config, overwrite=overwrite, log=log)
        model = fit_out_of_fold(tables, level, f"{folds} spatial folds of {data_dir}")
        store_error_model(out, model)
    log(f"Error model: {model.describe()}")
    return result, model
