"""A tiny model trained on a toy task whose only signal is a bright square (the "tumour").

Shared by the Grad-CAM, Gradient SHAP and entry-point tests: trained once per session.
``make_squares`` gives the toy images (64 px; class 1 has a 16 px square, its box).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
import torch
import torch.nn.functional as F

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.models import Model

SIZE = 64
SIDE = 16


def squares(n: int, g: torch.Generator, side: int = SIDE, label: int | None = None,
            size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images; class 1 has a bright ``side`` px square at a random place (its box).

    Returns ``(images (n, 1, size, size), labels (n,), boxes (n, 4) xyxy, zeros for 0)``.
    """
    x = 0.3 * torch.rand(n, 1, size, size, generator=g)
    y = torch.randint(0, 2, (n,), generator=g) if label is None else torch.full((n,), label)
    boxes = torch.zeros(n, 4)
    for i in range(n):
        if y[i] == 1:
            x0, y0 = torch.randint(0, size - side + 1, (2,), generator=g).tolist()
            x[i, 0, y0 : y0 + side, x0 : x0 + side] = 0.7 + 0.3 * torch.rand(side, side, generator=g)
            boxes[i] = torch.tensor([x0, y0, x0 + side, y0 + side], dtype=torch.float32)
    return x, y, boxes


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every explain test runs with one torch thread (tests/conftest.py)."""


@pytest.fixture
def make_squares() -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``make_squares(n, generator, side=16, label=None, size=64)``: see :func:`squares`."""
    return squares


@pytest.fixture(scope="session")
def squares_model(single_thread: Callable[[], AbstractContextManager[None]]) -> Model:
    """A resnet18 (64 px, classes ``class_0``/``class_1``) that tells class 1 by its square,
    with accuracy above 0.9 on fresh toy images; returned in eval mode."""
    with single_thread():
        torch.manual_seed(0)
        model = Model(backbone="resnet18", img_size=SIZE, num_classes=2, pretrained=False)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(60):
            x, y, _ = squares(32, g)
            logits = model.cls_head(model.backbone(model.normalize(x)).pooled)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        model.eval()
        x, y, _ = squares(200, g)
        with torch.no_grad():
            acc = (model(x)["logits"].argmax(1) == y).float().mean().item()
        assert acc > 0.9, f"the toy model did not learn its task (accuracy {acc:.2f})"
    return model
