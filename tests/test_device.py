"""Tests of geoglacier.device."""

from __future__ import annotations

import pytest
import torch

from geoglacier.device import resolve_device
from geoglacier.errors import ConfigError


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu:0", ""])
def test_unknown_device(spec: str) -> None:
    with pytest.raises(ConfigError, match="not a device"):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_an_error() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:0")
