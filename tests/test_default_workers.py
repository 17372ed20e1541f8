"""The default number of DataLoader workers follows the cores this process may use."""

from __future__ import annotations

import os

import pytest
import torch

from geoglacier.training import loop


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(1, 0), (2, 0), (3, 1), (4, 2), (6, 4), (16, 4)],
)
def test_default_num_workers_by_cores(monkeypatch: pytest.MonkeyPatch, cores: int, expected: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine may have more than we may use
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loop.default_num_workers() == expected


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (4, 2), (16, 4)])
def test_default_num_workers_with_cuda(monkeypatch: pytest.MonkeyPatch, cores: int, expected: int) -> None:
    """With a GPU doing the step, one worker can load beside it even on 2 cores."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loop.default_num_workers() == expected


def test_default_num_workers_without_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert loop.default_num_workers() == 0
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert loop.default_num_workers() == 0
