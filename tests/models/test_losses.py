"""The masked multitask loss: config, targets, masking (exact zero gradients), values."""

from __future__ import annotations

import math

import pytest
import torch

from mtbrain.errors import ConfigError
from mtbrain.models.losses import (
    LossConfig,
    dense_targets,
    focal_heatmap_loss,
    giou_pairs,
    masked_cross_entropy,
    resolve_masks,
)


def test_loss_config_from_dict_and_errors() -> None:
    cfg = LossConfig.from_dict({"w_box": 2, "label_smoothing": 0.1, "class_weights": [1, 2, 1, 1]})
    assert cfg.w_box == 2.0 and cfg.class_weights == (1.0, 2.0, 1.0, 1.0)
    assert LossConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="w_bx"):
        LossConfig.from_dict({"w_bx": 1})
    with pytest.raises(ConfigError, match="label_smoothing"):
        LossConfig(label_smoothing=1.0)
    with pytest.raises(ConfigError, match="w_cls"):
        LossConfig(w_cls=-1)
    with pytest.raises(ConfigError, match="w_conf"):
        LossConfig.from_dict({"w_conf": "high"})


def test_box_known_default(make_targets) -> None:
    # glioma with box, glioma from a class-only set, no_tumor (index 2), unlabelled
    t = make_targets([[[1, 1, 9, 9]], [], [], []], [0, 0, 2, -1])
    r = resolve_masks(t, no_box_indices=[2])
    assert r["box_known"].tolist() == [True, False, True, False]
    t["box_known"] = torch.tensor([False, False, False, True])  # given: kept (| box_mask)
    assert resolve_masks(t, no_box_indices=[2])["box_known"].tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="box_valid"):
        resolve_masks({"labels": t["labels"]})


def test_masked_cross_entropy_values() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]])
    labels = torch.tensor([0, 0, -1])
    mask = torch.tensor([True, True, False])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 2
    assert masked_cross_entropy(logits, labels, mask).item() == pytest.approx(expected, rel=1e-5)
    none = masked_cross_entropy(logits.requires_grad_(), labels, torch.zeros(3, dtype=torch.bool))
    assert none.item() == 0.0
    none.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_giou_values() -> None:
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [20, 0, 30, 10]])
    g = giou_pairs(a, b)
    assert g[0].item() == pytest.approx(1.0, abs=1e-6)
    assert g[1].item() == pytest.approx(50 / 150, abs=1e-6)
    assert g[2].item() == pytest.approx(0 - (300 - 200) / 300, abs=1e-6)


def test_dense_targets_centre_and_assignment() -> None:
    cfg = LossConfig()
    # 64 px, 4x4 grid (stride 16); two boxes: a big one centred in cell (1, 1), a small one
    # centred in cell (3, 3)
    boxes = torch.tensor([[[0.0, 0, 48, 48], [52, 52, 60, 60], [0, 0, 0, 0]]])
    valid = torch.tensor([[True, True, False]])
    t = dense_targets(boxes, valid, (4, 4), (64, 64), cfg)
    assert t.heat[0, 1, 1] == 1.0 and t.heat[0, 3, 3] == 1.0
    assert int((t.heat == 1).sum()) == 2
    assert t.reg_weight.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert t.reg_weight[0, 1, 1] == t.reg_weight.max()
    assert torch.equal(t.assigned[0, 1, 1], boxes[0, 0]) and torch.equal(
        t.assigned[0, 3, 3], boxes[0, 1]
    )
    # every cell with weight regresses a box that contains its centre
    for i, j in (t.reg_weight[0] > 0).nonzero().tolist():
        x1, y1, x2, y2 = t.assigned[0, i, j].tolist()
        assert x1 < (j + 0.5) * 16 < x2 and y1 < (i + 0.5) * 16 < y2
    # a sample without boxes: empty heatmap and no regression weight
    empty = dense_targets(
        torch.zeros(1, 1, 4), torch.zeros(1, 1, dtype=torch.bool), (4, 4), (64, 64), cfg
    )
    assert empty.heat.sum() == 0 and empty.reg_weight.sum() == 0


def test_focal_heatmap_loss_prefers_the_right_peak() -> None:
    heat = torch.zeros(1, 4, 4)
    heat[0, 1, 2] = 1.0
    good = torch.full((1, 4, 4), -6.0)
    good[0, 1, 2] = 6.0
    bad = torch.full((1, 4, 4), -6.0)
    bad[0, 3, 0] = 6.0
    assert focal_heatmap_loss(good, heat).item() < 0.01 < focal_heatmap_loss(bad, heat).item()


@pytest.mark.parametrize("box_head", ["dense", "pooled"])
def test_masked_samples_get_exactly_zero_gradient(box_head: str, tiny_model, make_targets) -> None:
    """Box-less samples: zero gradient through the box terms; class-less: through CE;
    samples with unknown boxes: through the confidence term (eval mode: no batch-norm mixing)."""
    model = tiny_model(box_head=box_head).eval()
    # 0: glioma+box, 1: glioma from a class-only set (box unknown), 2: no_tumor (known, no
    # box), 3: unlabelled with a box
    t = make_targets([[[8, 8, 40, 30]], [], [], [[20, 20, 60, 50], [2, 2, 10, 12]]], [0, 0, 2, -1])
    has_box = torch.tensor([True, False, False, True])
    has_label = torch.tensor([True, True, True, False])
    known = torch.tensor([True, False, True, True])
    for term, rows in (
        ("loss_box_l1", has_box),
        ("loss_box_giou", has_box),
        ("loss_cls", has_label),
        ("loss_conf", known),
    ):
        x = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(0)).requires_grad_()
        out = model(x, t)
        out[term].backward()
        per_row = x.grad.abs().flatten(1).sum(1)
        assert torch.all(per_row[~rows] == 0), term
        assert torch.all(per_row[rows] > 0), term


def test_batch_without_boxes_or_labels_gives_exact_zeros(tiny_model, make_targets) -> None:
    model = tiny_model().train()
    t = make_targets([[], []], [-1, -1], box_known=[False, False])
    losses = model(torch.rand(2, 1, 64, 64), t)
    for k in ("loss_cls", "loss_box_l1", "loss_box_giou", "loss_conf", "loss"):
        assert losses[k].item() == 0.0
    losses["loss"].backward()  # still connected to the graph (DDP needs every gradient)
    assert model.box_head.ltrb.weight.grad is not None
    assert torch.count_nonzero(model.box_head.ltrb.weight.grad) == 0


def test_loss_weights_and_class_weights(tiny_model, make_targets) -> None:
    t = make_targets([[[8, 8, 40, 30]], []], [0, 2])
    x = torch.rand(2, 1, 64, 64)
    base = tiny_model().eval()(x, t)
    c = LossConfig()
    total = (
        c.w_cls * base["loss_cls"]
        + c.w_box * (c.l1_weight * base["loss_box_l1"] + c.giou_weight * base["loss_box_giou"])
        + c.w_conf * base["loss_conf"]
    )
    assert base["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    only_cls = tiny_model(loss={"w_box": 0, "w_conf": 0}).eval()(x, t)
    assert only_cls["loss"].item() == pytest.approx(only_cls["loss_cls"].item(), rel=1e-6)
    with pytest.raises(ConfigError, match="class_weights"):
        tiny_model(loss={"class_weights": [1, 2]})
    weighted = tiny_model(loss={"class_weights": [1, 1, 1, 1]}).eval()(x, t)
    assert weighted["loss_cls"].item() == pytest.approx(base["loss_cls"].item(), rel=1e-5)


def test_losses_are_float32_under_bf16_autocast(tiny_model, make_targets) -> None:
    model = tiny_model().train()
    t = make_targets([[[8, 8, 40, 30]], []], [0, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(torch.rand(2, 1, 64, 64), t)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert torch.isfinite(model.box_head.centre.weight.grad).all()
