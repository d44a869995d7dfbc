"""Statistics for comparing models over cross-validation folds (scipy).

The input of every test is a score table ``scores`` of shape ``(n_blocks, n_models)``: one
row per fold (the *blocks*), one column per model, higher is better unless stated (then
the table is negated before ranking). Ranks are given per block, rank 1 = best, ties
share the mean rank.

- :func:`friedman`: Friedman's test that all models rank alike
  (``scipy.stats.friedmanchisquare``, chi-square approximation, tie-corrected), with
  Kendall's W, the agreement of the folds' rankings: ``W = chi2_F / (N (k - 1))``.
- :func:`kendalls_w`: Kendall's coefficient of concordance from its definition
  ``W = 12 S / (m^2 (n^3 - n) - m T)`` (``m`` raters = folds, ``n`` items = models, ``S`` the
  sum of squared deviations of the rank sums from their mean, ``T`` the tie correction
  ``sum(t^3 - t)`` over the tie groups of every fold); 1 when every fold ranks the models
  the same way, 0 when the rank sums are all equal.
- :func:`wilcoxon_pair`: the Wilcoxon signed-rank test of two models over the folds
  (``scipy.stats.wilcoxon``, zero differences split between the signs, ``zero_method=
  "zsplit"``, as Demšar (2006) recommends).
- :func:`holm`: Holm's step-down adjustment of a family of p-values.
- :func:`pairwise_wilcoxon`: the post-hoc test after Friedman: Wilcoxon signed-rank for
  every pair, Holm-adjusted. We use it rather than Nemenyi's mean-rank test because the
  outcome of a mean-rank comparison of two models depends on which *other* models are in
  the study (Benavoli, Corani & Mangili, JMLR 2016); the Wilcoxon test of a pair looks at
  that pair's own fold scores only.
- :func:`bootstrap_ci`: a percentile bootstrap confidence interval of the mean over folds
  (``scipy.stats.bootstrap``; percentile rather than BCa, whose jackknife acceleration is
  unstable with a handful of folds).
- :func:`different_groups`: for the critical-difference plot, the maximal runs of models
  (in rank order) no pair of which differs significantly.

Caveats (repeated in the study report): folds share training images, so their scores are
not independent and the p-values are optimistic (Nadeau & Bengio, 2003); the exact
two-sided Wilcoxon p-value of ``n`` folds is at least ``2 / 2**n`` (0.25 for 3 folds, 0.0625
for 5, 0.03125 for 6), so a pair can only be significant at 0.05 with 6 folds or more.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

from mtbrain.errors import ConfigError


def _table(scores: Any, *, min_models: int = 2) -> np.ndarray:
    table = np.asarray(scores, dtype=np.float64)
    if table.ndim != 2:
        raise ConfigError(f"scores must be a (folds, models) table, got shape {table.shape}")
    if table.shape[1] < min_models:
        raise ConfigError(f"need at least {min_models} models, got {table.shape[1]}")
    if table.shape[0] < 2:
        raise ConfigError(f"need at least 2 folds, got {table.shape[0]}")
    if not np.isfinite(table).all():
        raise ConfigError("scores must be finite numbers (a model lacks a value on a fold?)")
    return table


def rank_table(scores: Any, *, higher_is_better: bool = True) -> np.ndarray:
    """Ranks of the models within each fold (rank 1 = best, ties share the mean rank)."""
    from scipy.stats import rankdata

    table = _table(scores, min_models=1)
    return rankdata(-table if higher_is_better else table, axis=1)


def average_ranks(scores: Any, *, higher_is_better: bool = True) -> np.ndarray:
    """Mean rank of each model over the folds (1 = best)."""
    return rank_table(scores, higher_is_better=higher_is_better).mean(axis=0)


def kendalls_w(scores: Any, *, higher_is_better: bool = True) -> float:
    """Kendall's W of the folds' rankings of the models (see the module doc), tie-corrected.

    At least two models and two folds; a table whose every fold ties all models gives 0.
    """
    ranks = rank_table(_table(scores), higher_is_better=higher_is_better)
    m, n = ranks.shape
    sums = ranks.sum(axis=0)
    s = float(((sums - sums.mean()) ** 2).sum())
    ties = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts**3 - counts).sum())
    denom = m**2 * (n**3 - n) - m * ties
    return 0.0 if denom <= 0 else 12.0 * s / denom


def friedman(scores: Any, *, higher_is_better: bool = True) -> dict[str, Any]:
    """Friedman's test over the folds (at least 3 models and 2 folds).

    Returns:
        ``statistic`` (chi-square, tie-corrected), ``pvalue``, ``df`` (models - 1),
        ``n_folds``, ``n_models``, ``kendalls_w`` and ``average_ranks``. A table whose folds
        all tie every model gives statistic 0 and p-value 1.
    """
    from scipy.stats import friedmanchisquare

    table = _table(scores, min_models=3)
    n, k = table.shape
    w = kendalls_w(table, higher_is_better=higher_is_better)
    ranks = average_ranks(table, higher_is_better=higher_is_better)
    if np.all(table == table[:, :1]):
        stat, p = 0.0, 1.0  # every fold ties every model: scipy divides 0 by 0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = friedmanchisquare(*table.T)
        stat, p = float(res.statistic), float(res.pvalue)
    return {"statistic": stat, "pvalue": p, "df": k - 1, "n_folds": n, "n_models": k,
            "kendalls_w": w, "average_ranks": ranks.tolist()}


def wilcoxon_pair(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Wilcoxon signed-rank test of two models' fold scores (two-sided, paired by fold).

    Returns:
        ``statistic``, ``pvalue``, ``n_folds``, ``mean_diff`` (mean of ``a - b``) and
        ``min_pvalue``: the smallest two-sided p-value the exact test can give with this
        many folds (``2 / 2**n``). Identical scores give p-value 1.
    """
    from scipy.stats import wilcoxon

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"two models need one score per fold each, got {x.shape} and {y.shape}")
    _table(np.stack([x, y], axis=1))
    diff = x - y
    if np.all(diff == 0):
        stat, p = 0.0, 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (RuntimeWarning, UserWarning))
            res = wilcoxon(x, y, zero_method="zsplit")
        stat, p = float(res.statistic), float(res.pvalue)
    return {"statistic": stat, "pvalue": p, "n_folds": len(x), "mean_diff": float(diff.mean()),
            "min_pvalue": 2.0 / 2 ** len(x)}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    The ``i``-th smallest of ``m`` p-values is multiplied by ``m - i`` (``i`` from 0), the
    results are made non-decreasing in that order and capped at 1; a hypothesis is
    rejected at level ``alpha`` when its adjusted p-value is ``<= alpha``.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or not np.isfinite(p).all():
        raise ConfigError(f"p-values must be numbers in [0, 1], got {list(pvalues)}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        adjusted[j] = running
    return adjusted.tolist()


def pairwise_wilcoxon(scores: Any, names: Sequence[str], *, alpha: float = 0.05,
                      higher_is_better: bool = True) -> list[dict[str, Any]]:
    """Wilcoxon signed-rank test for every pair of models, Holm-adjusted over the pairs.

    Returns:
        One row per pair ``(a, b)`` (in the order of ``names``): ``a``, ``b``,
        ``mean_diff`` (a - b), ``statistic``, ``pvalue``, ``p_holm``, ``significant``
        (``p_holm <= alpha``) and ``better`` (the name of the model with the better mean,
        or ``None`` when the means tie).
    """
    table = _table(scores)
    if len(names) != table.shape[1]:
        raise ConfigError(f"{len(names)} names for {table.shape[1]} models")
    rows = []
    for i, j in combinations(range(table.shape[1]), 2):
        test = wilcoxon_pair(table[:, i], table[:, j])
        d = test["mean_diff"] if higher_is_better else -test["mean_diff"]
        rows.append({"a": names[i], "b": names[j], "mean_diff": test["mean_diff"],
                     "statistic": test["statistic"], "pvalue": test["pvalue"],
                     "better": names[i] if d > 0 else names[j] if d < 0 else None})
    for row, p in zip(rows, holm([r["pvalue"] for r in rows]), strict=True):
        row["p_holm"] = p
        row["significant"] = p <= alpha
    return rows


def bootstrap_ci(values: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 9999,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    ``None`` for fewer than two values; ``(v, v)`` when every value is ``v``.
    """
    from scipy.stats import bootstrap

    x = np.asarray(values, dtype=np.float64)
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    if len(x) < 2 or not np.isfinite(x).all():
        return None
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                    method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def different_groups(names: Sequence[str], ranks: Sequence[float],
                     pairs: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Maximal runs of models, in rank order, with no significantly different pair.

    The bars of a critical-difference diagram: each run of two or more models (ordered
    by average rank) in which no pair is ``significant`` in ``pairs`` (as returned by
    :func:`pairwise_wilcoxon`), and that no longer run contains.
    """
    order = sorted(range(len(names)), key=lambda i: (ranks[i], i))
    sig = {frozenset((r["a"], r["b"])) for r in pairs if r["significant"]}
    runs: list[tuple[int, int]] = []
    for start in range(len(order)):
        end = start
        while end + 1 < len(order) and not any(
                frozenset((names[order[k]], names[order[end + 1]])) in sig
                for k in range(start, end + 1)):
            end += 1
        if end > start and not any(s <= start and end <= e for s, e in runs):
            runs.append((start, end))
    return [[names[order[k]] for k in range(s, e + 1)] for s, e in runs]


def compare_models(scores: Any, names: Sequence[str], *, alpha: float = 0.05,
                   higher_is_better: bool = True, confidence: float = 0.95,
                   seed: int = 0) -> dict[str, Any]:
    """Every test of one metric: per-model mean and bootstrap CI, average ranks, Friedman
    and Kendall's W (3 models or more), Wilcoxon (2 models) or Holm-adjusted pairwise
    Wilcoxon tests (3 or more), and the critical-difference groups.
    """
    table = _table(scores)
    n, k = table.shape
    ranks = average_ranks(table, higher_is_better=higher_is_better)
    models = {}
    for j, name in enumerate(names):
        ci = bootstrap_ci(table[:, j], confidence=confidence, seed=seed)
        models[name] = {"mean": float(table[:, j].mean()), "std": float(table[:, j].std(ddof=1)),
                        "ci": list(ci) if ci is not None else None,
                        "values": table[:, j].tolist(), "average_rank": float(ranks[j])}
    out: dict[str, Any] = {"n_folds": n, "n_models": k, "higher_is_better": higher_is_better,
                           "alpha": alpha, "confidence": confidence, "models": models,
                           "kendalls_w": kendalls_w(table, higher_is_better=higher_is_better),
                           "friedman": None,
                           "pairwise": pairwise_wilcoxon(table, names, alpha=alpha,
                                                         higher_is_better=higher_is_better),
                           "min_wilcoxon_p": 2.0 / 2**n}
    if k >= 3:
        out["friedman"] = friedman(table, higher_is_better=higher_is_better)
    out["groups"] = different_groups(list(names), ranks.tolist(), out["pairwise"])
    return out


def min_folds_for(alpha: float) -> int:
    """Fewest folds with which the exact two-sided Wilcoxon test can reach ``alpha``."""
    return max(2, math.ceil(math.log2(2.0 / alpha)))
