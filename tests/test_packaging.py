"""The package installs as asked: geoglacier.cli from cli/, no top-level ``cli`` module."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_wheel_holds_geoglacier_cli_and_no_top_level_cli(tmp_path: Path) -> None:
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("geoglacier-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "geoglacier/cli/main.py" in names
    for sub in ("io", "training", "inference", "measure", "products", "glaciers"):
        assert f"geoglacier/{sub}/__init__.py" in names, sub
    assert "geoglacier/io/scene.py" in names
    assert not [n for n in names if n.startswith("cli/")]
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "geoglacier = geoglacier.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_package_has_no_top_level_cli(tmp_path: Path) -> None:
    probe = _run(
        [
            sys.executable,
            "-c",
            "import importlib.util as u; print(u.find_spec('cli'), u.find_spec('geoglacier.cli.main') is not None)",
        ],
        cwd=tmp_path,
    )
    assert probe.stdout.split() == ["None", "True"], probe.stdout + probe.stderr


def test_console_script_and_module_entry_points(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("geoglacier")
    for args in ([str(script), "--help"], [sys.executable, "-m", "geoglacier", "--help"]):
        out = _run(args, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "Map glaciers" in out.stdout
        assert "demo" in out.stdout
