"""Tests of geoglacier.io.atomic: temporary files, rename on success, nothing on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geoglacier.errors import ConfigError, OutputExistsError, OutputPathError
from geoglacier.io.atomic import (
    TMP_PREFIX,
    atomic_output,
    check_distinct_files,
    check_extension,
    check_output_path,
    remove_stale_temporaries,
    same_file,
)


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
    try:  # refused as root too (os.access says yes there), as for a shared read-only data folder
        with pytest.raises(OutputPathError, match="not writable"):
            check_output_path(ro / "out.tif")
        with pytest.raises(OutputPathError, match="not writable"), atomic_output(ro / "out.tif") as tmp:
            tmp.write_text("x")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)
    assert check_output_path(ro / "out.tif") == ro / "out.tif"  # writable by its owner again


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "mask.tif"
    stale = tmp_path / f"{TMP_PREFIX}mask.tif.abc123.tif"
    stale.write_text("left by a killed run")
    other = tmp_path / f"{TMP_PREFIX}other.tif.x.tif"
    other.write_text("someone else's")
    assert remove_stale_temporaries(target) == [stale]
    assert other.exists() and not stale.exists()


# ------------------------------------------------------------------ outputs apart from inputs


def test_same_file_spellings_and_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = tmp_path / "a.tif"
    a.write_bytes(b"mask")
    monkeypatch.chdir(tmp_path)
    assert same_file("a.tif", a) and same_file("./a.tif", "sub/../a.tif")
    (tmp_path / "link.tif").symlink_to(a)
    os.link(a, tmp_path / "hard.tif")
    assert same_file("link.tif", a) and same_file(tmp_path / "hard.tif", "a.tif")
    (tmp_path / "linked_dir").symlink_to(tmp_path)
    assert same_file(tmp_path / "linked_dir" / "new.json", tmp_path / "new.json")  # neither exists
    b = tmp_path / "b.tif"
    b.write_bytes(b"mask")
    assert not same_file(a, b) and not same_file(a, tmp_path / "missing.tif")


@pytest.mark.parametrize("spelling", ["./in.tif", "link.tif", "hard.tif", "in.tif"])
def test_an_output_that_is_an_input_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("in.tif").write_bytes(b"data")
    Path("link.tif").symlink_to("in.tif")
    os.link("in.tif", "hard.tif")
    with pytest.raises(OutputPathError, match=rf"{spelling}: --summary is the same file as the input MASK"):
        check_distinct_files({"--out": "other.tif", "--summary": spelling}, {"MASK": "in.tif"})
    check_distinct_files({"--out": "other.tif", "--summary": None}, {"MASK": "in.tif", "--inventory": None})


def test_two_outputs_on_one_file_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputPathError, match="x.json: used for both --out and --summary"):
        check_distinct_files({"--out": "x.json", "--summary": "./x.json"})


def test_inputs_may_be_many_files_and_folders_are_skipped(tmp_path: Path) -> None:
    files = [tmp_path / f"m{i}.tif" for i in range(3)]
    for f in files:
        f.write_bytes(b"m")
    with pytest.raises(OutputPathError, match="the input DATA_DIR"):
        check_distinct_files({"--out": files[2]}, {"DATA_DIR": iter(files)})
    check_distinct_files({"--out": tmp_path / "model.pth"}, {"DATA_DIR": [tmp_path, *files]})


def test_check_extension() -> None:
    assert check_extension("m.TIF", (".tif", ".tiff"), "--out", "GeoTIFF").name == "m.TIF"
    with pytest.raises(ConfigError, match=r"--out m\.png: writes a GeoTIFF.*\.tif or \.tiff.*m\.tif"):
        check_extension("m.png", (".tif", ".tiff"), "--out", "GeoTIFF")
    with pytest.raises(ConfigError, match="no extension"):
        check_extension("quick", (".png",), "--quicklook", "PNG picture")


def test_companions_of_shapefiles_and_openvino_models(tmp_path: Path) -> None:
    from geoglacier.io.atomic import with_companions

    assert with_companions(None) == []
    assert with_companions("a.tif") == [Path("a.tif")]
    assert [p.name for p in with_companions("rgi.SHP")] == [
        "rgi.SHP",
        "rgi.shx",
        "rgi.dbf",
        "rgi.prj",
        "rgi.cpg",
    ]
    assert [p.name for p in with_companions("m.xml")] == ["m.xml", "m.bin", "m.json"]
    (tmp_path / "rgi.dbf").write_bytes(b"attributes")
    with pytest.raises(OutputPathError, match="--summary is the same file as the input --inventory"):
        check_distinct_files(
            {"--summary": tmp_path / "rgi.dbf"}, {"--inventory": with_companions(tmp_path / "rgi.shp")}
        )
