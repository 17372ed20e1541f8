"""``geoglacier train --bands``: a band count, or the band recipe that ``stack --bands`` takes."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import load_checkpoint
from geoglacier.errors import ConfigError, GeoglacierWarning, RecipeError, RecipeMismatchError
from geoglacier.products.recipes import VOCABULARY, check_scene_recipe
from geoglacier.synthetic import write_classic_layout
from geoglacier.training.config import TrainConfig
from geoglacier.training.loop import train
from tests.cli.test_train import FAST_ARGS
from tests.cli_groups import train_group
from tests.data import write_raster
from tests.training.test_training import FAST, write_separable_scenes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SWIR = ("red", "green", "blue", "nir", "swir1")
QUIET = dict(epochs=1, log=lambda _: None, **FAST)


@pytest.fixture(scope="module")
def classic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classic") / "data"
    write_classic_layout(root, n=4, size=64, seed=0)
    return root


def _described_scenes(root: Path, names: tuple[str, ...]) -> Path:
    """A 128 px separable scene layout whose image carries ``names`` as band descriptions."""
    write_separable_scenes(root, size=128)
    image = root / "images" / "tile.tif"
    with rasterio.open(image) as ds:
        data = ds.read()
    write_raster(image, data, descriptions=names)
    return root


@pytest.fixture
def group() -> click.Group:
    """A group like ``geoglacier``'s, which turns library errors into one-line messages."""
    return train_group()


def _invoke(group: click.Group, *args: str | Path) -> click.testing.Result:
    return CliRunner().invoke(group, ["train", *map(str, args)])


def test_config_parses_a_count_or_a_recipe() -> None:
    assert TrainConfig(bands="5").validate().bands == 5
    assert TrainConfig(bands=7).validate().band_count == 7
    parsed = TrainConfig(bands=" Red, green,blue ,NIR,swir1").validate()
    assert parsed.bands == "red,green,blue,nir,swir1"
    assert parsed.recipe == SWIR and parsed.band_count == 5
    assert TrainConfig(bands=4).recipe is None
    with pytest.raises(ConfigError, match="--bands must be at least 1"):
        TrainConfig(bands="0").validate()


def test_unknown_band_is_a_one_line_error_listing_the_known_names(group: click.Group, tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="unknown band 'swir3'"):
        TrainConfig(bands="red,swir3").validate()
    result = _invoke(group, tmp_path, "--out", tmp_path / "m.pth", "--bands", "red,green,swir3", *FAST_ARGS)
    assert result.exit_code != 0
    message = result.output.strip()
    assert "\n" not in message and "Traceback" not in message
    assert "--bands" in message and "'swir3'" in message and ",".join(VOCABULARY) in message
    assert not (tmp_path / "m.pth").exists()


def test_integer_form_is_a_count(group: click.Group, tmp_path: Path) -> None:
    data = write_separable_scenes(tmp_path / "data", size=64)
    result = _invoke(group, data, "--out", tmp_path / "m.pth", "--bands", "6", *FAST_ARGS)
    assert result.exit_code != 0 and "expected 6 bands" in result.output and "found 5" in result.output


def test_recipe_names_the_bands_of_a_classic_checkpoint(classic: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pth"
    train(classic, out, bands="red,green,blue,nir,swir1", **QUIET)
    _, meta = load_checkpoint(out)
    assert meta.bands == SWIR and meta.model.in_channels == 5
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert raw["train_config"]["bands"] == "red,green,blue,nir,swir1"
    assert TrainConfig(**raw["train_config"]).validate().recipe == SWIR
    # segment-scene now compares scenes with the real recipe, not the default names.
    scene = tmp_path / "ndvi_scene.tif"
    write_raster(
        scene, np.zeros((5, 32, 32), np.float32), descriptions=("red", "green", "blue", "nir", "ndvi")
    )
    with pytest.raises(RecipeMismatchError, match="trained on red,green,blue,nir,swir1"):
        check_scene_recipe(scene, meta.bands)


def test_scenes_describing_other_bands_fail_before_training(group: click.Group, tmp_path: Path) -> None:
    data = _described_scenes(tmp_path / "data", ("red", "green", "blue", "nir", "ndvi"))
    out = tmp_path / "m.pth"
    result = _invoke(
        group, data, "--out", out, "--bands", "red,green,blue,nir,swir1", "--epochs", "1", *FAST_ARGS
    )
    assert result.exit_code != 0
    message = result.output.strip()
    assert "\n" not in message and "Traceback" not in message
    assert "tile.tif" in message
    assert "holds bands red,green,blue,nir,ndvi" in message and "asks for red,green,blue,nir,swir1" in message
    assert not any(tmp_path.glob("m.*"))


def test_scenes_without_descriptions_are_taken_to_hold_the_recipe(tmp_path: Path) -> None:
    data = write_separable_scenes(tmp_path / "data", size=128)
    out = tmp_path / "m.pth"
    with pytest.warns(GeoglacierWarning, match="assuming they hold red,green,blue,nir,swir1"):
        train(data, out, bands="red,green,blue,nir,swir1", patches_per_epoch=8, **QUIET)
    assert load_checkpoint(out)[1].bands == SWIR


def test_resume_with_another_recipe_is_refused(classic: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pth"
    train(classic, out, bands="red,green,blue,nir,swir1", **QUIET)
    with pytest.raises(ConfigError, match="--bands red,green,blue,nir,swir1, not red,green,blue,nir,ndvi"):
        train(classic, out, resume=True, bands="red,green,blue,nir,ndvi", **{**QUIET, "epochs": 2})
    with pytest.raises(ConfigError, match="--bands red,green,blue,nir,swir1, not 5"):
        train(classic, out, resume=True, bands=5, **{**QUIET, "epochs": 2})
    # The same recipe written another way is the same recipe.
    result = train(classic, out, resume=True, bands="RED, green,blue,nir,swir1", **{**QUIET, "epochs": 2})
    assert result.resumed_from == 1 and result.epochs == 2


def test_bad_data_fails_before_the_encoder_weights_are_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ImageNet weights asked for, a recipe mismatch is reported before any download starts."""
    import geoglacier.model as model_module

    fetched: list[object] = []
    real = model_module.build_model
    monkeypatch.setattr(model_module, "build_model", lambda *a, **k: fetched.append(a) or real(*a, **k))
    data = _described_scenes(tmp_path / "data", ("red", "green", "blue", "nir", "ndvi"))
    config = TrainConfig(**{**FAST, "bands": ",".join(SWIR), "encoder_weights": "imagenet", "epochs": 1})
    with pytest.raises(RecipeMismatchError, match="asks for red,green,blue,nir,swir1"):
        train(data, tmp_path / "m.pth", config, log=lambda _: None)
    assert fetched == []


def test_band_count_errors_name_the_recipe_asked_for(tmp_path: Path) -> None:
    """A 4-band scene against a SWIR recipe: the error names that recipe, not the default one."""
    from geoglacier.errors import BandCountError

    root = tmp_path / "data"
    write_separable_scenes(root, size=128)
    image = root / "images" / "tile.tif"
    with rasterio.open(image) as ds:
        four = ds.read()[:4]
    write_raster(image, four)
    config = TrainConfig(**{**FAST, "bands": ",".join(SWIR), "epochs": 1})
    with pytest.raises(BandCountError, match=r"expected 5 bands \(red, green, blue, nir, swir1\), found 4"):
        train(root, tmp_path / "m.pth", config, log=lambda _: None)
