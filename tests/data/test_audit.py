"""Tests of the data-set audit (mtbrain.data.audit)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtbrain.data import LabelPolicy, load_dataset
from mtbrain.data.audit import audit, display_names, render_text, size_check
from mtbrain.data.records import RecordSet, Sample
from mtbrain.data.synthetic import render_slice, sample_rng


def _slice_file(path: Path, label: str, index: int, size: tuple[int, int], seed: int) -> Path:
    img = render_slice(label, sample_rng(seed, label, index), size=size).image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, "L").save(path, quality=90)
    return path


def _class_set(
    root: Path, sizes: dict[str, list[tuple[int, int]]], *, seed: int = 11, split: str | None = None
) -> RecordSet:
    """A class-only record set of synthetic slices with the given sizes per class."""
    samples = []
    for label, size_list in sizes.items():
        for i, (w, h) in enumerate(size_list):
            rel = f"{label}/{label}_{i:03d}.jpg"
            path = _slice_file(root / rel, label, i, (w, h), seed)
            samples.append(
                Sample(
                    path=path,
                    rel=rel,
                    label=label,
                    width=w,
                    height=h,
                    source=root.name,
                    split=split,
                )
            )
    samples.sort(key=lambda s: s.rel)
    return RecordSet(root=root, layout="class_folders", classes=sorted(sizes), samples=samples)


@pytest.fixture
def no_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MTBRAIN_CACHE", str(tmp_path / "cache"))


def test_size_predicts_class_warning(tmp_path: Path, no_cache: None) -> None:
    rs = _class_set(
        tmp_path / "planted",
        {"glioma": [(96, 96)] * 12, "no_tumor": [(120, 100)] * 10 + [(100, 130)] * 2},
    )
    report = audit(rs, cache=False)
    ds = report["datasets"][0]
    size = ds["size_predicts_class"]
    assert size["checked"] and size["warning"] is True
    assert size["accuracy"] == 1.0 and size["baseline"] == 0.5
    assert {t["class"] for t in size["telling_sizes"]} == {"glioma", "no_tumor"}
    assert any("image size alone predicts the class" in w for w in report["warnings"])
    assert "WARNING: size predicts the class" in render_text(report)
    im = ds["images"]["per_class"]
    assert im["glioma"]["distinct_sizes"] == 1 and im["no_tumor"]["distinct_sizes"] == 2
    assert im["glioma"]["top_sizes"] == [[96, 96, 12]]
    assert im["no_tumor"]["square_fraction"] == 0.0
    assert im["glioma"]["modes"] == {"L": 12} and im["glioma"]["formats"] == {"JPEG": 12}


def test_no_size_warning_when_sizes_are_shared(tmp_path: Path, no_cache: None) -> None:
    sizes = [(96, 96), (112, 96), (96, 120), (128, 128)] * 3
    rs = _class_set(tmp_path / "fair", {"glioma": sizes, "pituitary": sizes})
    size = audit(rs, cache=False)["datasets"][0]["size_predicts_class"]
    assert size["checked"] and size["warning"] is False
    assert size["accuracy"] <= size["baseline"] + 0.05


def test_size_check_needs_two_classes() -> None:
    s = [Sample(path=Path("a"), rel="a", label="glioma", width=5, height=5, source="x")]
    assert size_check(s)["checked"] is False


def test_counts_splits_duplicates_and_conflicts(tmp_path: Path, no_cache: None) -> None:
    root = tmp_path / "set"
    rs = _class_set(root, {"glioma": [(128, 128)] * 4, "meningioma": [(128, 128)] * 4})
    # exact copy of a glioma image filed as meningioma (label conflict), and an exact copy
    # within glioma; mark one copy as coming from another upstream split
    src = rs.samples[0]
    extra = []
    for rel, label, split in [
        ("meningioma/copy_a.jpg", "meningioma", None),
        ("glioma/copy_b.jpg", "glioma", "Testing"),
    ]:
        shutil.copyfile(src.path, root / rel)
        extra.append(
            Sample(
                path=root / rel,
                rel=rel,
                label=label,
                width=128,
                height=128,
                source="set",
                split=split,
            )
        )
    # a near copy (resized + re-encoded) of a meningioma image, annotated with a tumour box
    # that the original lacks (a box-count conflict)
    near_src = next(s for s in rs.samples if s.label == "meningioma")
    Image.open(near_src.path).resize((160, 160)).save(root / "meningioma/near.jpg", quality=70)
    extra.append(
        Sample(
            path=root / "meningioma/near.jpg",
            rel="meningioma/near.jpg",
            label="meningioma",
            width=160,
            height=160,
            source="set",
            boxes=np.asarray([[10, 10, 40, 40]], dtype=np.float32),
        )
    )
    rs.samples = sorted(rs.samples + extra, key=lambda s: s.rel)
    report = audit(rs, cache=False)
    json.dumps(report)  # JSON-able
    ds = report["datasets"][0]
    assert ds["n_images"] == 11
    assert ds["counts"] == {"glioma": 5, "meningioma": 6}
    assert ds["splits"] == {"-": {"glioma": 4, "meningioma": 6}, "Testing": {"glioma": 1}}
    d = ds["duplicates"]
    assert d["exact_groups"] == 1 and d["exact_extra_copies"] == 2
    assert d["near_groups"] == 1 and d["near_extra_images"] == 1
    assert d["groups"] == 2 and d["images_in_groups"] == 5 and d["largest_group"] == 3
    assert d["removable_images"] == 3 and d["distinct_images"] == 8
    assert d["label_conflicts"] == 1
    assert d["cross_split_groups"] == 1
    conflict = d["label_conflict_examples"][0]
    assert "meningioma/copy_a.jpg (meningioma)" in conflict
    assert f"{src.rel} (glioma)" in conflict
    assert report["duplicates"]["label_conflicts"] == 1
    assert d["box_count_conflicts"] == 1  # the label conflict's group is not counted again
    assert sorted(d["box_count_conflict_examples"][0]) == [
        f"{near_src.rel} (0 boxes)", "meningioma/near.jpg (1 box)"]
    warnings = "\n".join(report["warnings"])
    assert "2 byte-identical extra copies in 1 groups" in warnings
    assert "carry different labels" in warnings and "straddle upstream splits" in warnings
    text = render_text(report)
    assert "exact: 2 extra copies in 1 groups" in text
    assert "label conflicts: 1" in text
    assert "box-count conflicts: 1" in text
    assert "1 duplicate groups annotate the same image with different numbers" in warnings
    assert report["duplicates"]["all_groups"] and report["timing"]["total_s"] > 0


def test_boxes_foreign_ids_and_problems(
    tmp_path: Path, no_cache: None, make_kaggle_tree: Callable[..., Path]
) -> None:
    spec = {
        "Glioma": {
            "g1.jpg": ["0 0.5 0.5 0.25 0.25"],
            "g2.jpg": ["0 0.25 0.25 0.25 0.25", "3 0.75 0.75 0.125 0.125"],
            "g3.jpg": None,
        },  # no label file: class only, no box
        "Meningioma": {"m1.jpg": ["1 0.5 0.5 0.5 0.25"], "m2.jpg": "1 0.5 0.5 zero 0.1\n"},
        "No Tumor": {"n1.jpg": ["2 0.5 0.5 0.75 0.75"]},
        "Pituitary": {"p1.png": ["3 0.5 0.5 0.125 0.25"]},
    }
    root = make_kaggle_tree(tmp_path / "kaggle", spec, size=(64, 48))
    rs = load_dataset(root, policy=LabelPolicy(missing_label_file="class_only", on_error="skip"))
    report = audit(rs, cache=False)
    ds = report["datasets"][0]
    assert ds["name"] == "kaggle" and ds["layout"] == "kaggle_bbox"
    b = ds["boxes"]
    assert b["has_boxes"] is True
    g = b["per_class"]["glioma"]
    assert g["n"] == 3 and g["with_tumour_box"] == 2 and g["tumour_boxes"] == 3
    assert g["boxes_per_image"] == {"0": 1, "1": 1, "2": 1}
    assert g["box_width_rel"]["max"] == pytest.approx(0.25, abs=0.02)
    assert g["images_with_foreign_boxes"] == 1
    assert b["foreign_boxes"] == {
        "images": 1,
        "boxes": 1,
        "by_pair": {"glioma image, pituitary box": 1},
    }
    n = b["per_class"]["no_tumor"]
    assert n["with_tumour_box"] == 0 and n["other_boxes"] == 1
    assert b["tumour_images_without_box"] == {
        "count": 1,
        "examples": ["Train/Glioma/images/g3.jpg"],
    }
    p = ds["problems"]
    assert p["skipped_by_reader"] == 1 and p["by_kind"] == {"bad_label": 1}
    assert "m2.txt:1" in p["examples"][0]
    text = render_text(report)
    assert "glioma image, pituitary box: 1" in text
    assert "tumour-class images without a tumour box: 1" in text


def test_unreadable_image_reported(tmp_path: Path, no_cache: None) -> None:
    rs = _class_set(tmp_path / "set", {"glioma": [(96, 96)] * 3, "pituitary": [(96, 96)] * 3})
    victim = rs.samples[1]
    victim.path.write_bytes(victim.path.read_bytes()[:100])
    report = audit(rs, cache=False)
    p = report["datasets"][0]["problems"]
    assert p["unreadable_images"] == 1 and p["by_kind"] == {"bad_image": 1}
    assert victim.path.name in p["examples"][0]
    assert report["duplicates"]["unreadable"][0].startswith(str(victim.path))
    assert report["datasets"][0]["images"]["per_class"]["glioma"]["n"] == 3


def test_cross_set_duplicates(tmp_path: Path, no_cache: None) -> None:
    a = _class_set(tmp_path / "a", {"glioma": [(128, 128)] * 3, "pituitary": [(128, 128)] * 3})
    b = _class_set(
        tmp_path / "b" / "Train",
        {"glioma": [(100, 100)] * 2, "pituitary": [(100, 100)] * 2},
        seed=12,
    )
    # b holds a resized copy of one image of a, with the other label
    src = a.samples[0]
    gray = np.asarray(Image.open(src.path).convert("L").resize((224, 224)))
    Image.fromarray(gray).save(tmp_path / "b" / "Train" / "pituitary" / "copy.jpg", quality=85)
    b.samples.append(
        Sample(
            path=tmp_path / "b" / "Train" / "pituitary" / "copy.jpg",
            rel="pituitary/copy.jpg",
            label="pituitary",
            width=224,
            height=224,
            source="Train",
        )
    )
    report = audit([a, b], cache=False)
    assert [ds["name"] for ds in report["datasets"]] == ["a", "b/Train"]
    cross = report["duplicates"]["cross_set"]
    assert len(cross) == 1
    assert cross[0]["groups"] == 1 and cross[0]["images_a"] == 1 and cross[0]["images_b"] == 1
    assert cross[0]["examples"] == [[f"a:{src.rel}", "b/Train:pituitary/copy.jpg"]]
    assert report["duplicates"]["cross_set_label_conflicts"] == 1
    assert any("are copies of each other" in w for w in report["warnings"])
    assert "across a and b/Train: 1 shared groups" in render_text(report)


def test_display_names_unique(tmp_path: Path) -> None:
    def rs(path: Path) -> RecordSet:
        return RecordSet(root=path, layout="class_folders", classes=["x"], samples=[])

    assert display_names([rs(tmp_path / "p" / "Train"), rs(tmp_path / "q" / "Train")]) == [
        "p/Train",
        "q/Train",
    ]
    assert display_names([rs(tmp_path / "s"), rs(tmp_path / "t" / "s")]) == ["s#1", "s#2"]


@pytest.mark.realdata
def test_real_box_set_sizes_predict_class(real_data: Path) -> None:
    """The documented quirk of mri-bbox: size alone predicts the class (no hashing here)."""
    root = real_data / "mri-bbox" / "Train"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    rs = load_dataset(root)
    size = size_check(rs.samples, folds=5, seed=0)
    assert size["warning"] is True
    assert size["accuracy"] > size["baseline"] + 0.10
    # every glioma is 512x512 like most others; the odd sizes give the no_tumor images away
    assert size["recall"]["no_tumor"] > 0.8
    assert size["telling_sizes"][0]["class"] == "no_tumor"
