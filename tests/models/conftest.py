"""Shared fixtures for the model tests: tiny backbones, 64 px images, hand-made targets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import mtbrain  # noqa: F401  (offline env before timm)

TINY = "mobilenetv3_small_050"
SIZE = 64


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of the models package runs with one torch thread (tests/conftest.py)."""


def _targets(
    boxes: list[list[list[float]]], labels: list[int], box_known: list[bool] | None = None
) -> dict[str, torch.Tensor]:
    """Batch targets from per-sample box lists (xyxy input pixels) and labels (-1: none)."""
    b = len(labels)
    k = max(1, max(len(x) for x in boxes))
    t = torch.zeros(b, k, 4)
    valid = torch.zeros(b, k, dtype=torch.bool)
    for i, sample in enumerate(boxes):
        for j, box in enumerate(sample):
            t[i, j] = torch.tensor(box)
            valid[i, j] = True
    lab = torch.tensor(labels)
    out = {
        "labels": lab,
        "label_mask": lab >= 0,
        "boxes": t,
        "box_valid": valid,
        "box_mask": valid.any(dim=1),
    }
    if box_known is not None:
        out["box_known"] = torch.tensor(box_known)
    return out


@pytest.fixture
def make_targets() -> Callable[..., dict[str, torch.Tensor]]:
    return _targets


@pytest.fixture
def tiny_model() -> Callable[..., object]:
    """Factory of tiny, deterministic models (64 px, mobilenetv3_small_050)."""
    from mtbrain.models import Model

    def make(**kw: object) -> Model:
        torch.manual_seed(0)
        kw.setdefault("backbone", TINY)
        kw.setdefault("img_size", SIZE)
        return Model(**kw)

    return make
