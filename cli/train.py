"""``geoglacier train``: train the U-Net++ glacier model on a data folder.

Option names are the fields of :class:`geoglacier.training.config.TrainConfig`; an option
left out keeps the recipe's default (shown in brackets), so the defaults live in one
place.
"""

from __future__ import annotations

from typing import Any

import click

from geoglacier.cli.options import id_column_opt, overwrite_opt


@click.command("train")
@click.argument("data_dir", type=click.Path(path_type=str))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Checkpoint to write (best epoch by val MCC); NAME.metrics.csv/.png and NAME.pth.state go beside it.",
)
@click.option("--arch", default=None, help="smp architecture [UnetPlusPlus].")
@click.option("--encoder", default=None, help="smp encoder [resnet34].")
@click.option(
    "--encoder-weights", default=None, help="imagenet, none or PATH of an encoder state dict [imagenet]."
)
@click.option(
    "--bands",
    default=None,
    help="Image bands: a count (5), or the band recipe the scenes were stacked with, as "
    "'geoglacier stack --bands' takes it (red,green,blue,nir,swir1): scenes must name these bands, "
    "classic pairs are taken to hold them, and the checkpoint records them [5].",
)
@click.option("--epochs", type=int, default=None, help="Total number of epochs [150].")
@click.option("--batch-size", type=int, default=None, help="Patches per step [4].")
@click.option("--lr", type=float, default=None, help="AdamW learning rate [1e-4].")
@click.option("--weight-decay", type=float, default=None, help="AdamW weight decay [0.01].")
@click.option("--alpha", type=float, default=None, help="Loss = alpha*BCE + (1-alpha)*Dice [0.7].")
@click.option("--patch-size", type=int, default=None, help="Training window side, multiple of 32 [256].")
@click.option(
    "--patches-per-epoch", type=int, default=None, help="Training windows per epoch, scenes [tile the area]."
)
@click.option("--val-fraction", type=float, default=None, help="Share held out for validation [0.2].")
@click.option("--seed", type=int, default=None, help="Seed of split, windows, augmentation, init [0].")
@click.option(
    "--num-workers",
    type=int,
    default=None,
    help="DataLoader workers [0 up to 2 cores, else min(4, cores - 2)].",
)
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N [auto].")
@click.option(
    "--amp/--no-amp",
    default=None,
    help="Mixed precision: on CUDA, and bf16 on CPUs with native bf16 (AVX512-BF16, AMX) [on].",
)
@click.option("--augment/--no-augment", default=None, help="Augment training patches [on].")
@click.option(
    "--augment-radiometric/--no-augment-radiometric",
    default=None,
    help="Also per-band gain/offset, saturation and gamma [off].",
)
@click.option(
    "--ema",
    type=float,
    default=None,
    help="Decay of a moving average of the weights, per step; validated and saved instead (0: off) [0].",
)
@click.option(
    "--dropout",
    type=float,
    default=None,
    help="Channel-wise dropout on the decoder features before the head, training only (0: off) [0].",
)
@click.option("--lr-factor", type=float, default=None, help="ReduceLROnPlateau factor [0.1].")
@click.option("--lr-patience", type=int, default=None, help="ReduceLROnPlateau patience, epochs [10].")
@click.option(
    "--threshold", type=float, default=None, help="Glacier probability threshold (calibrated scale) [0.5]."
)
@click.option(
    "--calibrate/--no-calibrate",
    default=None,
    help="Fit a temperature on validation into the checkpoint (masks unchanged at threshold 0.5) [on].",
)
@click.option(
    "--tune-threshold/--no-tune-threshold",
    default=None,
    help="Use the validation-MCC-best threshold instead of --threshold [off].",
)
@click.option(
    "--dist-timeout",
    type=float,
    default=None,
    help="torchrun: seconds to wait for the other processes before failing [1800].",
)
@click.option(
    "--normalization",
    type=click.Choice(["training", "scene"]),
    default=None,
    help="training: the training blocks' band statistics for every scene; scene: each scene "
    "standardised by its own (robust to snowier scenes) [scene].",
)
@click.option(
    "--sampling",
    type=click.Choice(["uniform", "balanced"]),
    default=None,
    help="uniform: training windows anywhere; balanced: half centred on glacier, half on "
    "non-glacier ground [uniform].",
)
@click.option(
    "--resume", is_flag=True, default=False, help="Continue an interrupted run from NAME.pth.state."
)
@click.option(
    "--ensemble",
    type=int,
    default=None,
    help="Train this many members (seeds SEED, SEED+1, ...) as NAME.m1.pth, NAME.m2.pth, ...",
)
@click.option(
    "--inventory",
    type=click.Path(path_type=str),
    default=None,
    help="Glacier outlines of the training area, for --error-folds.",
)
@click.option(
    "--error-folds",
    type=int,
    default=None,
    help="Also train K spatial folds (strips of every scene held out in turn), compare each held-out "
    "glacier's mapped area with the mask's, and store the calibrated error model in --out; the fold "
    "networks stay beside it as NAME.fold1.pth ... (an ensemble for segment-scene).",
)
@click.option(
    "--error-level",
    type=float,
    default=0.9,
    show_default=True,
    help="Coverage of the per-glacier intervals of the error model.",
)
@click.option(
    "--error-gap",
    type=int,
    default=16,
    show_default=True,
    help="Rows left out on both sides of each held-out strip of --error-folds.",
)
@id_column_opt
@overwrite_opt
def train(
    data_dir: str,
    out: str,
    resume: bool,
    overwrite: bool,
    ensemble: int | None,
    inventory: str | None,
    error_folds: int | None,
    error_level: float,
    error_gap: int,
    id_column: str | None,
    **options: Any,
) -> None:
    """Train on DATA_DIR (classic masked_NAME.npy + NAME.tif pairs, or images/ + masks/ scenes).

    Prints one line per epoch and keeps the best epoch by validation MCC in --out.
    """
    from geoglacier.training.distributed import distributed_from_env
    from geoglacier.training.ensemble import train_ensemble
    from geoglacier.training.loop import train as run_training

    overrides = {name: value for name, value in options.items() if value is not None}
    if error_folds is not None or inventory is not None:
        _train_error_folds(
            data_dir,
            out,
            inventory,
            (error_folds, error_level, error_gap),
            id_column,
            overwrite,
            resume,
            ensemble,
            overrides,
        )
        return
    if ensemble is not None:
        results = train_ensemble(
            data_dir, out, ensemble, overwrite=overwrite, resume=resume, log=click.echo, **overrides
        )
        if not distributed_from_env().is_main:
            return  # under torchrun only rank 0 prints (and wrote the files)
        for result in results:
            click.echo(
                f"{result.paths.checkpoint}: best epoch {result.best_epoch} ({result.score_name}: {result.best_val_mcc:.4f})"
            )
        return
    result = run_training(data_dir, out, overwrite=overwrite, resume=resume, log=click.echo, **overrides)
    if not distributed_from_env().is_main:
        return
    click.echo(
        f"Best epoch {result.best_epoch} of {result.epochs} ({result.score_name}: {result.best_val_mcc:.4f}); "
        f"wrote {result.paths.checkpoint}, {result.paths.metrics_csv}, {result.paths.metrics_png}"
    )


def _train_error_folds(
    data_dir: str,
    out: str,
    inventory: str | None,
    fold_options: tuple[int | None, float, int],
    id_column: str | None,
    overwrite: bool,
    resume: bool,
    ensemble: int | None,
    overrides: dict[str, Any],
) -> None:
    """``--error-folds``: the fold networks, the final one and its error model."""
    from geoglacier.errors import ConfigError
    from geoglacier.inference.error_folds import train_with_error_folds

    folds, level, gap = fold_options
    if inventory is None:
        raise ConfigError("--error-folds needs --inventory OUTLINES: the glaciers whose areas it compares")
    if folds is None:
        raise ConfigError("--inventory is used by --error-folds K only; add --error-folds (e.g. 3)")
    if resume or ensemble is not None:
        raise ConfigError(
            "--error-folds trains its own fold networks; it cannot be combined with --resume or --ensemble"
        )
    result, model = train_with_error_folds(
        data_dir,
        out,
        inventory,
        folds,
        level=level,
        gap=gap,
        id_column=id_column,
        overwrite=overwrite,
        log=click.echo,
        **overrides,
    )
    click.echo(
        f"Best epoch {result.best_epoch} of {result.epochs}; wrote {result.paths.checkpoint} with its error model "
        f"({model.describe()})"
    )
