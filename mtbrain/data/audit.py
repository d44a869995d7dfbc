"""Data-set audit: what a data set holds and what is wrong with it, before any training.

:func:`audit` looks at one or more record sets and returns a JSON-able report;
:func:`render_text` turns it into the text that ``mtbrain audit`` prints. Per set:

- counts per class and per upstream split;
- image sizes, modes and formats per class (modes and formats from the file headers), and
  whether the image **size alone predicts the class** (a cross-validated decision tree on
  ``(width, height)`` against the majority baseline): a model can then learn the size
  instead of the anatomy, so images must be resized/padded to one size;
- boxes: boxes per image, box size relative to the image, ``other_boxes``, tumour-class
  images without a tumour box, boxes whose class id is not the image's class (YOLO
  layouts: read from the label files);
- label problems the reader recorded (skipped samples);
- exact and near duplicates (:mod:`mtbrain.data.dedup`): groups, extra copies, groups
  that straddle upstream splits, groups whose images carry different labels, and groups
  whose copies of one label carry different numbers of tumour boxes (the same slice
  annotated as one box in one copy and as two in another: a bound on any box metric).

Across sets: duplicate groups shared between sets (one set's images that are also in the
other), and label conflicts across sets.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtbrain.classes import NO_TUMOR
from mtbrain.data.dedup import Duplicates, NearParams, find_duplicates
from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import DataError

AUDIT_FORMAT = "mtbrain-audit"
SIZE_WARNING_MARGIN = 0.05
"""Warn when the size-only classifier beats the majority baseline by this much (accuracy)."""

_SPLIT_WORDS = {"train", "training", "val", "valid", "validation", "test", "testing"}
_YOLO_LAYOUTS = {"kaggle_bbox", "yolo_flat"}


def audit(
    recordsets: RecordSet | Sequence[RecordSet],
    *,
    near: bool = True,
    params: NearParams | None = None,
    workers: int | None = None,
    cache: bool | str | Path = True,
    progress: bool = False,
    size_folds: int = 5,
    seed: int = 0,
    max_examples: int = 10,
    include_groups: bool = True,
) -> dict[str, Any]:
    """Audit record sets; the result is JSON-able (see the module docstring).

    Args:
        recordsets: One set or several (duplicates are also searched across sets).
        near: Search near duplicates (else exact copies only).
        params: Near-duplicate thresholds (default :class:`~mtbrain.data.dedup.NearParams`).
        workers, cache, progress: Hashing options, see :func:`mtbrain.data.dedup.hash_files`.
        size_folds: Cross-validation folds of the size-predicts-class check.
        seed: Seed of that check's fold assignment.
        max_examples: Examples listed per finding.
        include_groups: List every duplicate group (``"set:rel"`` names) in the result.

    Returns:
        A mapping with the keys ``format``, ``version``, ``datasets`` (a list),
        ``duplicates``, ``warnings`` (a list) and ``timing``.
    """
    start = time.perf_counter()
    sets = [recordsets] if isinstance(recordsets, RecordSet) else list(recordsets)
    if not sets:
        raise ValueError("audit needs at least one record set")
    names = display_names(sets)
    dup = find_duplicates(
        sets, near=near, params=params, workers=workers, cache=cache, progress=progress
    )
    datasets = []
    warnings: list[str] = []
    for k, rs in enumerate(sets):
        entry = _audit_set(
            rs, k, names[k], dup, size_folds=size_folds, seed=seed, max_examples=max_examples
        )
        datasets.append(entry)
        warnings.extend(f"{names[k]}: {w}" for w in entry["warnings"])
    across = _across(dup, names, max_examples=max_examples, include_groups=include_groups)
    warnings.extend(across.pop("warnings"))
    timing = {f"{k}_s": round(v, 3) for k, v in dup.seconds.items()}
    timing["total_s"] = round(time.perf_counter() - start, 3)
    return {
        "format": AUDIT_FORMAT,
        "version": 1,
        "datasets": datasets,
        "duplicates": across,
        "warnings": warnings,
        "timing": timing,
    }


def display_names(sets: Sequence[RecordSet]) -> list[str]:
    """Readable, unique names of sets: ``mri-bbox/Train`` rather than ``Train``."""
    names = []
    for rs in sets:
        name = rs.name
        if name.lower() in _SPLIT_WORDS and rs.root.parent.name:
            name = f"{rs.root.parent.name}/{rs.root.name}"
        names.append(name)
    counts = Counter(names)
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(f"{name}#{seen[name]}" if counts[name] > 1 else name)
    return out


# --------------------------------------------------------------------------- one set


def _audit_set(
    rs: RecordSet,
    k: int,
    name: str,
    dup: Duplicates,
    *,
    size_folds: int,
    seed: int,
    max_examples: int,
) -> dict[str, Any]:
    rows = np.nonzero(dup.set_index == k)[0]
    samples = [dup.samples[i] for i in rows]
    splits: dict[str, Counter[str]] = {}
    for s in samples:
        splits.setdefault(s.split or "-", Counter())[_label(s)] += 1
    entry: dict[str, Any] = {
        "name": name,
        "root": str(rs.root),
        "layout": rs.layout,
        "classes": list(rs.classes),
        "n_images": len(samples),
        "counts": _ordered(Counter(_label(s) for s in samples), rs.classes),
        "splits": {sp: _ordered(c, rs.classes) for sp, c in sorted(splits.items())},
    }
    entry["images"] = _image_stats(samples, rows, dup, rs.classes)
    groups = dup.group[rows]
    entry["size_predicts_class"] = size_check(samples, groups=groups, folds=size_folds, seed=seed)
    entry["boxes"] = _box_stats(rs, samples, max_examples=max_examples)
    entry["problems"] = _problems(rs, dup, rows, max_examples=max_examples)
    entry["duplicates"] = _set_duplicates(dup, k, max_examples=max_examples)
    entry["warnings"] = _set_warnings(entry)
    return entry


def _label(s: Sample) -> str:
    return s.label if s.label is not None else "(none)"


def _ordered(counter: Counter[str], classes: Sequence[str]) -> dict[str, int]:
    keys = [c for c in classes if c in counter] + sorted(k for k in counter if k not in classes)
    return {key: int(counter[key]) for key in keys}


def _quantiles(values: Sequence[float] | np.ndarray, digits: int = 3) -> dict[str, float] | None:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None
    q = np.quantile(v, [0.0, 0.05, 0.5, 0.95, 1.0])
    return dict(
        zip(
            ("min", "p5", "median", "p95", "max"), (round(float(x), digits) for x in q), strict=True
        )
    )


def _image_stats(
    samples: list[Sample], rows: np.ndarray, dup: Duplicates, classes: Sequence[str]
) -> dict[str, Any]:
    by_class: dict[str, list[int]] = {}
    for j, s in enumerate(samples):
        by_class.setdefault(_label(s), []).append(j)
    per_class = {}
    for cls in _ordered(Counter({c: len(v) for c, v in by_class.items()}), classes):
        idx = by_class[cls]
        sizes = Counter((samples[j].width, samples[j].height) for j in idx)
        w = [samples[j].width for j in idx]
        h = [samples[j].height for j in idx]
        modes = Counter(dup.table.mode[rows[j]] or "?" for j in idx)
        formats = Counter(dup.table.format[rows[j]] or "?" for j in idx)
        per_class[cls] = {
            "n": len(idx),
            "distinct_sizes": len(sizes),
            "width": _quantiles(w, 1),
            "height": _quantiles(h, 1),
            "square_fraction": round(sum(a == b for a, b in zip(w, h, strict=True)) / len(idx), 4),
            "top_sizes": [[sw, sh, n] for (sw, sh), n in sizes.most_common(3)],
            "modes": dict(modes.most_common()),
            "formats": dict(formats.most_common()),
        }
    all_sizes = {(s.width, s.height) for s in samples}
    return {"distinct_sizes": len(all_sizes), "per_class": per_class}


def size_check(
    samples: Sequence[Sample],
    *,
    groups: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
    min_purity: float = 0.9,
    min_count: int = 10,
) -> dict[str, Any]:
    """How well ``(width, height)`` alone predicts the class.

    A decision tree on ``(width, height)`` is cross-validated (stratified folds; grouped by
    ``groups`` so that duplicates do not sit on both sides) and compared with always
    answering the most frequent class. ``warning`` is set when its accuracy beats that
    baseline by :data:`SIZE_WARNING_MARGIN` or more. ``telling_sizes`` lists the sizes held
    by at least ``min_count`` images of which ``min_purity`` or more share one class.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.tree import DecisionTreeClassifier

    labelled = [j for j, s in enumerate(samples) if s.label is not None]
    y = np.array([samples[j].label for j in labelled])
    counts = Counter(y.tolist())
    out: dict[str, Any] = {"checked": False}
    if len(counts) < 2:
        out["reason"] = "fewer than two classes"
        return out
    k = min(folds, min(counts.values()))
    if k < 2:
        out["reason"] = "a class has fewer than two images"
        return out
    x = np.array([[samples[j].width, samples[j].height] for j in labelled], dtype=np.float64)
    if groups is not None:
        g = np.asarray(groups)[labelled]
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        split_iter = splitter.split(x, y, g)
    else:
        split_iter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y)
    pred = np.empty(len(y), dtype=object)
    for train, test in split_iter:
        tree = DecisionTreeClassifier(min_samples_leaf=3, random_state=seed)
        tree.fit(x[train], y[train])
        pred[test] = tree.predict(x[test])
    accuracy = float(np.mean(pred == y))
    baseline = max(counts.values()) / len(y)
    recall = {c: float(np.mean(pred[y == c] == c)) for c in sorted(counts)}
    sizes: dict[tuple[int, int], Counter[str]] = {}
    for j in labelled:
        sizes.setdefault((samples[j].width, samples[j].height), Counter())[samples[j].label] += 1
    telling = []
    for (w, h), c in sizes.items():
        n = sum(c.values())
        cls, top = c.most_common(1)[0]
        if n >= min_count and top / n >= min_purity:
            telling.append({"size": [w, h], "class": cls, "images": n, "purity": round(top / n, 3)})
    telling.sort(key=lambda t: -t["images"])
    out.update(
        {
            "checked": True,
            "folds": k,
            "grouped": groups is not None,
            "accuracy": round(accuracy, 4),
            "baseline": round(baseline, 4),
            "balanced_accuracy": round(float(np.mean(list(recall.values()))), 4),
            "recall": {c: round(r, 4) for c, r in recall.items()},
            "telling_sizes": telling[:10],
            "warning": accuracy - baseline >= SIZE_WARNING_MARGIN,
        }
    )
    return out


def _label_path(sample: Sample, root: Path) -> Path | None:
    """The YOLO label file of an image (``.../images/...`` -> ``.../labels/....txt``)."""
    parts = list(Path(sample.rel).parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return (root.joinpath(*parts)).with_suffix(".txt")
    return None


def box_class_ids(sample: Sample, rs: RecordSet) -> list[str] | None:
    """Class names of the boxes in an image's YOLO label file, or ``None`` when unknown.

    Only for the YOLO layouts (``kaggle_bbox``, ``yolo_flat``), whose ids index the set's
    class list; files that do not parse (already reported by the reader) give ``None``.
    """
    from mtbrain.data.readers.yolo_labels import read_yolo_file

    if rs.layout not in _YOLO_LAYOUTS:
        return None
    path = _label_path(sample, Path(rs.root))
    if path is None or not path.is_file():
        return None
    try:
        parsed = read_yolo_file(
            path,
            width=sample.width,
            height=sample.height,
            tolerance=0.5,
            num_classes=len(rs.classes),
            names=list(rs.classes),
        )
    except DataError:
        return None
    return [rs.classes[int(i)] for i in parsed.ids]


def _box_stats(rs: RecordSet, samples: list[Sample], *, max_examples: int) -> dict[str, Any]:
    has_boxes = any(s.has_box or len(s.other_boxes) for s in samples)
    if not has_boxes:
        return {"has_boxes": False}
    per_class: dict[str, Any] = {}
    without: list[str] = []
    foreign_images = 0
    foreign_pairs: Counter[str] = Counter()
    ids_known = rs.layout in _YOLO_LAYOUTS
    by_class: dict[str, list[Sample]] = {}
    for s in samples:
        by_class.setdefault(_label(s), []).append(s)
    for cls in _ordered(Counter({c: len(v) for c, v in by_class.items()}), rs.classes):
        group = by_class[cls]
        per_image = Counter(min(len(s.boxes), 5) for s in group)
        rel_w, rel_h, rel_area = [], [], []
        for s in group:
            if not s.has_box:
                continue
            b = np.asarray(s.boxes, dtype=np.float64)
            bw = (b[:, 2] - b[:, 0]) / max(s.width, 1)
            bh = (b[:, 3] - b[:, 1]) / max(s.height, 1)
            rel_w.extend(bw.tolist())
            rel_h.extend(bh.tolist())
            rel_area.extend((bw * bh).tolist())
        n_foreign = 0
        if ids_known and cls != "(none)":
            for s in group:
                names = box_class_ids(s, rs) or []
                bad = [n for n in names if n != cls]
                if bad:
                    n_foreign += 1
                    foreign_pairs.update(f"{cls} image, {n} box" for n in bad)
        foreign_images += n_foreign
        if cls not in (NO_TUMOR, "(none)"):
            without.extend(s.rel for s in group if not s.has_box)
        per_class[cls] = {
            "n": len(group),
            "with_tumour_box": sum(s.has_box for s in group),
            "tumour_boxes": int(sum(len(s.boxes) for s in group)),
            "boxes_per_image": {
                ("5+" if n == 5 else str(n)): int(c) for n, c in sorted(per_image.items())
            },
            "max_boxes_per_image": int(max((len(s.boxes) for s in group), default=0)),
            "box_width_rel": _quantiles(rel_w),
            "box_height_rel": _quantiles(rel_h),
            "box_area_rel": _quantiles(rel_area, 4),
            "images_with_other_boxes": sum(len(s.other_boxes) > 0 for s in group),
            "other_boxes": int(sum(len(s.other_boxes) for s in group)),
            "images_with_foreign_boxes": n_foreign if ids_known else None,
        }
    return {
        "has_boxes": True,
        "per_class": per_class,
        "tumour_images_without_box": {"count": len(without), "examples": without[:max_examples]},
        "foreign_boxes": (
            {
                "images": foreign_images,
                "boxes": int(sum(foreign_pairs.values())),
                "by_pair": dict(foreign_pairs.most_common()),
            }
            if ids_known
            else None
        ),
    }


def _problems(
    rs: RecordSet, dup: Duplicates, rows: np.ndarray, *, max_examples: int
) -> dict[str, Any]:
    listed = list(rs.problems.problems)
    paths = {str(dup.samples[i].path) for i in rows}
    unreadable = [p for p in dup.problems if p.path in paths]
    kinds = Counter(p.kind for p in listed + unreadable)
    return {
        "count": len(listed) + len(unreadable),
        "skipped_by_reader": len(listed),
        "unreadable_images": len(unreadable),
        "by_kind": dict(kinds.most_common()),
        "examples": [str(p) for p in (unreadable + listed)[:max_examples]],
    }


def _member(dup: Duplicates, k: int, names: Sequence[str] | None = None) -> str:
    s = dup.samples[k]
    return f"{names[dup.set_index[k]]}:{s.rel}" if names is not None else s.rel


def _boxes_noun(n: int) -> str:
    return f"{n} box" if n == 1 else f"{n} boxes"


def _set_duplicates(dup: Duplicates, k: int, *, max_examples: int) -> dict[str, Any]:
    exact = dup.exact_groups(set_index=k)
    groups = dup.groups(set_index=k)
    n = int(np.sum(dup.set_index == k))
    rows = np.nonzero(dup.set_index == k)[0]
    distinct = len(set(dup.group[rows].tolist()))
    near = [g for g in groups if len({int(dup.table.content[i]) for i in g}) > 1]
    straddle = [g for g in groups if len({dup.samples[i].split for i in g}) > 1]
    n_labels = [len({dup.samples[i].label for i in g}) for g in groups]
    conflicts = [g for g, m in zip(groups, n_labels, strict=True) if m > 1]
    box_counts = [g for g, m in zip(groups, n_labels, strict=True)
                  if m == 1 and len({len(dup.samples[i].boxes) for i in g}) > 1]
    sizes = Counter(len(g) for g in groups)
    return {
        "exact_groups": len(exact),
        "exact_extra_copies": sum(len(g) - 1 for g in exact),
        "groups": len(groups),
        "near_groups": len(near),
        "images_in_groups": sum(len(g) for g in groups),
        "largest_group": max((len(g) for g in groups), default=0),
        "group_sizes": {str(s): int(c) for s, c in sorted(sizes.items())},
        "distinct_images": distinct,
        "removable_images": n - distinct,
        "near_extra_images": (n - distinct) - sum(len(g) - 1 for g in exact),
        "cross_split_groups": len(straddle),
        "cross_split_images": sum(len(g) for g in straddle),
        "cross_split_examples": [
            [_member(dup, i) + f" ({dup.samples[i].split})" for i in g]
            for g in straddle[:max_examples]
        ],
        "label_conflicts": len(conflicts),
        "label_conflict_examples": [
            [f"{_member(dup, i)} ({dup.samples[i].label})" for i in g]
            for g in conflicts[:max_examples]
        ],
        "box_count_conflicts": len(box_counts),
        "box_count_conflict_examples": [
            [f"{_member(dup, i)} ({_boxes_noun(len(dup.samples[i].boxes))})" for i in g]
            for g in box_counts[:max_examples]
        ],
    }


def _set_warnings(entry: dict[str, Any]) -> list[str]:
    out = []
    size = entry["size_predicts_class"]
    if size.get("warning"):
        out.append(
            f"image size alone predicts the class: {size['accuracy']:.1%} accuracy from "
            f"(width, height) vs {size['baseline']:.1%} always guessing the largest class; "
            "resize/letterbox every image to one size"
        )
    d = entry["duplicates"]
    if d["exact_extra_copies"]:
        out.append(
            f"{d['exact_extra_copies']} byte-identical extra copies in {d['exact_groups']} groups"
        )
    if d["near_groups"]:
        out.append(
            f"{d['near_groups']} near-duplicate groups (re-encoded/resized/"
            f"contrast-changed copies); {d['near_extra_images']} images beyond the "
            "exact copies: split by duplicate groups (mtbrain split)"
        )
    if d["cross_split_groups"]:
        out.append(
            f"{d['cross_split_groups']} duplicate groups straddle upstream splits "
            f"({d['cross_split_images']} images): the upstream split leaks"
        )
    if d["label_conflicts"]:
        out.append(f"{d['label_conflicts']} duplicate groups carry different labels")
    if d["box_count_conflicts"]:
        out.append(f"{d['box_count_conflicts']} duplicate groups annotate the same image with "
                   "different numbers of tumour boxes")
    p = entry["problems"]
    if p["count"]:
        out.append(
            f"{p['count']} problems ({', '.join(f'{n} {k}' for k, n in p['by_kind'].items())})"
        )
    b = entry["boxes"]
    if b.get("has_boxes"):
        if b["tumour_images_without_box"]["count"]:
            out.append(
                f"{b['tumour_images_without_box']['count']} tumour-class images "
                "without a tumour box"
            )
        if b["foreign_boxes"] and b["foreign_boxes"]["images"]:
            out.append(
                f"{b['foreign_boxes']['images']} images carry boxes of another "
                "tumour class than their folder"
            )
    return out


# --------------------------------------------------------------------------- across sets


def _across(
    dup: Duplicates, names: Sequence[str], *, max_examples: int, include_groups: bool
) -> dict[str, Any]:
    summary = dup.summary()
    groups = dup.groups()
    n_sets = len(names)
    cross = []
    for a in range(n_sets):
        for b in range(a + 1, n_sets):
            shared = [g for g in groups if {a, b} <= {int(dup.set_index[i]) for i in g}]
            cross.append(
                {
                    "a": names[a],
                    "b": names[b],
                    "groups": len(shared),
                    "images_a": sum(1 for g in shared for i in g if dup.set_index[i] == a),
                    "images_b": sum(1 for g in shared for i in g if dup.set_index[i] == b),
                    "examples": [
                        [_member(dup, i, names) for i in g] for g in shared[:max_examples]
                    ],
                }
            )
    conflicts = [g for g in groups if len({dup.samples[i].label for i in g}) > 1]
    cross_conflicts = [g for g in conflicts if len({int(dup.set_index[i]) for i in g}) > 1]
    largest = sorted(groups, key=lambda g: (-len(g), g[0]))[:max_examples]
    out: dict[str, Any] = dict(summary)
    out.update(
        {
            "sets": list(names),
            "unreadable": [str(p) for p in dup.problems],
            "cache_hits": dup.table.cache_hits,
            "cross_set": cross,
            "label_conflicts": len(conflicts),
            "cross_set_label_conflicts": len(cross_conflicts),
            "label_conflict_examples": [
                [f"{_member(dup, i, names)} ({dup.samples[i].label})" for i in g]
                for g in conflicts[:max_examples]
            ],
            "largest_groups": [
                {
                    "size": len(g),
                    "labels": dict(Counter(_label(dup.samples[i]) for i in g)),
                    "members": [_member(dup, i, names) for i in g[:max_examples]],
                }
                for g in largest
            ],
        }
    )
    if include_groups:
        out["all_groups"] = [[_member(dup, i, names) for i in g] for g in groups]
    warnings = []
    for c in cross:
        if c["groups"]:
            warnings.append(
                f"{c['images_a']} images of {c['a']} and {c['images_b']} of {c['b']} are copies "
                f"of each other ({c['groups']} groups): deduplicate before mixing the sets or "
                "evaluating on one after training on the other"
            )
    if cross_conflicts:
        warnings.append(
            f"{len(cross_conflicts)} duplicate groups carry different labels in different sets"
        )
    if dup.problems:
        warnings.append(f"{len(dup.problems)} images could not be decoded (see 'unreadable')")
    out["warnings"] = warnings
    return out


# --------------------------------------------------------------------------- text


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _table(rows: list[list[str]], *, indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append(indent + "  ".join(cells).rstrip())
    return out


def _q(d: dict[str, float] | None, fmt: str = "{:.2f}") -> str:
    if not d:
        return "-"
    return f"{fmt.format(d['p5'])}/{fmt.format(d['median'])}/{fmt.format(d['p95'])}"


def render_text(report: dict[str, Any]) -> str:
    """The human-readable audit report (what ``mtbrain audit`` prints)."""
    lines: list[str] = []
    for ds in report["datasets"]:
        lines += _render_set(ds)
        lines.append("")
    d = report["duplicates"]
    lines.append("== duplicates over all sets")
    p = d.get("params")
    how = (
        (
            f"near: pHash <= {p['phash_max']} or dHash <= {p['dhash_max']} bits, confirmed "
            f"by high-pass thumbnail correlation >= {p['min_corr']}"
        )
        if p
        else "exact only"
    )
    lines.append(f"  {d['n_images']} images ({how})")
    lines.append(f"  exact: {d['exact_extra_copies']} extra copies in {d['exact_groups']} groups")
    lines.append(
        f"  near: {d['near_pairs']} confirmed pairs; {d['near_groups']} groups hold "
        "more than one distinct file"
    )
    lines.append(
        f"  all duplicate groups: {d['groups']} ({d['images_in_groups']} images); "
        f"{d['removable_images']} images would go in a full deduplication"
    )
    for c in d["cross_set"]:
        lines.append(
            f"  across {c['a']} and {c['b']}: {c['groups']} shared groups, "
            f"{c['images_a']} images of {c['a']}, {c['images_b']} of {c['b']}"
        )
    lines.append(
        f"  label conflicts: {d['label_conflicts']} groups "
        f"({d['cross_set_label_conflicts']} across sets)"
    )
    for ex in d["label_conflict_examples"][:3]:
        lines.append("    " + ", ".join(ex[:4]) + (" ..." if len(ex) > 4 else ""))
    if d["largest_groups"]:
        g = d["largest_groups"][0]
        lines.append(
            f"  largest group: {g['size']} images {g['labels']}, e.g. "
            + ", ".join(g["members"][:3])
        )
    if d["unreadable"]:
        lines.append(f"  unreadable images: {len(d['unreadable'])}")
        lines += [f"    {u}" for u in d["unreadable"][:5]]
    t = report["timing"]
    lines.append(
        "  time: "
        + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in t.items())
        + f" ({d['cache_hits']} of {d['n_images']} from cache)"
    )
    lines.append("")
    if report["warnings"]:
        lines.append(f"== warnings ({len(report['warnings'])})")
        lines += [f"  ! {w}" for w in report["warnings"]]
    else:
        lines.append("== no warnings")
    return "\n".join(lines) + "\n"


def _render_set(ds: dict[str, Any]) -> list[str]:
    lines = [f"== {ds['name']}: {ds['n_images']} images, layout {ds['layout']} ({ds['root']})"]
    splits = ds["splits"]
    classes = list(ds["counts"])
    header = ["class", "images"] + ([sp for sp in splits] if len(splits) > 1 else [])
    rows = [header]
    for c in classes:
        rows.append(
            [c, str(ds["counts"][c])]
            + ([str(splits[sp].get(c, 0)) for sp in splits] if len(splits) > 1 else [])
        )
    lines.append("-- counts")
    lines += _table(rows)
    im = ds["images"]
    lines.append(f"-- image sizes ({im['distinct_sizes']} distinct sizes)")
    rows = [
        ["class", "sizes", "width p5/med/p95", "height p5/med/p95", "square", "top size", "modes"]
    ]
    for c, st in im["per_class"].items():
        top = st["top_sizes"][0]
        rows.append(
            [
                c,
                str(st["distinct_sizes"]),
                _q(st["width"], "{:.0f}"),
                _q(st["height"], "{:.0f}"),
                _pct(st["square_fraction"]),
                f"{top[0]}x{top[1]} ({top[2]})",
                " ".join(f"{m}:{n}" for m, n in st["modes"].items()),
            ]
        )
    lines += _table(rows)
    sz = ds["size_predicts_class"]
    if sz.get("checked"):
        verdict = "WARNING: size predicts the class" if sz["warning"] else "size says little"
        lines.append(
            f"  size-only classifier: accuracy {_pct(sz['accuracy'])} vs baseline "
            f"{_pct(sz['baseline'])} ({sz['folds']}-fold"
            f"{', by duplicate group' if sz['grouped'] else ''}) -> {verdict}"
        )
        for t in sz["telling_sizes"][:3]:
            lines.append(
                f"    {t['size'][0]}x{t['size'][1]}: {t['images']} images, "
                f"{_pct(t['purity'])} {t['class']}"
            )
    else:
        lines.append(f"  size-only classifier: not checked ({sz.get('reason')})")
    b = ds["boxes"]
    if b.get("has_boxes"):
        lines.append("-- boxes (tumour boxes; relative sizes p5/median/p95)")
        rows = [
            [
                "class",
                "with box",
                "boxes",
                "per image 0/1/2/3/4/5+",
                "width",
                "height",
                "other",
                "foreign",
            ]
        ]
        for c, st in b["per_class"].items():
            hist = "/".join(
                str(st["boxes_per_image"].get(k, 0)) for k in ("0", "1", "2", "3", "4", "5+")
            )
            foreign = st["images_with_foreign_boxes"]
            rows.append(
                [
                    c,
                    str(st["with_tumour_box"]),
                    str(st["tumour_boxes"]),
                    hist,
                    _q(st["box_width_rel"]),
                    _q(st["box_height_rel"]),
                    str(st["other_boxes"]),
                    "-" if foreign is None else str(foreign),
                ]
            )
        lines += _table(rows)
        wb = b["tumour_images_without_box"]
        lines.append(f"  tumour-class images without a tumour box: {wb['count']}")
        if b["foreign_boxes"] and b["foreign_boxes"]["boxes"]:
            pairs = ", ".join(f"{k}: {n}" for k, n in b["foreign_boxes"]["by_pair"].items())
            lines.append(f"  boxes of another tumour class: {pairs}")
    else:
        lines.append("-- boxes: none (class labels only)")
    p = ds["problems"]
    lines.append(
        f"-- problems: {p['count']}"
        + (
            " (" + ", ".join(f"{n} {k}" for k, n in p["by_kind"].items()) + ")"
            if p["count"]
            else ""
        )
    )
    lines += [f"    {e}" for e in p["examples"][:5]]
    d = ds["duplicates"]
    lines.append("-- duplicates")
    lines.append(f"  exact: {d['exact_extra_copies']} extra copies in {d['exact_groups']} groups")
    lines.append(
        f"  near: {d['near_groups']} groups with re-encoded/resized copies, "
        f"{d['near_extra_images']} images beyond the exact copies"
    )
    lines.append(
        f"  groups: {d['groups']} ({d['images_in_groups']} images, largest "
        f"{d['largest_group']}); {d['distinct_images']} distinct images"
    )
    lines.append(
        f"  across upstream splits: {d['cross_split_groups']} groups "
        f"({d['cross_split_images']} images)"
    )
    lines.append(f"  label conflicts: {d['label_conflicts']}")
    lines.append(f"  box-count conflicts: {d['box_count_conflicts']}")
    lines += [f"    {', '.join(ex)}" for ex in d["box_count_conflict_examples"][:3]]
    return lines
