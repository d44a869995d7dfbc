"""Gradient SHAP for the class head of :class:`mtbrain.models.Model`, through captum.

captum's :class:`captum.attr.GradientShap` wants a ``forward`` that returns one tensor of
class scores; the multitask model returns a dict from two heads. :class:`ClassLogits`
wraps it: grey images in [0, 1] -> ``model.normalize`` -> backbone -> class head -> logits
(the box head is not run). Baselines and noise are therefore in the pixel units of the
network input, grey values in [0, 1].

Gradient SHAP (Lundberg and Lee, 2017) estimates SHAP values as expected gradients: for
each of ``n_samples`` draws it picks a baseline from the baseline distribution, adds
Gaussian noise (``stdevs``) to the input, takes the gradient of the target logit at a
random point between the two and multiplies it by (input - baseline). The default
baseline is the black image: the MRI background and the letterbox padding colour, so a
pixel's attribution is what its intensity adds to the class score compared with nothing.

The attributions become a heat map with the conventions of :func:`~mtbrain.explain.grad_cam`:
summed over channels, positive part only (evidence *for* the target class), smoothed
with a Gaussian (``smooth`` pixels; by default 1/64 of the image side: raw gradients are
speckled at the pixel level, a blur shows the regions and steadies the pointing game's
maximum), each map divided by its maximum, so values
lie in [0, 1] and :func:`~mtbrain.explain.pointing_game`, :func:`~mtbrain.explain.energy_inside`
and :func:`~mtbrain.explain.overlay` take it as they take a Grad-CAM map.

captum draws its random numbers from torch's and numpy's global generators; both are
seeded with ``seed`` for the call and restored afterwards, so a call is reproducible and
leaves the caller's random state as it was. captum is the optional extra ``explain``
(``pip install 'mtbrain[explain]'``); without it :func:`gradient_shap` raises an
:class:`ImportError` that says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtbrain.explain.gradcam import class_targets, unit_peak

__all__ = ["EXTRA_HINT", "SMOOTH_FRACTION", "ClassLogits", "gradient_shap", "require_captum"]

EXTRA_HINT = "pip install 'mtbrain[explain]' (or 'captum>=0.7')"
"""How to install what Gradient SHAP needs: the optional extra ``explain``."""


SMOOTH_FRACTION = 1 / 64
"""Default blur of a map (standard deviation), as a fraction of the image side."""


def require_captum() -> Any:
    """captum's ``GradientShap`` class; an ImportError naming the extra when captum is absent."""
    try:
        from captum.attr import GradientShap
    except ImportError as exc:
        raise ImportError(
            f"Gradient SHAP needs captum, the optional extra 'explain': {EXTRA_HINT}"
        ) from exc
    return GradientShap


class ClassLogits(nn.Module):
    """The class logits of a two-head model as a plain ``images -> (B, C)`` module.

    Args:
        model: A :class:`mtbrain.models.Model` (``normalize``, ``backbone``, ``cls_head``).
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        m = self.model
        return m.cls_head(m.backbone(m.normalize(images)).pooled).float()


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's (CPU and ``device``) and numpy's global generators; restore them after."""
    devices = [device.index or 0] if device.type == "cuda" else []
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(state)


def _blur(maps: Tensor, sigma: float) -> Tensor:
    from torchvision.transforms.functional import gaussian_blur

    k = 2 * int(np.ceil(3 * sigma)) + 1
    return gaussian_blur(maps[:, None], kernel_size=[k, k], sigma=[sigma, sigma])[:, 0]


def gradient_shap(
    model: Any,
    images: Tensor,
    *,
    target: int | Sequence[int] | Tensor | None = None,
    n_samples: int = 16,
    stdevs: float = 0.1,
    baselines: Tensor | None = None,
    smooth: float | None = None,
    seed: int = 0,
    max_batch: int = 32,
) -> Tensor:
    """Gradient SHAP maps of the class head, one per image, at the images' resolution.

    Args:
        model: A :class:`mtbrain.models.Model`. It is put in eval mode and left there; no
            parameter's ``.grad`` is touched.
        images: (B, 1, S, S) grey images in [0, 1] (any (B, C, H, W) that
            ``model.normalize`` takes).
        target: Class index explained: one for all images, one per image, or ``None``
            for each image's predicted class.
        n_samples: Random draws (baseline, noise, point on the path) per image.
        stdevs: Standard deviation of the Gaussian noise added to the input (grey units).
        baselines: (N, C, H, W) baseline distribution (default: one black image).
        smooth: Standard deviation in pixels of a Gaussian blur of the map: ``None``
            for :data:`SMOOTH_FRACTION` of the image side (1 px at 64, 4 px at 256), so
            the map shows regions rather than single-pixel speckle; 0 for the raw
            attributions.
        seed: Seed of the random draws.
        max_batch: Most images (draws included) in one forward pass.

    Returns:
        (B, H, W) float32 maps in [0, 1] (see the module doc), detached, on the images'
        device.

    Raises:
        ImportError: when captum (the extra ``explain``) is not installed.
        ValueError: for a bad target, images or option.
    """
    gradient_shap_cls = require_captum()
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if n_samples < 1 or max_batch < 1:
        raise ValueError(f"n_samples and max_batch must be >= 1, got {n_samples}, {max_batch}")
    if smooth is None:
        smooth = SMOOTH_FRACTION * max(images.shape[-2:])
    if stdevs < 0 or smooth < 0:
        raise ValueError(f"stdevs and smooth must be >= 0, got {stdevs}, {smooth}")
    model.eval()
    wrapped = ClassLogits(model)
    x = images.detach().float()
    base = torch.zeros_like(x[:1]) if baselines is None else baselines.detach().float()
    if base.ndim != 4 or tuple(base.shape[1:]) != tuple(x.shape[1:]):
        raise ValueError(f"baselines must be (N, {', '.join(map(str, x.shape[1:]))}), "
                         f"got shape {tuple(base.shape)}")
    base = base.to(x.device)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()
        with torch.no_grad():
            idx = class_targets(target, wrapped(x))
        explainer = gradient_shap_cls(wrapped)
        chunk = max(1, max_batch // n_samples)
        parts = []
        with _seeded(seed, x.device):
            for start in range(0, len(x), chunk):
                attr = explainer.attribute(x[start : start + chunk], baselines=base,
                                           n_samples=n_samples, stdevs=float(stdevs),
                                           target=idx[start : start + chunk].tolist())
                parts.append(attr.detach().float().sum(dim=1))
    maps = torch.cat(parts).clamp_min(0)
    if smooth > 0:
        maps = _blur(maps, float(smooth))
    return unit_peak(maps).to(images.device)
