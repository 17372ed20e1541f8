"""A matrix of bad inputs run through the real ``geoglacier`` command line.

Every row is a mistake a user can make (a wrong file, a wrong option, a mismatched
checkpoint ...). For each one the command must fail the same way:

- a non-zero exit status;
- exactly one line on stderr, ``Error: <message>``, and no traceback;
- the message names the offending file or option and says how to fix it;
- no output file is created or changed, and the input files are untouched.

Rows for commands that are not registered on the group yet are skipped with the
reason; they start running once ``cli/commands.py`` lists the command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from click.testing import CliRunner

from geoglacier.checkpoint import CheckpointMeta, checkpoint_dict, save_checkpoint
from geoglacier.cli.main import cli
from geoglacier.model import ModelConfig, build_model
from tests.data import UTM_TRANSFORM, scene_array, write_raster, write_scene
from tests.products_data import LANDSAT_ID, write_landsat, write_s2_stac

SIZE = 64
BANDS = ("red", "green", "blue", "nir", "ndvi")
ROOT = Path(__file__).resolve().parents[2]
# A folder where files cannot be created even by root (chmod does not stop root).
UNWRITABLE_DIR = Path("/proc")

SEG = "--device cpu --precision fp32 --no-progress"
TRAIN = (
    "--encoder resnet18 --encoder-weights none --epochs 1 --patch-size 64 --batch-size 2 "
    "--device cpu --num-workers 0 --no-augment"
)
GOOD_SEG = "segment-scene {i}/scene.tif --model {i}/model.pth --out {o}/mask.tif " + SEG


# ------------------------------------------------------------------------------ fixtures


def _meta(bands: int, arch: str = "UnetPlusPlus") -> CheckpointMeta:
    names = BANDS if bands == 5 else tuple(f"band{i + 1}" for i in range(bands))
    return CheckpointMeta(
        model=ModelConfig(arch=arch, encoder="resnet18", in_channels=bands),
        bands=names,
        mean=(127.0,) * bands,
        std=(60.0,) * bands,
        patch_size=SIZE,
    )


def _mask(height: int = SIZE, width: int = SIZE, seed: int = 0) -> np.ndarray:
    return (scene_array(height, width, 1, seed)[0] > 127).astype(np.uint8)


def _classic(
    root: Path, name: str = "a", image: np.ndarray | None = None, mask: np.ndarray | None = None
) -> Path:
    """A classic-layout folder: masked_NAME.npy (H, W, 5) beside NAME.tif."""
    root.mkdir(parents=True, exist_ok=True)
    if image is None:
        image = np.moveaxis(scene_array(SIZE, SIZE, 5, seed=3), 0, -1)
    np.save(root / f"masked_{name}.npy", np.ascontiguousarray(image, dtype=np.float32))
    write_raster(root / f"{name}.tif", _mask() if mask is None else mask)
    return root


def _scenes(root: Path, masks: dict[str, dict] | None = None, images: tuple[str, ...] = ("a",)) -> Path:
    """A scene-layout folder: images/NAME.tif + masks/NAME.tif (``masks`` maps name -> write_raster kwargs)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for name in images:
        write_scene(root / "images" / f"{name}.tif", SIZE, SIZE, seed=4)
    for name, kwargs in (masks if masks is not None else {"a": {}}).items():
        kwargs = dict(kwargs)
        data = kwargs.pop("data", None)
        write_raster(root / "masks" / f"{name}.tif", _mask() if data is None else data, **kwargs)
    return root


class _CallsAFunction:
    """Unpickles by calling a function (a harmless one: os.getcwd), as malicious files do."""

    def __reduce__(self) -> tuple[Callable[[], str], tuple[()]]:
        return (os.getcwd, ())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every bad (and the few good) input files the rows refer to, written once."""
    d = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    # Scenes.
    write_scene(d / "scene.tif", SIZE, SIZE, seed=1)
    write_scene(d / "scene3.tif", SIZE, SIZE, seed=1, bands=3)
    write_scene(d / "nocrs.tif", SIZE, SIZE, seed=1, crs=None)
    (d / "folder.tif").mkdir()
    (d / "text.tif").write_text("this is not a GeoTIFF\n")
    write_scene(d / "full.tif", 256, 256, seed=2)
    raw = (d / "full.tif").read_bytes()
    (d / "truncated.tif").write_bytes(raw[: len(raw) // 2])
    (d / "full.tif").unlink()
    write_raster(d / "allnodata.tif", np.zeros((5, SIZE, SIZE), dtype=np.uint16), nodata=0)
    write_raster(d / "allnan.tif", np.full((5, SIZE, SIZE), np.nan, dtype=np.float32))
    # Masks for summarize / evaluate.
    write_raster(d / "mask07.tif", _mask() * 7)
    write_raster(d / "mask_small.tif", _mask(48, SIZE))
    write_raster(d / "mask.tif", _mask())
    # Checkpoints.
    model5 = build_model(ModelConfig(encoder="resnet18", in_channels=5), None)
    save_checkpoint(model5, _meta(5), d / "model.pth")
    save_checkpoint(
        build_model(ModelConfig(encoder="resnet18", in_channels=4), None), _meta(4), d / "model4.pth"
    )
    unet = build_model(ModelConfig(arch="Unet", encoder="resnet18", in_channels=5), None)
    wrong = checkpoint_dict(unet, _meta(5, arch="Unet"))
    wrong["model"] = _meta(5).model.to_dict()  # says U-Net++, holds U-Net weights
    torch.save(wrong, d / "model_arch.pth")
    torch.save(model5.state_dict(), d / "state_dict.pth")  # weights only, no geoglacier metadata
    # A dict that needs an arbitrary class to unpickle (a date object): weights_only refuses it.
    import datetime

    torch.save({"format": "geoglacier-checkpoint", "payload": datetime.date(2020, 1, 1)}, d / "pickled.pth")
    torch.save({"format": "geoglacier-checkpoint", "payload": _CallsAFunction()}, d / "code.pth")
    (d / "notes.pth").write_text("not a checkpoint either\n")
    # Training data folders.
    _classic(d / "classic_good")
    _classic(d / "classic_values", mask=_mask() * 7)
    _classic(d / "classic_two_bands", mask=np.stack([_mask(), _mask()]))
    _classic(d / "classic_channels_first", image=scene_array(SIZE, SIZE, 5, seed=3))
    _classic(d / "classic_no_mask")
    (d / "classic_no_mask" / "a.tif").unlink()
    _scenes(d / "scenes_shape", {"a": {"data": _mask(48, SIZE)}})
    shifted = Affine(30.0, 0.0, UTM_TRANSFORM.c + 300.0, 0.0, -30.0, UTM_TRANSFORM.f)
    _scenes(d / "scenes_transform", {"a": {"transform": shifted}})
    _scenes(d / "scenes_crs", {"a": {"crs": "EPSG:32644"}})
    _scenes(d / "scenes_lone_mask", {"a": {}, "b": {}})
    _scenes(d / "scenes_lone_scene", {"a": {}}, images=("a", "b"))
    _scenes(d / "scenes_allnodata", {"a": {}})
    write_raster(
        d / "scenes_allnodata" / "images" / "a.tif",
        np.full((5, SIZE, SIZE), -9999, dtype=np.int16),
        nodata=-9999,
    )
    (d / "empty_dir").mkdir()
    # Glacier inventories for `glaciers` (outlines on the mask's grid, or far from it).
    from tests.glacier_data import px_box, write_outlines

    inside = [px_box(5, 5, 20, 20, UTM_TRANSFORM), px_box(30, 30, 50, 50, UTM_TRANSFORM)]
    write_outlines(d / "inv.gpkg", inside)
    write_outlines(d / "inv_dup.gpkg", inside, props=[{"RGIId": "RGI60-15.00001"}] * 2)
    write_outlines(d / "inv_noid.gpkg", inside, props=[{"ident": "a"}, {"ident": "b"}])
    write_outlines(d / "inv_far.gpkg", [px_box(9000, 9000, 9010, 9010, UTM_TRANSFORM)])
    # Satellite products for stack, and scenes with band recipes for segment-scene.
    (d / "holiday").mkdir()
    (d / "holiday" / "photo.jpg").write_bytes(b"\xff\xd8")
    landsat = write_landsat(d / "landsat", mtl=("json",))
    (landsat.folder / f"{landsat.product_id}_SR_B6.TIF").unlink()
    item, _ = write_s2_stac(d / "stac")
    raw_item = json.loads(item.read_text())
    raw_item["assets"] = {"thumbnail": {"href": "thumb.png", "type": "image/png"}}  # no band assets
    item.write_text(json.dumps(raw_item))
    write_scene(
        d / "scene_swapped.tif", SIZE, SIZE, seed=1, descriptions=("green", "red", "blue", "nir", "ndvi")
    )
    # Inputs that rows name as outputs too (with --overwrite): only those rows use them, so a
    # regression that replaces one cannot break other rows.
    write_raster(d / "victim_mask.tif", _mask(seed=5))
    save_checkpoint(model5, _meta(5), d / "victim_model.pth")
    _classic(d / "victim_train")
    write_landsat(d / "victim_landsat", mtl=("json",))
    return d


# ----------------------------------------------------------------------------- the rows


def _offline_hub(monkeypatch: pytest.MonkeyPatch, out: Path) -> None:
    """No cached ImageNet weights, and a hub address that can never answer (TEST-NET-1).

    The code under test probes the hub itself (3 s timeout); nothing reaches the network.
    """
    import huggingface_hub.constants

    import geoglacier.model

    cache = out.parent / "hf-cache"
    cache.mkdir()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(out.parent / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False, raising=False)
    monkeypatch.setattr(geoglacier.model, "HUB_HOST", "192.0.2.1")


def _existing_output(name: str) -> Callable[[pytest.MonkeyPatch, Path], None]:
    def setup(monkeypatch: pytest.MonkeyPatch, out: Path) -> None:
        (out / name).write_bytes(b"an earlier result that must survive\n")

    return setup


def _unwritable(monkeypatch: pytest.MonkeyPatch, out: Path) -> None:
    if not UNWRITABLE_DIR.is_dir():
        pytest.skip(f"{UNWRITABLE_DIR} does not exist here: no folder where root cannot create files")
    probe = UNWRITABLE_DIR / ".geoglacier-probe"
    try:
        probe.open("w").close()
    except OSError:
        return
    probe.unlink()
    pytest.skip(f"files can be created in {UNWRITABLE_DIR} here; no unwritable folder to test with")


@dataclass(frozen=True)
class Row:
    """One bad input.

    Attributes:
        id: the test id.
        argv: the command line after ``geoglacier``; ``{i}`` is the inputs folder and
            ``{o}`` the (empty) output folder of the row.
        names: strings that must all appear in the message (the offending file or option).
        fix: strings of which at least one must appear (how to fix it).
        setup: prepares the row (monkeypatches, an existing output in ``{o}``).
        max_seconds: the command must fail within this time.
    """

    id: str
    argv: str
    names: tuple[str, ...]
    fix: tuple[str, ...]
    setup: Callable[[pytest.MonkeyPatch, Path], None] | None = None
    max_seconds: float | None = None

    @property
    def command(self) -> str:
        return self.argv.split()[0]


ROWS: list[Row] = [
    # --- scenes (segment-scene) ------------------------------------------------------
    Row("scene-missing", GOOD_SEG.replace("scene.tif", "missing.tif"), ("missing.tif",), ("check the path",)),
    Row(
        "scene-directory", GOOD_SEG.replace("scene.tif", "folder.tif"), ("folder.tif", "directory"), ("give",)
    ),
    Row("scene-text-file", GOOD_SEG.replace("scene.tif", "text.tif"), ("text.tif",), ("re-export", "check")),
    Row(
        "scene-truncated", GOOD_SEG.replace("scene.tif", "truncated.tif"), ("truncated.tif",), ("re-export",)
    ),
    Row(
        "scene-3-bands-5-band-model",
        GOOD_SEG.replace("scene.tif", "scene3.tif"),
        ("model.pth", "3"),
        ("same bands",),
    ),
    Row(
        "scene-int-all-nodata",
        GOOD_SEG.replace("scene.tif", "allnodata.tif"),
        ("allnodata.tif", "nodata"),
        ("check",),
    ),
    Row("scene-all-nan", GOOD_SEG.replace("scene.tif", "allnan.tif"), ("allnan.tif",), ("check",)),
    Row(
        "scene-no-crs-summary",
        GOOD_SEG.replace("scene.tif", "nocrs.tif") + " --summary {o}/areas.json",
        ("nocrs.tif", "CRS"),
        ("--pixel-size",),
    ),
    # --- masks and training data (train, summarize, evaluate) ------------------------
    Row("mask-values-0-7", "train {i}/classic_values --out {o}/model.pth " + TRAIN, ("a.tif", "7"), ("0/1",)),
    Row(
        "mask-two-bands",
        "train {i}/classic_two_bands --out {o}/model.pth " + TRAIN,
        ("a.tif", "2"),
        ("single-band",),
    ),
    Row(
        "mask-other-shape",
        "train {i}/scenes_shape --out {o}/model.pth " + TRAIN,
        ("masks/a.tif", "48x64"),
        ("resample",),
    ),
    Row(
        "mask-other-transform",
        "train {i}/scenes_transform --out {o}/model.pth " + TRAIN,
        ("masks/a.tif", "transform"),
        ("resample",),
    ),
    Row(
        "mask-other-crs",
        "train {i}/scenes_crs --out {o}/model.pth " + TRAIN,
        ("masks/a.tif", "EPSG:32644"),
        ("resample",),
    ),
    Row(
        "mask-without-scene",
        "train {i}/scenes_lone_mask --out {o}/model.pth " + TRAIN,
        ("masks/b.tif",),
        ("add", "remove"),
    ),
    Row(
        "scene-without-mask",
        "train {i}/scenes_lone_scene --out {o}/model.pth " + TRAIN,
        ("images/b.tif",),
        ("add", "remove"),
    ),
    Row(
        "npy-without-mask",
        "train {i}/classic_no_mask --out {o}/model.pth " + TRAIN,
        ("masked_a.npy", "a.tif"),
        ("add", "remove"),
    ),
    Row(
        "npy-channels-first",
        "train {i}/classic_channels_first --out {o}/model.pth " + TRAIN,
        ("masked_a.npy", "(5, 64, 64)"),
        ("transpose",),
    ),
    Row(
        "training-scene-all-nodata",
        "train {i}/scenes_allnodata --out {o}/model.pth " + TRAIN,
        ("scenes_allnodata",),
        ("nodata", "check"),
    ),
    Row("data-dir-empty", "train {i}/empty_dir --out {o}/model.pth " + TRAIN, ("empty_dir",), ("expected",)),
    Row("summarize-mask-values-0-7", "summarize {i}/mask07.tif", ("mask07.tif", "7"), ("reclassify",)),
    Row(
        "evaluate-other-shape",
        "evaluate {i}/mask_small.tif {i}/mask.tif --json {o}/metrics.json",
        ("mask_small.tif", "48x64"),
        ("resample",),
    ),
    # --- options ---------------------------------------------------------------------
    Row("window-not-multiple-of-32", GOOD_SEG + " --window 48", ("--window", "48"), ("use 64",)),
    Row("overlap-one", GOOD_SEG + " --overlap 1", ("--overlap",), ("use",)),
    Row("overlap-negative", GOOD_SEG + " --overlap -0.25", ("--overlap",), ("use",)),
    Row("batch-size-zero", GOOD_SEG + " --batch-size 0", ("--batch-size",), ("use 4",)),
    Row("device-unknown", GOOD_SEG.replace("--device cpu", "--device tpu"), ("--device", "tpu"), ("use",)),
    Row(
        "train-patch-size-48",
        "train {i}/classic_values --out {o}/model.pth " + TRAIN + " --patch-size 48",
        ("--patch-size", "48"),
        ("multiple of 32",),
    ),
    Row(
        "train-batch-size-zero",
        "train {i}/classic_values --out {o}/model.pth " + TRAIN + " --batch-size 0",
        ("--batch-size",),
        ("at least 1",),
    ),
    Row(
        "encoder-unknown",
        "train {i}/classic_values --out {o}/model.pth " + TRAIN.replace("resnet18", "resnet19"),
        ("--encoder", "resnet19"),
        ("try resnet34",),
    ),
    Row(
        "encoder-weights-imagenet-offline",
        # good data: the data is checked first, so a bad folder would fail before the weights
        "train {i}/classic_good --out {o}/model.pth " + TRAIN.replace("weights none", "weights imagenet"),
        ("imagenet", "resnet18"),
        ("--encoder-weights none",),
        setup=_offline_hub,
        max_seconds=15.0,
    ),
    Row(
        "pixel-size-zero",
        GOOD_SEG + " --summary {o}/areas.json --pixel-size 0",
        ("--pixel-size",),
        ("positive",),
    ),
    Row(
        "outlines-unknown-format",
        GOOD_SEG + " --outlines {o}/glaciers.shp",
        ("glaciers.shp", ".shp"),
        (".gpkg",),
    ),
    Row(
        "train-val-fraction-one",
        "train {i}/classic_values --out {o}/model.pth " + TRAIN + " --val-fraction 1",
        ("--val-fraction",),
        ("[0, 1)",),
    ),
    Row(
        "train-output-folder-missing",
        "train {i}/classic_values --out {o}/not/there/model.pth " + TRAIN,
        ("not/there",),
        ("create it",),
    ),
    Row(
        "output-folder-missing",
        GOOD_SEG.replace("{o}/mask.tif", "{o}/not/there/mask.tif"),
        ("not/there",),
        ("create it",),
    ),
    Row(
        "output-folder-unwritable",
        GOOD_SEG.replace("{o}/mask.tif", f"{UNWRITABLE_DIR}/geoglacier-bad-input.tif"),
        ("geoglacier-bad-input.tif",),
        ("choose another",),
        setup=_unwritable,
    ),
    Row(
        "output-exists",
        GOOD_SEG,
        ("mask.tif", "exists"),
        ("--overwrite",),
        setup=_existing_output("mask.tif"),
    ),
    Row(
        "train-output-exists",
        "train {i}/classic_values --out {o}/model.pth " + TRAIN,
        ("model.pth", "exists"),
        ("--overwrite",),
        setup=_existing_output("model.pth"),
    ),
    Row(
        "summarize-json-exists",
        "summarize {i}/mask.tif --json {o}/areas.json",
        ("areas.json",),
        ("--overwrite",),
        setup=_existing_output("areas.json"),
    ),
    # --- checkpoints (segment-scene --model) -----------------------------------------
    Row(
        "checkpoint-missing", GOOD_SEG.replace("model.pth", "nope.pth"), ("nope.pth",), ("geoglacier train",)
    ),
    Row(
        "checkpoint-text-file",
        GOOD_SEG.replace("model.pth", "notes.pth"),
        ("notes.pth",),
        ("check the file",),
    ),
    Row(
        "checkpoint-directory",
        GOOD_SEG.replace("model.pth", "empty_dir"),
        ("empty_dir", "directory"),
        ("geoglacier train",),
    ),
    Row(
        "checkpoint-plain-state-dict",
        GOOD_SEG.replace("model.pth", "state_dict.pth"),
        ("state_dict.pth",),
        ("geoglacier train",),
    ),
    Row(
        "checkpoint-4-bands",
        GOOD_SEG.replace("model.pth", "model4.pth"),
        ("model4.pth", "4 bands"),
        ("same bands",),
    ),
    Row(
        "checkpoint-other-architecture",
        GOOD_SEG.replace("model.pth", "model_arch.pth"),
        ("model_arch.pth", "UnetPlusPlus"),
        ("retrain",),
    ),
    Row(
        "checkpoint-arbitrary-pickle",
        GOOD_SEG.replace("model.pth", "pickled.pth"),
        ("pickled.pth", "refused"),
        ("weights-only",),
    ),
    Row(
        "checkpoint-pickle-calling-code",
        GOOD_SEG.replace("model.pth", "code.pth"),
        ("code.pth", "refused"),
        ("weights-only",),
    ),
    # --- per-glacier areas (glaciers; segment-scene --inventory) --------------------------
    Row(
        "glaciers-inventory-missing",
        "glaciers {i}/mask.tif --inventory {i}/missing.gpkg --out {o}/g.gpkg",
        ("missing.gpkg",),
        ("check the path",),
    ),
    Row(
        "glaciers-inventory-not-vector",
        "glaciers {i}/mask.tif --inventory {i}/text.tif --out {o}/g.gpkg",
        ("text.tif",),
        ("pass a geopackage",),
    ),
    Row(
        "glaciers-id-not-unique",
        "glaciers {i}/mask.tif --inventory {i}/inv_dup.gpkg --out {o}/g.gpkg",
        ("inv_dup.gpkg", "RGIId", "not unique"),
        ("--id-column",),
    ),
    Row(
        "glaciers-no-id-column",
        "glaciers {i}/mask.tif --inventory {i}/inv_noid.gpkg --out {o}/g.gpkg",
        ("inv_noid.gpkg", "id column"),
        ("--id-column",),
    ),
    Row(
        "glaciers-no-overlap",
        "glaciers {i}/mask.tif --inventory {i}/inv_far.gpkg --out {o}/g.gpkg",
        ("inv_far.gpkg", "overlaps"),
        ("inventory of this region",),
    ),
    Row(
        "glaciers-table-extension",
        "glaciers {i}/mask.tif --inventory {i}/inv.gpkg --out {o}/g.xlsx",
        ("g.xlsx",),
        (".gpkg",),
    ),
    Row(
        "glaciers-mask-values-0-7",
        "glaciers {i}/mask07.tif --inventory {i}/inv.gpkg --out {o}/g.gpkg",
        ("mask07.tif", "7"),
        ("reclassify",),
    ),
    Row(
        "glaciers-table-exists",
        "glaciers {i}/mask.tif --inventory {i}/inv.gpkg --out {o}/g.gpkg",
        ("g.gpkg",),
        ("--overwrite",),
        setup=_existing_output("g.gpkg"),
    ),
    Row(
        "glaciers-min-coverage",
        "glaciers {i}/mask.tif --inventory {i}/inv.gpkg --out {o}/g.gpkg --min-coverage 1.5",
        ("--min-coverage",),
        ("between 0 and 1",),
    ),
    Row(
        "seg-glaciers-without-inventory",
        GOOD_SEG + " --glaciers {o}/g.csv",
        ("--inventory", "--glaciers"),
        ("needs --inventory",),
    ),
    Row(
        "seg-inventory-no-overlap",
        GOOD_SEG + " --inventory {i}/inv_far.gpkg --glaciers {o}/g.csv",
        ("inv_far.gpkg",),
        ("inventory of this region",),
    ),
    # --- many scenes (segment-scenes): checks that must fail before a cluster starts ---
    Row(
        "batch-checkpoint-text-file",
        "segment-scenes {i}/scene.tif --model {i}/notes.pth --out-dir {o}/batch --workers 1 --device cpu",
        ("notes.pth",),
        ("check the file",),
    ),
    Row(
        "batch-workers-zero",
        "segment-scenes {i}/scene.tif --model {i}/model.pth --out-dir {o}/batch --workers 0 --device cpu",
        ("--workers",),
        ("at least 1",),
    ),
    Row(
        "batch-window-not-multiple-of-32",
        "segment-scenes {i}/scene.tif --model {i}/model.pth --out-dir {o}/batch --workers 1 --device cpu "
        "--window 48",
        ("--window", "48"),
        ("use 64",),
    ),
    Row(
        "batch-out-dir-parent-missing",
        "segment-scenes {i}/scene.tif --model {i}/model.pth --out-dir {o}/a/b --workers 1 --device cpu",
        ("a/b", "does not exist"),
        ("create it first",),
    ),
    Row(
        "batch-scene-missing",
        "segment-scenes {i}/scene.tif {i}/nosuch.tif --model {i}/model.pth --out-dir {o}/batch --workers 1 "
        "--device cpu",
        ("nosuch.tif",),
        ("check the path",),
    ),
]

ROWS += [
    # --- satellite products (stack) and band recipes ---
    Row(
        "stack-unknown-folder",
        "stack {i}/holiday --out {o}/s.tif --no-progress",
        ("holiday", "not a known product"),
        ("--kind",),
    ),
    Row(
        "stack-missing-band",
        "stack {i}/landsat/" + "LC08_L2SP_140041_20231015_20231020_02_T1 --out {o}/s.tif --bands red,ndsi",
        ("SR_B6", "missing"),
        ("re-download",),
    ),
    Row(
        "stack-stac-item-without-assets",
        "stack {i}/stac/item.json --out {o}/s.tif",
        ("item.json", "no asset"),
        ("use an item that lists it",),
    ),
    Row(
        "stack-unknown-band-in-recipe",
        "stack {i}/holiday --out {o}/s.tif --bands red,green,blue,nir,evi",
        ("evi",),
        ("known bands",),
    ),
    Row(
        "segment-scene-other-band-recipe",
        GOOD_SEG.replace("scene.tif", "scene_swapped.tif"),
        ("scene_swapped.tif", "green,red,blue,nir,ndvi", "red,green,blue,nir,ndvi"),
        ("--bands",),
    ),
    Row(
        "segment-scene-bad-date",
        GOOD_SEG + " --date 15/10/2023",
        ("--date",),
        ("YYYY-MM-DD",),
    ),
]

ROWS += [
    # --- an output that is an input: refused even with --overwrite, nothing replaced ---
    Row(
        "change-out-is-mask-t0",
        "change {i}/victim_mask.tif {i}/mask.tif --out {i}/./victim_mask.tif --overwrite --no-progress",
        ("victim_mask.tif", "--out", "MASK_T0"),
        ("another file name",),
    ),
    Row(
        "summarize-json-is-the-mask",
        "summarize {i}/victim_mask.tif --json {i}/victim_mask.tif --overwrite",
        ("victim_mask.tif", "--json", "MASK"),
        ("another file name",),
    ),
    Row(
        "evaluate-json-is-ref",
        "evaluate {i}/mask.tif {i}/victim_mask.tif --json {i}/victim_mask.tif --overwrite",
        ("victim_mask.tif", "--json", "REF"),
        ("another file name",),
    ),
    Row(
        "glaciers-summary-is-the-mask",
        "glaciers {i}/victim_mask.tif --inventory {i}/inv.gpkg --out {o}/g.gpkg "
        "--summary {i}/victim_mask.tif --overwrite",
        ("victim_mask.tif", "--summary", "MASK"),
        ("another file name",),
    ),
    Row(
        "glaciers-quicklook-is-the-mask",
        "glaciers {i}/victim_mask.tif --inventory {i}/inv.gpkg --out {o}/g.gpkg "
        "--quicklook {i}/victim_mask.tif --overwrite",
        ("victim_mask.tif", "--quicklook", ".png"),
        ("rename",),
    ),
    Row(
        "segment-scene-summary-is-the-model",
        GOOD_SEG.replace("model.pth", "victim_model.pth") + " --summary {i}/victim_model.pth --overwrite",
        ("victim_model.pth", "--summary", "--model"),
        ("another file name",),
    ),
    Row(
        "segment-scene-out-is-the-model",
        GOOD_SEG.replace("model.pth", "victim_model.pth").replace("{o}/mask.tif", "{i}/victim_model.pth")
        + " --overwrite",
        ("victim_model.pth", "--out", ".tif"),
        ("rename",),
    ),
    Row(
        "train-out-is-a-training-mask",
        "train {i}/victim_train --out {i}/victim_train/a.tif --overwrite " + TRAIN,
        ("victim_train/a.tif", "--out", "DATA_DIR"),
        ("another file name",),
    ),
    Row(
        "stack-out-is-a-band",
        "stack {i}/victim_landsat/"
        + LANDSAT_ID
        + " --out {i}/victim_landsat/"
        + LANDSAT_ID
        + "/"
        + LANDSAT_ID
        + "_SR_B4.TIF --overwrite --no-progress",
        ("SR_B4.TIF", "--out", "SOURCE"),
        ("another file name",),
    ),
    # --- output extensions: rasters .tif/.tiff, quicklooks .png ---
    Row(
        "segment-scene-out-png",
        GOOD_SEG.replace("{o}/mask.tif", "{o}/mask.png"),
        ("--out", "mask.png", ".tif"),
        ("rename",),
    ),
    Row(
        "change-quicklook-jpg",
        "change {i}/mask.tif {i}/victim_mask.tif --out {o}/c.tif --quicklook {o}/c.jpg",
        ("--quicklook", "c.jpg", ".png"),
        ("rename",),
    ),
    Row("stack-out-png", "stack {i}/holiday --out {o}/s.png", ("--out", "s.png", ".tif"), ("rename",)),
    # --- --pixel-size is for rasters without a CRS ---
    Row(
        "summarize-pixel-size-with-crs",
        "summarize {i}/mask.tif --pixel-size 10",
        ("mask.tif", "--pixel-size", "EPSG:"),
        ("drop --pixel-size",),
    ),
    Row(
        "segment-scene-pixel-size-with-crs",
        GOOD_SEG + " --summary {o}/areas.json --pixel-size 10",
        ("scene.tif", "--pixel-size"),
        ("drop --pixel-size",),
    ),
]

# Rows that fail because of a known bug in a module still being written: strict xfail,
# so the fix turns them into failures-to-fail and the mark must come off.
KNOWN_BUGS: dict[str, str] = {}


def _param(row: Row) -> object:
    marks = []
    if row.id in KNOWN_BUGS:
        marks.append(pytest.mark.xfail(strict=True, reason=f"bug: {KNOWN_BUGS[row.id]}"))
    return pytest.param(row, id=row.id, marks=marks)


# ----------------------------------------------------------------------------- checking


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime (ns); folders by name only."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
        for p in sorted(folder.rglob("*"))
    }


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _input_hashes(inputs: Path, argv: list[str]) -> dict[str, str]:
    """Content hashes of the input files (or folders) a command line names."""
    out: dict[str, str] = {}
    for token in argv:
        p = Path(token)
        if not p.is_absolute() or inputs not in p.parents:
            continue
        if p.is_file():
            out[token] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out.update({f"{token}/{k}": v for k, v in _hashes(p).items()})
    return out


def _require(command: str) -> None:
    if command not in cli.commands:
        pytest.skip(f"'geoglacier {command}' is not registered yet (cli/commands.py)")


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_bad_input_fails_with_one_line_and_no_output(
    row: Row, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require(row.command)
    out = tmp_path / "out"
    out.mkdir()
    if row.setup is not None:
        row.setup(monkeypatch, out)
    argv = shlex.split(row.argv.format(i=inputs, o=out))
    outputs_before, inputs_before = _snapshot(out), _input_hashes(inputs, argv)
    unwritable_before = sorted(UNWRITABLE_DIR.glob("*geoglacier*")) if UNWRITABLE_DIR.is_dir() else []

    start = time.perf_counter()
    result = CliRunner().invoke(cli, argv)
    seconds = time.perf_counter() - start

    assert result.exit_code != 0, f"expected a failure, got exit 0:\n{result.output}"
    assert isinstance(result.exception, SystemExit), f"unhandled {result.exception!r}"
    assert "Traceback" not in result.output
    # Library warnings (one "Warning: ..." line each) may come first; the error is one line.
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("Warning: ")]
    assert len(lines) == 1, f"expected one line of error output, got:\n{result.stderr}"
    assert lines[0].startswith("Error: "), lines[0]
    message = lines[0].lower()
    for name in row.names:
        assert name.lower() in message, f"{name!r} not named in: {lines[0]}"
    assert any(fix.lower() in message for fix in row.fix), f"no fix ({' / '.join(row.fix)}) in: {lines[0]}"
    assert _snapshot(out) == outputs_before, "an output file was created or changed"
    assert _input_hashes(inputs, argv) == inputs_before, "an input file was changed"
    if UNWRITABLE_DIR.is_dir():
        assert sorted(UNWRITABLE_DIR.glob("*geoglacier*")) == unwritable_before
    if row.max_seconds is not None:
        assert seconds < row.max_seconds, f"took {seconds:.1f} s to fail"


def test_the_table_is_large_enough() -> None:
    assert len(ROWS) >= 20
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert set(KNOWN_BUGS) <= {r.id for r in ROWS}


# ------------------------------------------------------------------ -v, and a real process


def test_verbose_shows_the_library_error(inputs: Path) -> None:
    """``-v`` re-raises the typed library error so the traceback can go into a bug report."""
    from geoglacier.errors import SceneNotFoundError

    result = CliRunner().invoke(cli, ["-v", "summarize", str(inputs / "missing.tif")])
    assert result.exit_code != 0
    assert isinstance(result.exception, SceneNotFoundError)
    assert "missing.tif" in str(result.exception)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "geoglacier", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_a_real_process_prints_one_line_and_no_traceback(inputs: Path) -> None:
    """Through ``python -m geoglacier``: what a user sees on the terminal, warnings included."""
    quiet = _run("summarize", str(inputs / "mask07.tif"))
    assert quiet.returncode == 1
    lines = [line for line in quiet.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "mask07.tif" in lines[0], quiet.stderr
    loud = _run("-v", "summarize", str(inputs / "mask07.tif"))
    assert loud.returncode != 0
    assert "Traceback" in loud.stderr and "MaskError" in loud.stderr
