"""Stacking as a whole: what an interrupted run leaves behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.products_data import write_landsat

# Stack in a child process that stops itself with SIGTERM (what a job scheduler sends) after
# the first output tile, as the stage file and the COG's temporary name exist.
_CHILD = """
import os, signal, sys
import geoglacier.products.stack as st

real, calls = st._stack_window, []

def stop_after_one_tile(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)

st._stack_window = stop_after_one_tile
st.stack(sys.argv[1], sys.argv[2], bands="red")
"""


def test_sigterm_leaves_neither_output_nor_temporaries(tmp_path: Path) -> None:
    fx = write_landsat(tmp_path, mtl=("json",), height=300, width=300)  # 4 tiles of 256 px
    out = tmp_path / "scene.tif"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(fx.folder), str(out)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert done.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [fx.folder.name], done.stderr[-2000:]
