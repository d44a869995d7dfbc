"""Metrics shared by validation during training and by ``mtbrain evaluate``.

Classification through scikit-learn; localization as the IoU of the one predicted box
against the image's ground-truth tumour boxes (the best-matching one when there are
several), over images that have a tumour box. A missing prediction counts as IoU 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from mtbrain.data.boxes import iou_matrix


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

    Samples with ``y_true < 0`` (no label) are left out.
    """
    t = np.asarray(y_true, dtype=int)
    p = np.asarray(y_pred, dtype=int)
    keep = t >= 0
    t, p = t[keep], p[keep]
    labels = list(range(len(classes)))
    if len(t) == 0:
        return {"accuracy": None, "macro_f1": None, "per_class": {}, "confusion_matrix": [],
                "n_labelled": 0}
    prec, rec, f1, support = precision_recall_fscore_support(
        t, p, labels=labels, zero_division=0)
    present = [i for i in labels if support[i] > 0]
    return {
        "accuracy": float(np.mean(t == p)),
        "macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0)),
        "per_class": {classes[i]: {"precision": float(prec[i]), "recall": float(rec[i]),
                                   "f1": float(f1[i]), "support": int(support[i])}
                      for i in labels},
        "confusion_matrix": confusion_matrix(t, p, labels=labels).tolist(),
        "n_labelled": int(len(t)),
    }


def best_ious(pred_boxes: Sequence[np.ndarray | None], gt_boxes: Sequence[np.ndarray]) -> np.ndarray:
    """For each image with at least one GT box: the IoU of its predicted box with the
    best-matching GT box (0 when no box was predicted). Images without GT are skipped."""
    out = []
    for pred, gt in zip(pred_boxes, gt_boxes, strict=True):
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        if len(gt) == 0:
            continue
        if pred is None:
            out.append(0.0)
            continue
        out.append(float(iou_matrix(np.asarray(pred).reshape(1, 4), gt).max()))
    return np.asarray(out, dtype=np.float64)


def localization_metrics(pred_boxes: Sequence[np.ndarray | None],
                         gt_boxes: Sequence[np.ndarray]) -> dict[str, Any]:
    """Mean IoU and the share with IoU >= 0.5, over images with a GT tumour box."""
    ious = best_ious(pred_boxes, gt_boxes)
    if len(ious) == 0:
        return {"mean_iou": None, "iou50_rate": None, "n_boxed": 0}
    return {"mean_iou": float(ious.mean()), "iou50_rate": float((ious >= 0.5).mean()),
            "n_boxed": int(len(ious))}
