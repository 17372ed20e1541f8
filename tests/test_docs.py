"""The documentation cannot rot: its commands run, its references cover the code.

* Every command line in a ``bash`` block of the README and of the tutorials
  (``docs/tutorials/*.md``) runs, in order, page by page, on seeded stand-ins for the inputs
  the page names (:mod:`tests.docs_data`: Landsat, Sentinel-2 and HLS products, training scenes,
  an inventory, under the same names). ``sh`` blocks are shown, not run: they need a cluster.
  Besides ``geoglacier`` and ``make``, a page may run the shell commands of :data:`SHELL`
  (``mkdir -p`` for a training folder, ``cp -r`` for its masks), as written.
* The commands run as written, with the options of :data:`SMALL` appended so they finish in
  seconds (a tiny network, 64 px patches, no progress bars) and ``--epochs N`` / ``--workers N``
  scaled down as :func:`small_args` says. Appended options win over the page's (click takes
  the last value), so the path through the code is the documented one on smaller inputs.
* ``make demo`` runs the Makefile's own ``demo`` recipe with ``--quick --size 64``;
  ``make test`` and ``make docs`` are checked to be Makefile targets, not run (the first
  would run this suite again; ``make docs`` is run by ``.ci/run``).
* The product-to-change page's section on the model's own error bars (``train --error-folds``:
  three networks) runs in a test of its own, after the page's six commands; the page's
  other test runs every other section. Every tutorial runs in the default suite (about 70 s
  for all of them on an idle 2-core machine), so none of them can rot unnoticed.
* A command whose comment says ``Ctrl-C`` is started as its own process and sent SIGINT
  once it has made progress (a training state on disk); it must exit with status 130 and
  say how to resume. The page's next command (``--resume``) then continues from there.
  Only training is interrupted this way; the interrupt tutorial's ``segment-scene --resume``
  runs with no tiles kept (an interrupted run saves its tiles only on the interrupt, so no
  file on disk says when to send it), which the page says is a whole run.
* Every click command and option appears in the CLI reference as sphinx-click renders it,
  and every name of ``geoglacier.__all__`` in the generated API page.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import fiona
import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner

import geoglacier
from geoglacier.cli.main import cli
from tests.docs_data import make_workspace

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))

#: Options appended to each documented command in the test, so it runs in seconds.
SMALL: dict[str, list[str]] = {
    "train": [
        "--encoder-weights",
        "none",
        "--arch",
        "Unet",
        "--encoder",
        "resnet18",
        "--patch-size",
        "64",
        "--patches-per-epoch",
        "4",
        "--batch-size",
        "2",
    ],
    "segment-scene": ["--engine", "torch", "--no-progress"],
    "segment-scenes": ["--engine", "torch", "--no-progress"],
    "stack": ["--no-progress"],
    "glaciers": ["--no-progress"],
    "change": ["--no-progress"],
}
#: Shell commands a page may run as they are (not geoglacier, not make).
SHELL = ("mkdir", "cp")
#: What ``make demo`` gets on top of its recipe.
DEMO_SMALL = ["--quick", "--size", "64"]


@dataclass
class Command:
    line: str  # as written on the page, continuation lines joined
    args: list[str]  # shell words, comment removed
    interrupt: bool  # the page says to press Ctrl-C during it
    section: str = ""  # the ``## `` heading the command is under


def bash_commands(page: Path) -> list[Command]:
    """The command lines of the page's ```bash blocks, in order."""
    text = page.read_text(encoding="utf-8")
    commands = []
    for match in re.finditer(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        headings = re.findall(r"^## (.+)$", text[: match.start()], flags=re.M)
        section = headings[-1] if headings else ""
        for line in match.group(1).replace("\\\n", " ").splitlines():
            args = shlex.split(line, comments=True)
            if args:
                interrupt = bool(re.search(r"#.*Ctrl-C", line))
                commands.append(Command(line.strip(), args, interrupt, section))
    return commands


def _set(args: list[str], option: str, value) -> None:
    """Scale the value of ``option`` in place (``value(old)``), or append it with ``value(None)``."""
    if option in args:
        i = args.index(option)
        args[i + 1] = str(value(args[i + 1]))
    else:
        args += [option, str(value(None))]


def small_args(args: list[str]) -> list[str]:
    """A documented ``geoglacier`` command line with the test's smaller sizes.

    ``train --epochs N`` runs ceil(N / 10) epochs (1 without ``--epochs``), so a page that
    raises the epochs of a finished run still raises them; ``segment-scenes --workers N``
    starts one worker.
    """
    args = list(args[1:])
    command = args[0]
    if command == "train":
        _set(args, "--epochs", lambda n: 1 if n is None else math.ceil(int(n) / 10))
    if command == "segment-scenes":
        _set(args, "--workers", lambda n: 1)
    expanded = []
    for arg in args:
        expanded += sorted(glob.glob(arg)) or [arg] if "*" in arg else [arg]
    return expanded + SMALL.get(command, [])


def _make_recipe(target: str) -> list[str] | None:
    """The command lines of a Makefile target's recipe, or None when there is no such target."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)*)", text, flags=re.M)
    return None if match is None else [line.strip() for line in match.group(1).splitlines()]


def run_make(command: Command) -> None:
    target = command.args[1]
    recipe = _make_recipe(target)
    assert recipe is not None, f"{command.line}: the Makefile has no target {target!r}"
    if target != "demo":
        return  # make test would run this suite again; make docs is run by .ci/run
    (demo,) = [line for line in recipe if "geoglacier demo" in line]
    args = shlex.split(demo)[1:] + DEMO_SMALL
    run_cli(Command(command.line, ["geoglacier", *args], False), small=False)
    assert (Path("demo-output") / "mask.tif").exists()


def run_cli(command: Command, small: bool = True) -> None:
    args = small_args(command.args) if small else command.args[1:]
    result = CliRunner().invoke(cli, args, prog_name="geoglacier")
    assert result.exit_code == 0, f"{command.line}\n(run as: geoglacier {shlex.join(args)})\n{result.output}"


def run_interrupted(command: Command, cwd: Path) -> None:
    """Start the command, send SIGINT once it has saved a training state, check it says how to resume."""
    args = small_args(command.args)
    assert args[0] == "train", f"{command.line}: only training is interrupted by this test"
    state = cwd / (args[args.index("--out") + 1] + ".state")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "geoglacier", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 130, f"{command.line}: exit {proc.returncode}, not 130 (interrupted)\n{output}"
    assert "run the same command with --resume" in output, output


def run_page(
    page: Path,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    sections: Callable[[str], bool] | None = None,
) -> list[str]:
    """Run the page's commands in order (those under the ``## `` headings ``sections`` accepts, if given)."""
    commands = [c for c in bash_commands(page) if sections is None or sections(c.section)]
    assert commands, f"{page.name} has no bash commands"
    monkeypatch.chdir(workspace)
    for command in commands:
        if command.args[0] == "make":
            run_make(command)
        elif command.args[0] in SHELL:
            subprocess.run(command.args, check=True)
        elif command.args[0] != "geoglacier":
            pytest.fail(
                f"{page.name}: {command.line!r} is neither geoglacier, make nor {SHELL}: "
                "teach tests/test_docs.py to run it"
            )
        elif command.interrupt:
            run_interrupted(command, workspace)
        else:
            run_cli(command)
    return [c.line for c in commands]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "work")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small checkpoint trained on the documented data, for pages that start from one."""
    root = make_workspace(tmp_path_factory.mktemp("trained"))
    args = small_args(["geoglacier", "train", str(root / "data"), "--out", str(root / "model.pth")])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return root / "model.pth"


# ------------------------------------------------------------------ the commands run


PRODUCT_TO_CHANGE = DOCS / "tutorials" / "product-to-change.md"
#: Sections of the product-to-change page: the error-model one runs in a test of its own.
SIX, ERROR_BARS = "The six commands", "With the model's own error bars"


def test_readme_commands_run(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = run_page(README, workspace, monkeypatch)
    assert lines[0].startswith("make demo") and lines[1].startswith("make test"), lines[:2]
    # The six-command path left what it promises.
    for name in (
        "scene_2003.tif",
        "mask_2023.tif",
        "glaciers_2023.csv",
        "change.tif",
        "change.gpkg",
        "change.json",
    ):
        assert (workspace / name).exists(), name


def test_tutorial_product_to_change_runs(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_page(PRODUCT_TO_CHANGE, workspace, monkeypatch, lambda section: section != ERROR_BARS)
    totals = json.loads((workspace / "change.json").read_text())
    assert totals, "change --summary wrote nothing"
    with rasterio.open(workspace / "scene_hls.tif") as ds:  # the HLS section stacked the S30 granule
        assert ds.tags()["SOURCE_PRODUCT"] == "HLS.S30.T45RVL.2023290T050701.v2.0"
    # The DEM section: 7-band scenes whose slope is the stand-in plane's (0.2 m/m east and north).
    recipe = ("red", "green", "blue", "nir", "ndvi", "elevation", "slope")
    plane = math.degrees(math.atan(math.hypot(0.2, 0.2)))
    for name in ("scene7.tif", "scene7_2003.tif"):
        with rasterio.open(workspace / name) as ds:
            assert ds.descriptions == recipe, name
            slope = ds.read(7)
        assert abs(float(np.nanmedian(slope)) - plane) < 0.1, (name, float(np.nanmedian(slope)), plane)
    with rasterio.open(workspace / "scene7_2003.tif") as ds:  # restacking a scene keeps its tags
        assert ds.tags()["ACQUISITION_DATE"] == "2003-09-15"
    assert (workspace / "mask7.tif").exists()


def test_tutorial_product_to_change_error_model_runs(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error-bars section, after the six commands (it trains three networks)."""
    lines = run_page(PRODUCT_TO_CHANGE, workspace, monkeypatch, lambda section: section in (SIX, ERROR_BARS))
    assert any("--error-folds" in line for line in lines), f"no '## {ERROR_BARS}' section with --error-folds"
    totals = json.loads((workspace / "change.json").read_text())
    # The error folds' model gives intervals and the change its sigmas.
    glaciers = pd.read_csv(workspace / "glaciers_2023.csv")
    bounds = glaciers[["area_low_km2", "area_high_km2"]].to_numpy()
    assert np.isfinite(bounds).all(axis=1).any(), glaciers
    assert (bounds[:, 0] <= bounds[:, 1])[np.isfinite(bounds).all(axis=1)].all(), bounds
    with fiona.open(workspace / "change.gpkg") as src:
        change = pd.DataFrame([dict(f.properties) for f in src])
    assert {"model_sigma_t0_km2", "model_sigma_t1_km2", "beyond_calibration"} <= set(change.columns)
    model_sigma = change[["model_sigma_t0_km2", "model_sigma_t1_km2"]].to_numpy(dtype=float)
    assert (np.isfinite(model_sigma).all(axis=1) & (model_sigma > 0).all(axis=1)).any(), change
    assert "model_error_correlation" in json.dumps(totals), totals  # only with an error model
    assert (workspace / "model.fold2.pth").exists()


def test_tutorial_train_your_labels_runs(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_page(DOCS / "tutorials" / "train-your-labels.md", workspace, monkeypatch)
    assert (workspace / "spread.tif").exists()
    # The inventory section: a mask on the stacked scene's grid, with glacier, ground and edge band.
    with rasterio.open(workspace / "rgi_data/images/everest_2023.tif") as scene:
        with rasterio.open(workspace / "rgi_data/masks/everest_2023.tif") as mask:
            assert (mask.crs, mask.transform, mask.shape) == (scene.crs, scene.transform, scene.shape)
            assert set(np.unique(mask.read(1))) == {0, 1, 255}
    assert (workspace / "rgi_model.pth").exists()


def test_tutorial_dask_cluster_runs(workspace: Path, trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(trained, workspace / "model.pth")
    run_page(DOCS / "tutorials" / "dask-cluster.md", workspace, monkeypatch)
    assert (workspace / "masks" / "summary.csv").exists()
    assert (workspace / "per_glacier" / "glaciers.csv").exists()


def test_tutorial_interrupt_resume_runs(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_page(DOCS / "tutorials" / "interrupt-resume.md", workspace, monkeypatch)


def test_every_tutorial_is_run_by_a_test() -> None:
    names = {p.stem.replace("-", "_") for p in TUTORIALS}
    tested = {n[len("test_tutorial_") : -len("_runs")] for n in globals() if n.startswith("test_tutorial_")}
    assert names <= tested, f"tutorials without a test: {sorted(names - tested)}"


def test_small_args_scale_epochs_and_workers_and_append_small_options() -> None:
    args = small_args(shlex.split("geoglacier train data/ --out m.pth --epochs 30 --resume"))
    assert args[:6] == ["train", "data/", "--out", "m.pth", "--epochs", "3"]
    assert args[-len(SMALL["train"]) :] == SMALL["train"]
    assert small_args(["geoglacier", "train", "d", "--out", "m.pth"])[4:6] == ["--epochs", "1"]
    assert "--workers" in small_args(["geoglacier", "segment-scenes", "a.tif", "--workers", "4"])


# ------------------------------------------------------------------ the references cover the code


def _public_commands() -> dict[str, click.Command]:
    """The group's commands a user sees (a test may register a hidden one on the group)."""
    return {name: cmd for name, cmd in cli.commands.items() if not cmd.hidden}


def _all_params() -> list[tuple[str, click.Parameter]]:
    out = [(cmd_name, p) for cmd_name, cmd in _public_commands().items() for p in cmd.params]
    return out + [("geoglacier", p) for p in cli.params]


def test_cli_page_renders_the_whole_group() -> None:
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert ".. click:: geoglacier.cli.main:cli" in page and ":nested: full" in page
    assert len(cli.commands) >= 10


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    sphinx_click = pytest.importorskip("sphinx_click.ext")
    ctx = click.Context(cli, info_name="geoglacier")
    lines = list(sphinx_click._format_command(ctx, nested="full"))
    for name, command in _public_commands().items():
        sub = click.Context(command, info_name=name, parent=ctx)
        lines += list(sphinx_click._format_command(sub, nested="full"))
    text = "\n".join(lines)
    for cmd_name in _public_commands():
        assert f"geoglacier {cmd_name}" in text, cmd_name
    for cmd_name, param in _all_params():
        if param.hidden if isinstance(param, click.Option) else False:
            continue
        names = (
            [*param.opts, *param.secondary_opts] if isinstance(param, click.Option) else [param.name.upper()]
        )
        for opt in names:
            assert opt in text, f"{cmd_name} {opt} is missing from the CLI reference"


def test_every_export_is_in_the_api_reference() -> None:
    sys.path.insert(0, str(DOCS))
    try:
        from _apigen import api_markdown
    finally:
        sys.path.remove(str(DOCS))
    page = api_markdown(geoglacier._EXPORTS)
    for name in geoglacier.__all__:
        assert f"`geoglacier.{name}`" in page or f"geoglacier.{name}" in page, name
        assert getattr(geoglacier, name) is not None
    for name, module in geoglacier._EXPORTS.items():
        assert re.search(rf"^\.\. auto(function|class):: {re.escape(module)}\.{name}$", page, flags=re.M), (
            name
        )
    assert "write_api_page" in (DOCS / "conf.py").read_text(encoding="utf-8")


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines"
    assert lines[3].startswith("make demo") and lines[4].startswith("make test")
    assert "docs/_static/everest_quicklook.png" in "\n".join(lines)
    assert (DOCS / "_static" / "everest_quicklook.png").exists()


def test_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in DOCS.rglob("*.md"):
        rel = page.relative_to(DOCS).with_suffix("").as_posix()
        if rel == "index" or "_build" in rel:
            continue
        assert re.search(rf"^{re.escape(rel)}$", index, flags=re.M), (
            f"{rel} is in no toctree of docs/index.md"
        )
