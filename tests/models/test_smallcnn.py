"""The small AlexNet-like CNN trained from scratch, built by name through timm's registry."""

from __future__ import annotations

import pytest
import timm
import torch

from mtbrain.errors import ConfigError
from mtbrain.models import Model
from mtbrain.models.backbones import Backbone, count_parameters
from mtbrain.models.smallcnn import NAME, SmallCNN


def test_registered_and_built_by_name() -> None:
    backbone = Backbone(NAME, in_chans=1)
    assert timm.is_model(NAME) and isinstance(backbone.model, SmallCNN)
    assert backbone.level_strides == (8, 16, 32)
    assert backbone.level_channels == (128, 192, 256)
    assert backbone.num_features == 512  # the FC pre-logits
    assert backbone.model.stem[0][0].in_channels == 1  # grey input
    assert 1.0e6 < count_parameters(backbone) < 1.5e6
    feats = backbone(torch.rand(2, 1, 96, 96))
    assert feats.pooled.shape == (2, 512)
    assert [tuple(m.shape[-3:]) for m in feats.maps] == [(128, 12, 12), (192, 6, 6), (256, 3, 3)]
    assert Backbone(NAME, in_chans=3).model.stem[0][0].in_channels == 3


def test_timm_interface() -> None:
    net = timm.create_model(NAME, num_classes=4)
    x = torch.rand(1, 1, 64, 64)
    assert net(x).shape == (1, 4)
    final, maps = net.forward_intermediates(x, indices=2)
    assert len(maps) == 2 and torch.equal(maps[-1], final)
    assert len(net.forward_intermediates(x, intermediates_only=True)) == 4
    net.reset_classifier(0)
    assert net(x).shape == (1, 512)
    with pytest.raises(ConfigError, match="no pretrained weights"):
        timm.create_model(NAME, pretrained=True)
    with pytest.raises(ConfigError, match="stochastic depth"):
        timm.create_model(NAME, drop_path_rate=0.1)


def test_model_trains_and_round_trips(tmp_path, make_targets) -> None:
    torch.manual_seed(0)
    model = Model(backbone=NAME, img_size=64, classes=["glioma", "no_tumor"])
    assert model.config.mean == [0.5] and model.config.std == [0.5]
    with pytest.raises(ConfigError, match="no offline weights"):
        Model(backbone=NAME, img_size=64, pretrained=True)
    model.train()
    loss = model(torch.rand(2, 1, 64, 64), make_targets([[[8, 8, 40, 30]], []], [0, 1]))["loss"]
    loss.backward()
    assert model.backbone.model.stem[0][0].weight.grad is not None
    path = model.save(tmp_path / "cnn.pt")
    loaded = Model.load(path)
    x = torch.rand(1, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)["logits"], loaded(x)["logits"])
