"""Grad-CAM for the class head of :class:`mtbrain.models.Model`, with no layer to name.

Generic CAM tools want a target layer and a model whose ``forward`` returns logits; the
multitask model returns a dict and has two heads. Here the layer is found from the model's
own structure: the backbone returns its spatial feature maps (``BackboneFeatures.maps``,
finest first) and the class head reads ``pooled``, which timm computes from the last
stage's output; ``maps[-1]`` is that output (the last block of the coarsest stride) for
every timm CNN (ResNet, ConvNeXt, EfficientNet/MobileNet: for the latter the head's 1x1
``conv_head`` between them is pointwise, so the map keeps its meaning). The gradient of
the target logit is taken with :func:`torch.autograd.grad` with respect to that map only,
so no parameter ``.grad`` is touched; a map the class logits do not depend on raises.

``level`` picks another of the maps (``-2``: stride 16) for a finer, less class-specific
map: at 64 px the stride-32 map is only 2x2.

:func:`pointing_game` and :func:`energy_inside` score a map against boxes (xyxy pixels,
``x2``/``y2`` exclusive, as everywhere in mtbrain): a pixel is inside a box when its centre
is. :func:`overlay` draws a map over a grey image with the perceptually uniform
``inferno`` colour map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ALPHA",
    "COLORMAP",
    "energy_inside",
    "grad_cam",
    "overlay",
    "pointing_game",
    "unit_peak",
]

COLORMAP = "inferno"  # perceptually uniform, readable in grey and with colour-vision deficiencies
ALPHA = 0.45  # weight of the heat map in :func:`overlay`


def class_targets(target: int | Sequence[int] | Tensor | None, logits: Tensor) -> Tensor:
    """The explained class index of each image: ``target`` broadcast and checked, or each
    image's predicted class (argmax of ``logits``) for ``None``. Raises ValueError."""
    b, c = logits.shape
    if target is None:
        idx = logits.argmax(dim=1)
    elif isinstance(target, int | np.integer):
        idx = torch.full((b,), int(target), dtype=torch.long, device=logits.device)
    else:
        idx = torch.as_tensor(list(target) if not isinstance(target, Tensor) else target)
        idx = idx.to(device=logits.device, dtype=torch.long).reshape(-1)
        if idx.numel() != b:
            raise ValueError(f"target has {idx.numel()} entries for a batch of {b}")
    if bool(((idx < 0) | (idx >= c)).any()):
        raise ValueError(f"target class out of range 0..{c - 1}: {idx.tolist()}")
    return idx


def grad_cam(
    model: Any,
    images: Tensor,
    *,
    target: int | Sequence[int] | Tensor | None = None,
    level: int = -1,
) -> Tensor:
    """Grad-CAM maps of the class head, one per image, at the images' resolution.

    Args:
        model: A :class:`mtbrain.models.Model` (anything with ``normalize``, ``backbone``
            returning ``BackboneFeatures`` and ``cls_head``). It is put in eval mode and
            left there.
        images: (B, 1, S, S) grey images in [0, 1] (any (B, C, H, W) that
            ``model.normalize`` takes).
        target: Class index explained: one for all images, one per image, or ``None``
            for each image's predicted class.
        level: Which backbone map (``feats.maps[level]``): ``-1``, the last stage that
            the pooled features come from (standard Grad-CAM); ``-2`` is finer.

    Returns:
        (B, H, W) float32 maps in [0, 1] (each divided by its maximum; a map with no
        positive evidence stays all zero), detached, on the images' device.

    Raises:
        ValueError: for a bad target, or a map the class logits do not depend on.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    model.eval()
    out_hw = (int(images.shape[-2]), int(images.shape[-1]))
    with torch.inference_mode(False), torch.enable_grad():
        x = model.normalize(images.detach().clone()).detach().requires_grad_(True)
        feats = model.backbone(x)
        fmap = feats.maps[level]
        logits = model.cls_head(feats.pooled)
        idx = class_targets(target, logits)
        score = logits.gather(1, idx[:, None]).sum()  # samples are independent in eval mode
        (grads,) = torch.autograd.grad(score, fmap, allow_unused=True)
    if grads is None:
        raise ValueError(
            f"the class logits do not depend on backbone map {level} "
            f"(shape {tuple(fmap.shape)}): no Grad-CAM for it"
        )
    fmap, grads = fmap.detach().float(), grads.float()
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    cam = F.relu((weights * fmap).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=out_hw, mode="bilinear", align_corners=False)[:, 0]
    return unit_peak(cam).to(images.device)


def unit_peak(maps: Tensor) -> Tensor:
    """(B, H, W) maps with negatives clipped, each divided by its maximum: values in [0, 1].

    A map with no positive value stays all zero. The heat-map convention of every
    explanation method in :mod:`mtbrain.explain`.
    """
    maps = maps.float().clamp_min(0)
    peak = maps.amax(dim=(-2, -1), keepdim=True)
    maps = torch.where(peak > 0, maps / peak.clamp_min(torch.finfo(maps.dtype).tiny), 0.0)
    return maps.clamp(0, 1)


def _as_numpy(a: Any, dtype: Any = np.float64) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def _box_mask(shape: tuple[int, int], boxes: Any) -> np.ndarray:
    """Pixels whose centre lies inside any xyxy box."""
    b = _as_numpy(boxes).reshape(-1, 4)
    h, w = shape
    ys = np.arange(h)[:, None] + 0.5
    xs = np.arange(w)[None, :] + 0.5
    mask = np.zeros((h, w), dtype=bool)
    for x1, y1, x2, y2 in b:
        mask |= (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
    return mask


def _cam2d(cam: Any) -> np.ndarray:
    c = _as_numpy(cam)
    if c.ndim != 2:
        raise ValueError(f"cam must be (H, W), got shape {c.shape}")
    return c


def pointing_game(cam: Any, boxes: Any) -> bool:
    """Whether the map's maximum (first one, row-major) falls inside any box.

    An all-zero (or non-positive) map points nowhere: ``False``; so do no boxes.
    """
    c = _cam2d(cam)
    if c.size == 0 or not np.any(c > 0):
        return False
    y, x = np.unravel_index(int(np.argmax(c)), c.shape)
    return bool(_box_mask(c.shape, boxes)[y, x])


def energy_inside(cam: Any, boxes: Any) -> float:
    """Share of the map's sum (negative values clipped) inside the union of the boxes.

    0.0 for an all-zero map.
    """
    c = np.clip(_cam2d(cam), 0, None)
    total = float(c.sum())
    if total <= 0:
        return 0.0
    return float(c[_box_mask(c.shape, boxes)].sum() / total)


def overlay(gray: Any, cam: Any, *, alpha: float = ALPHA, cmap: str = COLORMAP) -> np.ndarray:
    """A heat map over a grey image: (H, W, 3) uint8.

    Args:
        gray: (H, W) uint8 image.
        cam: (H, W) map, values clipped to [0, 1].
        alpha: Weight of the colour-mapped ``cam``.
        cmap: A matplotlib colour map name (perceptually uniform: ``inferno``, ``viridis``).
    """
    import matplotlib

    g = _as_numpy(gray, np.float32)
    c = np.clip(_as_numpy(cam, np.float32), 0.0, 1.0)
    if g.ndim != 2 or c.shape != g.shape:
        raise ValueError(f"gray (H, W) and cam (H, W) must match, got {g.shape} and {c.shape}")
    heat = matplotlib.colormaps[cmap](c)[..., :3].astype(np.float32) * 255.0
    out = (1.0 - alpha) * g[..., None] + alpha * heat
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
