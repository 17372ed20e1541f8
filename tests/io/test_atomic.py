"""Tests of geoglacier.io.atomic: temporary files, rename on success, nothing on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geoglacier.errors import OutputExistsError, OutputPathError
from geoglacier.io.atomic import TMP_PREFIX, atomic_output, check_output_path, remove_stale_temporaries


def test_success_renames(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_output(target) as tmp:
        assert not tmp.exists() and tmp.parent == tmp_path and tmp.name.startswith(TMP_PREFIX)
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_leaves_nothing(tmp_path: Path, exc: BaseException) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(type(exc)), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise exc
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_kept_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_output(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "mine"
    with atomic_output(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_missing_and_read_only_folders(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="does not exist"):
        check_output_path(tmp_path / "no" / "out.tif")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions
            pytest.skip("running as a user that can write anywhere")
        with pytest.raises(OutputPathError, match="not writable"):
            check_output_path(ro / "out.tif")
    finally:
        ro.chmod(0o700)


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "mask.tif"
    stale = tmp_path / f"{TMP_PREFIX}mask.tif.abc123.tif"
    stale.write_text("left by a killed run")
    other = tmp_path / f"{TMP_PREFIX}other.tif.x.tif"
    other.write_text("someone else's")
    assert remove_stale_temporaries(target) == [stale]
    assert other.exists() and not stale.exists()
