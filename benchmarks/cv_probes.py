"""Cheap what-ifs on the networks of an earlier ``cv_everest.py`` run: no training.

Each probe changes what happens after training (the BatchNorm statistics, the weights
kept, the mask's post-processing, the decision rule) and scores the fold's unseen test
strip again, beside the run's own figure, on the very same networks:

- ``adabn``: BatchNorm statistics re-estimated on the test strip itself (windows of the
  patch size, train-mode forward passes, cumulative average), a test-time adaptation to
  the new valley that needs no labels.
- ``precise-bn``: the same on the training strips without augmentation (training's
  running averages come from augmented batches of four).
- ``last-epoch``: the last epoch's weights (``model.pth.state``) instead of the epoch the
  inner validation chose.
- ``min-area-K``: connected glacier regions smaller than K km2 dropped from the mask;
  ``fill-holes``: holes inside glacier regions filled.
- ``prior-em``: the glacier share of the test strip estimated from the calibrated
  probabilities by expectation-maximisation (label-shift correction: the posteriors are
  re-weighted by the ratio of the new to the training prior until the share is stable),
  then thresholded at 0.5.

    .venv/bin/python benchmarks/cv_probes.py WORK_DIR [WORK_DIR ...]

Results go to ``benchmarks/results/cv_probes.{json,md}`` under the work dir's name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv_everest import ROOT  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "cv_probes.json"
PIXEL_KM2 = 0.03 * 0.03  # 30 m Landsat pixels on UTM (the strips' grid)


def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def _standardised(path: Path) -> np.ndarray:
    """A strip standardised as the default per-scene mode does it (its valid pixels' mean and std)."""
    import rasterio

    from geoglacier.inference.normalization import scene_normalization
    from geoglacier.io.scene import inspect_scene

    mean, std = scene_normalization(inspect_scene(path, expected_bands=None, warn_no_crs=False))
    with rasterio.open(path) as src:
        return ((src.read().astype(np.float32) - mean) / std).astype(np.float32)


def _crops(arrays: list[np.ndarray], size: int, n: int, rng: np.random.Generator) -> Any:
    import torch

    out = []
    for _ in range(n):
        a = arrays[rng.integers(len(arrays))]
        r, c = rng.integers(0, a.shape[1] - size + 1), rng.integers(0, a.shape[2] - size + 1)
        out.append(a[:, r : r + size, c : c + size])
    return torch.from_numpy(np.stack(out))


def reestimate_bn(model: Any, arrays: list[np.ndarray], size: int, batches: int = 64) -> None:
    """Replace every BatchNorm's running statistics by their average over random windows."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for _ in range(batches):
            model(_crops(arrays, size, 4, rng))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def _segment_with(fold: Path, out: Path, change: Callable[[Any, Any], None]) -> np.ndarray:
    """The test strip's mask from the fold's network after ``change(model, meta)``."""
    from geoglacier.checkpoint import load_checkpoint, save_checkpoint
    from geoglacier.inference.segment import segment_scene

    model, meta = load_checkpoint(fold / "model.pth")
    change(model, meta)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, meta, out / "model.pth")
    segment_scene(
        fold / "test_scene.tif",
        out / "model.pth",
        out / "pred.tif",
        device="cpu",
        overwrite=True,
        progress=False,
    )
    return _read(out / "pred.tif") == 1


def _probabilities(fold: Path, out: Path) -> np.ndarray:
    from geoglacier.inference.segment import segment_scene

    out.mkdir(parents=True, exist_ok=True)
    segment_scene(
        fold / "test_scene.tif", fold / "model.pth", out / "mask.tif", probabilities=out / "prob.tif",
        device="cpu", overwrite=True, progress=False,
    )  # fmt: skip
    return _read(out / "prob.tif").astype(np.float64)


def prior_em(p: np.ndarray, prior: float, iters: int = 200) -> np.ndarray:
    """Posteriors re-weighted to the glacier share that expectation-maximisation settles on."""
    share, q = prior, p
    for _ in range(iters):
        up, down = share / prior, (1 - share) / (1 - prior)
        q = p * up / (p * up + (1 - p) * down)
        new = float(q.mean())
        if abs(new - share) < 1e-7:
            break
        share = new
    return q


def _drop_small(mask: np.ndarray, km2: float) -> np.ndarray:
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    keep = sizes * PIXEL_KM2 >= km2
    keep[0] = False
    return keep[labels]


def probe_fold(fold: Path, scratch: Path) -> dict[str, np.ndarray]:
    """Every probe's mask of the fold's test strip."""
    import torch

    size = None

    def remember(model: Any, meta: Any) -> None:
        nonlocal size
        size = int(meta.patch_size)

    base = _segment_with(fold, scratch / "base", remember)
    assert size is not None
    test = [_standardised(fold / "test_scene.tif")]
    train = [_standardised(p) for p in sorted((fold / "data" / "images").glob("*.tif"))]
    masks = {"run": base}
    masks["adabn"] = _segment_with(fold, scratch / "adabn", lambda m, _: reestimate_bn(m, test, size))
    masks["precise-bn"] = _segment_with(fold, scratch / "pbn", lambda m, _: reestimate_bn(m, train, size))
    state = fold / "model.pth.state"
    if state.exists():
        last = torch.load(state, map_location="cpu", weights_only=True)["model"]
        masks["last-epoch"] = _segment_with(fold, scratch / "last", lambda m, _: m.load_state_dict(last))
    for km2 in (0.1, 1.0):
        masks[f"min-area-{km2:g}"] = _drop_small(base, km2)
    from scipy import ndimage

    masks["fill-holes"] = ndimage.binary_fill_holes(base)
    labels = np.concatenate([_read(p).ravel() for p in sorted((fold / "data" / "masks").glob("*.tif"))])
    prior = float((labels == 1).sum() / (labels != 255).sum())
    masks["prior-em"] = prior_em(_probabilities(fold, scratch / "prob"), prior) > 0.5
    return masks


def score(mask: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import matthews_corrcoef

    known = reference != 255  # the reference's nodata is scored as neither
    ref, pred = reference[known] == 1, mask[known]
    return {
        "mcc": round(float(matthews_corrcoef(ref, pred)), 4),
        "area_error_relative": round(float(pred.sum() / ref.sum() - 1.0), 4),
    }


def run(work: Path, scratch: Path) -> dict[str, Any]:
    rows: dict[str, list[dict[str, float]]] = {}
    for fold in sorted(work.glob("fold*")):
        reference = _read(fold / "test_mask.tif")
        for name, mask in probe_fold(fold, scratch / fold.name).items():
            rows.setdefault(name, []).append(score(mask, reference))
        print(f"  {fold.name}: " + ", ".join(f"{k} {v[-1]['mcc']:.3f}" for k, v in rows.items()), flush=True)
    return {
        name: {
            "mcc_mean": round(float(np.mean([f["mcc"] for f in folds])), 4),
            "area_error_mean": round(float(np.mean([f["area_error_relative"] for f in folds])), 4),
            "area_error_max_abs": round(float(np.max([abs(f["area_error_relative"]) for f in folds])), 4),
            "folds": folds,
        }
        for name, folds in rows.items()
    }


def write_table(report: dict[str, Any], path: Path) -> None:
    lines = [
        "| run | probe | MCC mean | area error mean | max abs area error | per-fold MCC |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run_name, probes in report["runs"].items():
        for name, r in probes.items():
            per = ", ".join(f"{f['mcc']:.3f}" for f in r["folds"])
            lines.append(
                f"| {run_name} | {name} | {r['mcc_mean']:.3f} | {r['area_error_mean']:+.1%} | "
                f"{r['area_error_max_abs']:.1%} | {per} |"
            )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    import tempfile

    import torch

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("work_dirs", nargs="+", type=Path, help="work dirs of cv_everest.py runs")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = json.loads(args.json.read_text()) if args.json.exists() else {"runs": {}}
    for work in args.work_dirs:
        print(f"{work.name}:", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            report["runs"][work.name] = run(work, Path(scratch))
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        write_table(report, args.json.with_suffix(".md"))
    print(args.json.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
