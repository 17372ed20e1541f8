"""What made a batch scene's outputs: fingerprints, how they differ, and a scene's state."""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path

from geoglacier.inference.batch_record import difference, run_fingerprint, scene_state, write_record


def _files(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    paths = [tmp_path / n for n in ("s.tif", "a.pth", "b.pth", "inv.gpkg")]
    for i, p in enumerate(paths):
        p.write_bytes(b"x" * (i + 1))
    return paths[0], paths[1], paths[2], paths[3]


def test_defaults_spelled_out_or_not_record_the_same(tmp_path: Path) -> None:
    scene, a, _, _ = _files(tmp_path)
    bare = run_fingerprint(scene, [a], {"batch_size": 8, "engine": "torch"})
    spelled = run_fingerprint(
        scene, [str(a)], {"window": None, "overlap": 0.25, "blend": "gaussian", "tta": False}
    )
    assert bare == spelled and difference(bare, spelled) is None
    assert bare["scene"] == {"path": str(scene.resolve()), "size": 1, "mtime_ns": scene.stat().st_mtime_ns}


def test_what_differs_is_named_the_way_a_user_gave_it(tmp_path: Path) -> None:
    scene, a, b, inv = _files(tmp_path)
    old = run_fingerprint(scene, [a, b], {"window": 64})
    cases = [
        (run_fingerprint(scene, [b, a], {"window": 64}), None),  # member order does not matter
        (run_fingerprint(scene, [a], {"window": 64}), "with models a.pth, b.pth"),
        (run_fingerprint(scene, [a, b], {}), "with --window 64 (now the default)"),
        (run_fingerprint(scene, [a, b], {"window": 64, "tta": True}), "without --tta"),
        (run_fingerprint(scene, [a, b], {"window": 64}, inventory=inv), "without --inventory"),
        (run_fingerprint(inv, [a, b], {"window": 64}), "from scene s.tif"),
    ]
    for new, expected in cases:
        assert difference(old, new) == expected
    assert difference(old, run_fingerprint(inv, [a, b], {"window": 64}), scene=False) is None
    new_window = run_fingerprint(scene, [a, b], {"window": 96})
    assert difference(run_fingerprint(scene, [a, b], {}), new_window) == "with the default --window (now 96)"
    os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 10**9))
    changed = run_fingerprint(scene, [a, b], {"window": 64})
    assert difference(old, changed) == "with an earlier version of model b.pth (the file has changed since)"


def test_scene_state(tmp_path: Path) -> None:
    scene, a, b, _ = _files(tmp_path)
    mask, summary, record = tmp_path / "s_mask.tif", tmp_path / "s_summary.json", tmp_path / "s_run.json"
    now = run_fingerprint(scene, [a], {})
    assert scene_state([mask, summary], record, now) == ("new", None)
    write_record(record, now, complete=False)  # a run started, nothing written yet
    assert scene_state([mask, summary], record, now) == ("new", None)
    mask.write_bytes(b"m")  # interrupted halfway: the same run redoes it
    assert scene_state([mask, summary], record, now) == ("redo", None)
    summary.write_text("{}")
    assert scene_state([mask, summary], record, now) == ("redo", None)  # record still says unfinished
    write_record(record, now, complete=True)
    assert scene_state([mask, summary], record, now) == ("done", None)
    state, conflict = scene_state([mask, summary], record, run_fingerprint(scene, [b], {}))
    assert conflict == f"{mask} was made with model a.pth"
    record.unlink()
    state, conflict = scene_state([mask, summary], record, now)
    assert conflict is not None and "has no record" in conflict and "s_run.json is missing" in conflict


def test_overlap_is_not_compared_when_overlap_px_overrides_it(tmp_path: Path) -> None:
    scene, a, _, _ = _files(tmp_path)
    px = run_fingerprint(scene, [a], {"overlap_px": 32})
    assert difference(px, run_fingerprint(scene, [a], {"overlap_px": 32, "overlap": 0.5})) is None
    assert difference(px, run_fingerprint(scene, [a], {"overlap_px": 16})) is not None
    assert (
        difference(run_fingerprint(scene, [a], {}), run_fingerprint(scene, [a], {"overlap": 0.5})) is not None
    )


def test_a_zipped_inventory_is_known_by_its_archive(tmp_path: Path) -> None:
    scene, a, _, _ = _files(tmp_path)
    archive = tmp_path / "rgi.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("rgi.shp", "x")
    for given in (f"/vsizip/{archive}/rgi.shp", f"zip://{archive}!rgi.shp"):
        before = run_fingerprint(scene, [a], {}, inventory=given)
        assert before["inventory"] == {
            "path": given,
            "size": archive.stat().st_size,
            "mtime_ns": archive.stat().st_mtime_ns,
        }
        os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
        assert difference(before, run_fingerprint(scene, [a], {}, inventory=given)) is not None
    tarred = tmp_path / "rgi.tar"
    with tarfile.open(tarred, "w") as t:
        t.add(archive, arcname="rgi.zip")
    given = f"/vsitar/{tarred}/rgi.zip"
    assert run_fingerprint(scene, [a], {}, inventory=given)["inventory"]["size"] == tarred.stat().st_size
    remote = run_fingerprint(scene, [a], {}, inventory="/vsicurl/https://example.org/rgi.gpkg")
    assert remote["inventory"]["size"] is None
