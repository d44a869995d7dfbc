"""Box heads: registry, FCOS box geometry, decoding of the best cell."""

from __future__ import annotations

import pytest
import torch

from mtbrain.errors import ConfigError
from mtbrain.models import box_head_names
from mtbrain.models.heads import decode_dense, ltrb_to_boxes


def _hand_made_maps() -> tuple[torch.Tensor, torch.Tensor]:
    """4x4 grid on a 64 px image (stride 16); best cell (row 1, col 2) has centre (40, 24)."""
    centre = torch.full((1, 4, 4), -5.0)
    centre[0, 1, 2] = 3.0
    ltrb = torch.full((1, 4, 4, 4), 8.0).permute(0, 3, 1, 2).contiguous()
    ltrb[0, :, 1, 2] = torch.tensor([10.0, 4.0, 6.0, 20.0])  # l, t, r, b
    return centre, ltrb_to_boxes(ltrb, (64, 64))


def test_registry_and_options(tiny_model) -> None:
    assert {"dense", "pooled"} <= set(box_head_names())
    with pytest.raises(ConfigError, match="unknown box_head 'yolo'"):
        tiny_model(box_head="yolo")
    with pytest.raises(ConfigError, match="chanels"):
        tiny_model(box_head_options={"chanels": 32})
    with pytest.raises(ConfigError, match="decode"):
        tiny_model(box_head_options={"decode": "nms"})
    model = tiny_model(box_head_options={"channels": 32, "num_convs": 1})
    assert model.box_head.lat16.out_channels == 32 and len(model.box_head.tower) == 1
    with pytest.raises(ConfigError, match="out_stride"):
        tiny_model(box_head_options={"out_stride": 4})


def test_ltrb_geometry() -> None:
    _, boxes = _hand_made_maps()
    assert boxes[0, 1, 2].tolist() == [30.0, 20.0, 46.0, 44.0]
    assert boxes[0, 0, 0].tolist() == [0.0, 0.0, 16.0, 16.0]  # centre (8, 8) +- 8


def test_decode_best_cell_gives_known_box() -> None:
    centre, boxes = _hand_made_maps()
    box, score = decode_dense(centre, boxes, (64, 64), mode="best")
    assert box[0].tolist() == [30.0, 20.0, 46.0, 44.0]
    assert score[0].item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_decode_weighted_uses_strong_neighbours_only() -> None:
    centre, boxes = _hand_made_maps()
    # weak neighbours (score < half the best) are ignored: same box as "best"
    box, _ = decode_dense(centre, boxes, (64, 64), mode="weighted")
    assert torch.allclose(box[0], torch.tensor([30.0, 20.0, 46.0, 44.0]))
    # one strong neighbour with equal score and a box shifted by +4 px: the mean
    centre[0, 1, 3] = 3.0
    boxes[0, 1, 3] = torch.tensor([34.0, 20.0, 50.0, 44.0])
    box, _ = decode_dense(centre, boxes, (64, 64), mode="weighted")
    assert torch.allclose(box[0], torch.tensor([32.0, 20.0, 48.0, 44.0]))


def test_decode_clips_to_the_image_and_corner_cells() -> None:
    centre = torch.full((2, 4, 4), -5.0)
    centre[0, 0, 0] = 2.0
    centre[1, 3, 3] = 2.0
    ltrb = torch.full((2, 4, 4, 4), 30.0).permute(0, 3, 1, 2)
    box, _ = decode_dense(centre, ltrb_to_boxes(ltrb, (64, 64)), (64, 64))
    assert box[0].tolist() == [0.0, 0.0, 38.0, 38.0]
    assert box[1].tolist() == [26.0, 26.0, 64.0, 64.0]


def test_dense_head_outputs_follow_the_image_size(tiny_model) -> None:
    model = tiny_model().eval()
    with torch.no_grad():
        feats = model.backbone(model.normalize(torch.rand(1, 1, 64, 96)))
        out = model.box_head(feats, (64, 96))
    assert out["centre"].shape == (1, 4, 6) and out["cell_boxes"].shape == (1, 4, 6, 4)
    assert out["centre"].dtype == torch.float32
    # initial boxes: 2 strides each side of the cell centre
    assert out["cell_boxes"][0, 0, 0].tolist() == pytest.approx([-24.0, -24.0, 40.0, 40.0], abs=1.0)


def test_dense_head_stride_8(tiny_model, make_targets) -> None:
    model = tiny_model(box_head_options={"out_stride": 8}).train()
    t = make_targets([[[8, 8, 40, 30]], []], [0, 2])
    losses = model(torch.rand(2, 1, 64, 64), t)
    losses["loss"].backward()
    assert model.box_head.lat8.weight.grad is not None
    model.eval()
    with torch.no_grad():
        feats = model.backbone(model.normalize(torch.rand(1, 1, 64, 64)))
        out = model.box_head(feats, (64, 64))
    assert out["centre"].shape == (1, 8, 8)
    # same initial box size in pixels as at stride 16: 32 px each side of the cell centre
    assert out["cell_boxes"][0, 0, 0].tolist() == pytest.approx([-28.0, -28.0, 36.0, 36.0], abs=1.0)


def test_no_box_head_is_classification_only(tiny_model, make_targets) -> None:
    model = tiny_model(box_head="none", classes=["glioma", "no_tumor"],
                       loss={"w_box": 3.0, "w_conf": 2.0})
    assert "none" in box_head_names() and not list(model.box_head.parameters())
    x = torch.rand(2, 1, 64, 64)
    t = make_targets([[[8, 8, 40, 30]], []], [0, 1])
    model.train()
    losses = model(x, t)
    assert losses["loss_box_l1"] == 0 and losses["loss_box_giou"] == 0
    assert losses["loss_conf"] == 0 and torch.equal(losses["loss"], losses["loss_cls"])
    losses["loss"].backward()
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out["boxes"].shape == (2, 4) and not out["boxes"].any()
    assert out["box_score"].shape == (2,) and not out["box_score"].any()
    gray = (torch.rand(50, 70) * 255).byte().numpy()
    preds = model.predict([gray, gray], box_threshold=0.0)  # even at threshold 0: no box
    assert [p.box for p in preds] == [None, None] and preds[0].label in model.classes
    assert not model.keeps_box("glioma", 1.0, 0.0)


def _refining(tiny_model, delta: list[float] | None = None) -> torch.nn.Module:
    """A tiny model with the box-refining stage; ``delta``: the stage's fixed output."""
    model = tiny_model(box_head_options={"roi_refine": True, "roi_size": 3})
    if delta is not None:
        with torch.no_grad():
            model.box_head.roi_head[-1].bias.copy_(torch.tensor(delta))
    return model


def test_roi_refine_starts_as_the_identity(tiny_model) -> None:
    images = torch.rand(2, 1, 64, 64)
    plain = tiny_model().eval()
    model = _refining(tiny_model).eval()
    with pytest.raises(ConfigError, match=r"box_head_options\.roi_size=0, must be an integer >= 1"):
        tiny_model(box_head_options={"roi_refine": True, "roi_size": 0})
    with torch.no_grad():
        a, b = plain(images), model(images)
    # same seed, same first layers: the zero-initialised stage leaves the decoded box
    assert torch.allclose(a["boxes"], b["boxes"], atol=1e-5)


def test_roi_refine_moves_sides_in_box_units(tiny_model) -> None:
    model = _refining(tiny_model, [0.1, -0.2, 0.0, 0.25]).eval()
    with torch.no_grad():
        feats = model.backbone(model.normalize(torch.rand(2, 1, 64, 64)))
        out = model.box_head(feats, (64, 64))
        boxes = torch.tensor([[10.0, 20.0, 30.0, 30.0], [0.0, 0.0, 40.0, 40.0]])
        refined = model.box_head.refine_boxes(out, boxes, (64, 64))
    # width 20 / height 10: x1 + 2, y1 - 2, y2 + 2.5; the second is clipped to the image
    assert refined[0].tolist() == pytest.approx([12.0, 18.0, 30.0, 32.5], abs=1e-4)
    assert refined[1].tolist() == pytest.approx([4.0, 0.0, 40.0, 50.0], abs=1e-4)


def test_roi_refine_trains_on_box_samples_only(tiny_model, make_targets) -> None:
    model = _refining(tiny_model).train()
    t = make_targets([[[8, 8, 40, 30], [40, 40, 60, 60]], []], [0, 2])
    losses = model(torch.rand(2, 1, 64, 64), t)
    assert losses["loss_refine_l1"] > 0 and losses["loss_refine_giou"] > 0
    losses["loss"].backward()
    head = model.box_head
    assert head.roi_head[-1].weight.grad.abs().sum() > 0 and head.roi_lat8.weight.grad is not None
    # a batch without any box: exact zeros, still connected to the graph
    model.zero_grad()
    losses = model(torch.rand(2, 1, 64, 64), make_targets([[], []], [2, 2]))
    assert losses["loss_refine_l1"] == 0 and losses["loss_refine_giou"] == 0
    losses["loss"].backward()
    assert head.roi_head[-1].weight.grad is not None
    assert head.roi_head[-1].weight.grad.abs().sum() == 0


def test_roi_refine_loss_falls_on_a_fixed_batch(tiny_model, make_targets) -> None:
    model = _refining(tiny_model).train()
    t = make_targets([[[8, 8, 40, 30]], [[20, 24, 52, 60]]], [0, 1])
    images = torch.rand(2, 1, 64, 64)
    opt = torch.optim.Adam(model.box_head.roi_head.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        torch.manual_seed(0)  # the same jittered proposals each step
        losses = model(images, t)
        loss = losses["loss_refine_l1"] * 5 + losses["loss_refine_giou"] * 2
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.5 * first
