"""Efficiency profile: the FLOP counter (depthwise convolutions), the figures, the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")

from mtbrain.cli import main  # noqa: E402
from mtbrain.errors import ConfigError  # noqa: E402
from mtbrain.export.profile import (  # noqa: E402
    RUNTIMES,
    count_flops,
    flop_counter,
    peak_memory,
    profile,
    render_table,
)
from mtbrain.models import Model  # noqa: E402
from mtbrain.models.backbones import count_parameters  # noqa: E402

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> Model:
    torch.manual_seed(0)
    return Model(backbone="mobilenetv3_small_050", img_size=SIZE).eval()


@pytest.mark.parametrize("groups", [1, 2, 16])
def test_conv_flops_count_groups(groups: int) -> None:
    """2 x (output elements) x (in_channels / groups) x kh x kw: a depthwise convolution
    (groups = channels) costs 1/channels of a dense one, not the same."""
    cin, cout, k, h, w = 16, 16, 3, 20, 12
    conv = nn.Conv2d(cin, cout, k, stride=2, padding=1, groups=groups, bias=True)
    x = torch.zeros(2, cin, h, w)
    ho, wo = (h + 2 - k) // 2 + 1, (w + 2 - k) // 2 + 1
    want = 2 * 2 * cout * ho * wo * (cin // groups) * k * k
    assert count_flops(conv, x) == want
    if groups == cin:
        dense = nn.Conv2d(cin, cout, k, stride=2, padding=1)
        assert count_flops(dense, x) == cin * want


@pytest.mark.parametrize("groups", [1, 4, 16])
@pytest.mark.parametrize("input_grad", [True, False])
def test_conv_backward_flops_count_groups(groups: int, input_grad: bool) -> None:
    """Backward = weight gradient (+ input gradient when needed), each one forward's
    multiply-adds; torch's own formula over-counts the grouped case."""
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=groups)
    x = torch.rand(2, 16, 10, 10, requires_grad=input_grad)
    forward = count_flops(conv, x)
    with flop_counter() as counter:
        conv(x).sum().backward()
    assert counter.get_total_flops() == forward * (3 if input_grad else 2)
    if groups == 1:  # torch's formula agrees where it is right
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as plain:
            conv(x).sum().backward()
        assert plain.get_total_flops() == counter.get_total_flops()


def test_flops_match_the_published_mobilenet_v2_figure() -> None:
    """MobileNetV2 1.0 at 224 px: 300 M multiply-adds (Sandler et al. 2018, table 4); a
    counter that counted depthwise convolutions as dense ones would give ~4x that."""
    import timm

    net = timm.create_model("mobilenetv2_100", pretrained=False)
    macs = count_flops(net, torch.zeros(1, 3, 224, 224)) / 2
    assert 295e6 < macs < 305e6, macs


def test_peak_memory_sees_a_big_allocation() -> None:
    with peak_memory() as mem:
        block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB
        block += 1
    del block
    if mem["peak_mb"] is None:
        pytest.skip("no /proc/self/clear_refs here")
    assert 60 <= mem["peak_mb"] < 400


def test_profile_fields(model: Model, tmp_path: Path) -> None:
    ckpt = model.save(tmp_path / "m.pt")
    lines: list[str] = []
    report = profile(model, checkpoint=ckpt, iters=3, warmup=1, batch=4, batch_iters=1,
                     work_dir=tmp_path / "work", calibration=None, log=lines.append)
    m = report["model"]
    assert m["params"] == count_parameters(model) and m["img_size"] == SIZE
    assert m["gflops"] * 1e9 == pytest.approx(count_flops(model, torch.zeros(1, 1, SIZE, SIZE)))
    assert m["checkpoint_mb"] == pytest.approx(ckpt.stat().st_size / 2**20)
    assert report["settings"]["batch"] == 4 and report["machine"]["threads"] == 1
    rows = {r["runtime"]: r for r in report["rows"]}
    assert list(rows) == list(RUNTIMES) and len(lines) == len(RUNTIMES)
    for r in rows.values():
        assert r["error"] is None, r
        assert 0 < r["p50_ms"] <= r["p95_ms"] < 60_000
        assert r["images_per_s"] > 0 and r["file_mb"] > 0
        assert r["peak_mb"] is None or r["peak_mb"] >= 0
    assert rows["eager-fp32"]["file_mb"] == m["checkpoint_mb"]
    assert rows["onnx-int8-static"]["file_mb"] < 0.5 * rows["onnx-fp32"]["file_mb"]
    files = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert files == ["model-fp32.onnx", "model-int8-dynamic.onnx", "model-int8-static.onnx"]
    text = render_table(report)
    assert all(f"| {name} |" in text for name in RUNTIMES)
    assert "M parameters" in text and "GFLOPs" in text
    json.dumps(report)  # JSON-ready


def test_profile_other_size_and_errors(model: Model) -> None:
    report = profile(model, size=96, runtimes=["eager-fp32"], iters=2, warmup=0, batch=2,
                     batch_iters=1)
    assert report["model"]["img_size"] == 96 and model.config.img_size == SIZE
    assert report["model"]["checkpoint_mb"] is None
    assert report["model"]["gflops"] > 2 * profile(
        model, runtimes=[], iters=1, batch=1)["model"]["gflops"]  # (96/64)^2 = 2.25x
    with pytest.raises(ConfigError, match="onnx-int4"):
        profile(model, runtimes=["onnx-int4"])
    with pytest.raises(ConfigError, match="iters"):
        profile(model, iters=0)


def test_profile_command(model: Model, tmp_path: Path, capsys) -> None:
    ckpt = model.save(tmp_path / "m.pt")
    out = tmp_path / "p" / "profile.json"
    assert main(["profile", "--checkpoint", str(ckpt), "--runtimes", "eager-fp32", "onnx-fp32",
                 "--iters", "2", "--warmup", "0", "--batch", "2", "--batch-iters", "1",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| eager-fp32 |" in text and "| onnx-fp32 |" in text and "| eager-bf16 |" not in text
    report = json.loads(out.read_text())
    assert [r["runtime"] for r in report["rows"]] == ["eager-fp32", "onnx-fp32"]
    assert report["checkpoint"] == str(ckpt) and report["model"]["backbone"] == \
        "mobilenetv3_small_050"
    assert main(["profile", "--checkpoint", str(ckpt), "--runtimes", "tpu"]) == 2
    assert "tpu" in capsys.readouterr().err
    assert main(["profile", "--checkpoint", str(tmp_path / "m.onnx")]) == 2
