"""Grad-CAM of the class head: shapes and side effects, localisation on a learnt toy task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.explain import energy_inside, grad_cam, overlay, pointing_game
from mtbrain.models import Model

SIZE = 64


@pytest.mark.parametrize("name", ["mobilenetv3_small_050", "resnet18", "convnext_atto"])
def test_shape_range_no_side_effects(name: str) -> None:
    torch.manual_seed(0)
    model = Model(backbone=name, img_size=SIZE, num_classes=3, pretrained=False)
    model.train()
    images = torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():  # must work inside no_grad too
        cam = grad_cam(model, images)
    assert cam.shape == (2, SIZE, SIZE)
    assert cam.dtype == torch.float32 and not cam.requires_grad
    assert float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    for m in (grad_cam(model, images, target=2), grad_cam(model, images, target=[0, 1])):
        assert m.shape == (2, SIZE, SIZE)
    with pytest.raises(ValueError):
        grad_cam(model, images, target=[0])
    with pytest.raises(ValueError):
        grad_cam(model, images, target=3)


@pytest.mark.slow
def test_cam_points_at_the_only_signal(squares_model: Model, make_squares) -> None:
    """A model that can only tell class 1 by a bright square looks at the square.

    At 64 px the stride-32 map is 2x2 (too coarse to point at a 16 px square), so the
    stride-8 level is explained; the default level is checked for shape elsewhere.
    """
    side = 16
    g = torch.Generator().manual_seed(1)
    x, _, boxes = make_squares(20, g, side, label=1)
    cam = grad_cam(squares_model, x, target=1, level=-3)
    hits = [pointing_game(cam[i], boxes[i : i + 1]) for i in range(20)]
    energy = np.mean([energy_inside(cam[i], boxes[i : i + 1]) for i in range(20)])
    assert sum(hits) >= 14, f"pointing game {sum(hits)}/20"  # chance: ~1/16
    assert energy > side * side / SIZE**2


def test_pointing_game_and_energy_on_hand_made_maps() -> None:
    cam = torch.zeros(10, 10)
    cam[2, 7] = 1.0  # row 2, column 7: x = 7, y = 2
    cam[8, 1] = 0.5
    assert pointing_game(cam, torch.tensor([[6.0, 1.0, 9.0, 4.0]]))
    assert not pointing_game(cam, torch.tensor([[0.0, 7.0, 3.0, 10.0]]))  # holds the 0.5 only
    assert pointing_game(cam, [[0.0, 0.0, 1.0, 1.0], [7.0, 2.0, 8.0, 3.0]])  # any box
    assert not pointing_game(cam, [[1.0, 7.0, 2.0, 8.0]])  # x2/y2 exclusive: misses (7, 2)
    assert not pointing_game(torch.zeros(10, 10), [[0.0, 0.0, 10.0, 10.0]])
    assert not pointing_game(cam, np.zeros((0, 4)))
    assert energy_inside(cam, [[6.0, 1.0, 9.0, 4.0]]) == pytest.approx(1 / 1.5)
    assert energy_inside(cam, [[6.0, 1.0, 9.0, 4.0], [0.0, 7.0, 3.0, 10.0]]) == pytest.approx(1.0)
    overlapping = [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]  # union, not a sum
    assert energy_inside(cam, overlapping) == pytest.approx(1.0)
    assert energy_inside(np.ones((4, 4)), [[0.0, 0.0, 2.0, 2.0]]) == pytest.approx(0.25)
    assert energy_inside(np.zeros((4, 4)), [[0.0, 0.0, 2.0, 2.0]]) == 0.0


def test_overlay_shape_dtype() -> None:
    gray = (np.arange(12 * 20) % 256).astype(np.uint8).reshape(12, 20)
    cam = np.linspace(0, 1, 12 * 20, dtype=np.float32).reshape(12, 20)
    out = overlay(gray, cam)
    assert out.shape == (12, 20, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[..., 0], out[..., 2])  # coloured
    assert overlay(gray, torch.from_numpy(cam), alpha=0.0)[..., 1].tolist() == gray.tolist()
    with pytest.raises(ValueError):
        overlay(gray, cam[:5])
