"""Horizontal-flip test-time augmentation is mirror-consistent."""

from __future__ import annotations

import pytest
import torch

from mtbrain.models.heads import mirror_boxes


@pytest.mark.parametrize("head", ["dense", "pooled", "dense+roi_refine"])
def test_flip_tta_is_mirror_invariant(tiny_model, head: str) -> None:
    name, _, option = head.partition("+")
    model = tiny_model(box_head=name, box_head_options={option: True} if option else None)
    if option:  # a non-trivial refining stage
        torch.nn.init.normal_(model.box_head.roi_head[-1].weight, std=0.01)
    model.eval()
    images = torch.rand(2, 1, 64, 64)
    mirrored = images.flip(-1)
    with torch.no_grad():
        a = model(images, tta_flip=True)
        b = model(mirrored, tta_flip=True)
        plain = model(images)
    assert torch.allclose(a["logits"], b["logits"], atol=1e-5)
    assert torch.allclose(a["box_score"], b["box_score"], atol=1e-5)
    assert torch.allclose(a["boxes"], mirror_boxes(b["boxes"], 64), atol=1e-3)
    assert torch.allclose(a["probs"].sum(1), torch.ones(2))
    assert not torch.allclose(a["logits"], plain["logits"])  # the mirror view changed it


def test_flip_tta_averages_the_raw_maps_before_decoding(tiny_model) -> None:
    """The dense head's centre maps and cell boxes are averaged, then one box decoded."""
    from mtbrain.models.heads import decode_dense

    model = tiny_model().eval()
    images = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        feats = model.backbone(model.normalize(torch.cat([images, images.flip(-1)])))
        raw = model.box_head(feats, (64, 64))
        back = model.box_head.mirror({k: v[3:] for k, v in raw.items()}, (64, 64))
        centre = (raw["centre"][:3] + back["centre"]) / 2
        cells = (raw["cell_boxes"][:3] + back["cell_boxes"]) / 2
        want, want_score = decode_dense(centre, cells, (64, 64))
        got = model(images, tta_flip=True)
    assert torch.allclose(got["boxes"], want, atol=1e-4)
    assert torch.allclose(got["box_score"], want_score, atol=1e-6)


def test_flip_tta_refines_the_box_in_each_view(tiny_model) -> None:
    """The refining stage corrects the box in each view with that view's features; the
    mirrored view's correction is mirrored back: a fixed "move the left side right by 10 %"
    becomes, on average, "both sides inwards by 5 %"."""
    plain = tiny_model().eval()
    model = tiny_model(box_head_options={"roi_refine": True}).eval()
    with torch.no_grad():
        model.box_head.roi_head[-1].bias.copy_(torch.tensor([0.1, 0.0, 0.0, 0.0]))
        images = torch.rand(2, 1, 64, 64)
        base = plain(images, tta_flip=True)["boxes"]
        got = model(images, tta_flip=True)["boxes"]
    w = base[:, 2] - base[:, 0]
    want = torch.stack([base[:, 0] + 0.05 * w, base[:, 1], base[:, 2] - 0.05 * w, base[:, 3]], 1)
    assert torch.allclose(got, want, atol=1e-3)


def test_flip_tta_is_ignored_in_training(tiny_model, make_targets) -> None:
    model = tiny_model().train()
    images = torch.rand(2, 1, 64, 64)
    torch.manual_seed(0)
    t = make_targets([[[8, 8, 40, 30]], []], [0, 2])
    a = model(images, t, tta_flip=True)
    torch.manual_seed(0)
    b = model(images, t)
    assert torch.allclose(a["loss"], b["loss"])


def test_predict_with_tta_gives_valid_records(tiny_model) -> None:
    import numpy as np

    model = tiny_model()
    image = (np.random.default_rng(0).random((50, 70)) * 255).astype(np.uint8)
    plain, tta = model.predict(image)[0], model.predict(image, tta_flip=True)[0]
    assert abs(sum(tta.probs.values()) - 1) < 1e-5 and tta.box_score is not None
    assert tta.probs != plain.probs
