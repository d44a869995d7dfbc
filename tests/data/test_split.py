"""Tests of the leak-free stratified split (mtbrain.data.split)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mtbrain.data import load_dataset
from mtbrain.data.dedup import find_duplicates
from mtbrain.data.records import RecordSet, Sample
from mtbrain.data.split import group_kfold, kfold_splits, make_split, split_summary
from mtbrain.data.splitfile import SplitFile
from mtbrain.data.synthetic import generate, plant_duplicates
from mtbrain.errors import ConfigError, DataError

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def _recordset(counts: dict[str, int], root: Path = Path("/data/set")) -> RecordSet:
    samples = []
    for cls, n in counts.items():
        for i in range(n):
            rel = f"{cls}/img_{i:04d}.jpg"
            samples.append(
                Sample(path=root / rel, rel=rel, label=cls, width=64, height=64, source="set")
            )
    samples.sort(key=lambda s: s.rel)
    return RecordSet(root=root, layout="class_folders", classes=list(counts), samples=samples)


def _random_groups(
    rs: RecordSet, seed: int, n_groups: int, max_size: int, *, exclude: frozenset[str] = frozenset()
) -> list[list[str]]:
    """Disjoint random groups within a class (as duplicates are), sizes 2..max_size."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    for s in rs.samples:
        if s.rel not in exclude:
            by_class.setdefault(s.label, []).append(s.rel)
    free = {c: list(rng.permutation(v)) for c, v in by_class.items()}
    groups = []
    for _ in range(n_groups):
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
        size = int(rng.integers(2, max_size + 1))
        if len(free[cls]) < size:
            continue
        groups.append([str(free[cls].pop()) for _ in range(size)])
    return groups


def _where(split: SplitFile) -> dict[str, str]:
    return {rel: part for part, rels in split.parts.items() for rel in rels}


@pytest.fixture
def big() -> tuple[RecordSet, list[list[str]]]:
    rs = _recordset({"glioma": 1153, "meningioma": 1449, "no_tumor": 711, "pituitary": 1424})
    largest = [f"no_tumor/img_{i:04d}.jpg" for i in range(41)]  # as in the real set
    return rs, _random_groups(rs, 0, 900, 8, exclude=frozenset(largest)) + [largest]


def test_every_sample_once_and_groups_whole(big: tuple[RecordSet, list[list[str]]]) -> None:
    rs, groups = big
    split = make_split(rs, groups, val=0.15, test=0.15, seed=0)
    assert set(split.parts) == {"train", "val", "test"}
    all_rels = [r for rels in split.parts.values() for r in rels]
    assert sorted(all_rels) == sorted(s.rel for s in rs.samples)
    where = _where(split)
    for g in groups:
        assert len({where[r] for r in g}) == 1, g
    assert sorted(map(sorted, split.groups)) == sorted(map(sorted, groups))


def test_class_proportions_near_targets(big: tuple[RecordSet, list[list[str]]]) -> None:
    rs, groups = big
    split = make_split(rs, groups, val=0.15, test=0.15, seed=1)
    summary = split_summary(split, rs)
    totals = rs.counts()
    targets = {"train": 0.70, "val": 0.15, "test": 0.15}
    for part, counts in summary.items():
        for cls, n in counts.items():
            assert abs(n / totals[cls] - targets[part]) < 0.02, (part, cls, n)
        assert abs(sum(counts.values()) / len(rs) - targets[part]) < 0.01


def test_deterministic_for_a_seed(big: tuple[RecordSet, list[list[str]]]) -> None:
    rs, groups = big
    a = make_split(rs, groups, seed=7)
    b = make_split(rs, list(reversed(groups)), seed=7)
    c = make_split(rs, groups, seed=8)
    assert a.parts == b.parts
    assert a.parts["val"] != c.parts["val"]
    assert a.to_dict()["seed"] == 7 and a.fractions == {"val": 0.15, "test": 0.15}


def test_zero_fraction_leaves_part_out() -> None:
    rs = _recordset({"glioma": 20, "pituitary": 20})
    split = make_split(rs, [], val=0.25, test=0.0)
    assert set(split.parts) == {"train", "val"}
    assert split_summary(split, rs) == {
        "train": {"glioma": 15, "pituitary": 15},
        "val": {"glioma": 5, "pituitary": 5},
    }


def test_tiny_class_goes_to_train_first() -> None:
    rs = _recordset({"glioma": 1, "pituitary": 2})
    split = make_split(rs, [], val=0.15, test=0.15)
    # the part furthest below its target takes each image: all three land in train
    assert split.parts == {
        "train": ["glioma/img_0000.jpg", "pituitary/img_0000.jpg", "pituitary/img_0001.jpg"],
        "val": [],
        "test": [],
    }


def test_single_images_and_groups_spread_in_proportion() -> None:
    # 80 images in pairs (copies, as one source of a merged set has) and 100 without copies:
    # each part takes its share of both kinds, not train the pairs and val/test the rest.
    rs = _recordset({"glioma": 180})
    rels = [s.rel for s in rs.samples]
    groups = [rels[i:i + 2] for i in range(0, 80, 2)]
    split = make_split(rs, groups, val=0.15, test=0.15, seed=3)
    single = set(rels[80:])
    for part, share in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        n_single = len(single & set(split.parts[part]))
        assert abs(n_single - share * 100) <= 2, (part, n_single)
        assert abs(len(split.parts[part]) - share * 180) <= 2, part


def test_overlapping_groups_merge() -> None:
    rs = _recordset({"glioma": 30, "meningioma": 30})
    groups = [
        ["glioma/img_0000.jpg", "glioma/img_0001.jpg"],
        ["glioma/img_0001.jpg", "meningioma/img_0005.jpg"],
    ]
    split = make_split(rs, groups, seed=2)
    where = _where(split)
    assert len({where[r] for r in {*groups[0], *groups[1]}}) == 1
    assert split.groups == [
        ["glioma/img_0000.jpg", "glioma/img_0001.jpg", "meningioma/img_0005.jpg"]
    ]


@pytest.mark.parametrize(
    ("val", "test", "match"),
    [
        (0.5, 0.5, "below 1"),
        (-0.1, 0.1, r"\[0, 1\)"),
        (0.1, 1.0, r"\[0, 1\)"),
        ("x", 0.1, "number"),
    ],
)
def test_bad_fractions(val: object, test: object, match: str) -> None:
    rs = _recordset({"glioma": 4})
    with pytest.raises(ConfigError, match=match):
        make_split(rs, [], val=val, test=test)  # type: ignore[arg-type]


def test_unknown_group_member_is_an_error() -> None:
    rs = _recordset({"glioma": 4})
    with pytest.raises(DataError, match="'glioma/nope.jpg'.*not a sample"):
        make_split(rs, [["glioma/img_0000.jpg", "glioma/nope.jpg"]])


def test_written_split_reads_back_and_loads(tmp_path: Path) -> None:
    root = generate(tmp_path / "syn", n_per_class=6, size=64, seed=0)
    rs = load_dataset(root)
    split = make_split(rs, [], val=0.2, test=0.2, seed=0, policy={"on_error": "raise"})
    path = split.write(tmp_path / "split.json")
    back = SplitFile.read(path)
    assert back.parts == split.parts and back.policy == {"on_error": "raise"}
    val = load_dataset(f"{path}:val")
    assert sorted(s.rel for s in val.samples) == split.parts["val"]
    assert Counter(s.label for s in val.samples) == Counter(
        {"glioma": 1, "meningioma": 1, "no_tumor": 1, "pituitary": 1}
    )


def test_planted_duplicates_never_straddle_parts(tmp_path: Path) -> None:
    root = generate(tmp_path / "syn", n_per_class=10, size=128, seed=4)
    pairs = plant_duplicates(root, n_exact=5, n_near=5, seed=4)
    rs = load_dataset(root)
    groups = find_duplicates(rs, cache=False).rel_groups(0)
    assert sorted(groups) == sorted(sorted(p) for p in pairs)
    for seed in range(5):
        where = _where(make_split(rs, groups, val=0.2, test=0.2, seed=seed))
        for a, b in pairs:
            assert where[a] == where[b]


def test_group_kfold(big: tuple[RecordSet, list[list[str]]]) -> None:
    rs, groups = big
    folds = group_kfold(rs, groups, 5, seed=3)
    assert len(folds) == 5
    flat = [r for f in folds for r in f]
    assert sorted(flat) == sorted(s.rel for s in rs.samples)
    fold_of = {r: k for k, f in enumerate(folds) for r in f}
    for g in groups:
        assert len({fold_of[r] for r in g}) == 1
    labels = {s.rel: s.label for s in rs.samples}
    totals = rs.counts()
    for f in folds:
        counts = Counter(labels[r] for r in f)
        for cls, n in counts.items():
            assert abs(n / totals[cls] - 0.2) < 0.02
    assert group_kfold(rs, groups, 5, seed=3) == folds


def test_group_kfold_bad_k() -> None:
    rs = _recordset({"glioma": 3})
    with pytest.raises(ConfigError, match="k must be"):
        group_kfold(rs, [], 1)
    with pytest.raises(ConfigError, match="cannot make 4 folds from 2 groups"):
        group_kfold(rs, [["glioma/img_0000.jpg", "glioma/img_0001.jpg"]], 4)


def test_kfold_splits_groups_whole_and_stratified(big: tuple[RecordSet, list[list[str]]]) -> None:
    rs, groups = big
    splits = kfold_splits(rs, groups, 3, val=0.15, seed=2, policy={"on_error": "raise"})
    assert len(splits) == 3
    tests = [s.parts["test"] for s in splits]
    assert sorted(r for t in tests for r in t) == sorted(s.rel for s in rs.samples)
    assert tests == group_kfold(rs, groups, 3, seed=2)  # the test parts are the folds
    totals = rs.counts()
    for split in splits:
        assert set(split.parts) == {"train", "val", "test"}
        where = _where(split)
        assert len(where) == len(rs)  # every sample in exactly one part
        for g in groups:
            assert len({where[r] for r in g}) == 1, g  # no group straddles two parts
        summary = split_summary(split, rs)
        for cls, n in summary["test"].items():
            assert abs(n / totals[cls] - 1 / 3) < 0.02, (cls, n)
        for cls, n in summary["val"].items():
            assert abs(n / totals[cls] - 0.15 * 2 / 3) < 0.02, (cls, n)
        assert split.policy == {"on_error": "raise"} and split.fractions["val"] == 0.15
        assert sorted(map(sorted, split.groups)) == sorted(map(sorted, groups))
    with pytest.raises(ConfigError, match="val fraction must be above 0"):
        kfold_splits(rs, groups, 3, val=0.0)


def test_kfold_splits_planted_duplicates(tmp_path: Path) -> None:
    root = generate(tmp_path / "syn", n_per_class=10, size=128, seed=4)
    pairs = plant_duplicates(root, n_exact=5, n_near=5, seed=4)
    rs = load_dataset(root)
    groups = find_duplicates(rs, cache=False).rel_groups(0)
    assert sorted(groups) == sorted(sorted(p) for p in pairs)
    for split in kfold_splits(rs, groups, 4, val=0.2, seed=1):
        where = _where(split)
        for a, b in pairs:
            assert where[a] == where[b]
