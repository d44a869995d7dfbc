"""mtbrain export, then mtbrain predict with the .onnx file: same records as the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.cli import main

pytest.importorskip("onnxruntime")


def test_export_then_predict_with_onnx(tmp_path: Path, make_image) -> None:
    from mtbrain.models import Model

    torch.manual_seed(0)
    ckpt = Model(backbone="mobilenetv3_small_050", img_size=64, box_threshold=0.0).save(
        tmp_path / "m.pt")
    folder = tmp_path / "in"
    make_image(folder / "a.png", (70, 50))
    make_image(folder / "b.jpg", (40, 90), seed=1)
    (folder / "bad.jpg").write_bytes(b"nope")
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(onnx)]) == 0
    runs = {}
    for name, model in (("pt", ckpt), ("onnx", onnx)):
        out = tmp_path / f"{name}.json"
        assert main(["predict", "--checkpoint", str(model), "--input", str(folder),
                     "--out", str(out)]) == 0
        runs[name] = {r["image"]: r for r in json.loads(out.read_text())}
    assert set(runs["pt"]) == set(runs["onnx"]) == {"a.png", "b.jpg", "bad.jpg"}
    assert "error" in runs["onnx"]["bad.jpg"]
    for image in ("a.png", "b.jpg"):
        a, b = runs["pt"][image], runs["onnx"][image]
        assert a["label"] == b["label"]
        assert max(abs(a["probs"][c] - b["probs"][c]) for c in a["probs"]) < 1e-4
        assert max(abs(x - y) for x, y in zip(a["box"], b["box"], strict=True)) < 0.5
    assert main(["evaluate", "--checkpoint", str(onnx), "--data", str(folder)]) == 2
    assert main(["predict", "--checkpoint", str(onnx), "--input", str(folder),
                 "--precision", "bf16"]) == 2  # bf16 is for the eager model


def test_export_quantized_then_predict(tmp_path: Path, make_image, capsys) -> None:
    from mtbrain.data.synthetic import generate
    from mtbrain.export import OnnxPredictor
    from mtbrain.models import Model

    torch.manual_seed(0)
    ckpt = Model(backbone="mobilenetv3_small_050", img_size=64).save(tmp_path / "m.pt")
    data = generate(tmp_path / "syn", n_per_class=2, size=48, splits={"Train": 1.0})
    folder = tmp_path / "in"
    make_image(folder / "a.png", (70, 50))
    (folder / "bad.jpg").write_bytes(b"nope")
    for mode, extra in (("dynamic", []), ("static", ["--calibration", str(data),
                                                     "--calibration-n", "4"])):
        out = tmp_path / f"{mode}.onnx"
        assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--quantize",
                     mode, *extra, "--out", str(out)]) == 0
        assert f"int8, {mode}" in capsys.readouterr().out
        settings = OnnxPredictor(out).quantization
        assert settings["mode"] == mode
        assert settings.get("calibration_images") == (4 if mode == "static" else None)
        preds = tmp_path / f"{mode}.json"
        assert main(["predict", "--checkpoint", str(out), "--input", str(folder),
                     "--out", str(preds)]) == 0
        records = {r["image"]: r for r in json.loads(preds.read_text())}
        assert set(records) == {"a.png", "bad.jpg"} and "error" in records["bad.jpg"]
        assert set(records["a.png"]["probs"]) == {"glioma", "meningioma", "no_tumor",
                                                  "pituitary"}
    q = str(tmp_path / "q.onnx")
    base = ["export", "--checkpoint", str(ckpt), "--out", q]
    assert main([*base, "--format", "onnx", "--quantize", "static"]) == 2  # no calibration
    assert "--calibration" in capsys.readouterr().err
    assert main([*base, "--format", "torchscript", "--quantize", "dynamic"]) == 2
    assert main([*base, "--format", "onnx", "--calibration", str(data)]) == 2
    assert not Path(q).exists()
