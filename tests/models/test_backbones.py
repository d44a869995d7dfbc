"""Backbones by name: feature levels, shapes in train and eval mode, weights from files."""

from __future__ import annotations

import pytest
import torch

from mtbrain.errors import ConfigError, DataError
from mtbrain.models import FIRST_CLASS_BACKBONES, TEST_BACKBONES, Model
from mtbrain.models.backbones import Backbone, default_norm

# run (forward + backward) the tiny ones and the default; only build the big seed models
RUN = [*TEST_BACKBONES, "tf_efficientnet_lite0"]
BUILD_ONLY = sorted(set(FIRST_CLASS_BACKBONES) - set(RUN))
CASES = [(name, "dense") for name in RUN] + [(TEST_BACKBONES[0], "pooled")]


@pytest.mark.parametrize(("name", "box_head"), CASES)
def test_model_shapes_train_and_eval(name: str, box_head: str, make_targets) -> None:
    torch.manual_seed(0)
    model = Model(backbone=name, img_size=64, box_head=box_head, classes=["a", "b", "c"])
    x = torch.rand(2, 1, 64, 64)
    t = make_targets([[[8, 8, 40, 30]], []], [0, 2])
    model.train()
    losses = model(x, t)
    assert set(losses) == {"loss", "loss_cls", "loss_box_l1", "loss_box_giou", "loss_conf"}
    assert all(
        v.ndim == 0 and v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values()
    )
    losses["loss"].backward()
    assert model.cls_head.fc.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out["logits"].shape == (2, 3) and out["probs"].shape == (2, 3)
    assert out["boxes"].shape == (2, 4) and out["box_score"].shape == (2,)
    assert torch.allclose(out["probs"].sum(1), torch.ones(2), atol=1e-5)
    assert (out["boxes"] >= 0).all() and (out["boxes"] <= 64).all()
    assert ((out["box_score"] >= 0) & (out["box_score"] <= 1)).all()


@pytest.mark.parametrize("name", BUILD_ONLY)
def test_seed_backbones_build(name: str) -> None:
    model = Model(backbone=name, img_size=256)
    assert model.backbone.level_strides == (8, 16, 32)
    _, c16, c32 = model.backbone.level_channels
    assert model.box_head.lat16.in_channels == c16
    assert model.box_head.lat32.in_channels == c32
    assert model.cls_head.fc.in_features == model.backbone.num_features


@pytest.mark.parametrize("name", ["resnet18", "tf_efficientnet_lite0"])
def test_levels_are_strides_8_16_32(name: str) -> None:
    bb = Backbone(name, in_chans=1)
    assert bb.level_strides == (8, 16, 32)
    feats = bb(torch.rand(1, 1, 64, 64))
    assert [tuple(m.shape[-2:]) for m in feats.maps] == [(8, 8), (4, 4), (2, 2)]
    assert [m.shape[1] for m in feats.maps] == list(bb.level_channels)
    assert feats.pooled.shape == (1, bb.num_features)


def test_three_channel_input_and_norm() -> None:
    model = Model(backbone="resnet18", img_size=64, in_chans=3)
    assert model.config.mean == pytest.approx([0.485, 0.456, 0.406])
    assert model.pixel_mean.shape == (1, 3, 1, 1)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 64, 64))
    assert out["logits"].shape == (2, 4)
    grey = Model(backbone="resnet18", img_size=64, in_chans=1)
    assert grey.config.mean == pytest.approx([(0.485 + 0.456 + 0.406) / 3])
    assert default_norm(Backbone("tf_efficientnet_lite0", in_chans=1)) == ([0.5], [0.5])


def test_unknown_backbone_and_bad_channels() -> None:
    with pytest.raises(ConfigError, match="not_a_net"):
        Model(backbone="not_a_net")
    with pytest.raises(ConfigError, match="in_chans"):
        Model(backbone="resnet18", in_chans=2)


def test_drop_rates_reach_the_model() -> None:
    model = Model(backbone="convnext_atto", img_size=64, drop_rate=0.3, drop_path_rate=0.2)
    assert isinstance(model.cls_head.drop, torch.nn.Dropout) and model.cls_head.drop.p == 0.3
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) == pytest.approx(0.2)


def test_checkpoint_path_timm_state_dict(tmp_path) -> None:
    import timm

    torch.manual_seed(1)
    ref = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    model = Model(backbone="resnet18", img_size=64, checkpoint_path=path)
    got = model.backbone.model.state_dict()
    assert torch.equal(got["layer3.1.conv2.weight"], ref.state_dict()["layer3.1.conv2.weight"])
    # the RGB first conv is summed into the grey one (timm's adapt_input_conv)
    assert torch.allclose(
        got["conv1.weight"], ref.state_dict()["conv1.weight"].sum(1, keepdim=True)
    )
    assert model.config.checkpoint_path == str(path)


def test_checkpoint_path_mtbrain_checkpoint(tmp_path, tiny_model) -> None:
    src = tiny_model(classes=["x", "y"])
    path = src.save(tmp_path / "m.pt")
    model = tiny_model(checkpoint_path=path)  # 4 classes: only the backbone is taken
    key = "blocks.2.0.conv_pw.weight"
    assert torch.equal(model.backbone.model.state_dict()[key], src.backbone.model.state_dict()[key])


def test_checkpoint_path_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(DataError, match="missing.pth"):
        Model(backbone="resnet18", checkpoint_path=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(DataError, match=r"wrong\.pth.*do not fit"):
        Model(backbone="resnet18", checkpoint_path=wrong)


@pytest.mark.parametrize("name", RUN)
def test_freeze_stages_stops_the_gradient_below_the_first_trained_stage(name: str,
                                                                        make_targets) -> None:
    torch.manual_seed(0)
    model = Model(backbone=name, img_size=64, classes=["a", "b"])
    groups = model.backbone.stage_parameter_names()
    assert len(groups) >= 4
    assert groups[0] and all(groups)                            # a stem, then stages
    frozen = model.backbone.freeze_stages(2)
    assert frozen == sorted(n for g in groups[:3] for n in g)   # stem + 2 stages
    model.train()
    model(torch.rand(2, 1, 64, 64), make_targets([[[8, 8, 40, 30]], []], [0, 1]))["loss"].backward()
    params = dict(model.backbone.named_parameters())
    assert all(params[n].grad is None and not params[n].requires_grad for n in frozen)
    trained = [n for g in groups[3:] for n in g]
    assert trained and all(params[n].grad is not None for n in trained)
    assert model.backbone.freeze_stages(0) == []


def test_freeze_stages_too_many_names_the_limit() -> None:
    backbone = Backbone("resnet18")                             # stem + 4 stages
    with pytest.raises(ConfigError, match=r"freeze_stages=4: .*'resnet18' has 4 stages.*at most 3"):
        backbone.freeze_stages(4)
    assert all(p.requires_grad for p in backbone.parameters())  # nothing half-frozen
