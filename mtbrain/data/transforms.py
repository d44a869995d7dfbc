"""Transforms that move the image and its boxes together.

The deterministic part, shared by training, evaluation and prediction, is the letterbox
(:func:`letterbox_image`): the decoded grayscale image is resized so its longest side is
``size`` and padded to ``size`` x ``size``; :class:`mtbrain.data.boxes.Letterbox` holds the
exact geometry and its inverse. Random augmentation comes after it, on the fixed-size image.
"""

from __future__ import annotations

import cv2
import numpy as np

from mtbrain.data.boxes import Letterbox


def letterbox_image(gray: np.ndarray, size: int, *, keep_ratio: bool = True,
                    pad_value: int = 0) -> tuple[np.ndarray, Letterbox]:
    """Resize (and pad) an ``H x W`` uint8 image to ``size`` x ``size``.

    Returns the new image and the :class:`Letterbox` that maps boxes between the two.
    Downscaling uses area averaging (no aliasing), upscaling bilinear interpolation.
    """
    if gray.ndim != 2:
        raise ValueError(f"expected an H x W grayscale image, got shape {gray.shape}")
    h, w = gray.shape
    geo = Letterbox.fit(w, h, size, keep_ratio=keep_ratio)
    interp = cv2.INTER_AREA if (geo.new_w < w or geo.new_h < h) else cv2.INTER_LINEAR
    resized = cv2.resize(gray, (geo.new_w, geo.new_h), interpolation=interp)
    if (geo.new_w, geo.new_h) == (size, size):
        return np.ascontiguousarray(resized), geo
    out = np.full((size, size), pad_value, dtype=np.uint8)
    out[geo.pad_y:geo.pad_y + geo.new_h, geo.pad_x:geo.pad_x + geo.new_w] = resized
    return out, geo
