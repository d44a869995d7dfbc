"""Box formats, named and converted in one place.

mtbrain's one internal format is **xyxy in pixels of the original image** (``x1, y1, x2,
y2``; x to the right, y down; ``x2 > x1``), as in torchvision's detection targets. Every
reader converts to it and every writer converts from it here:

============  ==================================================  =====================
name          meaning                                             used by
============  ==================================================  =====================
``xyxy``      corners, pixels                                     mtbrain, torchvision
``xywh``      top-left corner + width/height, pixels              COCO json
``cxcywh_n``  centre + width/height, normalised to [0, 1]         YOLO label files
``xyxy_n``    corners, normalised to [0, 1]                       model box head
============  ==================================================  =====================

Letterboxing (resize the longest side, pad the rest) is also defined here, with its exact
inverse, so that boxes predicted on the network input map back to original pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

BoxFormat = Literal["xyxy", "xywh", "cxcywh_n", "xyxy_n"]
FORMATS: tuple[str, ...] = ("xyxy", "xywh", "cxcywh_n", "xyxy_n")


def _as_boxes(boxes: np.ndarray | list) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.shape[-1] != 4:
        raise ValueError(f"boxes must have 4 columns, got shape {arr.shape}")
    return arr


def convert(boxes: np.ndarray | list, src: BoxFormat, dst: BoxFormat, *,
            width: float | None = None, height: float | None = None) -> np.ndarray:
    """Convert boxes (N, 4) from format ``src`` to ``dst``.

    ``width`` and ``height`` (of the original image) are needed when one side is
    normalised and the other is in pixels.
    """
    if src not in FORMATS or dst not in FORMATS:
        raise ValueError(f"unknown box format {src!r} or {dst!r}; known: {FORMATS}")
    b = _as_boxes(boxes)
    # to xyxy pixels
    if src == "xyxy":
        xyxy = b.copy()
    elif src == "xywh":
        xyxy = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)
    else:
        if width is None or height is None:
            raise ValueError(f"converting from {src} needs the image width and height")
        if src == "cxcywh_n":
            cx, cy, w, h = b.T
            xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        else:
            xyxy = b.copy()
        xyxy = xyxy * np.array([width, height, width, height], dtype=np.float64)
    # from xyxy pixels
    if dst == "xyxy":
        return xyxy
    if dst == "xywh":
        return np.stack([xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], axis=1)
    if width is None or height is None:
        raise ValueError(f"converting to {dst} needs the image width and height")
    norm = xyxy / np.array([width, height, width, height], dtype=np.float64)
    if dst == "xyxy_n":
        return norm
    x1, y1, x2, y2 = norm.T
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)


def area(boxes: np.ndarray) -> np.ndarray:
    """Areas of xyxy boxes."""
    b = _as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: (N, 4) x (M, 4) -> (N, M)."""
    a, b = _as_boxes(a), _as_boxes(b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def union_box(boxes: np.ndarray) -> np.ndarray:
    """The smallest xyxy box holding all ``boxes`` (shape (1, 4)), or (0, 4) if none."""
    b = _as_boxes(boxes)
    if len(b) == 0:
        return b
    return np.array([[b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()]])


def clip(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip xyxy boxes to the image."""
    b = _as_boxes(boxes).copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    return b


@dataclass(frozen=True)
class Letterbox:
    """Geometry of a letterbox: scale the image by ``scale``, then pad to ``size`` x ``size``.

    The resized image is ``new_w`` x ``new_h`` and sits at ``(pad_x, pad_y)`` (centred).
    ``forward`` maps original pixels to network-input pixels, ``inverse`` maps back.
    With ``keep_ratio=False`` the image is stretched to the square (``scale_x != scale_y``).
    """

    width: int
    height: int
    size: int
    scale_x: float
    scale_y: float
    new_w: int
    new_h: int
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, width: int, height: int, size: int, *, keep_ratio: bool = True) -> Letterbox:
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if not keep_ratio:
            return cls(width, height, size, size / width, size / height, size, size, 0, 0)
        scale = size / max(width, height)
        new_w = max(1, min(size, round(width * scale)))
        new_h = max(1, min(size, round(height * scale)))
        # exact per-axis scales of the integer resize, so boxes follow pixels exactly
        return cls(width, height, size, new_w / width, new_h / height, new_w, new_h,
                   (size - new_w) // 2, (size - new_h) // 2)

    def forward(self, boxes: np.ndarray) -> np.ndarray:
        """Original-image xyxy pixels -> network-input xyxy pixels."""
        b = _as_boxes(boxes)
        s = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        p = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])
        return b * s + p

    def inverse(self, boxes: np.ndarray) -> np.ndarray:
        """Network-input xyxy pixels -> original-image xyxy pixels (clipped to the image)."""
        b = _as_boxes(boxes)
        s = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        p = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])
        return clip((b - p) / s, self.width, self.height)
