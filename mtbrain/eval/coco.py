"""COCO-style detection mAP through pycocotools: the one box evaluator for every model.

Our model predicts one box per image and YOLO several; both are scored here the same way.
Ground truth and detections are built as COCO objects in memory (no files). Every image is
listed in the ground truth, also those without boxes, so that false positives on box-less
images count. COCO ids: image ``i`` is ``i + 1``, class index ``c`` is category ``c + 1``
(pycocotools treats id 0 as "unmatched" for annotations, so ids start at 1).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


@dataclass
class ImageTruth:
    """Ground truth of one image.

    Attributes:
        width: Image width in pixels.
        height: Image height in pixels.
        boxes: ``(N, 4)`` boxes, xyxy pixels of the original image.
        labels: Class index of each box.
    """

    width: int
    height: int
    boxes: np.ndarray
    labels: Sequence[int]


@dataclass
class ImageDetections:
    """Detections of one image.

    Attributes:
        boxes: ``(M, 4)`` boxes, xyxy pixels of the original image.
        scores: Confidence of each box.
        labels: Class index of each box.
    """

    boxes: np.ndarray
    scores: Sequence[float]
    labels: Sequence[int]


def _xywh(boxes: np.ndarray, n_labels: int, what: str) -> np.ndarray:
    """``(N, 4)`` xyxy boxes as float64 xywh; checks the shape against the label count."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) != n_labels:
        raise ValueError(f"{what}: {len(b)} boxes but {n_labels} labels")
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _undefined_to_none(value: float) -> float | None:
    """pycocotools' -1 ("undefined") as None, anything else as a float."""
    return None if value < 0 else float(value)


def coco_map(truth: Sequence[ImageTruth], detections: Sequence[ImageDetections],
             classes: Sequence[str], *, categories: Sequence[int] | None = None) -> dict[str, Any]:
    """COCO box mAP (AP50 and AP50:95, maxDets=100, all areas) with per-class AP.

    Args:
        truth: Ground truth per image.
        detections: Detections per image; ``detections[i]`` belongs to ``truth[i]``.
        classes: Class names, indexed by class index.
        categories: Class indices that are scored (default: all). GT boxes and detections
            of other classes are dropped, e.g. to leave out "no_tumor" whole-brain boxes.

    Returns:
        ``{"map50", "map50_95", "per_class", "n_gt_boxes", "n_detections"}``. The map
        values are None when the scored categories have no GT box, 0.0 when there are GT
        boxes but no detections. ``per_class`` maps each scored class name to
        ``{"ap50", "ap50_95", "n_gt"}`` (APs None when the class has no GT box).
        ``n_gt_boxes`` and ``n_detections`` count the scored boxes only.

    Raises:
        ValueError: If ``truth`` and ``detections`` differ in length, a category index is
            out of range, or boxes and labels of an image differ in count.
    """
    if len(truth) != len(detections):
        raise ValueError(f"{len(truth)} ground-truth images but {len(detections)} detections")
    scored = sorted(set(range(len(classes)) if categories is None else categories))
    if any(c < 0 or c >= len(classes) for c in scored):
        raise ValueError(f"categories {scored} out of range for {len(classes)} classes")
    keep = set(scored)

    images, gt_anns, dt_anns = [], [], []
    for i, (t, d) in enumerate(zip(truth, detections, strict=True)):
        images.append({"id": i + 1, "width": int(t.width), "height": int(t.height)})
        for box, label in zip(_xywh(t.boxes, len(t.labels), f"truth[{i}]"), t.labels,
                              strict=True):
            if int(label) in keep:
                gt_anns.append({"id": len(gt_anns) + 1, "image_id": i + 1,
                                "category_id": int(label) + 1, "bbox": box.tolist(),
                                "area": float(box[2] * box[3]), "iscrowd": 0})
        if len(d.scores) != len(d.labels):
            raise ValueError(f"detections[{i}]: {len(d.scores)} scores, {len(d.labels)} labels")
        for box, score, label in zip(_xywh(d.boxes, len(d.labels), f"detections[{i}]"),
                                     d.scores, d.labels, strict=True):
            if int(label) in keep:
                dt_anns.append({"image_id": i + 1, "category_id": int(label) + 1,
                                "bbox": box.tolist(), "score": float(score)})

    n_gt = {c: sum(a["category_id"] == c + 1 for a in gt_anns) for c in scored}
    result: dict[str, Any] = {
        "map50": None, "map50_95": None,
        "per_class": {classes[c]: {"ap50": None, "ap50_95": None, "n_gt": n_gt[c]}
                      for c in scored},
        "n_gt_boxes": len(gt_anns), "n_detections": len(dt_anns),
    }
    if not gt_anns:
        return result
    if not dt_anns:  # loadRes fails on an empty list; with GT and no detections AP is 0
        result["map50"] = result["map50_95"] = 0.0
        for c in scored:
            if n_gt[c]:
                result["per_class"][classes[c]].update(ap50=0.0, ap50_95=0.0)
        return result

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gt_anns,
                      "categories": [{"id": c + 1, "name": n} for c, n in enumerate(classes)]}
        gt.createIndex()
        dt = gt.loadRes(dt_anns)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.catIds = [c + 1 for c in scored]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()

    result["map50_95"] = _undefined_to_none(ev.stats[0])
    result["map50"] = _undefined_to_none(ev.stats[1])
    # precision: [iou thresholds T, recall thresholds R, categories K, areas A, maxDets M];
    # K follows params.catIds, area 0 is "all", the last maxDets is 100.
    precision = ev.eval["precision"]
    iou50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    for k, c in enumerate(scored):
        p = precision[:, :, k, 0, -1]
        if n_gt[c] and (p > -1).any():
            result["per_class"][classes[c]].update(
                ap50=float(p[iou50][p[iou50] > -1].mean()), ap50_95=float(p[p > -1].mean()))
    return result
