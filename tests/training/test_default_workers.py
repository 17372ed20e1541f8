"""The default number of DataLoader workers follows the cores this process may use."""

from __future__ import annotations

import os

import pytest
import torch

from geoglacier.training.config import default_num_workers


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(1, 0), (2, 0), (3, 1), (4, 2), (6, 4), (16, 4)],
)
def test_default_num_workers_by_cores(monkeypatch: pytest.MonkeyPatch, cores: int, expected: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine may have more than we may use
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_num_workers() == expected


@pytest.mark.parametrize("cuda", [False, True])
def test_two_cores_load_in_process_even_with_cuda(monkeypatch: pytest.MonkeyPatch, cuda: bool) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert default_num_workers() == 0


def test_default_num_workers_without_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_num_workers() == 0
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert default_num_workers() == 0
