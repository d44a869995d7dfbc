"""Backbones: any timm model by name, giving pooled features and three spatial feature maps.

The backbone takes images already normalised by the model (see
:class:`mtbrain.models.model.Model`) and returns a :class:`BackboneFeatures`:

- ``pooled`` (B, F): the pooled last-stage features, through the model's own head
  pre-logits (so EfficientNet keeps its ImageNet ``conv_head``, ConvNeXt its head norm);
- ``maps``: the three coarsest feature levels, finest first (strides 8, 16 and 32 for CNNs),
  for the dense box head. They are computed by the forward pass anyway: returning them
  costs nothing.

timm's ``forward_intermediates`` gives both in one pass for nearly every timm model; models
without it fall back to ``features_only=True`` with the pooled features taken by average
pooling of the last map.

Grey input (``in_chans=1``): pretrained first-convolution weights are summed over their
RGB channels (timm's ``adapt_input_conv``), which is exact for a grey image replicated to
RGB when the three channels share one mean/std, and the model normalises with the mean of
the pretrained channel means/stds.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from torch import Tensor, nn

from mtbrain.errors import ConfigError, DataError
from mtbrain.models import weights as W

# First-class backbones (the seed architectures) and tiny ones for tests.
FIRST_CLASS_BACKBONES: tuple[str, ...] = ("tf_efficientnet_lite0", "convnext_tiny", "resnet50")
TEST_BACKBONES: tuple[str, ...] = (
    "mobilenetv3_small_050",
    "resnet18",
    "convnext_atto",
    "efficientnet_lite0",
)
NUM_LEVELS = 3  # feature maps handed to the box head: strides 8, 16, 32


class BackboneFeatures(NamedTuple):
    """What a backbone gives the heads.

    Attributes:
        pooled: (B, F) pooled features of the last stage.
        maps: Spatial feature maps (B, C_i, H_i, W_i), finest first (strides 8, 16, 32).
    """

    pooled: Tensor
    maps: tuple[Tensor, ...]


def _first_conv_keys(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first = cfg.get("first_conv") or []
    if isinstance(first, str):
        first = [first]
    return [f"{name}.weight" for name in first]


def load_backbone_weights(
    model: nn.Module, state: dict[str, Tensor], *, in_chans: int, source: str
) -> None:
    """Load a timm-layout state dict into ``model`` (a timm model), adapting the first conv.

    Keys the model does not have (the ImageNet classifier, for instance) are ignored;
    every key the model *needs* must be present with the right shape.

    Raises:
        DataError: naming ``source`` when weights are missing or have the wrong shape.
    """
    own = model.state_dict()
    state = dict(state)
    for key in _first_conv_keys(model):
        if key in state and key in own and state[key].shape != own[key].shape:
            from timm.models import adapt_input_conv

            try:
                state[key] = adapt_input_conv(in_chans, state[key])
            except (NotImplementedError, ValueError, AssertionError) as exc:
                raise DataError(
                    f"cannot adapt first conv {key} to {in_chans} channel(s): {exc}", path=source
                ) from None
    usable = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in usable]
    wrong = [
        f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}"
        for k, v in usable.items()
        if v.shape != own[k].shape
    ]
    if missing or wrong:
        detail = (f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "") + (
            f"; wrong shapes: {wrong[:3]}" if wrong else ""
        )
        raise DataError(f"weights do not fit backbone: {detail.strip('; ')}", path=source)
    model.load_state_dict(usable, strict=True)


class Backbone(nn.Module):
    """A timm model by name, returning pooled features and the three coarsest feature maps.

    Args:
        name: Any timm model name (``timm.list_models()``).
        in_chans: 1 (grey) or 3 input channels.
        pretrained: Load ImageNet weights (see :mod:`mtbrain.models.weights`).
        checkpoint_path: Load backbone weights from this local file instead.
        drop_path_rate: Stochastic depth rate inside the backbone.

    Raises:
        ConfigError: for an unknown model name, a bad ``in_chans`` or unavailable weights.
        DataError: for a weights file that is unreadable or does not fit.
    """

    def __init__(
        self,
        name: str,
        *,
        in_chans: int = 1,
        pretrained: bool = False,
        checkpoint_path: str | Path | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        import timm

        from mtbrain.models import smallcnn  # noqa: F401 - registers mtbrain_smallcnn in timm

        if in_chans not in (1, 3):
            raise ConfigError(f"in_chans must be 1 or 3, got {in_chans}")
        if not timm.is_model(name):
            raise ConfigError(
                f"unknown backbone {name!r}: not a timm model name "
                f"(see timm.list_models()); first-class: {list(FIRST_CLASS_BACKBONES)}"
            )
        if pretrained and checkpoint_path is None:
            W.check_pretrained_available(name)  # fail before building anything
        kwargs: dict = {"num_classes": 0, "in_chans": in_chans}
        if drop_path_rate:
            kwargs["drop_path_rate"] = drop_path_rate
        self.name = name
        self.in_chans = in_chans
        self.model = timm.create_model(name, pretrained=False, **kwargs)
        self.intermediates = hasattr(self.model, "forward_intermediates")
        if not self.intermediates:  # pragma: no cover - rare in timm >= 1.0
            self.model = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        self._pick_levels()
        if checkpoint_path is not None:
            path = Path(checkpoint_path)
            load_backbone_weights(
                self.model, W.read_state_dict(path), in_chans=in_chans, source=str(path)
            )
        elif pretrained:
            self._load_pretrained(name, kwargs)

    def _load_pretrained(self, name: str, kwargs: dict) -> None:
        import timm

        state = W.pretrained_state_dict(name)
        if state is not None:
            load_backbone_weights(
                self.model, state, in_chans=self.in_chans, source=f"shipped weights of {name}"
            )
            return
        try:  # timm's own sources (local HF cache, or online)
            ref = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any download failure gets the hint
            raise W.timm_pretrained_error(name, exc) from exc
        self.model.load_state_dict(ref.state_dict(), strict=True)

    def _pick_levels(self, n: int = NUM_LEVELS) -> None:
        """Choose the feature levels: the last block of each of the ``n`` coarsest strides."""
        info = self.model.feature_info
        entries = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
        reductions = [int(e["reduction"]) for e in entries]
        last_of = {r: i for i, r in enumerate(reductions)}  # last index per stride
        picked = sorted(last_of.values(), key=lambda i: reductions[i])[-n:]
        # models with fewer distinct strides (ViT: all 16): the last blocks instead
        extra = [i for i in range(len(entries) - 1, -1, -1) if i not in picked]
        while len(picked) < min(n, len(entries)):
            picked.append(extra.pop(0))
        picked = sorted(picked, key=lambda i: (reductions[i], i))
        if len(picked) < n:
            raise ConfigError(
                f"backbone {self.name!r} has only {len(picked)} feature level(s); "
                f"the dense box head needs {n}"
            )
        self.level_indices = tuple(picked)
        self.level_channels = tuple(int(entries[i]["num_chs"]) for i in picked)
        self.level_strides = tuple(reductions[i] for i in picked)
        if self.intermediates:
            self.num_features = int(
                getattr(self.model, "head_hidden_size", None) or self.model.num_features
            )
        else:  # pragma: no cover
            self.num_features = self.level_channels[-1]

    def stage_parameter_names(self) -> list[list[str]]:
        """Names of this module's parameters, grouped from the input on: the stem first,
        then one group per stage (timm's ``group_matcher(coarse=True)``; for EfficientNet
        the stages are ``blocks.0``, ``blocks.1``, ...; for ResNet ``layer1``...).

        Raises:
            ConfigError: when the timm model defines no grouping.
        """
        from timm.models import group_parameters

        if not hasattr(self.model, "group_matcher"):
            raise ConfigError(f"backbone {self.name!r} defines no stage grouping "
                              "(timm's group_matcher), so its stages cannot be frozen")
        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        return [[f"model.{n}" for n in groups[k]] for k in sorted(groups)]

    def freeze_stages(self, n: int) -> list[str]:
        """Freeze the stem and the first ``n`` stages for good (``requires_grad=False``).

        Backpropagation then stops above them, which saves most of the backward pass of
        the high-resolution layers (Lite0 at 256 px, batch 32, fp32, 2 CPU cores: 8.6-9.3 img/s
        with nothing frozen, 17.1 with ``n=2``, 29.1 with ``n=3``; ``benchmarks/model_step.py``). Their batch norms still track the batch statistics.

        Returns:
            The frozen parameter names (relative to this module).

        Raises:
            ConfigError: for ``n`` outside ``0 .. number of stages - 1`` (the last stage
                always trains) or a backbone without a stage grouping.
        """
        if n <= 0:
            return []
        groups = self.stage_parameter_names()
        if n >= len(groups) - 1:
            raise ConfigError(f"freeze_stages={n}: backbone {self.name!r} has {len(groups) - 1} "
                              f"stages after its stem; freeze at most {len(groups) - 2}")
        names = {name for group in groups[: n + 1] for name in group}
        for name, p in self.named_parameters():
            if name in names:
                p.requires_grad_(False)
        return sorted(names)

    @property
    def pretrained_cfg(self) -> dict:
        return dict(getattr(self.model, "pretrained_cfg", None) or {})

    def forward(self, x: Tensor) -> BackboneFeatures:
        if not self.intermediates:  # pragma: no cover
            feats = self.model(x)
            maps = tuple(feats[i] for i in self.level_indices)
            return BackboneFeatures(maps[-1].mean(dim=(2, 3)), maps)
        final, inter = self.model.forward_intermediates(x, indices=list(self.level_indices))
        pooled = self.model.forward_head(final, pre_logits=True)
        return BackboneFeatures(pooled, tuple(inter))


def default_norm(backbone: Backbone) -> tuple[list[float], list[float]]:
    """Mean and std (per input channel, for pixels in [0, 1]) of the backbone's pretraining."""
    cfg = backbone.pretrained_cfg
    mean = [float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))]
    std = [float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))]
    if backbone.in_chans == 1:
        return [sum(mean) / len(mean)], [sum(std) / len(std)]
    if len(mean) != 3:
        mean, std = [mean[0]] * 3, [std[0]] * 3
    return mean, std


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
