"""Classification metrics against values computed by hand on tiny cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mtbrain.eval.metrics import (
    ECE_BINS,
    calibration,
    classification_metrics,
    roc_auc_per_class,
    roc_curves,
)

CLASSES = ["a", "b", "c"]
# 6 samples, 3 classes, two of each.
Y_TRUE = [0, 0, 1, 1, 2, 2]
Y_PRED = [0, 1, 1, 1, 2, 0]
# Confusion matrix (rows true, columns predicted):
#   a: [1, 1, 0]    b: [0, 2, 0]    c: [1, 0, 1]
# column sums (predicted counts): a 2, b 3, c 1; row sums (true counts): 2, 2, 2.


def test_counts_and_agreement_by_hand() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, CLASSES)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recall a 1/2, b 2/2, c 1/2 -> balanced accuracy = mean recall = 2/3
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["macro_recall"] == pytest.approx(2 / 3)
    # precision a 1/2, b 2/3, c 1/1
    assert m["macro_precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    # Cohen's kappa: p_o = 4/6; p_e = (2*2 + 2*3 + 2*1) / 36 = 1/3
    # kappa = (2/3 - 1/3) / (1 - 1/3) = 0.5
    assert m["cohen_kappa"] == pytest.approx(0.5)
    # multiclass MCC (Gorodkin): c = 4 correct, s = 6, p = (2, 3, 1), t = (2, 2, 2)
    # (c*s - sum p_k t_k) / sqrt((s^2 - sum p_k^2) (s^2 - sum t_k^2))
    # = (24 - 12) / sqrt((36 - 14) * (36 - 12)) = 12 / sqrt(528)
    assert m["mcc"] == pytest.approx(12 / math.sqrt(528))
    assert m["n_labelled"] == 6


def test_f1_and_f2_by_hand() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, CLASSES)
    pc = m["per_class"]
    # F1 = 2PR/(P+R): a: P=R=1/2 -> 1/2; b: P=2/3, R=1 -> (4/3)/(5/3) = 4/5;
    #                  c: P=1, R=1/2 -> 1/(3/2) = 2/3
    assert [pc[c]["f1"] for c in CLASSES] == pytest.approx([0.5, 0.8, 2 / 3])
    # F2 = 5PR/(4P+R): a: (5/4)/(5/2) = 1/2; b: (10/3)/(8/3+1) = 10/11;
    #                  c: (5/2)/(4+1/2) = 5/9  (recall matters more: c drops, b rises)
    assert [pc[c]["f2"] for c in CLASSES] == pytest.approx([0.5, 10 / 11, 5 / 9])
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["macro_f2"] == pytest.approx((0.5 + 10 / 11 + 5 / 9) / 3)
    assert [pc[c]["support"] for c in CLASSES] == [2, 2, 2]
    report = m["classification_report"]
    assert report["b"]["f1-score"] == pytest.approx(0.8)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert all(pc[c]["auc"] is None for c in CLASSES)  # no probabilities given
    assert m["macro_auc"] is None and m["ece"] is None and m["reliability"] is None


def test_macro_averages_skip_absent_classes_and_unlabelled_samples() -> None:
    # class c never occurs in the truth; the -1 sample is left out entirely
    m = classification_metrics([0, 1, -1], [0, 1, 2], CLASSES)
    assert m["n_labelled"] == 2 and m["accuracy"] == 1.0
    assert m["macro_f1"] == 1.0 and m["macro_f2"] == 1.0 and m["balanced_accuracy"] == 1.0
    assert m["per_class"]["c"]["support"] == 0


def test_degenerate_cases_are_json_safe() -> None:
    # one class on both sides: kappa is 0/0 (None), MCC is defined as 0 by scikit-learn
    m = classification_metrics([0, 0], [0, 0], CLASSES, probs=[[1, 0, 0], [1, 0, 0]])
    assert m["cohen_kappa"] is None and m["mcc"] == 0.0
    assert m["macro_auc"] is None  # a: every sample positive; b, c: absent
    json.dumps(m, allow_nan=False)
    empty = classification_metrics([-1], [0], CLASSES)
    assert empty["accuracy"] is None and empty["n_labelled"] == 0 and empty["ece"] is None


def test_probs_must_match_the_samples() -> None:
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0, 1], [0, 1], CLASSES, probs=[[1, 0, 0]])
    with pytest.raises(ValueError, match="2 true labels but 1"):
        classification_metrics([0, 1], [0], CLASSES)


# Class a/b scores for 4 samples (two of a, two of b; class c absent).
PERFECT = [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]]
REVERSED = [[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.8, 0.1, 0.1], [0.9, 0.05, 0.05]]


@pytest.mark.parametrize(("probs", "auc"), [
    (PERFECT, 1.0),            # every positive above every negative
    (REVERSED, 0.0),           # every positive below every negative
    ([[1 / 3] * 3] * 4, 0.5),  # all tied: each positive/negative pair counts 1/2
])
def test_auc_on_known_rankings(probs: list[list[float]], auc: float) -> None:
    m = classification_metrics([0, 0, 1, 1], [0, 0, 1, 1], CLASSES, probs=probs)
    assert m["per_class"]["a"]["auc"] == pytest.approx(auc)
    assert m["per_class"]["b"]["auc"] == pytest.approx(auc)
    assert m["per_class"]["c"]["auc"] is None  # absent from y_true
    assert m["macro_auc"] == pytest.approx(auc)  # mean over the defined ones


def test_auc_partial_ranking_and_single_label_value() -> None:
    # positives score 0.9 and 0.4, negatives 0.5 and 0.1: 3 of 4 pairs ordered -> 0.75
    t = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5], [0.1, 0.9]])
    assert roc_auc_per_class(t, probs) == pytest.approx([0.75, 0.75])
    assert roc_auc_per_class(np.array([1, 1]), np.array([[0.3, 0.7], [0.6, 0.4]])) == [None, None]


def test_ece_and_reliability_bins_by_hand() -> None:
    # 15 bins of width 1/15. Confidence = largest probability, correct = y_pred == y_true:
    #   0.9 correct, 0.9 wrong -> bin 13 (13/15, 14/15]: accuracy 1/2, confidence 0.9, gap 0.4
    #   0.7 correct, 0.7 correct -> bin 10 (10/15, 11/15]: accuracy 1, confidence 0.7, gap 0.3
    # ECE = 2/4 * 0.4 + 2/4 * 0.3 = 0.35
    probs = [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.2, 0.1, 0.7]]
    m = classification_metrics([0, 1, 1, 2], [0, 0, 1, 2], CLASSES, probs=probs)
    assert m["ece"] == pytest.approx(0.35)
    assert m["ece_bins"] == ECE_BINS == 15
    bins = m["reliability"]
    assert len(bins) == 15 and [b["count"] for b in bins] == [0] * 10 + [2, 0, 0, 2, 0]
    assert bins[13]["accuracy"] == pytest.approx(0.5) and bins[13]["confidence"] == 0.9
    assert bins[10]["accuracy"] == 1.0 and bins[10]["confidence"] == pytest.approx(0.7)
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None
    assert bins[0]["lower"] == 0.0 and bins[-1]["upper"] == 1.0
    assert bins[10]["lower"] == pytest.approx(10 / 15)
    assert bins[10]["upper"] == pytest.approx(11 / 15)
    json.dumps(m, allow_nan=False)


def test_calibration_bin_edges() -> None:
    # bins are (lower, upper]; confidence 0 falls into the first, 1 into the last
    t = np.array([0, 0])
    ece, bins = calibration(t, t, np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert bins[0]["count"] == 1 and bins[-1]["count"] == 1
    # first sample: confidence 1, correct (gap 0); second: confidence 0, correct (gap 1)
    assert ece == pytest.approx(0.5)


def test_roc_curves_are_small_and_exact_auc() -> None:
    rng = np.random.default_rng(0)
    t = rng.integers(0, 3, 3000)
    probs = rng.dirichlet(np.ones(3), size=3000)
    probs[np.arange(3000), t] += 0.3  # some signal
    curves = roc_curves(t, probs, CLASSES)
    assert set(curves) == set(CLASSES)
    aucs = roc_auc_per_class(t, probs)
    for k, c in enumerate(CLASSES):
        fpr, tpr = curves[c]["fpr"], curves[c]["tpr"]
        assert 2 <= len(fpr) == len(tpr) <= 101
        assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
        assert np.all(np.diff(fpr) >= 0) and curves[c]["auc"] == aucs[k]
    assert "c" not in roc_curves([0, 1, -1], [[0.9, 0.1, 0], [0.2, 0.8, 0], [0, 0, 1]], CLASSES)
