"""ONNX / TorchScript export: parity with ``Model.predict``, dynamic batch, metadata, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from mtbrain.errors import DataError  # noqa: E402
from mtbrain.export import (  # noqa: E402
    CONFIG_KEY,
    INPUT_NAME,
    OUTPUT_NAMES,
    ExportWrapper,
    OnnxPredictor,
    export_onnx,
    export_torchscript,
    load_torchscript,
)
from mtbrain.models import Model, ModelConfig  # noqa: E402

SIZE = 64
SHAPES = [(50, 70), (64, 64), (90, 40)]


@pytest.fixture(scope="module")
def model() -> Model:
    torch.manual_seed(0)
    return Model(backbone="mobilenetv3_small_050", pretrained=False, img_size=SIZE).eval()


@pytest.fixture(scope="module")
def onnx_path(model: Model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in SHAPES]


def _assert_same(ref, got) -> None:
    assert len(ref) == len(got)
    for a, b in zip(ref, got, strict=True):
        assert a.error is None and b.error is None
        assert a.label == b.label and a.image == b.image
        assert list(a.probs) == list(b.probs)
        assert max(abs(a.probs[k] - b.probs[k]) for k in a.probs) < 1e-4
        assert abs(a.box_score - b.box_score) < 1e-4
        assert (a.box is None) == (b.box is None)
        if a.box is not None:
            assert np.abs(np.array(a.box) - np.array(b.box)).max() < 0.5


def test_predict_parity_with_pytorch(model, onnx_path, images, tmp_path) -> None:
    pred = OnnxPredictor(onnx_path)
    assert pred.classes == model.classes and pred.img_size == SIZE
    # threshold 0: every tumour-class prediction has a box, so the boxes are compared
    ref = model.predict(images, box_threshold=0.0)
    got = pred.predict(images, box_threshold=0.0)
    _assert_same(ref, got)
    for r, shape in zip(got, SHAPES, strict=True):
        if r.box is not None:  # in original pixels
            x1, y1, x2, y2 = r.box
            assert 0 <= x1 <= x2 <= shape[1] and 0 <= y1 <= y2 <= shape[0]
    _assert_same(model.predict(images), pred.predict(images, batch_size=2))
    # paths and PIL images, as Model.predict takes them
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(img).save(paths[-1])
    _assert_same(model.predict(paths, box_threshold=0.0), pred.predict(paths, box_threshold=0.0))
    pil = Image.fromarray(images[0])
    _assert_same(model.predict(pil, box_threshold=0.0), pred.predict(pil, box_threshold=0.0))


def test_dynamic_batch_and_output_names(onnx_path) -> None:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES) == [
        "logits", "boxes", "box_score"]
    assert session.get_inputs()[0].shape[1:] == [1, SIZE, SIZE]
    rng = np.random.default_rng(1)
    batch3 = rng.random((3, 1, SIZE, SIZE), dtype=np.float32)
    for n in (1, 3):
        logits, boxes, score = session.run(None, {INPUT_NAME: batch3[:n]})
        assert logits.shape == (n, 4) and boxes.shape == (n, 4) and score.shape == (n,)
        if n == 1:
            first = (logits, boxes, score)
    # batch independence: image 0 alone == image 0 inside a batch of 3
    np.testing.assert_allclose(first[0], logits[:1], atol=1e-5)
    np.testing.assert_allclose(first[1], boxes[:1], atol=1e-3)


def test_metadata_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    model = Model(backbone="mobilenetv3_small_050", pretrained=False, img_size=SIZE,
                  classes=["a", "no_tumor", "b"], keep_ratio=False, box_threshold=0.3).eval()
    path = export_onnx(model, tmp_path / "sub" / "custom.onnx", opset=17)
    assert path == tmp_path / "sub" / "custom.onnx"
    assert [p.name for p in path.parent.iterdir()] == ["custom.onnx"]  # no temp file left
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert ModelConfig.from_json(meta[CONFIG_KEY]) == model.config
    stored = json.loads(meta[CONFIG_KEY])
    assert stored["keep_ratio"] is False and stored["no_box_classes"] == ["no_tumor"]
    assert stored["mean"] == model.config.mean and stored["box_threshold"] == 0.3
    assert any(o.version == 17 for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    pred = OnnxPredictor(path)
    assert pred.config == model.config and pred.classes == ["a", "no_tumor", "b"]
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 256, s, dtype=np.uint8) for s in SHAPES]  # stretched, not padded
    _assert_same(model.predict(imgs, box_threshold=0.0), pred.predict(imgs, box_threshold=0.0))
    _assert_same(model.predict(imgs), pred.predict(imgs))


def test_torchscript_parity(model, tmp_path) -> None:
    path = export_torchscript(model, tmp_path / "model.pt")
    module, config = load_torchscript(path)
    assert config == model.config
    extra = {"mtbrain_config.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert ModelConfig.from_json(extra["mtbrain_config.json"]) == model.config
    x = torch.rand(3, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = ExportWrapper(model)(x)
        for n in (1, 3):
            got = module(x[:n])
            assert len(got) == 3
            for a, b in zip(want, got, strict=True):
                torch.testing.assert_close(b, a[:n], atol=1e-5, rtol=0)


def test_unreadable_file_gives_error_record(onnx_path, images, tmp_path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    good = tmp_path / "good.png"
    Image.fromarray(images[0]).save(good)
    pred = OnnxPredictor(onnx_path)
    out = pred.predict([good, bad, images[1]], on_error="skip")
    assert len(out) == 3
    assert out[0].error is None and out[0].image == str(good) and out[2].error is None
    assert out[1].error and out[1].image == str(bad) and out[1].label is None
    assert out[1].to_dict() == {"image": str(bad), "error": out[1].error}
    with pytest.raises(DataError, match="broken.png"):
        pred.predict([good, bad])


def test_non_onnx_file_is_a_clear_error(model, tmp_path) -> None:
    fake = tmp_path / "fake.onnx"
    fake.write_text("this is not a model")
    with pytest.raises(DataError, match="fake.onnx.*not a readable ONNX model"):
        OnnxPredictor(fake)
    with pytest.raises(DataError, match="missing.onnx.*not found"):
        OnnxPredictor(tmp_path / "missing.onnx")
    ckpt = model.save(tmp_path / "model.ckpt")  # a checkpoint is no ONNX file either
    with pytest.raises(DataError, match="model.ckpt"):
        OnnxPredictor(ckpt)


def test_onnx_without_mtbrain_metadata_is_refused(onnx_path, tmp_path) -> None:
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    with pytest.raises(DataError, match=f"plain.onnx.*{CONFIG_KEY}"):
        OnnxPredictor(plain)


def test_refining_head_exports(images, tmp_path) -> None:
    """The box-refining stage (RoIAlign + MLP) is inside the graph: same boxes as PyTorch."""
    torch.manual_seed(2)
    model = Model(backbone="mobilenetv3_small_050", pretrained=False, img_size=SIZE,
                  box_head_options={"roi_refine": True}).eval()
    torch.nn.init.normal_(model.box_head.roi_head[-1].weight, std=0.05)  # a real correction
    plain = model.box_head.decode
    with torch.no_grad():
        x = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
        feats = model.backbone(model.normalize(x))
        decoded, _ = plain(model.box_head(feats, (SIZE, SIZE)), (SIZE, SIZE))
        refined = model(x)["boxes"]
    assert (refined - decoded).abs().max() > 0.5  # the stage changes the boxes
    pred = OnnxPredictor(export_onnx(model, tmp_path / "refine.onnx"))
    _assert_same(model.predict(images, box_threshold=0.0), pred.predict(images, box_threshold=0.0))
    module, _ = load_torchscript(export_torchscript(model, tmp_path / "refine.pt"))
    with torch.no_grad():
        torch.testing.assert_close(module(x)[1], ExportWrapper(model)(x)[1], atol=1e-4, rtol=0)
