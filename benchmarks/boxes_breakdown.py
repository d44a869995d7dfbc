"""Where the boxes miss: mean IoU by class, number of true boxes and tumour size.

Reads a predictions file of ``mtbrain evaluate`` (or ``mtbrain predict``) and the data it
predicted (a folder in any layout, or ``split.json:part``), and scores, as the evaluator
does, the best IoU of each image's one predicted box against its true tumour boxes (0 when
no box was predicted), over the images with at least one tumour box::

    python benchmarks/boxes_breakdown.py runs/ref/test/predictions.json \\
        --data runs/ref/split.json:test

Tumour size is the side of the image's largest true box (square root of its area) as a
share of the image side (square root of the image area).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import mtbrain  # noqa: F401  (offline environment before timm)
from mtbrain.data import load_dataset
from mtbrain.data.records import Sample
from mtbrain.errors import DataError
from mtbrain.eval.metrics import best_ious
from mtbrain.eval.predictions import read_predictions

SIZE_EDGES: tuple[float, ...] = (0.08, 0.12, 0.20)


def size_bin(side: float, edges: Sequence[float] = SIZE_EDGES) -> str:
    """``"<8%"``, ``"8-12%"``, ... ``">=20%"`` for a relative box side."""
    pct = [f"{100 * e:g}%" for e in edges]
    for i, edge in enumerate(edges):
        if side < edge:
            return f"<{pct[0]}" if i == 0 else f"{pct[i - 1][:-1]}-{pct[i]}"
    return f">={pct[-1]}"


def count_label(n: int) -> str:
    """``"1"``, ``"2"`` or ``"3+"`` true boxes."""
    return str(n) if n < 3 else "3+"


def rows(samples: Iterable[Sample], predictions: Sequence[dict[str, Any]]) -> list[dict]:
    """One row per image with a tumour box: class, box count, size bin and best IoU."""
    by_image = {str(p.get("image")): p for p in predictions}
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
        out.append({"class": s.label, "boxes": count_label(len(gt)),
                    "class_boxes": f"{s.label}, {count_label(len(gt))}",
                    "size": size_bin(side), "iou": float(iou)})
    return out


def table(items: list[dict], key: str) -> list[tuple[str, int, float, float]]:
    """``(group, images, mean IoU, IoU >= 0.5 share)`` per value of ``key``, in the order
    the groups first appear after sorting by that key (size bins from small to large)."""
    groups: dict[str, list[float]] = defaultdict(list)
    order = [size_bin(e - 1e-9) for e in SIZE_EDGES] + [size_bin(1.0)]
    for r in sorted(items, key=lambda r: (order.index(r[key]) if key == "size" else r[key])):
        groups[r[key]].append(r["iou"])
    return [(g, len(v), float(np.mean(v)), float(np.mean(np.asarray(v) >= 0.5)))
            for g, v in groups.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", help="predictions.json of mtbrain evaluate or predict")
    parser.add_argument("--data", required=True,
                        help="the data predicted: a folder or SPLIT.json:PART")
    args = parser.parse_args()
    path = Path(args.predictions)
    try:
        predictions = read_predictions(path)
        items = rows(load_dataset(args.data), predictions)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
