"""Where the boxes miss: mean IoU by class, number of true boxes and tumour size.

Reads a predictions file of ``mtbrain evaluate`` (or ``mtbrain predict``) and the data it
predicted (a folder in any layout, or ``split.json:part``), and scores, as the evaluator
does, the best IoU of each image's one predicted box against its true tumour boxes (0 when
no box was predicted), over the images with at least one tumour box::

    python benchmarks/boxes_breakdown.py runs/ref/test/predictions.json \\
        --data runs/ref/split.json:test

Tumour size is the side of the image's largest true box (square root of its area) as a
share of the image side (square root of the image area).

A last line counts, among the images with several true boxes whose predicted box misses
(best IoU < 0.5), those where the box spans them instead: IoU >= 0.5 with the box that
encloses all of the image's true boxes (one box drawn around adjacent tumours).

With ``--data SPLIT.json:PART`` one more line counts each slice once: the split file's
duplicate groups (copies of one slice, always in one part) are scored by the mean of their
copies' IoU >= 0.5, so that a hard slice with three copies is one miss, not three.
"""

from __future__ import annotations

import argparse
import bisect
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import mtbrain  # noqa: F401  (offline environment before timm)
from mtbrain.data import load_dataset
from mtbrain.data.records import RecordSet
from mtbrain.data.splitfile import SplitFile, is_split_file, parse_data_arg
from mtbrain.errors import DataError
from mtbrain.eval.metrics import best_ious
from mtbrain.eval.predictions import match_predictions, read_predictions

SIZE_EDGES: tuple[float, ...] = (0.08, 0.12, 0.20)
SIZE_BINS: tuple[str, ...] = ("<8%", "8-12%", "12-20%", ">=20%")


def size_bin(side: float) -> str:
    """The :data:`SIZE_BINS` label of a relative box side (``0.08`` is ``"8-12%"``)."""
    return SIZE_BINS[bisect.bisect_right(SIZE_EDGES, side)]


def count_label(n: int) -> str:
    """``"1"``, ``"2"`` or ``"3+"`` true boxes."""
    return str(n) if n < 3 else "3+"


def rows(samples: RecordSet, predictions: list[dict[str, Any]], *, path: str | Path = "",
         data: str = "") -> list[dict]:
    """One row per image with a tumour box: its ``rel`` (``image``), class, class and box
    count, size bin, best IoU, and (images with several true boxes, else ``None``) the IoU
    with their enclosing box.

    Predictions are matched to the samples as everywhere (:func:`match_predictions`:
    by ``rel`` or by file path); a tumour image without a prediction is an error.
    """
    by_image = {p["image"]: p for p in match_predictions(predictions, samples, path, data)}
    out = []
    for s in samples:
        gt = np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4)
        if len(gt) == 0:
            continue
        pred = by_image.get(s.rel)
        if pred is None:
            raise DataError(f"no prediction for {s.rel!r}", path=s.path)
        box = None if pred.get("error") or pred.get("box") is None else np.asarray(pred["box"])
        (iou,) = best_ious([box], [gt])
        areas = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
        side = float(np.sqrt(areas.max() / (s.width * s.height)))
        enclosing = np.concatenate([gt[:, :2].min(axis=0), gt[:, 2:].max(axis=0)])[None]
        (spans,) = best_ious([box], [enclosing]) if len(gt) > 1 else (None,)
        out.append({"image": s.rel, "class": s.label, "class_boxes": f"{s.label}, {count_label(len(gt))}",
                    "size": size_bin(side), "iou": float(iou),
                    "enclosing_iou": None if spans is None else float(spans)})
    return out


def table(items: list[dict], key: str) -> list[tuple[str, int, float, float]]:
    """``(group, images, mean IoU, IoU >= 0.5 share)`` per value of ``key``, sorted (size
    bins from small to large)."""
    groups: dict[str, list[float]] = defaultdict(list)
    rank = SIZE_BINS.index if key == "size" else str
    for r in sorted(items, key=lambda r: rank(r[key])):
        groups[r[key]].append(r["iou"])
    return [(g, len(v), float(np.mean(v)), float(np.mean(np.asarray(v) >= 0.5)))
            for g, v in groups.items()]


def spanning_misses(items: list[dict]) -> tuple[int, int, int]:
    """Images with several true boxes; those missed (best IoU < 0.5); and those of the missed
    whose box has IoU >= 0.5 with the box enclosing all their true boxes."""
    multi = [r for r in items if r["enclosing_iou"] is not None]
    missed = [r for r in multi if r["iou"] < 0.5]
    return len(multi), len(missed), sum(r["enclosing_iou"] >= 0.5 for r in missed)


def per_slice(items: list[dict], groups: list[list[str]]) -> tuple[int, float, int, int]:
    """IoU >= 0.5 with each duplicate group of ``groups`` (``rel`` names) counted once.

    Returns:
        ``(slices, share, missed_copies, missed_slices)``: the number of distinct slices
        among ``items`` (a group's members present in ``items``, or a single image), the
        mean over slices of their copies' IoU >= 0.5 share, and the misses that are copies
        of a slice with several images in ``items`` and how many such slices they show.
    """
    slice_of = {rel: k for k, g in enumerate(groups) for rel in g}
    hits: dict[Any, list[bool]] = defaultdict(list)
    for r in items:
        hits[slice_of.get(r["image"], r["image"])].append(r["iou"] >= 0.5)
    shared = [v for v in hits.values() if len(v) > 1 and not all(v)]
    share = float(np.mean([np.mean(v) for v in hits.values()])) if hits else 0.0
    return len(hits), share, sum(len(v) - sum(v) for v in shared), len(shared)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", help="predictions.json of mtbrain evaluate or predict")
    parser.add_argument("--data", required=True,
                        help="the data predicted: a folder or SPLIT.json:PART")
    args = parser.parse_args()
    path = Path(args.predictions)
    try:
        predictions = read_predictions(path)
        items = rows(load_dataset(args.data), predictions, path=path, data=args.data)
        split_path, _ = parse_data_arg(args.data)
        groups = SplitFile.read(split_path).groups if is_split_file(split_path) else None
    except DataError as e:
        raise SystemExit(str(e)) from None
    if not items:
        raise SystemExit(f"{args.data}: no image with a tumour box")
    for key, title in (("class", "class"), ("class_boxes", "class, true boxes"),
                       ("size", "tumour side / image side")):
        print(f"| {title} | images | mean IoU | IoU >= 0.5 |\n|---|---|---|---|")
        for group, n, mean, hit in table(items, key):
            print(f"| {group} | {n} | {mean:.3f} | {hit:.3f} |")
        print()
    ious = np.asarray([r["iou"] for r in items])
    print(f"all: {len(ious)} images, mean IoU {ious.mean():.3f}, "
          f"IoU >= 0.5 {np.mean(ious >= 0.5):.3f}")
    multi, missed, spanning = spanning_misses(items)
    print(f"several true boxes: {multi} images, {missed} missed (of "
          f"{int(np.sum(ious < 0.5))} misses in all), {spanning} of them with a box spanning "
          "the true boxes (IoU >= 0.5 with their enclosing box)")
    if groups is not None:
        slices, share, missed_copies, missed_slices = per_slice(items, groups)
        print(f"each slice once (the split file's duplicate groups): {slices} slices, "
              f"IoU >= 0.5 {share:.3f}; {missed_copies} of the misses are copies of "
              f"{missed_slices} slices with several images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
