"""Band recipes: parsing, the reflectance they need, derived indices by hand, the scene check."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from geoglacier.errors import GeoglacierWarning, RecipeError, RecipeMismatchError
from geoglacier.products.recipes import (
    DEFAULT_RECIPE,
    check_scene_recipe,
    compute_recipe,
    parse_recipe,
    reflectance_needed,
)
from tests.data import write_scene


def test_parse_recipe_normalises_and_keeps_order() -> None:
    assert parse_recipe(" Red, GREEN ,blue,nir,ndvi") == DEFAULT_RECIPE
    assert parse_recipe(["swir1", "red"]) == ("swir1", "red")
    assert parse_recipe("red,green,blue,nir,swir1") == ("red", "green", "blue", "nir", "swir1")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("red,green,blue,nir,evi", "unknown band 'evi'"),
        ("red,red,blue,nir,ndvi", "appears twice"),
        ("red,,blue", "empty name"),
        ("", "empty name"),
    ],
)
def test_parse_recipe_rejects(text: str, needle: str) -> None:
    with pytest.raises(RecipeError, match=needle) as info:
        parse_recipe(text)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_reflectance_needed_includes_index_inputs() -> None:
    assert reflectance_needed(DEFAULT_RECIPE) == ("blue", "green", "red", "nir")
    assert reflectance_needed(("ndsi",)) == ("green", "swir1")
    assert reflectance_needed(("ndwi", "swir2")) == ("green", "nir", "swir2")


def test_indices_by_hand() -> None:
    refl = {
        "red": np.array([[0.1, 0.2]], np.float32),
        "green": np.array([[0.3, 0.0]], np.float32),
        "nir": np.array([[0.5, 0.0]], np.float32),
        "swir1": np.array([[0.1, 0.0]], np.float32),
    }
    out = compute_recipe(("ndvi", "ndsi", "ndwi", "red"), refl)
    assert out.shape == (4, 1, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], (0.5 - 0.1) / (0.5 + 0.1), rtol=1e-6)
    np.testing.assert_allclose(out[1, 0, 0], (0.3 - 0.1) / (0.3 + 0.1), rtol=1e-6)
    np.testing.assert_allclose(out[2, 0, 0], (0.3 - 0.5) / (0.3 + 0.5), rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 1], -1.0)  # nir 0, red 0.2
    assert out[1, 0, 1] == 0.0 and out[2, 0, 1] == 0.0  # 0/0: no contrast, not nodata
    np.testing.assert_array_equal(out[3], refl["red"])


def test_nan_stays_nan_in_indices() -> None:
    refl = {"nir": np.array([[np.nan]], np.float32), "red": np.array([[0.1]], np.float32)}
    assert np.isnan(compute_recipe(("ndvi",), refl)).all()


def test_scene_recipe_check(tmp_path: Path) -> None:
    named = write_scene(tmp_path / "a.tif", descriptions=DEFAULT_RECIPE)
    check_scene_recipe(named, DEFAULT_RECIPE)
    check_scene_recipe(named, tuple(n.upper() for n in DEFAULT_RECIPE))
    other = write_scene(tmp_path / "b.tif", descriptions=("green", "red", "blue", "nir", "ndvi"))
    with pytest.raises(RecipeMismatchError) as info:
        check_scene_recipe(other, DEFAULT_RECIPE)
    message = str(info.value)
    assert "green,red,blue,nir,ndvi" in message and "red,green,blue,nir,ndvi" in message
    assert "\n" not in message
    bare = write_scene(tmp_path / "c.tif")
    with pytest.warns(GeoglacierWarning, match="no band descriptions"):
        check_scene_recipe(bare, DEFAULT_RECIPE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_scene_recipe(
            other, ("band1", "band2", "band3", "band4", "band5")
        )  # placeholders: nothing to check
