"""Boxes drawn on images, and grids of annotated images: see what the model sees.

Everything here is a pure function of its arguments (no files written): :func:`draw_boxes`
draws xyxy pixel boxes with optional labels on one image; :func:`grid` picks samples of a
data set and lays them out as a picture with ground-truth boxes, the other annotated
boxes and the predicted box on each, a caption under each and a legend on top.

Colours come from the Okabe-Ito palette, which stays distinguishable with the common
colour-vision deficiencies; every colour also has a second cue (solid, dashed, text), so
nothing relies on colour alone:

=====================  ==============  ==================================================
constant               colour          role
=====================  ==============  ==================================================
:data:`GT_COLOR`       bluish green    ground-truth tumour boxes (solid)
:data:`PRED_COLOR`     orange          the predicted box and its label
:data:`WRONG_COLOR`    vermillion      a wrong prediction (label background, caption)
:data:`OTHER_COLOR`    light grey      annotated boxes that are not tumour boxes (dashed),
                                       e.g. the whole-brain box of "No Tumor" images
=====================  ==============  ==================================================

Box coordinates are **xyxy pixels of the image drawn on** (``x2``/``y2`` exclusive edges,
as everywhere in mtbrain, see :mod:`mtbrain.data.boxes`); :func:`draw_boxes` puts the
outline exactly on the rounded coordinates, growing inwards with the line width.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from mtbrain.data.boxes import Letterbox, iou_matrix

if TYPE_CHECKING:
    from mtbrain.data.records import Sample

Color = str | tuple[int, int, int]
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (inclusive), as PIL draws them

GT_COLOR: str = "#009E73"  # Okabe-Ito bluish green
PRED_COLOR: str = "#E69F00"  # Okabe-Ito orange
WRONG_COLOR: str = "#D55E00"  # Okabe-Ito vermillion
OTHER_COLOR: str = "#BBBBBB"  # neutral light grey
BACKGROUND: str = "#FFFFFF"  # figure background (legend, captions, gaps)
TEXT_COLOR: str = "#000000"
UNREADABLE_BG: str = "#3A3A3A"

IOU_OK: float = 0.5  # a predicted box with IoU below this (with the best true box) is an error
GAP: int = 6  # pixels between tiles and around the grid


# --------------------------------------------------------------------------- helpers


def _rgb(color: Color) -> tuple[int, int, int]:
    if isinstance(color, str):
        rgb = ImageColor.getrgb(color)
        return (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    if len(color) != 3:
        raise ValueError(f"a colour is a name, '#rrggbb' or (r, g, b), got {color!r}")
    return (int(color[0]), int(color[1]), int(color[2]))


def _is_color(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, tuple) and len(value) == 3 and all(isinstance(v, int) for v in value)
    )


def text_color_on(background: Color) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``background`` (WCAG luminance)."""

    def lin(c: int) -> float:
        v = c / 255.0
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = _rgb(background)
    lum = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    # contrast with black (lum + .05) / .05 vs with white 1.05 / (lum + .05)
    return (0, 0, 0) if (lum + 0.05) ** 2 > 0.05 * 1.05 else (255, 255, 255)


def default_line_width(height: int, width: int) -> int:
    """Box line width for an image of this size: 2 px at 256, 3 at 512, 6 at 1024."""
    return max(1, round(max(height, width) / 160))


def default_font_size(height: int, width: int) -> int:
    """Label font size (pixels) for an image of this size: 12 at 256, 23 at 512."""
    return max(9, round(min(height, width) / 22))


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font
    except (TypeError, OSError, ImportError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return int(ascent + descent)
    return int(font.getbbox("Ag")[3])  # pragma: no cover


def _text_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> int:
    return int(math.ceil(font.getlength(text)))


def _fit_text(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str, max_width: int,
              *, keep: str = "start") -> str:
    """``text``, shortened with ``...`` (keeping its start or its end) to fit ``max_width``."""
    if _text_width(font, text) <= max_width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest kept part that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        cand = text[:mid] + "..." if keep == "start" else "..." + text[len(text) - mid:]
        if _text_width(font, cand) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "..." if keep == "start" else "..." + text[len(text) - lo:]


def _wrap(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str,
          max_width: int) -> list[str]:
    """Greedy word wrap; words longer than a line are cut."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        cand = f"{line} {word}" if line else word
        if _text_width(font, cand) <= max_width:
            line = cand
            continue
        if line:
            lines.append(line)
        while _text_width(font, word) > max_width and len(word) > 1:
            cut = len(word)
            while cut > 1 and _text_width(font, word[:cut]) > max_width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    return lines


def _overlaps(a: Rect, b: Rect) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def _overlap_area(a: Rect, b: Rect) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    return max(0, w) * max(0, h)


def _round(v: float) -> int:
    return int(math.floor(float(v) + 0.5))


def _as_boxes(boxes: Any) -> np.ndarray:
    arr = np.asarray(boxes if boxes is not None else [], dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    arr = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr.reshape(1, -1)
    if arr.shape[1] != 4:
        raise ValueError(f"boxes must be xyxy rows of 4 numbers, got shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------- canvas


class _Canvas:
    """An RGB image being drawn on, remembering where labels went so they do not overlap."""

    def __init__(self, image: Image.Image, *, line_width: int, font_size: int) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.line_width = line_width
        self.font = _font(font_size)
        self.pad = max(1, font_size // 6)
        self.labels: list[Rect] = []

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def box_rect(self, box: Sequence[float], *, where: str = "on",
                 width: int = 1) -> Rect | None:
        """The outline rectangle of an xyxy box, clipped to the image (None if off-image).

        ``where="on"``: on the rounded coordinates; ``"inside"``: on the box's first and
        last pixel rows and columns (``x2``, ``y2`` are exclusive edges); ``"outside"``: a
        ``width``-wide ring just around the box's pixels (for PIL's inward-growing lines).
        """
        w, h = self.size
        x0, y0, x1, y1 = (_round(v) for v in box)
        if where == "inside":
            x1, y1 = max(x0, x1 - 1), max(y0, y1 - 1)
        elif where == "outside":
            x0, y0, x1, y1 = x0 - width, y0 - width, x1 + width - 1, y1 + width - 1
        if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
            return None
        x0, x1 = max(0, x0), min(w - 1, x1)
        y0, y1 = max(0, y0), min(h - 1, y1)
        if x1 < x0 or y1 < y0:
            return None
        return (x0, y0, x1, y1)

    def rectangle(self, rect: Rect, color: Color, *, width: int, dashed: bool = False,
                  halo: bool = False) -> None:
        """Outline ``rect`` (growing inwards); ``halo`` adds a 1 px black line on both
        sides of a solid outline, so it stays visible on a bright or colourful picture."""
        if not dashed:
            if halo:
                x0, y0, x1, y1 = rect
                self.draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=(0, 0, 0),
                                    width=width + 2)
            self.draw.rectangle(rect, outline=_rgb(color), width=width)
            return
        x0, y0, x1, y1 = rect
        dash, gap = 3 * width + 3, 2 * width + 2
        fill = _rgb(color)
        for x in range(x0, x1 + 1, dash + gap):  # top and bottom edges
            xe = min(x + dash - 1, x1)
            self.draw.rectangle((x, y0, xe, min(y0 + width - 1, y1)), fill=fill)
            self.draw.rectangle((x, max(y1 - width + 1, y0), xe, y1), fill=fill)
        for y in range(y0, y1 + 1, dash + gap):  # left and right edges
            ye = min(y + dash - 1, y1)
            self.draw.rectangle((x0, y, min(x0 + width - 1, x1), ye), fill=fill)
            self.draw.rectangle((max(x1 - width + 1, x0), y, x1, ye), fill=fill)

    def label_size(self, text: str) -> tuple[str, int, int]:
        """The text (shortened to fit the image) and its label's width and height."""
        w, _ = self.size
        text = _fit_text(self.font, text, max(1, w - 2 * self.pad))
        return text, _text_width(self.font, text) + 2 * self.pad, (
            _line_height(self.font) + 2 * self.pad)

    def place(self, candidates: Sequence[tuple[int, int]], lw: int, lh: int, *,
              avoid: Sequence[Rect] = ()) -> Rect:
        """The first free, in-image spot among ``candidates`` (top-left corners).

        Free means covering no label drawn before; among free spots, the one covering the
        least of the boxes in ``avoid`` wins.
        When every candidate covers a label, the first is shifted down past the labels in
        the way (or up, when that leaves the image).
        """
        w, h = self.size

        def rect_at(x: int, y: int) -> Rect:
            x = min(max(0, x), max(0, w - lw))
            y = min(max(0, y), max(0, h - lh))
            return (x, y, x + lw - 1, y + lh - 1)

        def inside(y: int) -> bool:
            return y >= 0 and y + lh <= h

        rects = [rect_at(x, y) for x, y in candidates if inside(y)] or [
            rect_at(*candidates[0])]
        free = [r for r in rects if not any(_overlaps(r, o) for o in self.labels)]
        if free:  # the free spot covering the least of ``avoid`` (the first one on ties)
            return min(free, key=lambda r: sum(_overlap_area(r, o) for o in avoid))
        first = rects[0]
        for step in (1, -1):  # slide down past the labels in the way, then up
            r = first
            for _ in range(len(self.labels) + 1):
                hit = [o for o in self.labels if _overlaps(r, o)]
                if not hit:
                    return r
                y = max(o[3] for o in hit) + 1 if step > 0 else min(o[1] for o in hit) - lh
                if not inside(y):
                    break
                r = (r[0], y, r[2], y + lh - 1)
        return first

    def label(self, text: str, color: Color, *, near: Rect | None,
              avoid: Sequence[Rect] = ()) -> Rect:
        """Draw ``text`` on a filled ``color`` background by the box ``near`` (or a corner).

        Preferred spots: above the box (left-aligned, then right-aligned), below it, inside
        its top and bottom edges; spots covering the boxes in ``avoid`` come last.
        """
        text, lw, lh = self.label_size(text)
        if near is None:
            w, h = self.size
            candidates = [(0, 0), (w - lw, 0), (0, h - lh), (w - lw, h - lh)]
        else:
            x0, y0, x1, y1 = near
            right = x1 - lw + 1
            candidates = [(x0, y0 - lh), (right, y0 - lh), (x0, y1 + 1), (right, y1 + 1),
                          (x0, y0), (x0, y1 - lh + 1)]
        rect = self.place(candidates, lw, lh, avoid=avoid)
        self.draw.rectangle(rect, fill=_rgb(color))
        self.draw.text((rect[0] + self.pad, rect[1] + self.pad), text,
                       fill=text_color_on(color), font=self.font)
        self.labels.append(rect)
        return rect


def _canvas_from_array(image: np.ndarray) -> Image.Image:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(arr), "RGB")
    raise ValueError(f"image must be (H, W) grey or (H, W, 3) RGB, got shape {arr.shape}")


# --------------------------------------------------------------------------- draw_boxes


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray | Sequence[Sequence[float]],
    *,
    color: Color | Sequence[Color] = PRED_COLOR,
    labels: Sequence[str | None] | None = None,
    width: int | None = None,
    dashed: bool = False,
    font_size: int | None = None,
) -> np.ndarray:
    """Draw xyxy pixel boxes (and optional labels) on a copy of ``image``.

    Each outline lies exactly on the box's rounded coordinates (clipped to the image) and
    grows inwards with the line width, so the pixels just outside the box stay untouched.
    A label sits on a background of the box's colour, just above the box (inside it when
    there is no room above), kept inside the image and shifted so that it does not cover a
    label drawn before it.

    Args:
        image: ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 array; not modified.
        boxes: ``(N, 4)`` xyxy boxes in pixels of ``image``.
        color: One colour for all boxes, or one per box (a name, ``"#rrggbb"`` or
            ``(r, g, b)``).
        labels: One text per box (``None`` or ``""`` for no label), or ``None``.
        width: Line width in pixels; default :func:`default_line_width` of the image size.
        dashed: Draw dashed outlines (for boxes that are not the main subject).
        font_size: Label font size in pixels; default :func:`default_font_size`.

    Returns:
        The ``(H, W, 3)`` uint8 image with the boxes drawn.

    Raises:
        ValueError: for an image that is not uint8 grey/RGB, boxes that are not ``(N, 4)``,
            or a number of labels or colours different from the number of boxes.
    """
    pil = _canvas_from_array(image)
    arr = _as_boxes(boxes)
    h, w = pil.height, pil.width
    colors = [color] * len(arr) if _is_color(color) else list(color)  # type: ignore[arg-type]
    if len(colors) != len(arr):
        raise ValueError(f"{len(colors)} colours for {len(arr)} boxes")
    if labels is not None and len(labels) != len(arr):
        raise ValueError(f"{len(labels)} labels for {len(arr)} boxes")
    canvas = _Canvas(pil, line_width=width or default_line_width(h, w),
                     font_size=font_size or default_font_size(h, w))
    rects = [canvas.box_rect(b) for b in arr]
    for rect, c in zip(rects, colors, strict=True):
        if rect is not None:
            canvas.rectangle(rect, c, width=canvas.line_width, dashed=dashed)
    if labels is not None:
        for k, (rect, c, text) in enumerate(zip(rects, colors, labels, strict=True)):
            if text:
                others = [r for j, r in enumerate(rects) if j != k and r is not None]
                canvas.label(text, c, near=rect, avoid=others)
    return np.asarray(pil, dtype=np.uint8).copy()


# --------------------------------------------------------------------------- selection


def index_predictions(predictions: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Predictions records by their ``image`` name (the last record wins)."""
    return {str(p.get("image")): p for p in predictions}


def best_iou(sample: Sample, prediction: Mapping[str, Any]) -> float | None:
    """IoU of the predicted box with the best-matching true tumour box.

    ``None`` when the sample has no tumour box; 0 when no box was predicted.
    """
    if not sample.has_box:
        return None
    box = prediction.get("box")
    if box is None or prediction.get("error") is not None:
        return 0.0
    return float(iou_matrix(np.asarray([box], dtype=np.float64), sample.boxes).max())


def prediction_error(sample: Sample, prediction: Mapping[str, Any] | None) -> str | None:
    """Why ``prediction`` is wrong for ``sample`` (``None`` when it is right or unknown).

    Wrong means: the image could not be predicted, the predicted class differs from a known
    true class, or the best IoU of the predicted box with a true tumour box is below
    :data:`IOU_OK` (no box counts as IoU 0). Reasons: ``"wrong class"``, ``"no box"``,
    ``"low IoU 0.31"``, ``"prediction failed: <error>"`` (joined by ``", "``).
    """
    if prediction is None:
        return None
    if prediction.get("error") is not None:
        return f"prediction failed: {prediction['error']}"
    reasons = []
    if sample.label is not None and prediction.get("label") != sample.label:
        reasons.append("wrong class")
    iou = best_iou(sample, prediction)
    if iou is not None and iou < IOU_OK:
        reasons.append("no box" if prediction.get("box") is None
                       else f"low IoU {iou:.2f}")
    return ", ".join(reasons) or None


def candidate_order(samples: Iterable[Sample], *, classes: Sequence[str] | None = None,
                    seed: int = 0) -> list[Sample]:
    """All samples (of ``classes``, when given) in a class-balanced random order.

    Each class is shuffled (seeded), then the classes take turns, so the first ``n`` of the
    order hold every class as evenly as possible. Deterministic for a given ``seed``.
    """
    wanted = None if classes is None else set(classes)
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        if wanted is None or s.label in wanted:
            groups.setdefault("" if s.label is None else s.label, []).append(s)
    rng = np.random.default_rng(seed)
    shuffled = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda s: s.rel)
        shuffled.append([members[i] for i in rng.permutation(len(members))])
    order: list[Sample] = []
    for i in range(max((len(g) for g in shuffled), default=0)):
        order.extend(g[i] for g in shuffled if i < len(g))
    return order


def display_order(samples: Iterable[Sample]) -> list[Sample]:
    """Samples sorted for display: by class (unlabelled last), then by name."""
    return sorted(samples, key=lambda s: (s.label is None, s.label or "", s.rel))


def select_samples(
    samples: Iterable[Sample],
    *,
    predictions: Sequence[Mapping[str, Any]] | None = None,
    n: int = 16,
    classes: Sequence[str] | None = None,
    only_errors: bool = False,
    seed: int = 0,
) -> list[Sample]:
    """Pick up to ``n`` samples to show (see :func:`grid` for the rules), in display order."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if only_errors and predictions is None:
        raise ValueError("only_errors needs predictions")
    order = candidate_order(samples, classes=classes, seed=seed)
    if predictions is not None:
        by_image = index_predictions(predictions)
        order = [s for s in order if s.rel in by_image]
        if only_errors:
            order = [s for s in order if prediction_error(s, by_image[s.rel]) is not None]
    return display_order(order[:n])


# --------------------------------------------------------------------------- grid


def _fmt_prob(prediction: Mapping[str, Any]) -> str:
    probs = prediction.get("probs") or {}
    p = probs.get(prediction.get("label")) if isinstance(probs, Mapping) else None
    return f" {float(p):.2f}" if isinstance(p, int | float) else ""


def _pred_text(prediction: Mapping[str, Any]) -> str:
    if prediction.get("error") is not None:
        return f"pred: error ({prediction['error']})"
    text = f"pred: {prediction.get('label')}{_fmt_prob(prediction)}"
    score = prediction.get("box_score")
    if isinstance(score, int | float):
        text += f" | box {float(score):.2f}"
    return text


def _unreadable_tile(tile: int, reason: str, font_size: int) -> Image.Image:
    im = Image.new("RGB", (tile, tile), UNREADABLE_BG)
    draw = ImageDraw.Draw(im)
    font = _font(font_size)
    pad = max(4, tile // 32)
    lines = _wrap(font, f"unreadable: {reason}", tile - 2 * pad)
    lh = _line_height(font) + 2
    lines = lines[: max(1, (tile - 2 * pad) // lh)]
    y = max(pad, (tile - lh * len(lines)) // 2)
    for line in lines:
        draw.text((pad, y), line, fill=(255, 255, 255), font=font)
        y += lh
    return im


def render_tile(sample: Sample, prediction: Mapping[str, Any] | None = None, *,
                tile: int = 256, heatmap: np.ndarray | None = None) -> Image.Image:
    """One sample as a ``tile`` x ``tile`` RGB picture with its boxes (no caption).

    The image is decoded with :func:`~mtbrain.data.image_io.read_gray` (any mode and size)
    and drawn by :func:`draw_tile` with the sample's boxes (given in its header size,
    ``sample.width`` x ``sample.height``). An image that cannot be decoded gives a grey
    tile saying ``unreadable: <reason>``.

    Args:
        sample: The sample (image path, label, boxes).
        prediction: Its predictions record (CONTRACT.md), or None.
        tile: Side of the tile in pixels.
        heatmap: An explanation map in [0, 1] over the image (any shape; resized to the
            decoded image), shown with :func:`~mtbrain.explain.overlay`.
    """
    from mtbrain.data.image_io import read_gray
    from mtbrain.errors import DataError

    font_size = default_font_size(tile, tile)
    try:
        gray = read_gray(sample.path)
    except DataError as exc:
        return _unreadable_tile(tile, exc.problem.problem, font_size)
    except (OSError, ValueError, MemoryError) as exc:
        return _unreadable_tile(tile, f"{type(exc).__name__}: {exc}", font_size)
    image: np.ndarray = gray
    if heatmap is not None:
        from mtbrain.explain.gradcam import overlay

        heat = np.asarray(heatmap, dtype=np.float32)
        if heat.shape != gray.shape:
            heat = np.asarray(Image.fromarray(heat, "F").resize(
                (gray.shape[1], gray.shape[0]), Image.Resampling.BILINEAR))
        image = overlay(gray, heat)
    return draw_tile(image, boxes=sample.boxes, other_boxes=sample.other_boxes,
                     prediction=prediction, label=sample.label, tile=tile,
                     boxes_size=(sample.width, sample.height), halo=heatmap is not None)


def draw_tile(image: np.ndarray, *, boxes: Any = None, other_boxes: Any = None,
              prediction: Mapping[str, Any] | None = None, label: str | None = None,
              tile: int | None = 256, boxes_size: tuple[int, int] | None = None,
              halo: bool = False) -> Image.Image:
    """An image with its true, other and predicted boxes and the prediction's label.

    True tumour boxes (:data:`GT_COLOR`) are drawn just outside their pixels and the
    predicted box (:data:`PRED_COLOR`) just inside its own, so a box predicted exactly
    shows as a green line around an orange one; other annotated boxes are dashed
    (:data:`OTHER_COLOR`). The prediction's label (``pred: <label> <prob> | box
    <score>``) sits by its box (in a corner without one), on :data:`WRONG_COLOR` when the
    label differs from ``label`` or the record is an error.

    Args:
        image: (H, W) grey or (H, W, 3) RGB uint8 array.
        boxes: (N, 4) true tumour boxes, xyxy.
        other_boxes: (N, 4) annotated boxes that are not tumour boxes.
        prediction: A predictions record (``label``, ``probs``, ``box``, ``box_score``
            or ``error``), or None.
        label: The true class, or None when unknown.
        tile: Scale the image to fit a ``tile`` x ``tile`` square (aspect kept, black
            padding); None: draw on the image at its own size.
        boxes_size: ``(width, height)`` of the image the boxes' coordinates refer to
            (default: the image's own size).
        halo: Edge the true and predicted boxes with thin black lines (for boxes drawn
            over a heat map, whose bright colours are close to the box colours).
    """
    pil = _canvas_from_array(image)
    w, h = pil.size
    if tile is None:
        im, geo = pil, Letterbox(w, h, max(w, h), 1.0, 1.0, w, h, 0, 0)
        line, font_size = default_line_width(h, w), default_font_size(h, w)
    else:
        geo = Letterbox.fit(w, h, tile)
        im = Image.new("RGB", (tile, tile), (0, 0, 0))
        im.paste(pil.resize((geo.new_w, geo.new_h), Image.Resampling.BILINEAR),
                 (geo.pad_x, geo.pad_y))
        line, font_size = default_line_width(tile, tile), default_font_size(tile, tile)
    bw, bh = boxes_size if boxes_size is not None else (w, h)
    sx, sy = w / max(1, bw), h / max(1, bh)
    scale = np.array([sx, sy, sx, sy])

    def mapped(b: Any) -> np.ndarray:
        arr = _as_boxes(b)
        return geo.forward(arr * scale) if len(arr) else arr

    canvas = _Canvas(im, line_width=line, font_size=font_size)
    for b in mapped(other_boxes):
        rect = canvas.box_rect(b, where="outside", width=max(1, line // 2))
        if rect is not None:
            canvas.rectangle(rect, OTHER_COLOR, width=max(1, line // 2), dashed=True)
    truth = []
    for b in mapped(boxes):
        rect = canvas.box_rect(b, where="outside", width=line)
        if rect is not None:
            canvas.rectangle(rect, GT_COLOR, width=line, halo=halo)
            truth.append(rect)
    if prediction is not None:
        box = prediction.get("box") if prediction.get("error") is None else None
        rect = None
        if box is not None:
            rect = canvas.box_rect(mapped([box])[0], where="inside")
        if rect is not None:
            canvas.rectangle(rect, PRED_COLOR, width=line, halo=halo)
        wrong = prediction.get("error") is not None or (
            label is not None and prediction.get("label") != label)
        canvas.label(_pred_text(prediction), WRONG_COLOR if wrong else PRED_COLOR, near=rect,
                     avoid=truth)
    return im


HEATMAP_SWATCH = "heatmap"
"""Legend colour standing for the heat map's colour bar."""


def _legend_items(has_pred: bool, has_other: bool,
                  heatmap: str | None = None) -> list[tuple[str, Color, bool]]:
    items: list[tuple[str, Color, bool]] = [("true tumour box", GT_COLOR, False)]
    if heatmap:
        items.append((heatmap, HEATMAP_SWATCH, False))
    if has_other:
        items.append(("other annotated box (not a tumour, e.g. whole brain)", OTHER_COLOR, True))
    if has_pred:
        items.append(("predicted box: class, probability | box score", PRED_COLOR, False))
        items.append(("label of a prediction with the wrong class", WRONG_COLOR, False))
    return items


def _draw_colorbar(image: Image.Image, rect: Rect) -> None:
    """The heat map's colour map from 0 (left) to 1 (right) in ``rect``, outlined."""
    import matplotlib

    from mtbrain.explain.gradcam import COLORMAP

    x0, y0, x1, y1 = rect
    ramp = matplotlib.colormaps[COLORMAP](np.linspace(0.0, 1.0, x1 - x0 + 1))[:, :3]
    bar = np.repeat((ramp * 255).round().astype(np.uint8)[None], y1 - y0 + 1, axis=0)
    image.paste(Image.fromarray(bar, "RGB"), (x0, y0))
    ImageDraw.Draw(image).rectangle(rect, outline=_rgb(TEXT_COLOR), width=1)


def _draw_legend(width: int, items: Sequence[tuple[str, Color, bool]], font_size: int,
                 title: str | None, *, draw_on: Image.Image | None = None) -> int:
    """Lay out (and draw, when ``draw_on``) the legend; returns its height."""
    font = _font(font_size)
    lh = _line_height(font)
    draw = ImageDraw.Draw(draw_on) if draw_on is not None else None
    swatch = int(lh * 1.6)
    x, y = GAP, GAP
    if title:
        for line in _wrap(font, title, width - 2 * GAP):
            if draw is not None:
                draw.text((x, y), line, fill=TEXT_COLOR, font=font)
            y += lh + 2
    row_h = lh
    for text, color, dashed in items:
        sw = 3 * swatch if color == HEATMAP_SWATCH else swatch  # a colour bar needs room
        lines = _wrap(font, text, max(1, width - 2 * GAP - sw - 6))
        item_w = sw + 6 + max(_text_width(font, t) for t in lines) + 3 * GAP
        item_h = len(lines) * (lh + 2) - 2
        if x > GAP and x + item_w > width - GAP:
            x, y, row_h = GAP, y + row_h + 6, lh
        row_h = max(row_h, item_h)
        if draw is not None and draw_on is not None:
            rect = (x, y + 1, x + sw - 1, y + lh - 2)
            if color == HEATMAP_SWATCH:
                _draw_colorbar(draw_on, rect)
            elif color == WRONG_COLOR:
                draw.rectangle(rect, fill=_rgb(color))
            else:
                canvas = _Canvas(draw_on, line_width=2, font_size=font_size)
                canvas.rectangle(rect, color, width=2, dashed=dashed)
            for i, line in enumerate(lines):
                draw.text((x + sw + 6, y + i * (lh + 2)), line, fill=TEXT_COLOR, font=font)
        x += item_w
    return y + row_h + GAP


def grid(
    records: Iterable[Sample],
    *,
    predictions: Sequence[Mapping[str, Any]] | None = None,
    n: int = 16,
    classes: Sequence[str] | None = None,
    only_errors: bool = False,
    seed: int = 0,
    tile: int = 256,
    title: str | None = None,
    keep_order: bool = False,
    heatmaps: Mapping[str, np.ndarray] | None = None,
    heatmap_legend: str = "explanation heat map, low to high",
    notes: Mapping[str, str] | None = None,
) -> Image.Image:
    """A picture of up to ``n`` samples with their true and predicted boxes.

    Samples are picked by :func:`select_samples`: those of ``classes`` (all when
    ``None``), with a prediction when ``predictions`` are given, and with a wrong one
    (:func:`prediction_error`) when ``only_errors``; classes take turns in a seeded random
    order, so the same arguments give the same picture; shown sorted by class and name.

    Each tile (:func:`render_tile`) shows the image letterboxed to ``tile`` px, the true
    tumour boxes (:data:`GT_COLOR`), the other annotated boxes dashed (:data:`OTHER_COLOR`)
    and the predicted box (:data:`PRED_COLOR`) labelled ``pred: <label> <prob> | box
    <score>`` (on :data:`WRONG_COLOR` when the class is wrong). Under it a two-line
    caption: ``<rel>``, then ``true: <label>`` followed, with predictions, by the verdict
    (``right`` or why it is wrong, :func:`prediction_error`) and the box IoU, in
    :data:`WRONG_COLOR` when wrong. A legend on top explains the colours.

    With ``keep_order`` the first ``n`` of ``records`` are shown as given (for a ranking,
    such as the most confident mistakes), without the selection above. With
    ``heatmaps`` a tile whose sample has a map shows it over the image
    (:func:`~mtbrain.explain.overlay`) and the legend gets a colour bar; ``notes`` add a
    third caption line to the tiles of the samples they name.

    Args:
        records: The samples (a :class:`~mtbrain.data.records.RecordSet` or a list).
        predictions: Records in the predictions-file format (CONTRACT.md), matched to
            samples by ``image == sample.rel``.
        n: Most tiles to show.
        classes: Class names to keep (default: all).
        only_errors: Keep only wrongly predicted samples (needs ``predictions``).
        seed: Seed of the choice.
        tile: Side of each image tile in pixels.
        title: Optional line above the legend.
        keep_order: Show the first ``n`` samples in the order given.
        heatmaps: Explanation maps in [0, 1] by sample ``rel`` (any shape; resized to
            the image).
        heatmap_legend: Legend text of the heat map's colour bar.
        notes: A third caption line by sample ``rel``.

    Returns:
        An RGB image. ``image.info["tiles"]`` lists ``(rel, (x0, y0, x1, y1))`` of each
        tile's image square, in reading order.

    Raises:
        ValueError: when no sample is left to show, for ``n < 1``, a ``tile`` below 32 px,
            or ``only_errors`` without ``predictions``.
    """
    if tile < 32:
        raise ValueError(f"tile must be at least 32 pixels, got {tile}")
    records = list(records)
    if keep_order:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        chosen = records[:n]
    else:
        chosen = select_samples(records, predictions=predictions, n=n, classes=classes,
                                only_errors=only_errors, seed=seed)
    if not chosen:
        raise ValueError("no samples left to show after filtering")
    by_image = index_predictions(predictions) if predictions is not None else {}
    cols = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / cols)
    font_size = default_font_size(tile, tile)
    font = _font(font_size)
    lh = _line_height(font)
    heatmaps = heatmaps or {}
    notes = notes or {}
    cap_lines = 3 if any(s.rel in notes for s in chosen) else 2
    cap_h = cap_lines * (lh + 2) + 4
    width = cols * tile + (cols + 1) * GAP
    items = _legend_items(predictions is not None, any(len(s.other_boxes) for s in chosen),
                          heatmap_legend if any(s.rel in heatmaps for s in chosen) else None)
    legend_font = max(font_size, min(16, width // 60))
    legend_h = _draw_legend(width, items, legend_font, title)
    height = legend_h + rows * (tile + cap_h) + rows * GAP
    out = Image.new("RGB", (width, height), BACKGROUND)
    _draw_legend(width, items, legend_font, title, draw_on=out)
    draw = ImageDraw.Draw(out)
    placed: list[tuple[str, tuple[int, int, int, int]]] = []
    for k, sample in enumerate(chosen):
        r, c = divmod(k, cols)
        x = GAP + c * (tile + GAP)
        y = legend_h + r * (tile + cap_h + GAP)
        pred = by_image.get(sample.rel)
        out.paste(render_tile(sample, pred, tile=tile, heatmap=heatmaps.get(sample.rel)),
                  (x, y))
        placed.append((sample.rel, (x, y, x + tile, y + tile)))
        ty = y + tile + 2
        draw.text((x + 1, ty), _fit_text(font, sample.rel, tile - 2, keep="end"),
                  fill=TEXT_COLOR, font=font)
        line2 = f"true: {sample.label if sample.label is not None else '(none)'}"
        err = None
        if pred is not None:
            err = prediction_error(sample, pred)
            iou = best_iou(sample, pred)
            line2 += f" | {err}" if err else " | right"
            if iou is not None and (err is None or "IoU" not in err and "no box" not in err):
                line2 += f", IoU {iou:.2f}"
        draw.text((x + 1, ty + lh + 2), _fit_text(font, line2, tile - 2),
                  fill=_rgb(WRONG_COLOR) if err else TEXT_COLOR, font=font)
        if sample.rel in notes:
            draw.text((x + 1, ty + 2 * (lh + 2)), _fit_text(font, notes[sample.rel], tile - 2),
                      fill=TEXT_COLOR, font=font)
    out.info["tiles"] = placed
    return out
