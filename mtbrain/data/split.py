"""Leak-free splits: stratified by class, with every duplicate group in one part.

The unit of assignment is a *group*: a duplicate group from :mod:`mtbrain.data.dedup`
(exact and near copies), or a single image. Each group takes the class most of its images
carry. Per class, the groups are shuffled (``seed``), ordered largest first, and each goes
to the part that, with half the group added, is filled least relative to its target count
for that class (Sainte-Laguë apportionment; ties: the part with the larger target, then the
order train, val, test). Class proportions land within a group's size of the targets, a
class of one or two images stays in train, and the assignment is deterministic for a seed.
Because the fill is relative, every part takes its share of the groups of each size: images
that have copies (whose sources, in a merged set, need not match those of the rest) and
images without any spread over train, val and test in the same proportions. (An earlier
version gave each group to the part furthest below its target in absolute count, so train
took most of the large groups and val/test more than their share of the single images. A split file stores its parts, so files written then read back
unchanged; running ``mtbrain split`` again gives the new assignment.)

:func:`make_split` returns a :class:`~mtbrain.data.splitfile.SplitFile` (train/val/test);
:func:`group_kfold` returns ``k`` folds for cross-validation studies (scikit-learn's
``StratifiedGroupKFold`` over the same groups), and :func:`kfold_splits` one train/val/test
split per fold (``mtbrain study``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from mtbrain.data.dedup import UnionFind
from mtbrain.data.records import RecordSet
from mtbrain.data.splitfile import SplitFile
from mtbrain.errors import ConfigError, DataError

_NO_LABEL = "\0none"


def _units(recordset: RecordSet, groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """Every sample in exactly one unit: the given groups (merged where they overlap)
    and single images. Units come back sorted (members sorted, units by first member)."""
    rels = [s.rel for s in recordset.samples]
    index = {r: i for i, r in enumerate(rels)}
    if len(index) != len(rels):
        dup = next(r for r, n in Counter(rels).items() if n > 1)
        raise DataError(f"sample name {dup!r} occurs twice in the set", path=recordset.root)
    uf = UnionFind(len(rels))
    for g in groups:
        members = list(g)
        for rel in members:
            if rel not in index:
                raise DataError(
                    f"duplicate group names {rel!r}, which is not a sample of the set",
                    path=recordset.root,
                )
        for rel in members[1:]:
            uf.union(index[members[0]], index[rel])
    comp = uf.labels()
    units: dict[int, list[str]] = {}
    for i, c in enumerate(comp.tolist()):
        units.setdefault(c, []).append(rels[i])
    return sorted((sorted(u) for u in units.values()), key=lambda u: u[0])


def _unit_label(unit: Sequence[str], labels: Mapping[str, str | None]) -> str:
    counts = Counter(labels[r] if labels[r] is not None else _NO_LABEL for r in unit)
    top = max(counts.values())
    return min(c for c, n in counts.items() if n == top)  # ties: alphabetical, deterministic


def _assign(
    units: list[list[str]], labels: Mapping[str, str | None], fractions: Sequence[float], seed: int
) -> list[list[str]]:
    """Distribute units over ``len(fractions)`` parts, stratified by unit label."""
    by_class: dict[str, list[list[str]]] = {}
    for u in units:
        by_class.setdefault(_unit_label(u, labels), []).append(u)
    parts: list[list[str]] = [[] for _ in fractions]
    frac = np.asarray(fractions, dtype=np.float64)
    tie_order = np.lexsort((np.arange(len(frac)), -frac))  # larger target first, then order
    rank = np.empty(len(frac), dtype=np.int64)
    rank[tie_order] = np.arange(len(frac))
    for k, cls in enumerate(sorted(by_class)):
        members = by_class[cls]
        rng = np.random.default_rng([seed, k])
        order = rng.permutation(len(members))
        members = [members[i] for i in order]
        members.sort(key=len, reverse=True)  # stable: shuffled order within a size
        total = sum(len(u) for u in members)
        target = frac * total
        have = np.zeros(len(frac))
        for u in members:
            fill = (have + len(u) / 2) / target  # Sainte-Lague: fill at the group's midpoint
            best = min(range(len(frac)), key=lambda p: (round(fill[p], 9), rank[p]))
            parts[best].extend(u)
            have[best] += len(u)
    return [sorted(p) for p in parts]


def _check_fraction(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} fraction must be a number, got {value!r}") from None
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} fraction must be in [0, 1), got {value}")
    return value


def make_split(
    recordset: RecordSet,
    groups: Sequence[Sequence[str]],
    *,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    policy: Mapping[str, Any] | None = None,
) -> SplitFile:
    """Split a set into train/val/test, stratified by class, keeping groups together.

    Args:
        recordset: The set to split.
        groups: Duplicate groups as lists of ``rel`` names (see
            :meth:`mtbrain.data.dedup.Duplicates.rel_groups`); overlapping groups merge.
        val: Fraction of the images for validation (0 leaves the part out).
        test: Fraction of the images for test (0 leaves the part out).
        seed: Seed of the assignment; the same inputs and seed give the same split.
        policy: The label policy the set was read with (stored in the file, so that the
            parts are read back the same way).

    Returns:
        The :class:`SplitFile` (``parts``: ``train`` and, when their fraction is above 0,
        ``val`` and ``test``; ``groups``: the groups of more than one image).

    Raises:
        ConfigError: for fractions outside [0, 1) or summing to 1 or more.
        DataError: for a group naming a sample that is not in the set.
    """
    val, test = _check_fraction("val", val), _check_fraction("test", test)
    if val + test >= 1.0:
        raise ConfigError(f"val + test fractions must be below 1, got {val} + {test}")
    units = _units(recordset, groups)
    labels = {s.rel: s.label for s in recordset.samples}
    names = ["train", "val", "test"]
    fractions = [1.0 - val - test, val, test]
    keep = [i for i, f in enumerate(fractions) if f > 0]
    assigned = _assign(units, labels, [fractions[i] for i in keep], seed)
    parts = {names[i]: part for i, part in zip(keep, assigned, strict=True)}
    return SplitFile(
        data=str(recordset.root),
        layout=recordset.layout,
        parts=parts,
        policy=dict(policy or {}),
        seed=int(seed),
        fractions={"val": val, "test": test},
        groups=[u for u in units if len(u) > 1],
    )


def group_kfold(
    recordset: RecordSet, groups: Sequence[Sequence[str]], k: int, seed: int = 0
) -> list[list[str]]:
    """``k`` folds of ``rel`` names, stratified by class; no group straddles two folds.

    scikit-learn's ``StratifiedGroupKFold`` (shuffled, ``random_state=seed``) over the
    units of the split (duplicate groups, merged where they overlap, and single images),
    stratified by each image's class (unlabelled images form a class of their own). The
    same inputs and seed give the same folds.

    Raises:
        ConfigError: when ``k`` < 2 or the set has fewer groups than ``k``.
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise ConfigError(f"k must be an integer >= 2, got {k!r}")
    units = _units(recordset, groups)
    if len(units) < k:
        raise ConfigError(f"cannot make {k} folds from {len(units)} groups of {recordset.root}")
    unit_of = {rel: u for u, members in enumerate(units) for rel in members}
    rels = [s.rel for s in recordset.samples]
    y = [s.label if s.label is not None else _NO_LABEL for s in recordset.samples]
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "the least populated class has only n members": fine
        warnings.simplefilter("ignore", UserWarning)
        folds = [sorted(rels[i] for i in test)
                 for _, test in cv.split(rels, y, [unit_of[r] for r in rels])]
    if any(not f for f in folds):
        raise ConfigError(f"cannot make {k} non-empty folds from the {len(units)} groups of "
                          f"{recordset.root}")
    return folds


def kfold_splits(
    recordset: RecordSet,
    groups: Sequence[Sequence[str]],
    k: int,
    *,
    val: float = 0.15,
    seed: int = 0,
    policy: Mapping[str, Any] | None = None,
) -> list[SplitFile]:
    """One train/val/test split per fold of :func:`group_kfold`, for cross-validation.

    Split ``i`` tests on fold ``i``; the other folds are split by :func:`make_split` into
    train and a validation part of ``val`` of their images (stratified, duplicate groups
    whole), which picks the best epoch. No duplicate group straddles two parts.

    Args:
        recordset: The set.
        groups: Duplicate groups as lists of ``rel`` names.
        k: Number of folds (>= 2).
        val: Share of the training folds held out for validation, in (0, 1).
        seed: Seed of the folds and of the validation parts.
        policy: The label policy the set was read with (stored in every split).
    """
    val = _check_fraction("val", val)
    if val <= 0:
        raise ConfigError("val fraction must be above 0: a study picks each model's best epoch "
                          "on a validation part")
    folds = group_kfold(recordset, groups, k, seed)
    splits = []
    for i, test in enumerate(folds):
        held = set(test)
        rest = recordset.subset([s.rel for s in recordset.samples if s.rel not in held])
        inner = [g for g in groups if not held.intersection(g)]
        fit = make_split(rest, inner, val=val, test=0.0, seed=seed + i, policy=policy)
        splits.append(replace(fit, parts={"train": fit.parts["train"], "val": fit.parts["val"],
                                          "test": list(test)},
                              fractions={"val": val, "test": len(test) / len(recordset)},
                              groups=_units_of_groups(recordset, groups)))
    return splits


def _units_of_groups(recordset: RecordSet, groups: Sequence[Sequence[str]]) -> list[list[str]]:
    return [u for u in _units(recordset, groups) if len(u) > 1]


def split_summary(split: SplitFile, recordset: RecordSet) -> dict[str, dict[str, int]]:
    """Images per class in each part: ``{part: {class: n}}`` (for reports and checks)."""
    labels = {s.rel: s.label for s in recordset.samples}
    out = {}
    for name, rels in split.parts.items():
        counts = Counter(labels[r] if labels[r] is not None else "(none)" for r in rels)
        out[name] = dict(sorted(counts.items()))
    return out
