"""Every baseline config (configs/baselines) parses and builds its model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.engine.config import TrainConfig, load_config
from mtbrain.models import Model

BASELINES = Path(__file__).resolve().parents[2] / "configs" / "baselines"
CONFIGS = sorted(BASELINES.glob("*.yaml"))
# run a forward pass on the small ones; build the big ones on the meta device (no memory)
HUGE = {"vgg19", "resnet152", "convnext_base"}
ARCHS = {"smallcnn", "mobilenetv3", "effnet_lite0", "effnet_b0", "resnet50", "resnet152",
         "vgg19", "convnext_tiny", "convnext_base"}


def _model(cfg: TrainConfig, size: int) -> Model:
    mc = cfg.model
    return Model(backbone=mc.backbone, in_chans=mc.in_chans, img_size=size, pretrained=False,
                 drop_rate=mc.drop_rate, drop_path_rate=mc.drop_path_rate,
                 box_head=mc.box_head, box_head_options=mc.box_head_options, loss=cfg.loss,
                 box_threshold=mc.box_threshold)


def test_every_architecture_in_both_variants() -> None:
    stems = {p.stem for p in CONFIGS}
    assert stems == {f"{a}_{v}" for a in ARCHS for v in ("cls", "mt")}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_builds(path: Path, one_thread: None) -> None:
    cfg = load_config(path, overrides=["data.size=64"])
    arch, variant = path.stem.rsplit("_", 1)
    assert (cfg.model.box_head == "none") == (variant == "cls")
    assert cfg.train.monitor == ("macro_f1" if variant == "cls" else "score")
    text = path.read_text()
    assert text.startswith("# Baseline") and cfg.model.backbone in text
    if arch == "mobilenetv3":
        assert cfg.train.freeze_backbone_epochs > 0 and cfg.model.pretrained
    if arch == "smallcnn":
        assert cfg.model.in_chans == 1 and not cfg.model.pretrained
    if arch in HUGE:
        with torch.device("meta"):
            model = _model(cfg, 64)
        assert model.backbone.level_strides == (8, 16, 32)
        return
    torch.manual_seed(0)
    model = _model(cfg, 64).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 64, 64))
    assert out["logits"].shape == (1, 4)
    assert (out["box_score"] == 0).all() == (variant == "cls")
