"""mtbrain.Model: config, predict on any input with boxes in original pixels, save/load,
and a quick overfit sanity check."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mtbrain.data.boxes import Letterbox
from mtbrain.errors import ConfigError
from mtbrain.models import Model, ModelConfig, Prediction


def test_lazy_export_keeps_import_light() -> None:
    code = (
        "import sys, mtbrain; assert 'torch' not in sys.modules; "
        "from mtbrain import Model; assert 'torch' in sys.modules; print(Model.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Model"


def test_config_json_round_trip(tiny_model) -> None:
    model = tiny_model(
        classes=["a", "b"],
        box_head_options={"channels": 32},
        loss={"w_box": 2.0, "label_smoothing": 0.1},
    )
    cfg = model.config
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg
    assert cfg.mean is not None and cfg.std is not None and cfg.loss["w_box"] == 2.0
    assert json.loads(cfg.to_json())["classes"] == ["a", "b"]
    with pytest.raises(ConfigError, match="img_sz"):
        ModelConfig.from_dict({"img_sz": 64})
    with pytest.raises(ConfigError, match="num_classes=3"):
        Model(backbone="resnet18", num_classes=3, classes=["a", "b"])
    assert Model(backbone="mobilenetv3_small_050", num_classes=3).classes == [
        "class_0",
        "class_1",
        "class_2",
    ]
    assert tiny_model().config.no_box_classes == ["no_tumor"]


def _fixed_box_model(
    tiny_model, monkeypatch, box: list[float], *, score: float = 0.9, label: int = 0
) -> Model:
    """A model whose heads output a known input-pixel box, score and class."""
    model = tiny_model()

    def decode(out, image_hw):
        b = out["centre"].shape[0]
        return torch.tensor([box] * b), torch.full((b,), score)

    monkeypatch.setattr(model.box_head, "decode", decode)
    with torch.no_grad():
        model.cls_head.fc.weight.zero_()
        model.cls_head.fc.bias.copy_(torch.nn.functional.one_hot(torch.tensor(label), 4) * 5.0)
    return model


def test_predict_maps_box_back_to_original_pixels(tiny_model, monkeypatch, tmp_path) -> None:
    w, h = 300, 200
    original = np.array([[30.0, 40.0, 150.0, 120.0]])
    geo = Letterbox.fit(w, h, 64)
    net_box = geo.forward(original)[0].tolist()
    model = _fixed_box_model(tiny_model, monkeypatch, net_box)
    gray = (np.random.default_rng(0).random((h, w)) * 255).astype(np.uint8)
    path = tmp_path / "odd.png"
    Image.fromarray(gray).save(path)
    rgb = np.stack([gray] * 3, axis=-1)
    preds = model.predict([str(path), Image.fromarray(gray), gray, rgb])
    assert len(preds) == 4
    for p in preds:
        assert isinstance(p, Prediction) and p.label == "glioma"
        assert p.box is not None and np.abs(np.array(p.box) - original[0]).max() < 0.5
        assert p.box_score == pytest.approx(0.9)
        assert sum(p.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert preds[0].image == str(path)
    record = preds[0].to_dict()
    assert set(record) == {"image", "label", "probs", "box", "box_score"}
    # single input -> list of one
    assert len(model.predict(gray)) == 1


def test_predict_box_rules(tiny_model, monkeypatch) -> None:
    gray = np.zeros((50, 80), dtype=np.uint8)
    no_tumor = _fixed_box_model(tiny_model, monkeypatch, [10, 10, 20, 20], label=2)
    p = no_tumor.predict(gray)[0]
    assert p.label == "no_tumor" and p.box is None and p.box_score == pytest.approx(0.9)
    low = _fixed_box_model(tiny_model, monkeypatch, [10, 10, 20, 20], score=0.05)
    assert low.predict(gray)[0].box is None
    assert low.predict(gray, box_threshold=0.01)[0].box is not None


def test_predict_errors(tiny_model, tmp_path) -> None:
    model = tiny_model()
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="bad.jpg"):
        model.predict(str(bad))
    preds = model.predict([str(bad), np.zeros((10, 10), np.uint8)], on_error="skip")
    assert preds[0].error and preds[0].to_dict() == {"image": str(bad), "error": preds[0].error}
    assert preds[1].error is None and preds[1].label in model.classes
    with pytest.raises(TypeError, match="dict"):
        model.predict({"x": 1})


def test_predict_bf16_close_to_fp32(tiny_model) -> None:
    model = tiny_model(box_threshold=0.0)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (50 + 10 * i, 64), dtype=np.uint8) for i in range(4)]
    fp32 = model.predict(images)
    bf16 = model.predict(images, precision="bf16")
    for a, b in zip(fp32, bf16, strict=True):
        assert max(abs(a.probs[c] - b.probs[c]) for c in a.probs) < 0.05
        assert abs(a.box_score - b.box_score) < 0.05
        assert (a.box is None) == (b.box is None)
    assert not torch.is_autocast_enabled("cpu")  # nothing left switched on
    with pytest.raises(ConfigError, match="precision"):
        model.predict(images, precision="fp16")


def test_save_load_round_trip_identical(tiny_model, tmp_path, make_targets) -> None:
    model = tiny_model(classes=["a", "b", "no_tumor"], box_head_options={"channels": 32})
    # make batch-norm statistics non-trivial
    model.train()
    model(torch.rand(4, 1, 64, 64), make_targets([[[8, 8, 40, 30]], [], [], []], [0, 1, 2, -1]))
    path = model.save(tmp_path / "sub" / "model.pt")
    loaded = Model.load(path)
    assert loaded.config == model.config
    x = torch.rand(3, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for k in ("logits", "boxes", "box_score"):
        assert torch.equal(a[k], b[k]), k
    imgs = [np.random.default_rng(i).integers(0, 255, (70, 90), dtype=np.uint8) for i in range(2)]
    assert model.predict(imgs) == loaded.predict(imgs)
    assert not list(tmp_path.glob("sub/.*tmp"))  # no temporary file left behind


def test_save_extra_round_trip(tiny_model, tmp_path) -> None:
    from mtbrain.models import read_checkpoint

    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(2, 1, 64, 64))["logits"].sum().backward()
    opt.step()
    path = model.save(
        tmp_path / "m.pt",
        extra={"optimizer": opt.state_dict(), "epoch": 3, "rng": torch.get_rng_state()},
    )
    ckpt = read_checkpoint(path)
    assert ckpt.extra["epoch"] == 3 and torch.equal(ckpt.extra["rng"], torch.get_rng_state())
    opt2 = torch.optim.AdamW(Model.from_checkpoint(ckpt).parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt.extra["optimizer"])
    assert ckpt.meta["mtbrain_version"] == "0.1.0"


def _square_batch(n: int, size: int = 64) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    rng = np.random.default_rng(0)
    images = torch.zeros(n, 1, size, size)
    boxes = torch.zeros(n, 1, 4)
    for i in range(n):
        s = int(rng.integers(14, 30))
        x, y = (int(v) for v in rng.integers(0, size - s, 2))
        images[i, 0, y : y + s, x : x + s] = 0.9
        boxes[i, 0] = torch.tensor([x, y, x + s, y + s], dtype=torch.float32)
    labels = torch.arange(n) % 2
    return images, {
        "labels": labels,
        "label_mask": torch.ones(n, dtype=torch.bool),
        "boxes": boxes,
        "box_valid": torch.ones(n, 1, dtype=torch.bool),
        "box_mask": torch.ones(n, dtype=torch.bool),
    }


def test_overfit_bright_squares(tiny_model) -> None:
    """30 steps on 8 synthetic images: the loss drops by a clear factor, boxes improve."""
    model = tiny_model(classes=["left", "right"]).train()
    images, targets = _square_batch(8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = last = None
    for _ in range(30):
        losses = model(images, targets)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        first = first if first is not None else {k: v.item() for k, v in losses.items()}
        last = {k: v.item() for k, v in losses.items()}
    assert last["loss"] < 0.25 * first["loss"], (first, last)
    assert last["loss_box_giou"] < 0.5 * first["loss_box_giou"], (first, last)
