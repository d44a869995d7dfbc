"""A small AlexNet-like CNN trained from scratch, registered with timm as ``mtbrain_smallcnn``.

The seed projects' "CNN from scratch" baseline: five 3x3/5x5 convolutions with max pooling
(as AlexNet's five convolutions, with batch norm instead of local response normalisation
so that it trains from scratch in a few epochs) and a dropout + fully connected
pre-classifier layer. It takes grey input (``in_chans=1``, the mtbrain default) and has
about 1.2 M parameters.

It is registered in timm's model registry (``@register_model``), so every mtbrain path
that builds backbones by name builds it: ``Model(backbone="mtbrain_smallcnn")``,
``model.backbone: mtbrain_smallcnn`` in a config, and loading a checkpoint that names it.
Importing this module registers it; :class:`mtbrain.models.backbones.Backbone` imports it.

timm interface used by :class:`~mtbrain.models.backbones.Backbone`: ``feature_info`` (one
level per pooling, strides 4, 8, 16 and 32), ``forward_intermediates``, ``forward_head``
with ``pre_logits``, ``num_features`` and ``head_hidden_size``, and a ``pretrained_cfg``
(normalisation mean/std 0.5: grey pixels in [0, 1] become [-1, 1]). There are no
pretrained weights: ``pretrained=True`` is an error.
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model
from torch import Tensor, nn

from mtbrain.errors import ConfigError

NAME = "mtbrain_smallcnn"

default_cfgs: dict[str, dict[str, Any]] = {
    NAME: {
        "num_classes": 0,
        "input_size": (1, 224, 224),
        "mean": (0.5,),
        "std": (0.5,),
        "first_conv": "stem.conv",
        "classifier": "fc",
    }
}
"""timm's pretrained config of the model (normalisation, first conv); no weights."""


def _conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class _Stage(nn.Sequential):
    """Convolutions then a max pooling that halves the resolution."""

    def __init__(self, c_in: int, widths: tuple[int, ...], *, kernel: int = 3, stride: int = 1,
                 pool: int = 2) -> None:
        layers: list[nn.Module] = []
        for i, c_out in enumerate(widths):
            layers.append(_conv(c_in, c_out, kernel if i == 0 else 3, stride if i == 0 else 1))
            c_in = c_out
        layers.append(nn.MaxPool2d(pool, 2, padding=pool // 2 if pool % 2 else 0))
        super().__init__(*layers)


class SmallCNN(nn.Module):
    """AlexNet-like CNN: stem (5x5 stride 2 + pool), three stages, dropout + FC pre-logits.

    Args:
        in_chans: Input channels (1: grey).
        num_classes: Classifier outputs (0: none, ``forward`` returns the pre-logits).
        widths: Channels of the conv layers per stage: stem, then strides 8, 16 and 32.
        hidden: Width of the fully connected pre-logits layer.
        drop_rate: Dropout before the fully connected layers.
    """

    def __init__(self, *, in_chans: int = 1, num_classes: int = 0,
                 widths: tuple[tuple[int, ...], ...] = ((64,), (128,), (192, 192), (256,)),
                 hidden: int = 512, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.stem = _Stage(in_chans, widths[0], kernel=5, stride=2, pool=3)
        self.stages = nn.ModuleList()
        c_in = widths[0][-1]
        for w in widths[1:]:
            self.stages.append(_Stage(c_in, w))
            c_in = w[-1]
        self.num_features = c_in
        self.head_hidden_size = hidden
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pre_logits = nn.Sequential(nn.Flatten(1), nn.Dropout(drop_rate),
                                        nn.Linear(c_in, hidden), nn.ReLU(inplace=True))
        self.num_classes = num_classes
        self.fc = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [{"num_chs": widths[0][-1], "reduction": 4, "module": "stem"}]
        for i, w in enumerate(widths[1:]):
            self.feature_info.append({"num_chs": w[-1], "reduction": 8 * 2**i,
                                      "module": f"stages.{i}"})
        self.pretrained_cfg = dict(default_cfgs[NAME])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter grouping: the stem, then one group per stage."""
        return {"stem": r"^stem", "blocks": r"^stages\.(\d+)"}

    def forward_intermediates(self, x: Tensor, indices: int | list[int] | None = None, *,
                              intermediates_only: bool = False,
                              **_: Any) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """timm's ``forward_intermediates``: the final map and the maps of ``indices``
        (feature levels: 0 stem, 1-3 the stages; an int ``n`` means the last ``n``)."""
        n = 1 + len(self.stages)
        if indices is None:
            wanted = list(range(n))
        elif isinstance(indices, int):
            wanted = list(range(n - indices, n))
        else:
            wanted = [i if i >= 0 else n + i for i in indices]
        maps = []
        x = self.stem(x)
        if 0 in wanted:
            maps.append(x)
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if i in wanted:
                maps.append(x)
        return maps if intermediates_only else (x, maps)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.pre_logits(self.pool(x))
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int, *args: Any, **kwargs: Any) -> None:
        self.num_classes = num_classes
        self.fc = (nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0
                   else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def mtbrain_smallcnn(pretrained: bool = False, *, in_chans: int = 1, num_classes: int = 0,
                     drop_rate: float = 0.5, drop_path_rate: float = 0.0,
                     **kwargs: Any) -> SmallCNN:
    """The small AlexNet-like CNN (timm entry point; see :class:`SmallCNN`)."""
    if pretrained:
        raise ConfigError(f"{NAME} has no pretrained weights: it is trained from scratch "
                          "(set model.pretrained: false)")
    if drop_path_rate:
        raise ConfigError(f"{NAME} has no stochastic depth: drop_path_rate must be 0")
    for factory_option in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(factory_option, None)  # timm.create_model's own, meaningless here
    if kwargs:
        raise ConfigError(f"{NAME}: unknown option(s) {sorted(kwargs)}")
    return SmallCNN(in_chans=in_chans, num_classes=num_classes, drop_rate=drop_rate)
