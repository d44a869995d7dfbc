"""Transforms that move the image and its boxes together.

The deterministic part, shared by training, evaluation and prediction, is the letterbox
(:func:`letterbox_image`): the decoded grayscale image is resized so its longest side is
``size`` and padded to ``size`` x ``size``; :class:`mtbrain.data.boxes.Letterbox` holds the
exact geometry and its inverse. Random augmentation comes after it, on the fixed-size image
(:func:`build_train_transform`, :func:`augment`); evaluation and prediction use none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from mtbrain.data.boxes import Letterbox, clip
from mtbrain.data.image_io import read_gray
from mtbrain.errors import ConfigError

if TYPE_CHECKING:  # imported when a pipeline is built: prediction does not pay for it
    import albumentations as A

# OpenCV's own thread pool does not survive fork(): a DataLoader worker or warm-up process
# forked while the pool is busy can hang in its first OpenCV call. The images here are small
# and the parallelism comes from worker processes, so OpenCV runs single-threaded.
cv2.setNumThreads(0)


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


def decode_letterboxed(path: str | Path, size: int, *,
                       keep_ratio: bool = True) -> tuple[np.ndarray, Letterbox]:
    """Decode an image file to grayscale and letterbox it: the network's deterministic input.

    Raises:
        DataError: naming the file, when it cannot be decoded.
    """
    return letterbox_image(read_gray(path), size, keep_ratio=keep_ratio)


# --------------------------------------------------------------------------------------
# Random augmentation (training only; evaluation and prediction use no random transform)
# --------------------------------------------------------------------------------------

BOX_LABEL_FIELD = "box_ids"


@dataclass
class AugmentConfig:
    """Training augmentation, applied after the letterbox on the ``size`` x ``size`` image.

    Every geometric transform moves the boxes with the pixels (albumentations, boxes as
    ``pascal_voc`` = xyxy pixels of the letterboxed image). Evaluation uses none of this.

    Attributes:
        enabled: Augment at all; ``false`` trains on the letterboxed images as they are.
        hflip_p: Probability of a horizontal (left-right) flip.
        rotate_p: Probability of a rotation.
        rotate: Rotation range in degrees ``[low, high]`` (albumentations' sign: positive
            turns counter-clockwise on screen). Boxes follow with the ``ellipse`` method (the
            box of the rotated inscribed ellipse), which stays tight where the default
            ``largest_box`` method inflates every rotated box.
        affine_p: Probability of a scale/translate affine.
        scale: Scale range ``[low, high]`` of the affine (1 = unchanged).
        translate: Largest shift of the affine, as a fraction of the image side (each axis).
        brightness_contrast_p: Probability of a brightness/contrast change.
        brightness: Largest brightness change (fraction of the intensity range, +/-).
        contrast: Largest contrast change (fraction, +/-).
        min_box_visibility: A box keeping less than this fraction of its area inside the
            image is dropped (a sample losing its only box then has no box).
        min_box_size: A box narrower or lower than this (pixels) is dropped.
    """

    enabled: bool = True
    hflip_p: float = 0.5
    rotate_p: float = 0.5
    rotate: tuple[float, ...] = (-25.0, 20.0)
    affine_p: float = 0.5
    scale: tuple[float, ...] = (0.9, 1.1)
    translate: float = 0.05
    brightness_contrast_p: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    min_box_visibility: float = 0.3
    min_box_size: float = 2.0

    def __post_init__(self) -> None:
        for name in ("hflip_p", "rotate_p", "affine_p", "brightness_contrast_p",
                     "min_box_visibility"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value}: must be in [0, 1]")
        for name in ("rotate", "scale"):
            pair = tuple(float(v) for v in getattr(self, name))
            if len(pair) != 2 or pair[0] > pair[1]:
                raise ConfigError(f"{name}={list(pair)}: expected [low, high] with low <= high")
            setattr(self, name, pair)
        if not -180.0 <= self.rotate[0] <= self.rotate[1] <= 180.0:
            raise ConfigError(f"rotate={list(self.rotate)}: degrees must be in [-180, 180]")
        if self.scale[0] <= 0:
            raise ConfigError(f"scale={list(self.scale)}: must be positive")
        for name in ("translate", "brightness", "contrast"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name}={value}: must be in [0, 1)")
        if self.min_box_size < 0:
            raise ConfigError(f"min_box_size={self.min_box_size}: must be >= 0")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> AugmentConfig:
        """Build from a config mapping; an unknown key or a wrong type names the key."""
        from mtbrain.config import from_dict

        return from_dict(cls, values, prefix="augment")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["rotate"], values["scale"] = list(self.rotate), list(self.scale)
        return values


def build_train_transform(cfg: AugmentConfig, size: int) -> A.Compose | None:
    """The training augmentation pipeline for ``size`` x ``size`` letterboxed images.

    Returns ``None`` when ``cfg.enabled`` is false. Evaluation and prediction use no random
    transform at all (``transform=None``). Call it through :func:`augment`, which keeps the
    boxes and their count consistent.
    """
    if not cfg.enabled:
        return None
    import albumentations as A  # mtbrain/__init__ (offline environment) has run already

    shift = {"x": (-cfg.translate, cfg.translate), "y": (-cfg.translate, cfg.translate)}
    steps = [
        A.HorizontalFlip(p=cfg.hflip_p),
        A.Rotate(limit=cfg.rotate, rotate_method="ellipse", border_mode=cv2.BORDER_CONSTANT,
                 fill=0, interpolation=cv2.INTER_LINEAR, p=cfg.rotate_p),
        A.Affine(scale=cfg.scale, translate_percent=shift, keep_ratio=True,
                 rotate_method="ellipse", border_mode=cv2.BORDER_CONSTANT, fill=0,
                 interpolation=cv2.INTER_LINEAR, p=cfg.affine_p),
        A.RandomBrightnessContrast(brightness_limit=cfg.brightness, contrast_limit=cfg.contrast,
                                   p=cfg.brightness_contrast_p),
    ]
    params = A.BboxParams(format="pascal_voc", label_fields=[BOX_LABEL_FIELD],
                          min_visibility=cfg.min_box_visibility, min_width=cfg.min_box_size,
                          min_height=cfg.min_box_size, clip=True, filter_invalid_bboxes=True)
    return A.Compose(steps, bbox_params=params)


def check_transform(transform: Any) -> None:
    """Raise :class:`ConfigError` unless ``transform`` moves ``pascal_voc`` boxes with the image.

    A custom albumentations pipeline must be an ``A.Compose`` with
    ``bbox_params=A.BboxParams(format="pascal_voc", label_fields=["box_ids"])``.
    """
    processor = getattr(transform, "processors", {}).get("bboxes")
    params = getattr(processor, "params", None)
    if (params is None or params.format != "pascal_voc"
            or BOX_LABEL_FIELD not in (params.label_fields or [])):
        raise ConfigError(
            "the training transform must be an albumentations Compose with "
            f"bbox_params=BboxParams(format='pascal_voc', label_fields=['{BOX_LABEL_FIELD}']); "
            "build it with mtbrain.data.transforms.build_train_transform"
        )


def augment(transform: A.Compose, image: np.ndarray,
            boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Apply a training pipeline to a letterboxed image and its boxes.

    Args:
        transform: From :func:`build_train_transform` (or one passing :func:`check_transform`).
        image: ``S x S`` uint8 grayscale image.
        boxes: (K, 4) xyxy pixels of ``image``; may be empty.

    Returns:
        ``(image, boxes, lost)``: the augmented image (``S x S`` uint8), the surviving boxes
        ((K', 4) float32, clipped to the image, in their original order) and ``lost = K - K'``,
        the number of boxes that left the image or shrank below the limits. A sample that
        loses every box has an empty box array: it must be treated as having no box.
    """
    h, w = image.shape[:2]
    src = clip(boxes, w, h)
    out = transform(image=image, bboxes=src.astype(np.float32),
                    **{BOX_LABEL_FIELD: np.arange(len(src))})
    kept = np.asarray(out[BOX_LABEL_FIELD], dtype=np.int64).reshape(-1)
    moved = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4)[:, :4]
    order = np.argsort(kept, kind="stable")
    moved = clip(moved[order], w, h).astype(np.float32)
    result = np.ascontiguousarray(out["image"], dtype=np.uint8).reshape(h, w)
    return result, moved, len(src) - len(moved)
