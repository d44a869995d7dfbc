"""Horizontal-flip test-time augmentation is mirror-consistent."""

from __future__ import annotations

import torch


def test_flip_tta_is_mirror_invariant(tiny_model) -> None:
    model = tiny_model().eval()
    images = torch.rand(2, 1, 64, 64)
    mirrored = images.flip(-1)
    with torch.no_grad():
        a = model.with_flip_tta(images, model(images))
        b = model.with_flip_tta(mirrored, model(mirrored))
    assert torch.allclose(a["logits"], b["logits"], atol=1e-5)
    assert torch.allclose(a["box_score"], b["box_score"], atol=1e-5)
    back = b["boxes"].clone()
    back[:, [0, 2]] = 64 - b["boxes"][:, [2, 0]]
    assert torch.allclose(a["boxes"], back, atol=1e-3)
    assert torch.allclose(a["probs"].sum(1), torch.ones(2))
    plain = model(images)
    assert not torch.allclose(a["logits"], plain["logits"])  # the mirror view changed it


def test_predict_with_tta_gives_valid_records(tiny_model) -> None:
    import numpy as np

    model = tiny_model()
    image = (np.random.default_rng(0).random((50, 70)) * 255).astype(np.uint8)
    plain, tta = model.predict(image)[0], model.predict(image, tta_flip=True)[0]
    assert abs(sum(tta.probs.values()) - 1) < 1e-5 and tta.box_score is not None
    assert tta.probs != plain.probs
