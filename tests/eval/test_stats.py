"""Statistics of model comparisons, checked against hand computations and scipy's examples."""

from __future__ import annotations

import numpy as np
import pytest

from mtbrain.errors import ConfigError
from mtbrain.eval.stats import (
    average_ranks,
    bootstrap_ci,
    compare_models,
    different_groups,
    friedman,
    holm,
    kendalls_w,
    min_folds_for,
    pairwise_wilcoxon,
    rank_table,
    wilcoxon_pair,
)

# scipy's friedmanchisquare example: pulse before, immediately after and 5 min after
# exercise, 7 subjects (the blocks). Ranks per subject by hand: rank sums 10, 21, 11, so
# chi2 = 12 / (7 * 3 * 4) * (10^2 + 21^2 + 11^2) - 3 * 7 * 4 = 10.5714..., and with 2
# degrees of freedom p = exp(-chi2 / 2) = 0.0050634...
PULSE = np.array([[72, 96, 88, 92, 74, 76, 82],
                  [120, 120, 132, 120, 101, 96, 112],
                  [76, 95, 104, 96, 84, 72, 76]], dtype=float).T


def test_friedman_scipy_example() -> None:
    res = friedman(PULSE)
    chi2 = 12 / (7 * 3 * 4) * (10**2 + 21**2 + 11**2) - 3 * 7 * 4
    assert res["statistic"] == pytest.approx(chi2) == pytest.approx(10.571428571428571)
    assert res["pvalue"] == pytest.approx(np.exp(-chi2 / 2)) == pytest.approx(0.0050634, abs=1e-6)
    assert res["df"] == 2 and res["n_folds"] == 7 and res["n_models"] == 3
    # higher is better, the largest pulse ranks 1: a rank r (ascending) becomes 4 - r
    assert res["average_ranks"] == pytest.approx([(28 - 10) / 7, (28 - 21) / 7, (28 - 11) / 7])
    # Kendall's W = chi2 / (N (k - 1))
    assert res["kendalls_w"] == pytest.approx(chi2 / (7 * 2))


def test_kendalls_w_hand_cases() -> None:
    # 3 folds rank 3 models (1 best): (1, 2, 3), (1, 3, 2), (2, 1, 3): rank sums 4, 6, 8,
    # S = 8, W = 12 * 8 / (3^2 * (3^3 - 3)) = 0.4444...
    scores = np.array([[3, 2, 1], [3, 1, 2], [2, 3, 1]], dtype=float)
    assert rank_table(scores).tolist() == [[1, 2, 3], [1, 3, 2], [2, 1, 3]]
    assert kendalls_w(scores) == pytest.approx(96 / 216)
    assert kendalls_w(np.tile([0.9, 0.8, 0.7, 0.6], (5, 1))) == pytest.approx(1.0)
    # perfectly opposed pair of folds: rank sums all equal
    assert kendalls_w(np.array([[1.0, 2.0], [2.0, 1.0]])) == pytest.approx(0.0)
    # ties: fold 2 ties models b and c (ranks 2.5, 2.5): T = 2^3 - 2 = 6; rank sums 2, 4.5,
    # 5.5, S = 6.5; W = 12 * 6.5 / (4 * 24 - 2 * 6) = 78 / 84
    tied = np.array([[3, 2, 1], [3, 1, 1]], dtype=float)
    assert kendalls_w(tied) == pytest.approx(78 / 84)
    # and it agrees with scipy's tie-corrected Friedman statistic
    assert friedman(tied)["statistic"] == pytest.approx(78 / 84 * 2 * 2)
    assert kendalls_w(tied, higher_is_better=False) == pytest.approx(78 / 84)


def test_average_ranks_lower_is_better() -> None:
    scores = [[0.1, 0.2], [0.3, 0.2]]
    assert average_ranks(scores).tolist() == [1.5, 1.5]
    assert average_ranks([[0.1, 0.2], [0.1, 0.3]], higher_is_better=False).tolist() == [1.0, 2.0]


def test_friedman_all_tied() -> None:
    res = friedman(np.full((4, 3), 0.5))
    assert res["statistic"] == 0.0 and res["pvalue"] == 1.0 and res["kendalls_w"] == 0.0


def test_wilcoxon_scipy_example() -> None:
    # scipy's wilcoxon example: the negative differences -48 and -67 have ranks 10 and 14
    d = np.array([6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float)
    res = wilcoxon_pair(d, np.zeros_like(d))
    assert res["statistic"] == 24.0
    assert res["pvalue"] == pytest.approx(0.041259765625)
    assert res["mean_diff"] == pytest.approx(d.mean()) and res["n_folds"] == 15


def test_wilcoxon_small_samples() -> None:
    # 3 folds, all better: the exact two-sided p is 2 / 2^3 = 0.25, the smallest possible
    res = wilcoxon_pair([0.9, 0.8, 0.85], [0.7, 0.75, 0.6])
    assert res["pvalue"] == pytest.approx(0.25) == pytest.approx(res["min_pvalue"])
    assert wilcoxon_pair([0.5, 0.6], [0.5, 0.6])["pvalue"] == 1.0
    assert min_folds_for(0.05) == 6 and 2 / 2**6 <= 0.05 < 2 / 2**5
    with pytest.raises(ConfigError, match="one score per fold"):
        wilcoxon_pair([1, 2, 3], [1, 2])


def test_holm_given_pvalues() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    # 0.02, 0.03, 0.06, 0.06; back in the input order:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])
    assert holm([]) == []
    with pytest.raises(ConfigError, match="p-values"):
        holm([0.1, 1.5])


def test_pairwise_wilcoxon_holm() -> None:
    # model a beats b and c on all 6 folds (p = 2/64 each), b vs c mixed
    a = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95]
    b = [0.80, 0.82, 0.79, 0.85, 0.81, 0.80]
    c = [0.81, 0.80, 0.80, 0.84, 0.82, 0.79]
    rows = pairwise_wilcoxon(np.array([a, b, c]).T, ["a", "b", "c"])
    by = {(r["a"], r["b"]): r for r in rows}
    assert by[("a", "b")]["pvalue"] == pytest.approx(2 / 64)
    assert by[("a", "b")]["p_holm"] == pytest.approx(3 * 2 / 64)  # smallest of 3: x3
    assert not by[("a", "b")]["significant"]  # 0.09375 > 0.05 after Holm
    assert by[("a", "b")]["better"] == "a" and by[("a", "c")]["better"] == "a"
    assert by[("b", "c")]["pvalue"] > 0.5 and not by[("b", "c")]["significant"]
    loose = pairwise_wilcoxon(np.array([a, b, c]).T, ["a", "b", "c"], alpha=0.1)
    assert [r["significant"] for r in loose] == [True, True, False]


def test_bootstrap_ci_known_values() -> None:
    # two values 0 and 1: resampled means are 0, 0.5, 1 with chances 1/4, 1/2, 1/4, so the
    # 95 % percentile interval is [0, 1]
    assert bootstrap_ci([0.0, 1.0]) == pytest.approx((0.0, 1.0))
    assert bootstrap_ci([0.7, 0.7, 0.7]) == (0.7, 0.7)
    assert bootstrap_ci([0.5]) is None
    values = [0.61, 0.70, 0.66, 0.72, 0.64]
    low, high = bootstrap_ci(values, seed=3)
    assert min(values) <= low < np.mean(values) < high <= max(values)
    assert bootstrap_ci(values, seed=3) == (low, high)  # seeded
    narrow = bootstrap_ci(values, confidence=0.5, seed=3)
    assert low <= narrow[0] and narrow[1] <= high


def test_different_groups() -> None:
    names = ["a", "b", "c", "d"]
    ranks = [1.0, 2.0, 3.0, 4.0]
    sig = [("a", "c"), ("a", "d"), ("b", "d")]
    pairs = [{"a": x, "b": y, "significant": (x, y) in sig}
             for i, x in enumerate(names) for y in names[i + 1:]]
    assert different_groups(names, ranks, pairs) == [["a", "b"], ["b", "c"], ["c", "d"]]
    none_sig = [{**p, "significant": False} for p in pairs]
    assert different_groups(names, [4, 3, 2, 1], none_sig) == [["d", "c", "b", "a"]]
    all_sig = [{**p, "significant": True} for p in pairs]
    assert different_groups(names, ranks, all_sig) == []


def test_compare_models_two_and_three() -> None:
    two = compare_models([[0.8, 0.7], [0.82, 0.71], [0.79, 0.75]], ["x", "y"])
    assert two["friedman"] is None and len(two["pairwise"]) == 1
    assert two["pairwise"][0]["pvalue"] == pytest.approx(0.25)
    assert two["models"]["x"]["mean"] == pytest.approx(0.80333333)
    assert two["models"]["x"]["average_rank"] == 1.0
    three = compare_models(PULSE, ["before", "after", "later"])
    assert three["friedman"]["pvalue"] == pytest.approx(0.0050634, abs=1e-6)
    assert three["models"]["after"]["average_rank"] == 1.0
    ci = three["models"]["before"]["ci"]
    assert ci[0] <= three["models"]["before"]["mean"] <= ci[1]
    with pytest.raises(ConfigError, match="at least 2 folds"):
        compare_models([[0.1, 0.2]], ["x", "y"])
    with pytest.raises(ConfigError, match="finite"):
        compare_models([[0.1, np.nan], [0.2, 0.3]], ["x", "y"])
