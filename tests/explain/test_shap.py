"""Gradient SHAP of the class head: shapes, determinism, localisation, missing captum."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.explain import energy_inside, gradient_shap, heatmaps, pointing_game
from mtbrain.models import Model

SIZE = 64


def test_shape_range_determinism_no_side_effects() -> None:
    torch.manual_seed(0)
    model = Model(backbone="resnet18", img_size=SIZE, num_classes=3, pretrained=False)
    model.train()
    images = torch.rand(2, 1, SIZE, SIZE)
    torch.manual_seed(123)
    np.random.seed(7)
    with torch.no_grad():  # must work inside no_grad too
        maps = gradient_shap(model, images, n_samples=3, seed=5)
    after_torch, after_np = torch.rand(1), np.random.rand()
    torch.manual_seed(123)
    np.random.seed(7)
    assert torch.equal(after_torch, torch.rand(1)) and after_np == np.random.rand()  # restored
    assert maps.shape == (2, SIZE, SIZE)
    assert maps.dtype == torch.float32 and not maps.requires_grad
    assert float(maps.min()) >= 0.0
    assert torch.allclose(maps.amax(dim=(1, 2)), torch.ones(2))  # each divided by its max
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    assert torch.equal(maps, gradient_shap(model, images, n_samples=3, seed=5))
    assert not torch.equal(maps, gradient_shap(model, images, n_samples=3, seed=6))
    raw = gradient_shap(model, images, n_samples=3, seed=5, smooth=0.0, max_batch=3)
    assert raw.shape == (2, SIZE, SIZE) and not torch.equal(raw, maps)  # blur is the default
    for target in (2, [0, 1]):
        assert gradient_shap(model, images, target=target, n_samples=2).shape == (2, SIZE, SIZE)
    assert torch.equal(heatmaps(model, images, method="shap", n_samples=3, seed=5), maps)
    with pytest.raises(ValueError, match="out of range"):
        gradient_shap(model, images, target=3, n_samples=2)
    with pytest.raises(ValueError, match="entries"):
        gradient_shap(model, images, target=[0], n_samples=2)
    with pytest.raises(ValueError, match="baselines"):
        gradient_shap(model, images, baselines=torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="n_samples"):
        gradient_shap(model, images, n_samples=0)
    with pytest.raises(ValueError, match="unknown explanation method"):
        heatmaps(model, images, method="lime")


@pytest.mark.slow
def test_shap_points_at_the_only_signal(squares_model: Model, make_squares) -> None:
    """SHAP of class 1 lies on the square, the only thing that tells class 1.

    The square is also brighter than the noise, and input x gradient favours bright
    pixels whatever the model, so the check that counts is the other class: for class 0
    the square is evidence *against*, and its positive attributions leave the box.
    """
    side = 16
    g = torch.Generator().manual_seed(1)
    x, _, boxes = make_squares(20, g, side, label=1)
    for_tumour = gradient_shap(squares_model, x, target=1, n_samples=8)
    against = gradient_shap(squares_model, x, target=0, n_samples=8)
    hits = [pointing_game(for_tumour[i], boxes[i : i + 1]) for i in range(20)]
    energy = np.mean([energy_inside(for_tumour[i], boxes[i : i + 1]) for i in range(20)])
    energy_0 = np.mean([energy_inside(against[i], boxes[i : i + 1]) for i in range(20)])
    area = side * side / SIZE**2
    assert sum(hits) >= 14, f"pointing game {sum(hits)}/20"  # chance: ~1/16
    assert energy > 4 * area, f"energy inside {energy:.3f}, box area {area:.3f}"
    assert energy_0 < energy / 3, f"class 0 energy inside {energy_0:.3f} vs {energy:.3f}"


def test_missing_captum_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)  # import captum -> ImportError
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    model = Model(backbone="resnet18", img_size=SIZE, num_classes=2, pretrained=False)
    images = torch.rand(1, 1, SIZE, SIZE)
    for call in (lambda: gradient_shap(model, images),
                 lambda: heatmaps(model, images, method="shap")):
        with pytest.raises(ImportError, match=r"extra 'explain'.*mtbrain\[explain\]"):
            call()
    assert heatmaps(model, images, method="gradcam").shape == (1, SIZE, SIZE)  # no captum
