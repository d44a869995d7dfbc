"""Built-in synthetic data: MRI-like axial brain slices with tumour boxes.

The generator draws 2D slices that look roughly like T1 post-contrast MRI: a dark
background, a bright scalp ring with a dark bone line, a thin CSF gap, brain tissue with
grey/white texture and sulci, lateral ventricles, a midline fissure, a few small bright
vessels, a faint normal pituitary gland, an intensity bias field and Rician noise. The
head's size, position, shape and rotation, the contrast, brightness and noise are random.

The four classes differ in the tumour's typical location, shape and intensity:

============  ==========================================================================
class         tumour
============  ==========================================================================
glioma        irregular, heterogeneous mass inside the brain: a bright ring around a dark
              (necrotic) core, or a darker patchy mass
meningioma    bright, homogeneous, well-defined blob based on the dura: it touches the
              brain edge and is flattened against the inner table of the skull
no_tumor      none (the image still has the vessels and the normal pituitary gland)
pituitary     small bright roundish blob at the skull base midline (the sella, lower
              centre of the head), larger and brighter than the normal gland
============  ==========================================================================

Every tumour has an exact pixel mask; its box is the tight box of that mask (xyxy pixels,
``x2 = last column + 1``). :func:`generate` writes the slices in the layout of the Kaggle
"MRI for Brain Tumor with Bounding Boxes" set, which mtbrain's normal readers read::

    <out>/<Split>/<Folder>/images/<name>.jpg
    <out>/<Split>/<Folder>/labels/<name>.txt      # YOLO: "cls cx cy w h", 6 decimals

with folders ``Glioma`` (id 0), ``Meningioma`` (1), ``No Tumor`` (2) and ``Pituitary`` (3).
As in the real set, a ``No Tumor`` image carries one class-2 box around the whole head.

Everything is deterministic: each image is drawn from its own random stream, seeded by
``(seed, class, index)`` (:func:`sample_rng`), so the same arguments give byte-identical
files and the first images do not change when more are asked for. Image sizes and file
modes (options ``sizes`` and ``modes``) are drawn from streams that do not depend on the
class, so, unlike in the real set, they say nothing about it.
"""

from __future__ import annotations

import io
import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mtbrain.classes import CANONICAL_CLASSES, NO_TUMOR
from mtbrain.data.boxes import convert
from mtbrain.data.image_io import is_image_name, read_gray
from mtbrain.io import atomic_write, write_text

CLASS_FOLDERS: dict[str, str] = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "no_tumor": "No Tumor",
    "pituitary": "Pituitary",
}
"""Folder name of each canonical class in the Kaggle box layout."""

CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CANONICAL_CLASSES)}
"""YOLO class id of each canonical class (glioma 0, meningioma 1, no_tumor 2, pituitary 3)."""

FILE_MODES: tuple[str, ...] = ("L-jpeg", "RGB-jpeg", "L-png-as-jpg", "P-png", "I16-png", "RGBA-png")
"""File modes written with ``generate(..., modes=True)``, in turn by image index:
8-bit grey JPEG, RGB JPEG, grey PNG bytes under a ``.jpg`` name, palette PNG, 16-bit grey
PNG and RGBA PNG (opaque). Without ``modes`` every image is an 8-bit grey JPEG."""

MIN_SIZE = 32
"""Smallest image side the generator draws (smaller heads lose their tumours)."""

_PREFIX = {"glioma": "gl", "meningioma": "me", "no_tumor": "no", "pituitary": "pi"}
# Independent random streams (the last word of each seed sequence).
_STREAM_IMAGE, _STREAM_SIZE, _STREAM_DUPLICATES = 1, 2, 3

# Radii of the head's layers, in units of the outer head ellipse.
_R_SCALP, _R_BONE, _R_CSF, _R_BRAIN = 1.0, 0.93, 0.89, 0.86
# Intensity levels in [0, 1] before contrast, bias and noise (T1 post-contrast look).
_LEVEL = {"scalp": 0.82, "bone": 0.07, "csf": 0.11, "grey": 0.40, "white": 0.52}


@dataclass(frozen=True)
class SyntheticSlice:
    """One synthetic slice and its ground truth.

    Attributes:
        image: ``H x W`` uint8 grey image.
        label: Canonical class name.
        tumour_box: Tight box of ``tumour_mask``, float64 ``(4,)`` xyxy pixels (``x2`` and
            ``y2`` are one past the last tumour column and row); ``None`` for ``no_tumor``.
        brain_box: Tight box of the whole head (everything inside the outer scalp edge),
            same format; the box a ``No Tumor`` label file carries.
        tumour_mask: ``H x W`` bool mask of the tumour, or ``None`` for ``no_tumor``.
    """

    image: np.ndarray
    label: str
    tumour_box: np.ndarray | None
    brain_box: np.ndarray
    tumour_mask: np.ndarray | None

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def label_box(self) -> tuple[int, np.ndarray]:
        """``(class_id, xyxy box)`` of the line in the label file (brain box for no_tumor)."""
        box = self.brain_box if self.tumour_box is None else self.tumour_box
        return CLASS_IDS[self.label], box


def sample_rng(seed: int, label: str, index: int) -> np.random.Generator:
    """The random stream :func:`generate` draws image ``index`` of class ``label`` from.

    ``render_slice(label, sample_rng(seed, label, i), size=...)`` re-creates the slice of
    file ``syn-<cls>_<i>`` of a data set generated with ``seed``.
    """
    _check_label(label)
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng([seed, CLASS_IDS[label], index, _STREAM_IMAGE])


def render_slice(label: str, rng: np.random.Generator, *,
                 size: int | tuple[int, int] = 256) -> SyntheticSlice:
    """Draw one MRI-like axial slice of class ``label``.

    Args:
        label: Canonical class name (``glioma``, ``meningioma``, ``no_tumor``, ``pituitary``).
        rng: Random stream; the same stream state gives the same slice.
        size: Image side (square), or ``(width, height)``; each side at least ``MIN_SIZE``.

    Returns:
        The slice with its tumour mask, tumour box and head box.

    Raises:
        ValueError: For an unknown label or a size that is too small.
    """
    _check_label(label)
    width, height = _parse_size(size)
    canvas = _Canvas.draw(rng, width, height)
    head = _anatomy(rng, canvas)
    mask = None
    if label != NO_TUMOR:
        mask = np.zeros((height, width), dtype=bool)
        mask[canvas.crop] = _add_tumour(rng, head, label, canvas)
    img = _acquisition(rng, head, canvas)
    tumour_box = _tight_box(mask) if mask is not None else None
    head_box = _tight_box(canvas.rr < _R_SCALP) + [canvas.left, canvas.top] * 2
    return SyntheticSlice(img, label, tumour_box, head_box, mask)


# --------------------------------------------------------------------------- geometry


def _check_label(label: str) -> None:
    if label not in CLASS_IDS:
        raise ValueError(f"unknown class {label!r}; expected one of {list(CANONICAL_CLASSES)}")


def _parse_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        width = height = int(size)
    else:
        try:
            width, height = (int(s) for s in size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be an int or (width, height), got {size!r}") from None
    if min(width, height) < MIN_SIZE:
        raise ValueError(f"image sides must be at least {MIN_SIZE} px, got {width}x{height}")
    return width, height


@dataclass(frozen=True)
class _Canvas:
    """The pixels around the head, in head coordinates.

    The head is drawn in a crop of the image (its box plus a margin) that starts at
    pixel ``(left, top)``; ``u``, ``v`` and ``rr`` have the crop's shape. ``u`` points
    right and ``v`` down in the head's own (rotated) frame, in units of the outer head
    ellipse's semi-axes ``ax`` and ``ay`` (pixels), centred at image pixel ``(cx, cy)``.
    ``rr`` is the radius with the head's slightly wavy outline divided out, so every
    layer of the head is a band of ``rr``. Windows (:meth:`window`) are crop-relative.
    """

    width: int
    height: int
    left: int
    top: int
    cx: float
    cy: float
    ax: float
    ay: float
    theta: float
    u: np.ndarray
    v: np.ndarray
    rr: np.ndarray

    @property
    def crop(self) -> tuple[slice, slice]:
        """Rows and columns of the image that the crop covers."""
        h, w = self.u.shape
        return slice(self.top, self.top + h), slice(self.left, self.left + w)

    @classmethod
    def draw(cls, rng: np.random.Generator, width: int, height: int) -> _Canvas:
        """A random head (taller than wide) that fits inside the image with a margin."""
        ay = rng.uniform(0.40, 0.47) * height
        ax = ay * rng.uniform(0.78, 0.90)
        theta = math.radians(rng.uniform(-12.0, 12.0))
        c, s = math.cos(theta), math.sin(theta)
        ex, ey = math.hypot(ax * c, ay * s), math.hypot(ax * s, ay * c)  # half extents
        fit = min(1.0, 0.47 * width / ex, 0.47 * height / ey)
        ax, ay, ex, ey = ax * fit, ay * fit, ex * fit, ey * fit
        cx = width / 2 + rng.uniform(-0.5, 0.5) * max(0.0, width - 2 * ex - 4)
        cy = height / 2 + rng.uniform(-0.5, 0.5) * max(0.0, height - 2 * ey - 4)
        # the crop: the head's box, 5 % larger for the wavy outline, plus 2 pixels
        left, top = max(0, math.floor(cx - 1.05 * ex - 2)), max(0, math.floor(cy - 1.05 * ey - 2))
        right = min(width, math.ceil(cx + 1.05 * ex + 2))
        bottom = min(height, math.ceil(cy + 1.05 * ey + 2))
        x = np.arange(left, right, dtype=np.float32) + np.float32(0.5 - cx)
        y = np.arange(top, bottom, dtype=np.float32)[:, None] + np.float32(0.5 - cy)
        u = (x * np.float32(c / ax)) + (y * np.float32(s / ax))
        v = (x * np.float32(-s / ay)) + (y * np.float32(c / ay))
        # the wavy outline (at most 3.6 %) is smooth: draw it coarse and resize it up
        coarse = (slice(2, None, 4), slice(2, None, 4))
        wobble = 1.0 + _harmonics(rng, np.arctan2(v[coarse], u[coarse]), orders=(2, 3, 4),
                                  amplitude=0.012)
        wobble = cv2.resize(wobble, (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
        return cls(width, height, left, top, cx, cy, ax, ay, theta, u, v,
                   np.hypot(u, v) / wobble)

    @property
    def px(self) -> float:
        """One pixel in head units (along the shorter semi-axis)."""
        return 1.0 / min(self.ax, self.ay)

    @property
    def side(self) -> float:
        """Side of the square image this head would fill (texture scales follow it)."""
        return 2.4 * min(self.ax, self.ay)

    def window(self, cu: float, cv: float, radius: float) -> tuple[slice, slice]:
        """Pixel rows and columns that hold a disc of ``radius`` head units at ``(cu, cv)``."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        xu, yv = cu * self.ax, cv * self.ay
        x = self.cx + xu * c - yv * s - self.left
        y = self.cy + xu * s + yv * c - self.top
        r = radius * max(self.ax, self.ay) + 2
        h, w = self.u.shape
        rows = slice(max(0, math.floor(y - r)), max(0, min(h, math.ceil(y + r) + 1)))
        cols = slice(max(0, math.floor(x - r)), max(0, min(w, math.ceil(x + r) + 1)))
        return rows, cols


def _harmonics(rng: np.random.Generator, angle: np.ndarray, *, orders: tuple[int, ...],
               amplitude: float) -> np.ndarray:
    """A smooth random function of the angle: a sum of a few cosines."""
    out = np.zeros_like(angle)
    for k in orders:
        out += np.float32(rng.uniform(0.3, 1.0) * amplitude) * np.cos(
            np.float32(k) * angle + np.float32(rng.uniform(0, 2 * np.pi)))
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise (float32) with unit standard deviation.

    Large blurs are drawn on a coarser grid and resized up (same look, much faster).
    """
    h, w = shape
    step = max(1, int(sigma // 1.5))
    sh, sw = max(4, -(-h // step)), max(4, -(-w // step))
    field = rng.standard_normal((sh, sw), dtype=np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigma / step, borderType=cv2.BORDER_REFLECT)
    std = float(field.std())
    if std > 0:
        field *= np.float32(1.0 / std)
    if (sh, sw) != (h, w):
        field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    return field


def _inside(distance: np.ndarray, px: float) -> np.ndarray:
    """Anti-aliased indicator of ``distance > 0`` (distance in head units, edge ``px`` wide)."""
    return np.clip(np.float32(0.5) + distance * np.float32(1.0 / px), 0.0, 1.0)


def _blend(img: np.ndarray, alpha: np.ndarray, value: np.ndarray | float) -> None:
    """``img = img * (1 - alpha) + value * alpha``, in place."""
    img += alpha * (value - img)


def _ellipse_depth(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float,
                   tilt: float) -> np.ndarray:
    """Approximate signed depth inside an ellipse (head units; > 0 inside)."""
    c, s = math.cos(tilt), math.sin(tilt)
    du, dv = u - np.float32(cu), v - np.float32(cv)
    p = (du * np.float32(c) + dv * np.float32(s)) * np.float32(1 / au)
    q = (dv * np.float32(c) - du * np.float32(s)) * np.float32(1 / av)
    return (1.0 - np.hypot(p, q)) * np.float32(min(au, av))


def _paint_ellipse(img: np.ndarray, cv_: _Canvas, cu: float, cv: float, au: float, av: float,
                   tilt: float, value: float) -> None:
    """Blend a small filled ellipse into ``img`` (computed in its window only)."""
    rows, cols = cv_.window(cu, cv, max(au, av))
    depth = _ellipse_depth(cv_.u[rows, cols], cv_.v[rows, cols], cu, cv, au, av, tilt)
    _blend(img[rows, cols], _inside(depth, cv_.px), value)


# --------------------------------------------------------------------------- anatomy

_SELLA_V = 0.52  # the sella (skull base midline) in head units, lower centre


def _anatomy(rng: np.random.Generator, cv_: _Canvas) -> np.ndarray:
    """The normal head, intensities in [0, 1]."""
    u, v, rr, px, side = cv_.u, cv_.v, cv_.rr, cv_.px, cv_.side
    shape = u.shape
    # scalp (bright, fading outwards), bone (dark), CSF gap
    # one radial profile: CSF gap, bone (dark), scalp (bright, fading outwards), air;
    # each step a ramp one pixel wide (anti-aliased)
    h = min(px / 2, 0.015)
    radii = [_R_CSF - h, _R_CSF + h, _R_BONE - h, _R_BONE + h, _R_SCALP - h, _R_SCALP + h]
    levels = [_LEVEL["csf"], _LEVEL["bone"], _LEVEL["bone"], _LEVEL["scalp"],
              0.8 * _LEVEL["scalp"], 0.0]
    img = np.interp(rr, radii, levels).astype(np.float32)

    # brain: white matter inside, a grey ribbon of varying depth at the edge, deep grey
    # nuclei, sulci near the surface
    depth = _R_BRAIN - rr
    ribbon = 0.07 + 0.025 * _smooth_noise(rng, shape, 0.03 * side)
    white = _inside(depth - ribbon, 2 * px)
    deep_grey = 0.6 * _inside(_smooth_noise(rng, shape, 0.05 * side) - 1.4, 12 * px)
    tissue = _LEVEL["grey"] + (_LEVEL["white"] - _LEVEL["grey"]) * white * (1 - deep_grey)
    tissue += 0.025 * _smooth_noise(rng, shape, 0.012 * side)
    gyri = np.abs(_smooth_noise(rng, shape, 0.018 * side))
    sulcus = 0.75 * np.clip(1.0 - gyri / 0.25, 0, 1) * np.clip(1.3 - depth / 0.14, 0, 1)
    _blend(tissue, sulcus, _LEVEL["csf"])
    _blend(img, _inside(depth, px), tissue)

    # midline fissure, front and back
    fissure = np.where((v < -0.30) | (v > 0.50), 0.006 - np.abs(u), -1.0)
    _blend(img, _inside(fissure, px) * _inside(depth, px), _LEVEL["csf"])

    # lateral ventricles (two crescents, frontal horns diverging) and the third ventricle
    vsize = rng.uniform(0.6, 1.3)
    spread = rng.uniform(0.08, 0.12)
    vy = rng.uniform(-0.08, 0.02)
    rows, cols = cv_.window(0.0, vy, 0.32 * vsize)
    uw, vw = u[rows, cols], v[rows, cols]
    for side_sign in (-1.0, 1.0):
        tilt = math.radians(-side_sign * rng.uniform(8, 18))
        outer = _ellipse_depth(uw, vw, side_sign * spread * vsize, vy,
                               0.06 * vsize, 0.24 * vsize, tilt)
        bite = _ellipse_depth(uw, vw, side_sign * (spread + 0.05) * vsize, vy - 0.02,
                              0.05 * vsize, 0.11 * vsize, tilt)  # caudate head
        _blend(img[rows, cols], _inside(np.minimum(outer, -bite), px), _LEVEL["csf"])
    _paint_ellipse(img, cv_, 0.0, vy + 0.24 * vsize, 0.012, 0.07 * vsize, 0.0, _LEVEL["csf"])

    # normal pituitary gland at the sella, and a few small bright vessels (every class)
    _paint_ellipse(img, cv_, rng.normal(0, 0.01), _SELLA_V, 0.025, 0.02, 0.0,
                   _LEVEL["white"] + 0.08)
    for _ in range(int(rng.integers(1, 5))):
        r, a = 0.8 * math.sqrt(rng.uniform(0.05, 1)), rng.uniform(0, 2 * np.pi)
        radius = max(rng.uniform(0.008, 0.015), 0.8 * px)
        _paint_ellipse(img, cv_, r * math.cos(a), r * math.sin(a), radius, radius, 0.0,
                       _LEVEL["white"] + rng.uniform(0.10, 0.20))
    return img


# --------------------------------------------------------------------------- tumours


@dataclass(frozen=True)
class _Tumour:
    """A tumour drawn in a window of the image: signed depth (> 0 inside) and intensity."""

    rows: slice
    cols: slice
    depth: np.ndarray
    value: np.ndarray


def _add_tumour(rng: np.random.Generator, img: np.ndarray, label: str,
                cv_: _Canvas) -> np.ndarray:
    """Paint the tumour of ``label`` into ``img`` and return its mask (never empty)."""
    draw = {"glioma": _glioma, "meningioma": _meningioma, "pituitary": _pituitary}[label]
    for _ in range(100):
        t = draw(rng, cv_)
        inside = t.depth > 0
        if inside.sum() >= 4:
            break
    else:  # pragma: no cover - sizes >= MIN_SIZE always give a tumour of a few pixels
        raise RuntimeError(f"could not place a {label} tumour in a {img.shape[1]}x"
                           f"{img.shape[0]} image")
    # soft edge inside the mask only: pixels outside the mask keep the normal anatomy
    alpha = np.where(inside, np.clip(t.depth / (1.5 * cv_.px), 0.35, 1.0), 0.0)
    _blend(img[t.rows, t.cols], alpha.astype(np.float32), t.value)
    mask = np.zeros(img.shape, dtype=bool)
    mask[t.rows, t.cols] = inside
    return mask


def _blob(rng: np.random.Generator, cv_: _Canvas, cu: float, cv: float, radius: float, *,
          elong: float, irregular: float) -> tuple[slice, slice, np.ndarray]:
    """Window and signed depth (head units) of a roundish blob with a wavy outline."""
    rows, cols = cv_.window(cu, cv, radius * max(elong, 1 / elong) * (1 + 4 * irregular))
    tilt = rng.uniform(0, np.pi)
    c, s = math.cos(tilt), math.sin(tilt)
    du, dv = cv_.u[rows, cols] - np.float32(cu), cv_.v[rows, cols] - np.float32(cv)
    p = (du * np.float32(c) + dv * np.float32(s)) * np.float32(1 / (radius * elong))
    q = (dv * np.float32(c) - du * np.float32(s)) * np.float32(elong / radius)
    outline = 1.0 + _harmonics(rng, np.arctan2(q, p), orders=(2, 3, 4, 5), amplitude=irregular)
    return rows, cols, (outline - np.hypot(p, q)) * np.float32(radius)


def _glioma(rng: np.random.Generator, cv_: _Canvas) -> _Tumour:
    """Irregular heterogeneous mass inside the brain: ring-enhancing or dark and patchy."""
    radius = max(rng.uniform(0.09, 0.26), 3 * cv_.px)
    dist, ang = rng.uniform(0.10, 0.62 - 0.5 * radius), rng.uniform(0, 2 * np.pi)
    rows, cols, depth = _blob(rng, cv_, dist * math.cos(ang), dist * math.sin(ang), radius,
                              elong=rng.uniform(0.8, 1.25), irregular=0.16)
    shape = depth.shape
    side = cv_.side
    depth += np.float32(0.05 * radius) * _smooth_noise(rng, shape, max(1.0, 0.01 * side))
    depth = np.minimum(depth, _R_BRAIN - 0.02 - cv_.rr[rows, cols])
    rel = np.clip(depth / np.float32(radius), 0, 1)  # 0 at the edge, ~1 at the centre
    texture = _smooth_noise(rng, shape, max(1.0, 0.008 * side))
    if rng.uniform() < 0.6:  # bright irregular rim around a dark necrotic core
        rim = rng.uniform(0.25, 0.45)
        core = np.clip((rel - rim) / 0.08, 0, 1)
        value = (rng.uniform(0.70, 0.85) * (1 - core) + rng.uniform(0.10, 0.22) * core
                 + 0.07 * texture)
    else:  # darker heterogeneous mass with a few brighter patches
        patches = np.clip(_smooth_noise(rng, shape, max(1.0, 0.015 * side)) - 0.8, 0, 1)
        value = rng.uniform(0.20, 0.30) + 0.08 * texture + 0.45 * patches
    return _Tumour(rows, cols, depth, value.astype(np.float32))


def _meningioma(rng: np.random.Generator, cv_: _Canvas) -> _Tumour:
    """Bright homogeneous blob on the dura, flattened against the skull's inner table."""
    radius = max(rng.uniform(0.08, 0.24), 3 * cv_.px)
    ang = rng.uniform(math.radians(125), math.radians(415))  # anywhere but the skull base
    dist = _R_BRAIN - radius * rng.uniform(0.25, 0.7)
    rows, cols, depth = _blob(rng, cv_, dist * math.cos(ang), dist * math.sin(ang), radius,
                              elong=rng.uniform(0.85, 1.2), irregular=0.03)
    depth = np.minimum(depth, _R_CSF - cv_.rr[rows, cols])
    texture = _smooth_noise(rng, depth.shape, max(1.0, 0.01 * cv_.side))
    value = rng.uniform(0.76, 0.92) + 0.025 * texture
    return _Tumour(rows, cols, depth, value.astype(np.float32))


def _pituitary(rng: np.random.Generator, cv_: _Canvas) -> _Tumour:
    """Small bright roundish blob at the sella (lower centre, midline)."""
    radius = max(rng.uniform(0.045, 0.10), 2 * cv_.px)
    cu, cv = rng.normal(0, 0.015), _SELLA_V - rng.uniform(0.0, 0.6) * radius
    rows, cols, depth = _blob(rng, cv_, cu, cv, radius, elong=rng.uniform(0.8, 1.1),
                              irregular=0.05)
    depth = np.minimum(depth, _R_BRAIN - cv_.rr[rows, cols])
    texture = _smooth_noise(rng, depth.shape, max(1.0, 0.008 * cv_.side))
    value = rng.uniform(0.80, 0.95) + 0.03 * texture
    return _Tumour(rows, cols, depth, value.astype(np.float32))


# --------------------------------------------------------------------------- acquisition


def _acquisition(rng: np.random.Generator, head: np.ndarray, cv_: _Canvas) -> np.ndarray:
    """Whole image from the head crop: bias field, gain, Rician noise, 8 bits, gamma."""
    u, v = cv_.u, cv_.v
    bias = (np.float32(rng.uniform(0.80, 1.15))
            + np.float32(rng.uniform(-0.12, 0.12)) * u
            + np.float32(rng.uniform(-0.12, 0.12)) * v
            + np.float32(rng.uniform(-0.06, 0.06)) * (u * u + v * v))
    signal = np.zeros((cv_.height, cv_.width), dtype=np.float32)
    signal[cv_.crop] = np.clip(head * bias, 0, None)
    sigma = np.float32(rng.uniform(0.008, 0.035))
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    out = np.clip(np.rint(np.hypot(real, imag) * 255.0), 0, 255).astype(np.uint8)
    gamma = rng.uniform(0.85, 1.2)  # display contrast, applied to the 8-bit levels
    lut = np.rint(255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)
    return lut[out]


def _tight_box(mask: np.ndarray) -> np.ndarray:
    """xyxy pixel box of the True pixels: first column/row, last column/row + 1."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


# --------------------------------------------------------------------------- files


def _encode(image: np.ndarray, mode: str, *, quality: int) -> tuple[bytes, str]:
    """Encode a grey image in one of :data:`FILE_MODES`; returns the bytes and the suffix."""
    buf = io.BytesIO()
    if mode == "L-jpeg":
        Image.fromarray(image, "L").save(buf, "JPEG", quality=quality)
        return buf.getvalue(), ".jpg"
    if mode == "RGB-jpeg":
        Image.fromarray(np.dstack([image] * 3), "RGB").save(buf, "JPEG", quality=quality)
        return buf.getvalue(), ".jpg"
    if mode == "L-png-as-jpg":
        Image.fromarray(image, "L").save(buf, "PNG")
        return buf.getvalue(), ".jpg"
    if mode == "P-png":
        pal = Image.frombytes("P", (image.shape[1], image.shape[0]), image.tobytes())
        pal.putpalette(np.repeat(np.arange(256, dtype=np.uint8), 3).tobytes())  # grey palette
        pal.save(buf, "PNG")
        return buf.getvalue(), ".png"
    if mode == "I16-png":
        Image.fromarray(image.astype(np.uint16) * 257).save(buf, "PNG")
        return buf.getvalue(), ".png"
    if mode == "RGBA-png":
        alpha = np.full_like(image, 255)
        Image.fromarray(np.dstack([image, image, image, alpha]), "RGBA").save(buf, "PNG")
        return buf.getvalue(), ".png"
    raise ValueError(f"unknown file mode {mode!r}; known: {FILE_MODES}")


def _label_line(class_id: int, box: np.ndarray, width: int, height: int) -> str:
    cx, cy, w, h = convert(box, "xyxy", "cxcywh_n", width=width, height=height)[0]
    return f"{class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"


def _split_counts(n: int, splits: Mapping[str, float]) -> list[tuple[str, int]]:
    """Share ``n`` between the splits in proportion (largest remainders, ties in order)."""
    if not splits:
        raise ValueError("splits must name at least one split")
    for name, frac in splits.items():
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"bad split folder name {name!r}")
        if not (isinstance(frac, (int, float)) and math.isfinite(frac) and frac > 0):
            raise ValueError(f"split fraction of {name!r} must be a positive number, got {frac!r}")
    total = float(sum(splits.values()))
    exact = [(name, n * frac / total) for name, frac in splits.items()]
    counts = {name: math.floor(x) for name, x in exact}
    order = sorted(range(len(exact)), key=lambda i: -(exact[i][1] - math.floor(exact[i][1])))
    for i in order[: n - sum(counts.values())]:
        counts[exact[i][0]] += 1
    return [(name, counts[name]) for name in splits]


def _image_size(seed: int, index: int, size: int | tuple[int, int],
                sizes: tuple[int, int] | None) -> tuple[int, int]:
    """Size of image ``index``: fixed, or random width and height from a class-free stream."""
    if sizes is None:
        return _parse_size(size)
    rng = np.random.default_rng([seed, index, _STREAM_SIZE])
    lo, hi = sizes
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def _check_generate_args(n_per_class: int, seed: int, jpeg_quality: int,
                         sizes: tuple[int, int] | None) -> None:
    if n_per_class < 0:
        raise ValueError(f"n_per_class must be >= 0, got {n_per_class}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if sizes is not None and (len(sizes) != 2 or not MIN_SIZE <= sizes[0] <= sizes[1]):
        raise ValueError(f"sizes must be (min, max) with {MIN_SIZE} <= min <= max, got {sizes}")


def _is_nonempty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def generate(out: str | Path, *, n_per_class: int = 50, splits: Mapping[str, float] | None = None,
             size: int | tuple[int, int] = 256, sizes: tuple[int, int] | None = None,
             seed: int = 0, jpeg_quality: int = 95, modes: bool = False,
             overwrite: bool = False) -> Path:
    """Write a synthetic data set in the Kaggle box layout and return its root (``out``).

    Image ``i`` of a class is ``<out>/<Split>/<Folder>/images/syn-<cls>_<i:04d>.jpg``
    (``.png`` for the PNG file modes) with its label file under ``labels/``. Indices run
    over the splits in the order given, so names are unique in the whole set.

    The set is written into a hidden temporary folder next to ``out`` and renamed to
    ``out`` at the end: an interrupted run leaves no half-written set behind.

    Args:
        out: Folder to create (absent or empty, unless ``overwrite``).
        n_per_class: Images per class, over all splits.
        splits: Split folder name -> fraction (normalised to sum 1); each class is shared
            between the splits in proportion. Default ``{"Train": 1.0}``.
        size: Image side, or ``(width, height)``, when ``sizes`` is not given.
        sizes: ``(min, max)``: every image gets a random width and height in that range
            (independent of its class; every class gets the same list of sizes).
        seed: Seed of the whole set (>= 0); same arguments give byte-identical files.
        jpeg_quality: Quality of the JPEG files.
        modes: Write the images in the modes of :data:`FILE_MODES` in turn (index modulo 6)
            instead of all as 8-bit grey JPEG, to exercise the readers.
        overwrite: Replace ``out`` when it exists and is not empty.

    Returns:
        The data set root, ``out``.

    Raises:
        FileExistsError: ``out`` exists, is not empty (or not a folder) and not ``overwrite``.
        ValueError: For a bad option.
    """
    _check_generate_args(n_per_class, seed, jpeg_quality, sizes)
    if sizes is None:
        _parse_size(size)
    shares = _split_counts(n_per_class, {"Train": 1.0} if splits is None else splits)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if _is_nonempty(out) and not overwrite:
        raise FileExistsError(f"{out}: folder is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        for label in CANONICAL_CLASSES:
            index = 0
            for split, count in shares:
                folder = tmp / split / CLASS_FOLDERS[label]
                for _ in range(count):
                    _write_sample(folder, label, index, seed=seed, size=size, sizes=sizes,
                                  quality=jpeg_quality, modes=modes)
                    index += 1
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_sample(folder: Path, label: str, index: int, *, seed: int,
                  size: int | tuple[int, int], sizes: tuple[int, int] | None, quality: int,
                  modes: bool) -> None:
    width, height = _image_size(seed, index, size, sizes)
    sl = render_slice(label, sample_rng(seed, label, index), size=(width, height))
    mode = FILE_MODES[index % len(FILE_MODES)] if modes else "L-jpeg"
    data, suffix = _encode(sl.image, mode, quality=quality)
    stem = f"syn-{_PREFIX[label]}_{index:04d}"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    (folder / "images" / f"{stem}{suffix}").write_bytes(data)
    class_id, box = sl.label_box
    (folder / "labels" / f"{stem}.txt").write_text(_label_line(class_id, box, width, height),
                                                   encoding="utf-8")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` tree to ``out``, replacing what is there."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        tmp.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    old.rmdir()
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- duplicates


def _free_name(folder: Path, stem: str, suffix: str) -> Path:
    path, n = folder / f"{stem}{suffix}", 1
    while path.exists():
        path, n = folder / f"{stem}-{n}{suffix}", n + 1
    return path


def plant_duplicates(root: str | Path, *, n_exact: int, n_near: int,
                     seed: int = 0) -> list[tuple[str, str]]:
    """Add exact and near duplicates of random images of a box-layout set, in place.

    An exact duplicate is a byte-identical copy under the name ``<stem>_copy<suffix>``; a
    near duplicate ``<stem>_near.jpg`` is the image resized by a factor in 0.7-0.9 and
    re-encoded as JPEG at quality 60-85. Each copy gets a copy of the original's label
    file (normalised boxes stay right after a resize). Names that are taken get ``-1``,
    ``-2``... Originals are distinct images that were there before the call.

    Args:
        root: Root of a set in the Kaggle box layout (e.g. written by :func:`generate`).
        n_exact: Number of byte-identical copies.
        n_near: Number of near duplicates.
        seed: Seed of the choice of images, factors and qualities.

    Returns:
        ``(original, copy)`` pairs of image paths relative to ``root`` (``/``-separated),
        exact copies first.

    Raises:
        ValueError: For negative counts, or more duplicates than images.
    """
    root = Path(root)
    if n_exact < 0 or n_near < 0:
        raise ValueError(f"n_exact and n_near must be >= 0, got {n_exact}, {n_near}")
    images = sorted(p for p in root.rglob("*")
                    if p.parent.name == "images" and is_image_name(p) and p.is_file())
    if n_exact + n_near > len(images):
        raise ValueError(f"{root}: asked for {n_exact + n_near} duplicates of "
                         f"{len(images)} images")
    rng = np.random.default_rng([seed, _STREAM_DUPLICATES])
    chosen = rng.choice(len(images), size=n_exact + n_near, replace=False)
    pairs: list[tuple[str, str]] = []
    for k, i in enumerate(chosen):
        src = images[int(i)]
        if k < n_exact:
            dst = _free_name(src.parent, f"{src.stem}_copy", src.suffix)
            atomic_write(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))
        else:
            gray = read_gray(src)
            factor = rng.uniform(0.7, 0.9)
            new_size = (max(1, round(gray.shape[1] * factor)), max(1, round(gray.shape[0] * factor)))
            small = Image.fromarray(gray, "L").resize(new_size, Image.Resampling.BILINEAR)
            quality = int(rng.integers(60, 86))
            dst = _free_name(src.parent, f"{src.stem}_near", ".jpg")
            atomic_write(dst, lambda tmp, im=small, q=quality: im.save(tmp, "JPEG", quality=q))
        label_src = src.parent.parent / "labels" / f"{src.stem}.txt"
        if label_src.is_file():
            write_text(label_src.parent / f"{dst.stem}.txt", label_src.read_text(encoding="utf-8"))
        pairs.append((src.relative_to(root).as_posix(), dst.relative_to(root).as_posix()))
    return pairs
