"""Metrics shared by validation during training and by ``mtbrain evaluate``.

Classification through scikit-learn (:func:`classification_metrics`); localization as the
IoU of the one predicted box against the image's ground-truth tumour boxes (the
best-matching one when there are several), over images that have a tumour box. A missing
prediction counts as IoU 0.

Definitions used by :func:`classification_metrics` (samples with ``y_true < 0`` are left out
of everything):

- *macro* precision / recall / F1 / F2 average over the classes present in ``y_true``
  (a class with no true sample has no recall and would only add a 0);
  ``balanced_accuracy`` is the mean recall over the same classes;
  ``classification_report`` is scikit-learn's own dict (its averages run over all classes).
- F2 is F-beta with beta = 2, ``5PR / (4P + R)``: recall weighs four times as much as
  precision because a missed tumour costs more than a false alarm.
- ``cohen_kappa`` is scikit-learn's unweighted kappa (None when undefined, e.g. one class
  only on both sides); ``mcc`` is the multiclass Matthews correlation (0 when undefined).
- With ``probs`` (one row per sample, columns in class order): ROC AUC one-vs-rest per
  class; None for a class whose one-vs-rest labels have a single value (absent from
  ``y_true``, or every sample belongs to it). ``macro_auc`` is the mean of the defined ones.
- Expected calibration error over :data:`ECE_BINS` equal-width confidence bins on [0, 1];
  bin ``b`` holds the samples whose confidence lies in ``(b/B, (b+1)/B]`` (confidence 0 goes
  to bin 0). A sample's *confidence* is its largest probability; it is *correct* when its
  predicted label ``y_pred`` equals the truth (for a model whose label is the argmax of its
  probabilities this is the usual definition)::

      ECE = sum over bins b of  n_b / N * |accuracy_b - mean confidence_b|

  ``reliability`` lists every bin with its edges, count, mean confidence and accuracy
  (None for empty bins): the data of a reliability diagram. Probabilities are used as given
  (not renormalised).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    classification_report,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    fbeta_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from mtbrain.data.boxes import iou_matrix

ECE_BINS: int = 15
"""Number of equal-width confidence bins of the expected calibration error."""

F_BETA: float = 2.0
"""Beta of the F-beta score reported as ``f2`` (recall counts more than precision)."""

ROC_POINTS: int = 101
"""Most points kept per class by :func:`roc_curves` (enough for a plot, small in JSON)."""


def _finite(value: Any) -> float | None:
    """A plain float, or None for NaN/inf (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(obj: Any) -> Any:
    """Nested dicts/lists with numpy scalars turned into plain Python values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _finite(obj)
    return obj


Labelled = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def _labelled(y_true: Sequence[int], y_pred: Sequence[int], probs: Any | None,
              n_classes: int) -> Labelled:
    """``y_true``, ``y_pred`` (and ``probs``) as arrays, without the unlabelled samples."""
    t = np.asarray(y_true, dtype=int)
    p = np.asarray(y_pred, dtype=int)
    if len(t) != len(p):
        raise ValueError(f"{len(t)} true labels but {len(p)} predictions")
    keep = t >= 0
    if probs is None:
        return t[keep], p[keep], None
    pr = np.asarray(probs, dtype=np.float64)
    if pr.shape != (len(t), n_classes):
        raise ValueError(f"probs must have shape ({len(t)}, {n_classes}), got {pr.shape}")
    return t[keep], p[keep], pr[keep]


def _empty_result() -> dict[str, Any]:
    """The result of :func:`classification_metrics` when no sample has a label."""
    return {"accuracy": None, "macro_f1": None, "per_class": {}, "confusion_matrix": [],
            "n_labelled": 0, "balanced_accuracy": None, "macro_precision": None,
            "macro_recall": None, "macro_f2": None, "cohen_kappa": None, "mcc": None,
            "classification_report": {}, "macro_auc": None, "ece": None, "ece_bins": ECE_BINS,
            "reliability": None}


def _agreement(t: np.ndarray, p: np.ndarray, labels: list[int]) -> dict[str, float | None]:
    """Balanced accuracy, Cohen's kappa and MCC (scikit-learn), NaN as None."""
    return {
        "balanced_accuracy": _finite(balanced_accuracy_score(t, p)),
        "cohen_kappa": _finite(cohen_kappa_score(t, p, labels=labels)),
        "mcc": _finite(matthews_corrcoef(t, p)),
    }


def _macro(t: np.ndarray, p: np.ndarray, present: list[int]) -> dict[str, float]:
    """Macro precision, recall, F1 and F2 over the classes present in ``t``."""
    prec, rec, _, _ = precision_recall_fscore_support(t, p, labels=present, average="macro",
                                                      zero_division=0)
    return {
        "macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0)),
        "macro_precision": float(prec),
        "macro_recall": float(rec),
        "macro_f2": float(fbeta_score(t, p, beta=F_BETA, labels=present, average="macro",
                                      zero_division=0)),
    }


def roc_auc_per_class(y_true: np.ndarray, probs: np.ndarray) -> list[float | None]:
    """One-vs-rest ROC AUC of each class column of ``probs`` (labelled samples only).

    Args:
        y_true: ``(N,)`` class indices, all >= 0.
        probs: ``(N, C)`` scores, columns in class order.

    Returns:
        One AUC per class; None where the class's one-vs-rest labels have a single value.
    """
    out: list[float | None] = []
    for c in range(probs.shape[1]):
        positive = y_true == c
        if positive.all() or not positive.any():
            out.append(None)
        else:
            out.append(_finite(roc_auc_score(positive, probs[:, c])))
    return out


def calibration(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray,
                n_bins: int = ECE_BINS) -> tuple[float | None, list[dict[str, Any]]]:
    """Expected calibration error and reliability-diagram bins (definition: module doc).

    Args:
        y_true: ``(N,)`` true class indices.
        y_pred: ``(N,)`` predicted class indices (correctness).
        probs: ``(N, C)`` probabilities (confidence = the row maximum).
        n_bins: Number of equal-width bins on [0, 1].

    Returns:
        ``(ece, bins)``; ``ece`` is None for no samples. Each bin is ``{"lower", "upper",
        "count", "confidence", "accuracy"}`` (the last two None when the bin is empty).
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (y_pred == y_true).astype(np.float64)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        member = which == b
        count = int(member.sum())
        mean_conf = float(conf[member].mean()) if count else None
        accuracy = float(correct[member].mean()) if count else None
        if count:
            ece += count / len(conf) * abs(accuracy - mean_conf)
        bins.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count,
                     "confidence": mean_conf, "accuracy": accuracy})
    return (float(ece) if len(conf) else None), bins


def _probability_metrics(t: np.ndarray, p: np.ndarray,
                         probs: np.ndarray | None) -> tuple[dict[str, Any], list[float | None]]:
    """``macro_auc``, ``ece``, ``reliability`` and the per-class AUCs (all None without probs)."""
    if probs is None:
        return {"macro_auc": None, "ece": None, "ece_bins": ECE_BINS, "reliability": None}, []
    aucs = roc_auc_per_class(t, probs)
    defined = [a for a in aucs if a is not None]
    ece, bins = calibration(t, p, probs)
    return {"macro_auc": float(np.mean(defined)) if defined else None, "ece": ece,
            "ece_bins": ECE_BINS, "reliability": bins}, aucs


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           classes: Sequence[str], probs: Any | None = None) -> dict[str, Any]:
    """Classification metrics of predicted against true class indices (see module doc).

    Args:
        y_true: True class index per sample; ``< 0`` means unlabelled (left out).
        y_pred: Predicted class index per sample.
        classes: Class names, indexed by class index.
        probs: Optional ``(N, C)`` class probabilities, columns in class order; enables
            ROC AUC, ECE and the reliability bins.

    Returns:
        JSON-able dict: ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``macro_f2``,
        ``macro_precision``, ``macro_recall``, ``cohen_kappa``, ``mcc``, ``macro_auc``,
        ``ece``, ``ece_bins``, ``reliability``, ``per_class`` (precision, recall, f1, f2,
        support, auc), ``confusion_matrix``, ``classification_report`` and ``n_labelled``.

    Raises:
        ValueError: If the lengths differ or ``probs`` has the wrong shape.
    """
    t, p, pr = _labelled(y_true, y_pred, probs, len(classes))
    if len(t) == 0:
        return _empty_result()
    labels = list(range(len(classes)))
    prec, rec, f1, support = precision_recall_fscore_support(
        t, p, labels=labels, zero_division=0)
    f2 = fbeta_score(t, p, beta=F_BETA, labels=labels, average=None, zero_division=0)
    present = [i for i in labels if support[i] > 0]
    with warnings.catch_warnings():  # e.g. "y_pred contains classes not in y_true"
        warnings.simplefilter("ignore")
        agreement = _agreement(t, p, labels)
        report = classification_report(t, p, labels=labels, target_names=list(classes),
                                       output_dict=True, zero_division=0)
        prob_m, aucs = _probability_metrics(t, p, pr)
    per_class = {classes[i]: {"precision": float(prec[i]), "recall": float(rec[i]),
                              "f1": float(f1[i]), "f2": float(f2[i]), "support": int(support[i]),
                              "auc": aucs[i] if aucs else None}
                 for i in labels}
    return {
        "accuracy": float(np.mean(t == p)),
        **_macro(t, p, present),
        **agreement,
        **prob_m,
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(t, p, labels=labels).tolist(),
        "classification_report": _jsonable(report),
        "n_labelled": int(len(t)),
    }


def _thin(fpr: np.ndarray, tpr: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a curve, evenly by index, first and last kept."""
    if len(fpr) <= max_points:
        return fpr, tpr
    keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
    return fpr[keep], tpr[keep]


def roc_curves(y_true: Sequence[int], probs: Any, classes: Sequence[str], *,
               max_points: int = ROC_POINTS) -> dict[str, dict[str, Any]]:
    """One-vs-rest ROC curves per class, small enough for ``metrics.json``.

    Args:
        y_true: True class index per sample; ``< 0`` means unlabelled (left out).
        probs: ``(N, C)`` class probabilities, columns in class order.
        classes: Class names, indexed by class index.
        max_points: Most points kept per curve (evenly by index; the exact AUC is computed
            from the full curve).

    Returns:
        ``{class: {"fpr": [...], "tpr": [...], "auc": float}}`` for the classes whose AUC
        is defined (values rounded to 4 decimals).
    """
    t, _, pr = _labelled(y_true, y_true, probs, len(classes))
    out: dict[str, dict[str, Any]] = {}
    if pr is None or len(t) == 0:
        return out
    for c, auc in enumerate(roc_auc_per_class(t, pr)):
        if auc is None:
            continue
        fpr, tpr, _ = roc_curve(t == c, pr[:, c])
        fpr, tpr = _thin(fpr, tpr, max_points)
        out[classes[c]] = {"fpr": [round(float(v), 4) for v in fpr],
                           "tpr": [round(float(v), 4) for v in tpr], "auc": auc}
    return out


def best_ious(pred_boxes: Sequence[np.ndarray | None],
              gt_boxes: Sequence[np.ndarray]) -> np.ndarray:
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
