"""int8 quantization: a tiny trained model keeps its predictions, the file keeps its contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from mtbrain.classes import CANONICAL_CLASSES  # noqa: E402
from mtbrain.data.synthetic import render_slice, sample_rng  # noqa: E402
from mtbrain.errors import ConfigError, DataError  # noqa: E402
from mtbrain.export import (  # noqa: E402
    CONFIG_KEY,
    OUTPUT_NAMES,
    QUANT_KEY,
    ImageCalibrationReader,
    OnnxPredictor,
    calibration_images,
    export_onnx,
    quantize_onnx,
)
from mtbrain.export.quantize import decode_nodes  # noqa: E402
from mtbrain.models import Model  # noqa: E402
from mtbrain.models.model import prepare_gray  # noqa: E402

SIZE = 64
PER_CLASS = 12
STEPS = 60


@pytest.fixture(scope="module")
def slices() -> list:
    """Synthetic slices of the 4 classes, classes in turn (square: no letterbox padding)."""
    return [render_slice(c, sample_rng(0, c, i), size=SIZE)
            for i in range(PER_CLASS) for c in CANONICAL_CLASSES]


@pytest.fixture(scope="module")
def images(slices) -> tuple[list[np.ndarray], list[str]]:
    """The slices' images and labels."""
    return [s.image for s in slices], [s.label for s in slices]


@pytest.fixture(scope="module")
def trained(slices, tmp_path_factory, single_thread) -> tuple[Model, Path]:
    """A tiny model that has learnt the classes and boxes of ``slices`` (multitask loss),
    and its fp32 ONNX export."""
    with single_thread():
        torch.manual_seed(0)
        model = Model(backbone="mobilenetv3_small_050", img_size=SIZE, box_threshold=0.0)
        x = torch.from_numpy(np.stack([prepare_gray(model.config, s.image)[0] for s in slices]))
        has_box = torch.tensor([s.tumour_box is not None for s in slices])
        targets = {
            "labels": torch.tensor([model.classes.index(s.label) for s in slices]),
            "label_mask": torch.ones(len(slices), dtype=torch.bool),
            "boxes": torch.tensor(np.stack([s.tumour_box if s.tumour_box is not None
                                            else np.zeros(4) for s in slices]),
                                  dtype=torch.float32)[:, None],
            "box_valid": has_box[:, None],
            "box_mask": has_box,
        }
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(STEPS):
            idx = torch.randint(0, len(x), (32,), generator=gen)
            loss = model(x[idx], {k: v[idx] for k, v in targets.items()})["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    return model, export_onnx(model, tmp_path_factory.mktemp("q") / "fp32.onnx")


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> tuple[Model, Path]:
    """An untrained tiny model and its fp32 export, for the tests that need no learning."""
    torch.manual_seed(1)
    model = Model(backbone="mobilenetv3_small_050", img_size=SIZE).eval()
    return model, export_onnx(model, tmp_path_factory.mktemp("u") / "fp32.onnx")


def _labels(preds) -> list[str]:
    assert all(p.error is None for p in preds)
    return [p.label for p in preds]


def _check_quantized(path: Path, fp32: Path, images, mode: str) -> list:
    pred = OnnxPredictor(path)
    ref = OnnxPredictor(fp32)
    assert pred.config == ref.config and pred.quantization["mode"] == mode
    assert ref.quantization is None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert CONFIG_KEY in meta and json.loads(meta[QUANT_KEY])["weights"] == "int8"
    imgs, truth = images
    want, got = ref.predict(imgs), pred.predict(imgs)
    fp32_right = [a == t for a, t in zip(_labels(want), truth, strict=True)]
    assert np.mean(fp32_right) >= 0.9  # the model has learnt the task
    agree = np.mean([a == b for a, b in zip(_labels(want), _labels(got), strict=True)])
    right = np.mean([b == t for b, t in zip(_labels(got), truth, strict=True)])
    assert agree >= 0.9 and right >= 0.85, (agree, right)
    batch = np.stack([prepare_gray(ref.config, g)[0] for g in imgs])
    return ref.run(batch), pred.run(batch)  # raw (probs, boxes, box_score), every image


@pytest.mark.slow
def test_dynamic_int8_keeps_predictions(trained, images, tmp_path) -> None:
    model, fp32 = trained
    path = quantize_onnx(fp32, tmp_path / "dyn.onnx", mode="dynamic")
    assert [p.name for p in tmp_path.iterdir()] == ["dyn.onnx"]  # written atomically
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops
    assert "ConvInteger" not in ops  # convolutions stay float (no fast ConvInteger kernel)
    want, got = _check_quantized(path, fp32, images, "dynamic")
    # only the class head is int8: boxes and box scores are the fp32 ones
    np.testing.assert_allclose(got[1], want[1], atol=1e-3)
    np.testing.assert_allclose(got[2], want[2], atol=1e-5)
    assert np.abs(got[0] - want[0]).max() < 0.05


@pytest.mark.slow
def test_static_int8_keeps_predictions(trained, slices, images, tmp_path) -> None:
    model, fp32 = trained
    path = quantize_onnx(fp32, tmp_path / "static.onnx", mode="static",
                         calibration=images[0][::3])
    proto = onnx.load(str(path))
    quant = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    conv = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert quant and conv
    weights = {i.name: i for i in proto.graph.initializer}
    # per-channel weight scales: some DequantizeLinear has a vector scale
    assert any(n.op_type == "DequantizeLinear" and n.input[1] in weights
               and len(weights[n.input[1]].dims) == 1 and weights[n.input[1]].dims[0] > 1
               for n in proto.graph.node)
    # the decoding stays float: nothing after ArgMax is quantized
    assert not any(n.op_type == "QuantizeLinear" and "ArgMax" in n.input[0] for n in quant)
    assert path.stat().st_size < 0.5 * fp32.stat().st_size
    settings = OnnxPredictor(path).quantization
    assert settings["calibration_images"] == len(images[0][::3])
    assert settings["per_channel"] is True and settings["format"] == "QDQ"
    want, got = _check_quantized(path, fp32, images, "static")
    # boxes move a little with int8 features (a flat centre map may switch cells) ...
    err = np.abs(got[1] - want[1]).max(axis=1)
    assert err.mean() < 0.1 * SIZE, err
    assert np.abs(got[2] - want[2]).mean() < 0.1
    # ... but are as close to the true tumour boxes as the fp32 ones (within 1 px)
    tumour = [i for i, s in enumerate(slices) if s.tumour_box is not None]
    truth = np.stack([slices[i].tumour_box for i in tumour])
    fp32_err = np.abs(want[1][tumour] - truth).mean()
    assert fp32_err < 0.1 * SIZE  # the box head has learnt
    assert np.abs(got[1][tumour] - truth).mean() < fp32_err + 1.0


def test_decode_nodes_are_after_the_last_weight_layers(untrained) -> None:
    proto = onnx.load(str(untrained[1]))
    names = set(decode_nodes(proto))
    by_name = {n.name: n for n in proto.graph.node}
    kinds = {by_name[n].op_type for n in names}
    assert "ArgMax" in kinds and "Softplus" in kinds  # the dense head's decoding
    assert not kinds & {"Conv", "Gemm", "MatMul"}
    backbone = [n for n in proto.graph.node if "backbone" in n.name]
    assert backbone and not any(n.name in names for n in backbone)


def test_calibration_reader_feeds_preprocessed_images(untrained, images, tmp_path) -> None:
    model, _ = untrained
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(images[0][0]).save(path)
    reader = ImageCalibrationReader(model.config, [path, images[0][1]])
    feeds = list(reader)
    assert len(reader) == 2 and len(feeds) == 2 and reader.get_next() is None
    want = prepare_gray(model.config, images[0][0])[0][None]
    np.testing.assert_array_equal(feeds[0]["image"], want)
    assert feeds[1]["image"].shape == (1, 1, SIZE, SIZE) and feeds[1]["image"].dtype == np.float32
    reader.rewind()
    assert reader.get_next() is not None
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.png"):
        list(ImageCalibrationReader(model.config, [bad]))
    with pytest.raises(ConfigError):
        ImageCalibrationReader(model.config, [])


def test_keep_float_leaves_nodes_unquantized(untrained, images, tmp_path) -> None:
    _, fp32 = untrained
    calib = images[0][:2]

    def quantized_convs(path: Path) -> set[str]:
        """Convolutions whose weights come out of a DequantizeLinear (int8 weights)."""
        proto = onnx.load(str(path))
        dq = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        return {n.name for n in proto.graph.node if n.op_type == "Conv" and n.input[1] in dq}

    full = quantize_onnx(fp32, tmp_path / "full.onnx", mode="static", calibration=calib)
    mixed = quantize_onnx(fp32, tmp_path / "mixed.onnx", mode="static", calibration=calib,
                          keep_float=["backbone/blocks.0/"])
    all_q, mixed_q = quantized_convs(full), quantized_convs(mixed)
    assert any("blocks.0/" in n for n in all_q)
    assert mixed_q and not any("blocks.0/" in n for n in mixed_q)
    assert mixed_q == {n for n in all_q if "blocks.0/" not in n}
    settings = OnnxPredictor(mixed).quantization
    assert settings["keep_float"] == ["backbone/blocks.0/"]
    with pytest.raises(ConfigError, match="no_such_layer"):
        quantize_onnx(fp32, tmp_path / "x.onnx", mode="dynamic", keep_float=["no_such_layer"])


def test_calibration_images_take_classes_in_turn(tmp_path) -> None:
    from mtbrain.data.synthetic import generate

    root = generate(tmp_path / "syn", n_per_class=3, size=48, splits={"Train": 1.0})
    paths = calibration_images(root, n=6)
    assert len(paths) == 6 and all(p.is_file() for p in paths)
    folders = [p.parent.parent.name for p in paths]
    assert set(folders[:4]) == {"Glioma", "Meningioma", "No Tumor", "Pituitary"}
    assert calibration_images(root, n=6) == paths  # seeded
    assert len(calibration_images(root, n=100)) == 12
    with pytest.raises(ConfigError):
        calibration_images(root, n=0)


def test_bad_inputs(untrained, tmp_path) -> None:
    _, fp32 = untrained
    with pytest.raises(ConfigError, match="calibration"):
        quantize_onnx(fp32, tmp_path / "s.onnx", mode="static")
    with pytest.raises(ConfigError, match="mode"):
        quantize_onnx(fp32, tmp_path / "s.onnx", mode="int4")  # type: ignore[arg-type]
    dyn = quantize_onnx(fp32, tmp_path / "d.onnx", mode="dynamic")
    with pytest.raises(DataError, match="d.onnx.*already quantized"):
        quantize_onnx(dyn, tmp_path / "dd.onnx", mode="dynamic")
    with pytest.raises(DataError, match="missing.onnx"):
        quantize_onnx(tmp_path / "missing.onnx", tmp_path / "x.onnx", mode="dynamic")
    proto = onnx.load(str(fp32))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(DataError, match="plain.onnx.*not an mtbrain export"):
        quantize_onnx(tmp_path / "plain.onnx", tmp_path / "x.onnx", mode="dynamic")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "s.onnx").exists()
