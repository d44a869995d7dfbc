"""Does the explanation point at the tumour? Heat maps scored against the true boxes.

:func:`explain_records` explains the class head on the images of a data set that have a
ground-truth tumour box (up to ``max_images``, picked with the classes taking turns in a
seeded order, :func:`mtbrain.viz.draw.candidate_order`), in the original image's pixels
(:func:`~mtbrain.explain.to_original`), and measures per image:

- the pointing game (:func:`~mtbrain.explain.pointing_game`): the map's maximum lies in a
  true box;
- the energy inside (:func:`~mtbrain.explain.energy_inside`): the share of the map's sum
  inside the union of the true boxes;
- the chance level of both: the share of the image's area inside the boxes (a map
  spread evenly has that energy inside; a maximum at a random pixel hits that often).

The summary gives their means per true class and over all explained images, the numbers
``metrics.json`` holds under ``"explain"``. By default the explained class is each
image's *true* class (the pointing game's convention: does the evidence for the tumour's
class lie on the tumour?); ``target="predicted"`` explains the predicted class instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtbrain.data.records import Sample
from mtbrain.errors import DataError
from mtbrain.explain.api import METHOD_NAMES, heatmaps, to_original
from mtbrain.explain.gradcam import energy_inside, pointing_game

__all__ = ["TARGETS", "ImageAgreement", "box_area_share", "explain_records", "summarize"]

TARGETS: tuple[str, ...] = ("true", "predicted")
"""Which class :func:`explain_records` explains."""


@dataclass
class ImageAgreement:
    """One image's explanation scored against its true boxes.

    Attributes:
        rel: The sample's name.
        label: Its true class.
        target: The explained class.
        hit: The pointing game: the map's maximum lies in a true box.
        energy: Share of the map's sum inside the true boxes.
        area_share: Share of the image's pixels inside the true boxes (chance level).
        empty: The map had no positive value (counts as a miss with energy 0).
        heatmap: The (H, W) map in original pixels, kept for the first images only.
    """

    rel: str
    label: str
    target: str
    hit: bool
    energy: float
    area_share: float
    empty: bool
    heatmap: np.ndarray | None = None


def box_area_share(shape: tuple[int, int], boxes: Any) -> float:
    """Share of an (H, W) image's pixels whose centre lies in the union of ``boxes``."""
    return energy_inside(np.ones(shape, dtype=np.float32), boxes)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _stats(rows: Sequence[ImageAgreement]) -> dict[str, Any]:
    return {"n_images": len(rows),
            "pointing_game": _mean([float(r.hit) for r in rows]),
            "energy_inside": _mean([r.energy for r in rows]),
            "box_area_share": _mean([r.area_share for r in rows]),
            "n_empty_maps": sum(r.empty for r in rows)}


def summarize(rows: Sequence[ImageAgreement], *, method: str, target: str,
              options: dict[str, Any] | None = None, n_candidates: int | None = None,
              n_unreadable: int = 0) -> dict[str, Any]:
    """The ``metrics.json`` ``"explain"`` entry: means over all images and per true class.

    Classes appear in the order of their first image; a class without explained images
    is left out (every value of an entry is a number in [0, 1], counts aside).
    """
    classes = list(dict.fromkeys(r.label for r in rows))
    return {
        "method": method,
        "method_name": METHOD_NAMES.get(method, method),
        "target": target,
        "options": {k: v if v is None or isinstance(v, bool | int | float | str)
                    else type(v).__name__ for k, v in (options or {}).items()},
        "n_candidates": len(rows) + n_unreadable if n_candidates is None else n_candidates,
        "n_unreadable": n_unreadable,
        **_stats(rows),
        "per_class": {c: _stats([r for r in rows if r.label == c]) for c in sorted(classes)},
    }


def explain_records(model: Any, samples: Sequence[Sample], *, method: str = "gradcam",
                    target: str = "true", max_images: int = 100, seed: int = 0,
                    batch_size: int = 8, keep_maps: int = 0, progress: bool = False,
                    **options: Any) -> tuple[dict[str, Any], list[ImageAgreement]]:
    """Explain and score up to ``max_images`` samples with a tumour box (see module doc).

    Args:
        model: A :class:`mtbrain.models.Model`.
        samples: The data set (a :class:`~mtbrain.data.records.RecordSet` or a list).
        method: ``"gradcam"`` or ``"shap"``.
        target: ``"true"`` (each image's true class) or ``"predicted"``.
        max_images: Most images explained.
        seed: Seed of the choice of images.
        batch_size: Images per explanation call.
        keep_maps: Keep the heat maps of the first this many images (for pictures).
        progress: Show a progress bar.
        **options: Options of the method (see :func:`~mtbrain.explain.heatmaps`).

    Returns:
        ``(summary, rows)``: the :func:`summarize` dict and one row per explained image,
        in the order explained (classes taking turns).

    Raises:
        ValueError: for a bad method, target or option.
        ImportError: for ``"shap"`` without captum (the extra ``explain``).
    """
    from mtbrain.data.transforms import decode_letterboxed
    from mtbrain.explain.api import method_options
    from mtbrain.viz.draw import candidate_order

    used = method_options(method, options)  # checks the method and its options first
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if max_images < 1 or batch_size < 1:
        raise ValueError(f"max_images and batch_size must be >= 1, got {max_images}, "
                         f"{batch_size}")
    classes = list(model.classes)
    pool = [s for s in candidate_order(samples, classes=classes, seed=seed) if s.has_box]
    chosen = pool[:max_images]
    device = next(model.parameters()).device
    rows: list[ImageAgreement] = []
    unreadable = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(chosen), desc=f"explain ({method})", unit="img")
    for start in range(0, len(chosen), batch_size):
        batch = []
        for s in chosen[start : start + batch_size]:
            try:
                img, geo = decode_letterboxed(s.path, model.img_size,
                                              keep_ratio=model.config.keep_ratio)
            except DataError:
                unreadable += 1
                continue
            batch.append((s, img, geo))
        if batch:
            x = torch.from_numpy(np.stack([b[1] for b in batch])).float().div_(255.0)[:, None]
            idx = [classes.index(s.label) for s, _, _ in batch] if target == "true" else None
            maps = heatmaps(model, x.to(device), method=method, target=idx, **options)
            if idx is None:
                with torch.no_grad():
                    logits = model(x.to(device))["logits"]
                idx = logits.argmax(dim=1).tolist()
            for (s, _, geo), m, k in zip(batch, maps, idx, strict=True):
                heat = to_original(m, geo)
                sx, sy = geo.width / max(1, s.width), geo.height / max(1, s.height)
                boxes = np.asarray(s.boxes, np.float64).reshape(-1, 4) * [sx, sy, sx, sy]
                empty = not bool((heat > 0).any())
                rows.append(ImageAgreement(
                    rel=s.rel, label=str(s.label), target=classes[k],
                    hit=pointing_game(heat, boxes), energy=energy_inside(heat, boxes),
                    area_share=box_area_share(heat.shape, boxes), empty=empty,
                    heatmap=heat if len(rows) < keep_maps else None))
        if bar is not None:
            bar.update(len(chosen[start : start + batch_size]))
    if bar is not None:
        bar.close()
    summary = summarize(rows, method=method, target=f"{target} class", options=used,
                        n_candidates=len(pool), n_unreadable=unreadable)
    summary["max_images"] = max_images
    return summary, rows
