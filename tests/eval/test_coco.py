"""COCO mAP through pycocotools, checked against hand-computed values.

Reminder of what pycocotools computes: per class and IoU threshold (0.50, 0.55, ..., 0.95),
detections are sorted by score and greedily matched to unmatched GT boxes; precision is
made monotone (max to the right) and sampled at 101 recall points 0.00, 0.01, ..., 1.00
(0 where the recall is never reached); AP is the mean of those 101 samples.
"""

from __future__ import annotations

import numpy as np
import pytest

from mtbrain.eval.coco import ImageDetections, ImageTruth, coco_map

CLASSES = ("glioma", "meningioma", "no_tumor")


def truth(boxes: list[list[float]], labels: list[int]) -> ImageTruth:
    return ImageTruth(width=200, height=200, boxes=np.asarray(boxes, dtype=float).reshape(-1, 4),
                      labels=labels)


def dets(boxes: list[list[float]], scores: list[float], labels: list[int]) -> ImageDetections:
    return ImageDetections(boxes=np.asarray(boxes, dtype=float).reshape(-1, 4), scores=scores,
                           labels=labels)


def no_dets() -> ImageDetections:
    return dets([], [], [])


A = [10.0, 10.0, 110.0, 110.0]  # a 100 x 100 box
B = [120.0, 20.0, 170.0, 90.0]  # disjoint from A


def test_perfect_detections() -> None:
    gt = [truth([A], [0]), truth([A, B], [0, 1]), truth([B], [1])]
    dt = [dets([A], [0.9], [0]), dets([A, B], [0.8, 0.7], [0, 1]), dets([B], [0.6], [1])]
    r = coco_map(gt, dt, CLASSES)
    assert r["map50"] == pytest.approx(1.0, abs=1e-6)
    assert r["map50_95"] == pytest.approx(1.0, abs=1e-6)
    assert r["per_class"]["glioma"] == {"ap50": pytest.approx(1.0), "ap50_95": pytest.approx(1.0),
                                        "n_gt": 2}
    assert r["per_class"]["meningioma"]["n_gt"] == 2
    assert r["per_class"]["no_tumor"] == {"ap50": None, "ap50_95": None, "n_gt": 0}
    assert r["n_gt_boxes"] == 4 and r["n_detections"] == 4


def test_shifted_box_passes_some_thresholds() -> None:
    # Shifted 20 px right: intersection 80 x 100, union 120 x 100 -> IoU 2/3 = 0.667, which
    # passes the thresholds 0.50, 0.55, 0.60, 0.65 (4 of 10) and fails 0.70 ... 0.95.
    shifted = [A[0] + 20, A[1], A[2] + 20, A[3]]
    r = coco_map([truth([A], [0])], [dets([shifted], [0.9], [0])], CLASSES)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map50_95"] == pytest.approx(0.4)
    assert r["per_class"]["glioma"]["ap50_95"] == pytest.approx(0.4)


def test_shrunk_box_iou_062() -> None:
    # Box inside GT with 62 % of its area: IoU 0.62 -> thresholds 0.50, 0.55, 0.60 -> 3/10.
    r = coco_map([truth([[0, 0, 100, 100]], [0])], [dets([[0, 0, 100, 62]], [0.9], [0])],
                 CLASSES)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map50_95"] == pytest.approx(0.3)


def test_missing_detection() -> None:
    # Two GT boxes, one found (precision 1) and one never found: recall tops out at 0.5.
    # The 101-point interpolation samples precision 1 at the 51 recall points 0.00 ... 0.50
    # and 0 at the 50 points 0.51 ... 1.00, so AP = 51/101 = 0.50495, not exactly 0.5.
    r = coco_map([truth([A], [0]), truth([A], [0])], [dets([A], [0.9], [0]), no_dets()],
                 CLASSES)
    assert r["map50"] == pytest.approx(51 / 101)
    assert r["map50_95"] == pytest.approx(51 / 101)


def test_no_detections_is_zero() -> None:
    r = coco_map([truth([A], [0]), truth([B], [1])], [no_dets(), no_dets()], CLASSES)
    assert r["map50"] == 0.0 and r["map50_95"] == 0.0
    assert r["per_class"]["glioma"] == {"ap50": 0.0, "ap50_95": 0.0, "n_gt": 1}
    assert r["per_class"]["no_tumor"]["ap50"] is None
    assert r["n_detections"] == 0


def test_no_ground_truth_is_none() -> None:
    r = coco_map([truth([], []), truth([A], [2])], [dets([A], [0.9], [0]), no_dets()],
                 CLASSES, categories=[0, 1])
    assert r["map50"] is None and r["map50_95"] is None
    assert r["n_gt_boxes"] == 0 and r["n_detections"] == 1
    assert all(v["ap50"] is None for v in r["per_class"].values())
    assert coco_map([], [], CLASSES)["map50"] is None


def test_false_positive_below_true_positive_is_harmless() -> None:
    # Sorted by score: TP, FP. Precision is 1 up to recall 1, so AP stays 1.
    r = coco_map([truth([A], [0])], [dets([A, B], [0.9, 0.5], [0, 0])], CLASSES)
    assert r["map50"] == pytest.approx(1.0)


def test_false_positive_above_true_positive_halves_ap() -> None:
    # Sorted by score: FP (recall 0, precision 0), TP (recall 1, precision 1/2). Made
    # monotone, precision is 1/2 at every recall point -> AP 0.5.
    r = coco_map([truth([A], [0])], [dets([A, B], [0.9, 0.95], [0, 0])], CLASSES)
    assert r["map50"] == pytest.approx(0.5)


def test_false_positive_on_image_without_boxes_counts() -> None:
    # Same as above with the FP on a box-less image: it must count, AP 0.5.
    r = coco_map([truth([A], [0]), truth([], [])],
                 [dets([A], [0.9], [0]), dets([B], [0.95], [0])], CLASSES)
    assert r["map50"] == pytest.approx(0.5)


def test_categories_exclude_a_class() -> None:
    # Class 2 has a GT box and no detection (AP 0); class 0 is perfect (AP 1).
    gt = [truth([A], [0]), truth([[0, 0, 200, 200]], [2])]
    dt = [dets([A], [0.9], [0]), no_dets()]
    assert coco_map(gt, dt, CLASSES)["map50"] == pytest.approx(0.5)
    r = coco_map(gt, dt, CLASSES, categories=[0, 1])
    assert r["map50"] == pytest.approx(1.0) and r["map50_95"] == pytest.approx(1.0)
    assert set(r["per_class"]) == {"glioma", "meningioma"}
    assert r["n_gt_boxes"] == 1


def test_wrong_class_detection_is_a_miss() -> None:
    r = coco_map([truth([A], [0])], [dets([A], [0.9], [1])], CLASSES, categories=[0, 1])
    assert r["per_class"]["glioma"]["ap50"] == 0.0
    assert r["map50"] == 0.0


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        coco_map([truth([A], [0])], [], CLASSES)
    with pytest.raises(ValueError):
        coco_map([truth([A], [0])], [no_dets()], CLASSES, categories=[3])
    with pytest.raises(ValueError):
        coco_map([truth([A], [0, 1])], [no_dets()], CLASSES)
