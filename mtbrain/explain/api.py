"""One entry point for every explanation method: :func:`explain` on an image, in its pixels.

:func:`heatmaps` dispatches a batch of network inputs to Grad-CAM
(:func:`~mtbrain.explain.grad_cam`) or Gradient SHAP (:func:`~mtbrain.explain.gradient_shap`)
by name, so callers do not branch; both return (B, S, S) maps in [0, 1] in network-input
pixels. :func:`to_original` undoes the letterbox: it crops the padding and resizes the
rest to the original image (the map is then divided by its new maximum again).
:func:`explain` decodes one image the way :meth:`~mtbrain.models.Model.predict` does,
predicts it, explains the chosen class and returns an :class:`Explanation` whose heat
map has the original image's shape; :meth:`Explanation.picture` draws it with the
predicted and true boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtbrain.data.boxes import Letterbox
from mtbrain.explain.gradcam import ALPHA, grad_cam, unit_peak
from mtbrain.explain.shap import gradient_shap

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "Explanation",
    "explain",
    "heatmaps",
    "method_options",
    "to_original",
]

METHODS: tuple[str, ...] = ("gradcam", "shap")
"""Names of the explanation methods (``method=`` of :func:`heatmaps` and :func:`explain`)."""

METHOD_NAMES: dict[str, str] = {"gradcam": "Grad-CAM", "shap": "Gradient SHAP"}
"""How reports and pictures name each method."""


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose one of "
                         f"{', '.join(METHODS)}")


def method_options(method: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The options a method runs with: its keyword defaults updated with ``options``
    (``target`` aside), so a report can say exactly what was computed.

    Raises:
        ValueError: for an unknown method or an option the method does not take.
    """
    import inspect

    _check_method(method)
    func = grad_cam if method == "gradcam" else gradient_shap
    defaults = {name: p.default for name, p in inspect.signature(func).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "target"}
    unknown = sorted(set(options or {}) - set(defaults))
    if unknown:
        raise ValueError(f"{METHOD_NAMES[method]} has no option {', '.join(unknown)}; its "
                         f"options are {', '.join(defaults)}")
    return {**defaults, **(options or {})}


def heatmaps(model: Any, images: Tensor, *, method: str = "gradcam",
             target: int | Sequence[int] | Tensor | None = None, **options: Any) -> Tensor:
    """Heat maps of the class head for a batch of network inputs, by method name.

    Args:
        model: A :class:`mtbrain.models.Model` (left in eval mode).
        images: (B, 1, S, S) letterboxed grey images in [0, 1].
        method: ``"gradcam"`` or ``"shap"``.
        target: Class index explained: one for all, one per image, or ``None`` for each
            image's predicted class.
        **options: Options of the method: ``level`` for Grad-CAM; ``n_samples``,
            ``stdevs``, ``baselines``, ``smooth``, ``seed``, ``max_batch`` for SHAP.

    Returns:
        (B, S, S) float32 maps in [0, 1], each divided by its maximum.

    Raises:
        ValueError: for an unknown method, a bad target or option value.
        ImportError: for ``"shap"`` without captum (the extra ``explain``).
    """
    _check_method(method)
    if method == "gradcam":
        return grad_cam(model, images, target=target, **options)
    return gradient_shap(model, images, target=target, **options)


def to_original(heatmap: Any, geo: Letterbox) -> np.ndarray:
    """A network-input (S, S) map in the original image's pixels: (height, width) float32.

    The letterbox padding is cropped away, the rest resized (bilinear, antialiased when
    shrinking) to the original size, and the result divided by its maximum, so values
    lie in [0, 1] and the maximum is 1 unless the map is all zero.
    """
    h = torch.as_tensor(np.asarray(heatmap, dtype=np.float32) if not isinstance(heatmap, Tensor)
                        else heatmap.detach().float().cpu())
    if h.ndim != 2 or h.shape != (geo.size, geo.size):
        raise ValueError(f"heatmap must be ({geo.size}, {geo.size}), got {tuple(h.shape)}")
    crop = h[geo.pad_y : geo.pad_y + geo.new_h, geo.pad_x : geo.pad_x + geo.new_w]
    shrink = geo.height < geo.new_h or geo.width < geo.new_w
    out = F.interpolate(crop[None, None], size=(geo.height, geo.width), mode="bilinear",
                        align_corners=False, antialias=shrink)[0]
    return unit_peak(out)[0].numpy()


@dataclass
class Explanation:
    """One image explained: the heat map in the original image's pixels and the prediction.

    Attributes:
        method: ``"gradcam"`` or ``"shap"``.
        target: Name of the explained class.
        heatmap: (H, W) float32 map in [0, 1], the original image's pixels.
        image: (H, W) uint8 grey image as decoded for prediction.
        prediction: The model's :class:`~mtbrain.models.model.Prediction` (box in original
            pixels).
        name: The input's name when it was a path.
    """

    method: str
    target: str
    heatmap: np.ndarray
    image: np.ndarray
    prediction: Any
    name: str | None = None

    def picture(self, *, true_boxes: Any = None, true_label: str | None = None,
                alpha: float = ALPHA, tile: int | None = None) -> np.ndarray:
        """The heat map over the image with the predicted box and the true boxes drawn.

        Args:
            true_boxes: (N, 4) true tumour boxes in original pixels (or None).
            true_label: The true class: a wrong prediction's label is drawn in the
                "wrong" colour.
            alpha: Weight of the heat map.
            tile: Draw on a ``tile`` x ``tile`` square (the image scaled to fit, black
                padding) instead of at the image's own size: for small images, whose
                labels would not fit.

        Returns:
            (H, W, 3) uint8 picture the size of the original image, or (tile, tile, 3)
            (colours and labels of :func:`mtbrain.viz.draw.draw_tile`).
        """
        from mtbrain.explain.gradcam import overlay
        from mtbrain.viz.draw import draw_tile

        rgb = overlay(self.image, self.heatmap, alpha=alpha)
        drawn = draw_tile(rgb, boxes=true_boxes, prediction=self.prediction.to_dict(),
                          label=true_label, tile=tile, halo=True)
        return np.asarray(drawn, dtype=np.uint8).copy()


def explain(model: Any, image: Any, *, method: str = "gradcam", target: int | str | None = None,
            **options: Any) -> Explanation:
    """Explain the model's class score for one image, in the image's own pixels.

    Args:
        model: A :class:`mtbrain.models.Model`.
        image: A path, a PIL image or an (H, W) / (H, W, 3) array, as for
            :meth:`~mtbrain.models.Model.predict`.
        method: ``"gradcam"`` or ``"shap"``.
        target: Class explained, by index or name; ``None``: the predicted class.
        **options: Options of the method (see :func:`heatmaps`).

    Returns:
        An :class:`Explanation` whose ``heatmap`` has the decoded image's shape.

    Raises:
        ValueError: for an unknown method or class, or an unreadable array.
        DataError: for an unreadable file (naming it).
        ImportError: for ``"shap"`` without captum (the extra ``explain``).
    """
    from mtbrain.models.model import read_input

    _check_method(method)
    classes = list(model.classes)
    if isinstance(target, str):
        if target not in classes:
            raise ValueError(f"target class {target!r} is not a class of the model "
                             f"({', '.join(classes)})")
        target = classes.index(target)
    gray, name = read_input(image)
    prediction = model.predict(gray)[0]
    prediction.image = name
    index = classes.index(prediction.label) if target is None else int(target)
    tensor, geo = model.prepare(gray)
    device = next(model.parameters()).device
    maps = heatmaps(model, tensor[None].to(device), method=method, target=index, **options)
    return Explanation(method=method, target=classes[index], heatmap=to_original(maps[0], geo),
                       image=gray, prediction=prediction, name=name)
