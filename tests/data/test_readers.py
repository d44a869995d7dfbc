"""The layout readers on tiny synthetic trees (and, when present, on the real data)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from mtbrain.classes import CANONICAL_CLASSES
from mtbrain.data.policy import LabelPolicy
from mtbrain.data.readers import get_reader, list_layouts, register_reader, registry
from mtbrain.data.readers.coco import write_coco
from mtbrain.data.records import RecordSet
from mtbrain.errors import ConfigError, DataError

SKIP = LabelPolicy(on_error="skip")


def read(
    layout: str, path: Path, policy: LabelPolicy | None = None, **options: object
) -> RecordSet:
    return get_reader(layout).read(path, policy or LabelPolicy(), None, **options)


def by_rel(records: RecordSet) -> dict[str, object]:
    return {s.rel: s for s in records}


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- registry


def test_layouts_are_registered_in_detection_order() -> None:
    assert list_layouts() == ["kaggle_bbox", "yolo_flat", "class_folders", "coco"]


def test_unknown_layout_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown data layout 'voc'.*kaggle_bbox.*coco"):
        get_reader("voc")


def test_register_reader_adds_a_layout_by_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_READERS", dict(registry._READERS))

    @register_reader("first_test_layout", priority=0)
    class _First(registry.Reader):
        pattern = "anything"

        def detect(self, path: Path) -> bool:
            return True

    assert registry.list_layouts()[0] == "first_test_layout"
    assert registry.detect_layout(Path(".")) == "first_test_layout"
    with pytest.raises(ValueError, match="already registered"):
        register_reader("first_test_layout")(_First)


# --------------------------------------------------------------------------- kaggle_bbox


def test_kaggle_reads_classes_boxes_and_sizes(tmp_path: Path, make_kaggle_tree) -> None:
    root = make_kaggle_tree(tmp_path / "set", size=(64, 32))
    rs = read("kaggle_bbox", root)
    assert rs.layout == "kaggle_bbox"
    assert rs.classes == list(CANONICAL_CLASSES)
    assert [s.rel for s in rs] == sorted(s.rel for s in rs)
    assert rs.counts() == {"glioma": 2, "meningioma": 1, "no_tumor": 1, "pituitary": 1}
    s = by_rel(rs)
    g1 = s["Train/Glioma/images/g1.jpg"]
    assert (g1.width, g1.height, g1.split, g1.source) == (64, 32, "Train", "set")
    assert g1.path == (root / "Train/Glioma/images/g1.jpg").resolve()
    assert g1.boxes.dtype == np.float32
    np.testing.assert_allclose(g1.boxes, [[24, 12, 40, 20]])  # 0.5 0.5 0.25 0.25 on 64x32
    g2 = s["Train/Glioma/images/g2.jpg"]  # foreign class-3 box kept by default
    np.testing.assert_allclose(g2.boxes, [[8, 4, 24, 12], [44, 22, 52, 26]])
    n1 = s["Train/No Tumor/images/n1.jpg"]  # whole-brain box is not a tumour box
    assert n1.label == "no_tumor" and not n1.has_box and n1.other_boxes.shape == (1, 4)
    np.testing.assert_allclose(n1.other_boxes, [[8, 4, 56, 28]])
    assert s["Train/Pituitary/images/p1.png"].label == "pituitary"
    assert len(rs.problems) == 0


def test_kaggle_root_may_be_a_split_folder(tmp_path: Path, make_kaggle_tree) -> None:
    make_kaggle_tree(tmp_path / "set")
    rs = read("kaggle_bbox", tmp_path / "set" / "Train")
    assert "Glioma/images/g1.jpg" in by_rel(rs)
    assert {s.split for s in rs} == {None}
    assert rs.name == "Train"


def test_kaggle_several_splits(tmp_path: Path, make_kaggle_tree) -> None:
    make_kaggle_tree(tmp_path / "set", split="Train")
    make_kaggle_tree(tmp_path / "set", {"Glioma": {"v.jpg": ["0 0.5 0.5 0.5 0.5"]}}, split="Val")
    rs = read("kaggle_bbox", tmp_path / "set")
    assert by_rel(rs)["Val/Glioma/images/v.jpg"].split == "Val"
    assert sum(s.split == "Train" for s in rs) == 5


@pytest.mark.parametrize(
    ("policy", "g2_boxes", "g2_other"),
    [
        (LabelPolicy(foreign_box_ids="keep"), 2, 0),
        (LabelPolicy(foreign_box_ids="drop"), 1, 1),
        (LabelPolicy(multi_box="largest"), 1, 0),
        (LabelPolicy(multi_box="union"), 1, 0),
    ],
)
def test_kaggle_foreign_and_multi_box_policies(
    tmp_path: Path, make_kaggle_tree, policy: LabelPolicy, g2_boxes: int, g2_other: int
) -> None:
    rs = read("kaggle_bbox", make_kaggle_tree(tmp_path), policy)
    g2 = by_rel(rs)["Train/Glioma/images/g2.jpg"]
    assert (len(g2.boxes), len(g2.other_boxes)) == (g2_boxes, g2_other)
    if policy.multi_box == "largest":
        np.testing.assert_allclose(g2.boxes, [[4, 4, 12, 12]])
    if policy.multi_box == "union":
        np.testing.assert_allclose(g2.boxes, [[4, 4, 26, 26]])
    if policy.foreign_box_ids == "drop":
        np.testing.assert_allclose(g2.other_boxes, [[22, 22, 26, 26]])


def test_kaggle_foreign_box_error_names_file_and_line(tmp_path: Path, make_kaggle_tree) -> None:
    root = make_kaggle_tree(tmp_path)
    with pytest.raises(DataError) as err:
        read("kaggle_bbox", root, LabelPolicy(foreign_box_ids="error"))
    assert "g2.txt:2:" in str(err.value)
    assert "'pituitary'" in str(err.value) and "'glioma'" in str(err.value)
    rs = read("kaggle_bbox", root, LabelPolicy(foreign_box_ids="error", on_error="skip"))
    assert len(rs) == 4 and "Train/Glioma/images/g2.jpg" not in by_rel(rs)
    [problem] = rs.problems.problems
    assert problem.kind == "foreign_box" and problem.line == 2 and problem.path.endswith("g2.txt")


def test_kaggle_no_tumor_boxes_keep(tmp_path: Path, make_kaggle_tree) -> None:
    rs = read("kaggle_bbox", make_kaggle_tree(tmp_path), LabelPolicy(no_tumor_boxes="keep"))
    n1 = by_rel(rs)["Train/No Tumor/images/n1.jpg"]
    assert n1.has_box and len(n1.other_boxes) == 0
    np.testing.assert_allclose(n1.boxes, [[4, 4, 28, 28]])


def test_kaggle_no_tumor_class_box_on_tumour_image_is_other(
    tmp_path: Path, make_kaggle_tree
) -> None:
    spec = {"Glioma": {"g.jpg": ["0 0.5 0.5 0.25 0.25", "2 0.5 0.5 0.9 0.9"]}}
    g = read("kaggle_bbox", make_kaggle_tree(tmp_path, spec))[0]
    assert (len(g.boxes), len(g.other_boxes)) == (1, 1)


def test_kaggle_missing_label_file_policy(tmp_path: Path, make_kaggle_tree) -> None:
    spec = {"Glioma": {"a.jpg": ["0 0.5 0.5 0.25 0.25"], "b.jpg": None}}
    root = make_kaggle_tree(tmp_path, spec)
    with pytest.raises(DataError, match=r"b\.jpg: image has no label file .*b\.txt"):
        read("kaggle_bbox", root)
    rs = read("kaggle_bbox", root, LabelPolicy(missing_label_file="class_only"))
    b = by_rel(rs)["Train/Glioma/images/b.jpg"]
    assert b.label == "glioma" and not b.has_box
    rs = read("kaggle_bbox", root, SKIP)
    assert [s.rel for s in rs] == ["Train/Glioma/images/a.jpg"]
    assert rs.problems.problems[0].kind == "missing_label"


def test_kaggle_empty_label_file_means_no_box(tmp_path: Path, make_kaggle_tree) -> None:
    g = read("kaggle_bbox", make_kaggle_tree(tmp_path, {"Glioma": {"a.jpg": []}}))[0]
    assert g.label == "glioma" and not g.has_box and len(g.other_boxes) == 0


def test_kaggle_box_tolerance_clips_or_fails(tmp_path: Path, make_kaggle_tree) -> None:
    inside = {"Glioma": {"a.jpg": ["0 0.5 0.5 1.01 0.5"]}}  # x1 = -0.005, x2 = 1.005
    a = read("kaggle_bbox", make_kaggle_tree(tmp_path / "a", inside))[0]
    np.testing.assert_allclose(a.boxes, [[0, 8, 32, 24]])
    outside = {"Glioma": {"a.jpg": ["0 0.5 0.5 0.25 0.25", "0 0.5 0.5 1.1 0.5"]}}
    root = make_kaggle_tree(tmp_path / "b", outside)
    with pytest.raises(DataError, match=r"a\.txt:2: box outside the image.*box_tolerance=0\.01"):
        read("kaggle_bbox", root)
    b = read("kaggle_bbox", root, LabelPolicy(box_tolerance=0.1))[0]
    np.testing.assert_allclose(b.boxes[1], [0, 8, 32, 24])


BAD_LINES = [
    ("0 0.5 0.5 0.2", 1, "expected 5 columns"),
    ("0 0.5 0.5 0.2 0.2 0.1 0.1", 1, "expected 5 columns 'class cx cy w h', got 7"),
    ("0 0.5 abc 0.2 0.2", 1, "cy is not a number: 'abc'"),
    ("0 nan 0.5 0.2 0.2", 1, "cx is not a finite number"),
    ("0 0.5 0.5 inf 0.2", 1, "w is not a finite number"),
    ("0 0.5 0.5 0 0.2", 1, "width and height must be positive"),
    ("0 0.5 0.5 0.2 -0.1", 1, "width and height must be positive"),
    ("0 1.2 0.5 0.2 0.2", 1, "box outside the image"),
    ("7 0.5 0.5 0.2 0.2", 1, "unknown class id 7; known ids: 0..3 (glioma, meningioma"),
    ("-1 0.5 0.5 0.2 0.2", 1, "unknown class id -1"),
    ("0.5 0.5 0.5 0.2 0.2", 1, "class id must be a whole number"),
    ("x 0.5 0.5 0.2 0.2", 1, "class id is not a number"),
    ("0 0.5 0.5 0.2 0.2\n\n0 0.5 0.5 0.2\n", 3, "expected 5 columns"),
    ("0 1.005 0.5 0.005 0.2", 1, "box has no area inside the image after clipping"),
]


@pytest.mark.parametrize(("text", "line", "problem"), BAD_LINES)
def test_kaggle_bad_label_lines(
    tmp_path: Path, make_kaggle_tree, text: str, line: int, problem: str
) -> None:
    spec = {"Glioma": {"ok.jpg": ["0 0.5 0.5 0.2 0.2"], "bad.jpg": text}}
    root = make_kaggle_tree(tmp_path, spec)
    with pytest.raises(DataError) as err:
        read("kaggle_bbox", root)
    message = str(err.value)
    assert f"bad.txt:{line}: " in message and problem in message
    rs = read("kaggle_bbox", root, SKIP)
    assert [s.rel for s in rs] == ["Train/Glioma/images/ok.jpg"]
    [p] = rs.problems.problems
    assert (p.kind, p.line, Path(p.path).name) == ("bad_label", line, "bad.txt")


def test_kaggle_label_files_with_bom_crlf_and_blank_lines(tmp_path: Path, make_kaggle_tree) -> None:
    text = "\ufeff0 0.5 0.5 0.25 0.25\r\n  \r\n3 0.25 0.25 0.25 0.25\r\n\r\n\r\n"
    g = read("kaggle_bbox", make_kaggle_tree(tmp_path, {"Glioma": {"a.jpg": text}}))[0]
    np.testing.assert_allclose(g.boxes, [[12, 12, 20, 20], [4, 4, 12, 12]])


def test_kaggle_label_file_not_utf8(tmp_path: Path, make_kaggle_tree) -> None:
    root = make_kaggle_tree(tmp_path, {"Glioma": {"a.jpg": []}})
    write(root / "Train/Glioma/labels/a.txt", b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=r"a\.txt: label file is not UTF-8 text"):
        read("kaggle_bbox", root)


def test_kaggle_orphan_label_file(tmp_path: Path, make_kaggle_tree) -> None:
    root = make_kaggle_tree(tmp_path, {"Glioma": {"a.jpg": []}})
    write(root / "Train/Glioma/labels/ghost.txt", "0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"ghost\.txt: label file without an image"):
        read("kaggle_bbox", root)
    rs = read("kaggle_bbox", root, SKIP)
    assert len(rs) == 1 and rs.problems.problems[0].kind == "orphan_label"


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "empty file (0 bytes)"), (b"this is not a jpeg", "not an image file")],
)
def test_kaggle_bad_image_files(
    tmp_path: Path, make_kaggle_tree, content: bytes, problem: str
) -> None:
    root = make_kaggle_tree(tmp_path, {"Glioma": {"a.jpg": [], "b.jpg": []}})
    write(root / "Train/Glioma/images/b.jpg", content)
    with pytest.raises(DataError, match=r"b\.jpg: " + re.escape(problem)):
        read("kaggle_bbox", root)
    rs = read("kaggle_bbox", root, SKIP)
    assert [s.rel for s in rs] == ["Train/Glioma/images/a.jpg"]
    assert rs.problems.problems[0].kind == "bad_image"


def test_kaggle_duplicate_stems(tmp_path: Path, make_kaggle_tree) -> None:
    spec = {"Glioma": {"a.jpg": [], "a.png": [], "b.jpg": []}}
    root = make_kaggle_tree(tmp_path, spec)
    with pytest.raises(DataError, match=r"a\.jpg: 2 images share the stem 'a' \(a\.jpg, a\.png\)"):
        read("kaggle_bbox", root)
    rs = read("kaggle_bbox", root, SKIP)
    assert [s.rel for s in rs] == ["Train/Glioma/images/b.jpg"]
    assert [Path(p.path).name for p in rs.problems.problems] == ["a.jpg", "a.png"]


def test_kaggle_empty_class_folder_and_empty_set(tmp_path: Path, make_kaggle_tree) -> None:
    root = make_kaggle_tree(tmp_path, {"Glioma": {"a.jpg": []}})
    (root / "Train/Meningioma/images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"Meningioma/images: empty folder"):
        read("kaggle_bbox", root)
    assert len(read("kaggle_bbox", root, SKIP)) == 1
    (root / "Train/Glioma/images/a.jpg").unlink()
    with pytest.raises(DataError, match=r"(?s)no usable images found.*empty folder"):
        read("kaggle_bbox", root, SKIP)


def test_kaggle_ignores_hidden_and_non_image_files(
    make_image, tmp_path: Path, make_kaggle_tree
) -> None:
    root = make_kaggle_tree(tmp_path)
    clean = [(s.rel, s.label, s.boxes.tolist()) for s in read("kaggle_bbox", root)]
    images = root / "Train/Glioma/images"
    write(images / ".DS_Store", b"\x00\x01")
    write(images / "._g1.jpg", b"AppleDouble junk")
    write(images / "Thumbs.db", b"junk")
    write(images / "notes.md", "hello")
    write(root / "Train/Glioma/labels/.g1.txt", "junk")
    write(root / "Train/.DS_Store", b"x")
    make_image(root / "Train/.cache/images/x.jpg")
    make_image(root / "Train/Glioma/images/.ipynb_checkpoints/g9.jpg")
    again = [(s.rel, s.label, s.boxes.tolist()) for s in read("kaggle_bbox", root)]
    assert again == clean


def test_kaggle_upper_case_extensions(tmp_path: Path, make_kaggle_tree) -> None:
    rs = read("kaggle_bbox", make_kaggle_tree(tmp_path, {"Glioma": {"A.JPG": ["0 .5 .5 .5 .5"]}}))
    assert rs[0].rel == "Train/Glioma/images/A.JPG" and rs[0].has_box


def test_kaggle_stray_image_in_class_folder(make_image, tmp_path: Path, make_kaggle_tree) -> None:
    root = make_kaggle_tree(tmp_path, {"Glioma": {"a.jpg": []}})
    make_image(root / "Train/Glioma/stray.jpg")
    with pytest.raises(DataError, match=r"stray\.jpg: image outside the images/ folder"):
        read("kaggle_bbox", root)


def test_kaggle_names_from_data_yaml(tmp_path: Path, make_kaggle_tree) -> None:
    spec = {"Glioma": {"a.jpg": ["1 0.5 0.5 0.25 0.25"]}, "No Tumor": {"n.jpg": ["0 .5 .5 .5 .5"]}}
    root = make_kaggle_tree(tmp_path, spec, split=None)
    write(root / "data.yaml", "path: ../x\ntrain: images\nnames:\n  0: No Tumor\n  1: Glioma\n")
    rs = read("kaggle_bbox", root, LabelPolicy(foreign_box_ids="error"))
    assert rs.classes == list(CANONICAL_CLASSES)
    a, n = rs
    assert a.label == "glioma" and a.has_box
    assert n.label == "no_tumor" and len(n.other_boxes) == 1


def test_kaggle_names_from_classes_txt_keep_their_names(tmp_path: Path, make_kaggle_tree) -> None:
    spec = {"Cat": {"c.jpg": ["1 0.5 0.5 0.25 0.25"]}, "Dog": {"d.jpg": ["0 .5 .5 .5 .5"]}}
    root = make_kaggle_tree(tmp_path, spec, split=None)
    write(root / "classes.txt", "dog\r\ncat\r\n")
    rs = read("kaggle_bbox", root, LabelPolicy(foreign_box_ids="error"))
    assert rs.classes == ["dog", "cat"]
    assert [s.label for s in rs] == ["cat", "dog"]
    write(root / "classes.txt", "dog\nbird\n")
    with pytest.raises(DataError, match=r"classes\.txt: class folder 'Cat' matches none"):
        read("kaggle_bbox", root)


def test_kaggle_non_canonical_folders_without_names(tmp_path: Path, make_kaggle_tree) -> None:
    spec = {"Dog": {"d.jpg": ["1 .5 .5 .5 .5"]}, "Cat": {"c.jpg": ["0 .5 .5 .5 .5"]}}
    rs = read("kaggle_bbox", make_kaggle_tree(tmp_path, spec), LabelPolicy(foreign_box_ids="error"))
    assert rs.classes == ["Cat", "Dog"]


def test_kaggle_bad_data_yaml(tmp_path: Path, make_kaggle_tree) -> None:
    root = make_kaggle_tree(tmp_path, {"Glioma": {"a.jpg": []}}, split=None)
    write(root / "data.yaml", "names: [a, b\nnc: 2\n")
    with pytest.raises(DataError, match=r"data\.yaml:\d+: not valid YAML"):
        read("kaggle_bbox", root)
    write(root / "data.yaml", "names: {0: a, 2: b}\n")
    with pytest.raises(DataError, match=r"data\.yaml: 'names' ids must be 0\.\.1 without gaps"):
        read("kaggle_bbox", root)


def test_kaggle_layout_not_found(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match=r"no <Class>/images folders found"):
        read("kaggle_bbox", tmp_path)


# --------------------------------------------------------------------------- yolo_flat


def make_yolo(
    make_image,
    root: Path,
    labels: dict[str, str | None],
    *,
    yaml: str | None = None,
    size: tuple[int, int] = (32, 32),
) -> Path:
    """``labels``: image path under images/ -> label text (None: no label file)."""
    for i, (rel, text) in enumerate(labels.items()):
        make_image(root / "images" / rel, size, seed=i)
        if text is not None:
            write(root / "labels" / Path(rel).with_suffix(".txt"), text)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    if yaml is not None:
        write(root / "data.yaml", yaml)
    return root


NAMES_YAML = "path: /somewhere\ntrain: images/train\nval: images/val\nnames: [glioma, meningioma, no_tumor, pituitary]\n"


def test_yolo_flat_classes_from_boxes(make_image, tmp_path: Path) -> None:
    root = make_yolo(
        make_image,
        tmp_path / "y",
        {
            "train/major.jpg": "1 .5 .5 .2 .2\n1 .2 .2 .1 .1\n0 .5 .5 .8 .8\n",
            "train/tie.jpg": "0 .5 .5 .2 .2\n3 .5 .5 .6 .6\n",
            "train/brain_and_tumour.jpg": "2 .5 .5 .9 .9\n0 .5 .5 .1 .1\n",
            "val/empty.png": "",
            "val/healthy.jpg": "2 .5 .5 .9 .9\n",
            "top.jpg": "3 .5 .5 .5 .5\n",
        },
        yaml=NAMES_YAML,
    )
    rs = read("yolo_flat", root)
    assert rs.layout == "yolo_flat" and rs.classes == list(CANONICAL_CLASSES)
    s = by_rel(rs)
    assert s["images/train/major.jpg"].label == "meningioma"
    assert len(s["images/train/major.jpg"].boxes) == 3  # foreign box kept by default
    assert s["images/train/tie.jpg"].label == "pituitary"  # tie: the largest box decides
    bt = s["images/train/brain_and_tumour.jpg"]
    assert bt.label == "glioma" and len(bt.boxes) == 1 and len(bt.other_boxes) == 1
    assert s["images/val/empty.png"].label == "no_tumor" and not s["images/val/empty.png"].has_box
    healthy = s["images/val/healthy.jpg"]
    assert healthy.label == "no_tumor" and not healthy.has_box and len(healthy.other_boxes) == 1
    assert s["images/train/major.jpg"].split == "train"
    assert s["images/top.jpg"].split is None and s["images/top.jpg"].label == "pituitary"
    drop = by_rel(read("yolo_flat", root, LabelPolicy(foreign_box_ids="drop")))
    assert len(drop["images/train/major.jpg"].boxes) == 2


def test_yolo_flat_names_as_dict_and_unknown_ids(make_image, tmp_path: Path) -> None:
    root = make_yolo(
        make_image,
        tmp_path,
        {"a.jpg": "1 .5 .5 .2 .2\n", "b.jpg": "5 .5 .5 .2 .2\n"},
        yaml="names:\n  0: cat\n  1: dog\n",
    )
    with pytest.raises(
        DataError, match=r"b\.txt:1: unknown class id 5; known ids: 0\.\.1 \(cat, dog\)"
    ):
        read("yolo_flat", root)
    rs = read("yolo_flat", root, SKIP)
    assert rs.classes == ["cat", "dog"] and [s.label for s in rs] == ["dog"]


def test_yolo_flat_without_names(make_image, tmp_path: Path) -> None:
    root = make_yolo(make_image, tmp_path, {"a.jpg": "2 .5 .5 .2 .2\n", "b.jpg": "", "c.jpg": None})
    with pytest.raises(DataError, match=r"c\.jpg: image has no label file"):
        read("yolo_flat", root)
    rs = read("yolo_flat", root, LabelPolicy(missing_label_file="class_only"))
    assert rs.classes == ["0", "1", "2"]
    assert [(s.label, s.has_box) for s in rs] == [("2", True), (None, False), (None, False)]


def test_yolo_flat_orphan_and_bad_label(make_image, tmp_path: Path) -> None:
    root = make_yolo(make_image, tmp_path, {"a.jpg": "0 .5 .5 .2\n", "b.jpg": "0 .5 .5 .2 .2\n"})
    write(root / "labels/sub/ghost.txt", "0 .5 .5 .2 .2\n")
    rs = read("yolo_flat", root, SKIP)
    assert [s.rel for s in rs] == ["images/b.jpg"]
    assert sorted(p.kind for p in rs.problems.problems) == ["bad_label", "orphan_label"]
    with pytest.raises(DataError, match=r"(a\.txt:1: expected 5 columns|ghost\.txt: label file)"):
        read("yolo_flat", root)


# --------------------------------------------------------------------------- class_folders


def test_class_folders_plain_and_canonical(make_image, tmp_path: Path) -> None:
    for i, folder in enumerate(["Glioma", "meningioma_tumor", "notumor", "Pituitary Tumor"]):
        make_image(tmp_path / folder / f"x{i}.jpg", (40, 20), seed=i)
    make_image(tmp_path / "Glioma" / "nested" / "deep.png")
    rs = read("class_folders", tmp_path)
    assert rs.layout == "class_folders" and rs.classes == list(CANONICAL_CLASSES)
    assert [(s.rel, s.label) for s in rs] == [
        ("Glioma/nested/deep.png", "glioma"),
        ("Glioma/x0.jpg", "glioma"),
        ("Pituitary Tumor/x3.jpg", "pituitary"),
        ("meningioma_tumor/x1.jpg", "meningioma"),
        ("notumor/x2.jpg", "no_tumor"),
    ]
    x0 = by_rel(rs)["Glioma/x0.jpg"]
    assert (x0.width, x0.height, x0.split, x0.has_box) == (40, 20, None, False)


def test_class_folders_with_splits(make_image, tmp_path: Path) -> None:
    for split in ("Training", "Testing"):
        for cls in ("glioma", "no_tumor"):
            make_image(tmp_path / split / cls / "a.jpg")
    write(tmp_path / "Training" / "glioma" / "Thumbs.db", b"junk")
    write(tmp_path / "Training" / ".DS_Store", b"junk")
    rs = read("class_folders", tmp_path)
    assert rs.classes == list(CANONICAL_CLASSES)
    assert [(s.rel, s.split, s.label) for s in rs] == [
        ("Testing/glioma/a.jpg", "Testing", "glioma"),
        ("Testing/no_tumor/a.jpg", "Testing", "no_tumor"),
        ("Training/glioma/a.jpg", "Training", "glioma"),
        ("Training/no_tumor/a.jpg", "Training", "no_tumor"),
    ]


def test_class_folders_44_class_names(make_image, tmp_path: Path) -> None:
    for folder in ("Astrocitoma T1C+", "_NORMAL T2", "Meningioma T1", "Schwannoma FLAIR"):
        make_image(tmp_path / folder / "a.jpg")
    rs = read("class_folders", tmp_path)
    assert rs.classes == ["Astrocitoma T1C+", "Meningioma T1", "Schwannoma FLAIR", "_NORMAL T2"]
    got = {s.label: (s.tumour_type, s.sequence) for s in rs}
    assert got == {
        "Astrocitoma T1C+": ("astrocitoma", "T1C+"),
        "_NORMAL T2": ("normal", "T2"),
        "Meningioma T1": ("meningioma", "T1"),
        "Schwannoma FLAIR": ("schwannoma", "FLAIR"),
    }


def test_class_folders_problems(make_image, tmp_path: Path) -> None:
    make_image(tmp_path / "glioma" / "a.jpg")
    write(tmp_path / "glioma" / "broken.jpg", b"")
    (tmp_path / "pituitary").mkdir()
    make_image(tmp_path / "loose.jpg")
    with pytest.raises(DataError, match=r"loose\.jpg: image outside any class folder"):
        read("class_folders", tmp_path)
    rs = read("class_folders", tmp_path, SKIP)
    assert [s.rel for s in rs] == ["glioma/a.jpg"]
    kinds = {Path(p.path).name: p.kind for p in rs.problems.problems}
    assert kinds == {
        "loose.jpg": "stray_image",
        "broken.jpg": "bad_image",
        "pituitary": "empty_folder",
    }


# --------------------------------------------------------------------------- coco


def make_coco(make_image, root: Path, obj: dict, images: dict[str, tuple[int, int]]) -> Path:
    for i, (name, size) in enumerate(images.items()):
        make_image(root / "imgs" / name, size, seed=i)
    return write(root / "ann.json", json.dumps(obj))


COCO_CATS = [
    {"id": 1, "name": "Glioma"},
    {"id": 2, "name": "Meningioma"},
    {"id": 3, "name": "Pituitary"},
]


def coco_images(*names: str, size: tuple[int, int] = (40, 20), **extra: dict) -> list[dict]:
    return [
        {
            "id": i + 1,
            "file_name": f"imgs/{n}",
            "width": size[0],
            "height": size[1],
            **extra.get(n, {}),
        }
        for i, n in enumerate(names)
    ]


def test_coco_reads_boxes_and_classes(make_image, tmp_path: Path) -> None:
    obj = {
        "images": coco_images(
            "a.jpg",
            "b.jpg",
            "c.jpg",
            "d.jpg",
            **{"c.jpg": {"label": "meningioma"}, "d.jpg": {"class": 3}},
        ),
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 2, 10, 8]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [20, 5, 5, 5]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [30, 10, 10, 10.1]},
            {"id": 4, "image_id": 3, "category_id": 1, "bbox": [0, 0, 5, 5]},
        ],
        "categories": COCO_CATS,
    }
    path = make_coco(
        make_image, tmp_path, obj, dict.fromkeys(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], (40, 20))
    )
    rs = read("coco", path)
    assert rs.layout == "coco" and rs.root == path.resolve()
    assert rs.classes == list(CANONICAL_CLASSES)
    a, b, c, d = rs
    assert (a.rel, a.label, a.width, a.height) == ("imgs/a.jpg", "glioma", 40, 20)
    np.testing.assert_allclose(a.boxes, [[4, 2, 14, 10], [20, 5, 25, 10], [30, 10, 40, 20]])
    assert a.boxes.dtype == np.float32
    assert b.label == "no_tumor" and not b.has_box  # no box, no label: no_tumor exists
    assert c.label == "meningioma" and len(c.boxes) == 1  # stated class wins, box is foreign
    assert d.label == "pituitary"
    assert rs.problems.problems == []
    dropped = read("coco", path, LabelPolicy(foreign_box_ids="drop"))
    assert len(dropped[0].boxes) == 2 and len(dropped[2].other_boxes) == 1
    with pytest.raises(
        DataError,
        match=r"ann\.json: box of class 'pituitary' \(annotations\[1\] \(id 2\)\) differs",
    ):
        read("coco", path, LabelPolicy(foreign_box_ids="error"))


def test_coco_images_root_and_non_canonical_classes(make_image, tmp_path: Path) -> None:
    obj = {
        "images": [{"id": 7, "file_name": "x.jpg"}, {"id": 8, "file_name": "y.jpg"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 0, "bbox": [1, 1, 4, 4]}],
        "categories": [{"id": 0, "name": "cat"}],
    }
    make_image(tmp_path / "pics" / "x.jpg")
    make_image(tmp_path / "pics" / "y.jpg")
    path = write(tmp_path / "meta" / "coco.json", json.dumps(obj))
    with pytest.raises(DataError, match=r"x\.jpg: file not found"):
        read("coco", path)
    rs = read("coco", path, images=tmp_path / "pics")
    assert rs.classes == ["cat"] and [(s.label, s.has_box) for s in rs] == [
        ("cat", True),
        (None, False),
    ]
    assert rs[0].path == (tmp_path / "pics" / "x.jpg").resolve()


@pytest.mark.parametrize(
    ("ann", "problem"),
    [
        (
            {"image_id": 1, "category_id": 1, "bbox": [1, 1, -4, 4]},
            "width and height must be positive",
        ),
        ({"image_id": 1, "category_id": 9, "bbox": [1, 1, 4, 4]}, "unknown category_id 9"),
        ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 4]}, "'bbox' must be [x, y, w, h]"),
        ({"image_id": 1, "category_id": 1, "bbox": [1, "a", 4, 4]}, "finite numbers"),
        ({"image_id": 1, "category_id": 1, "bbox": [30, 1, 20, 4]}, "leaves the 40x20 image"),
        ({"image_id": 5, "category_id": 1, "bbox": [1, 1, 4, 4]}, "unknown image_id 5"),
    ],
)
def test_coco_bad_annotations(make_image, tmp_path: Path, ann: dict, problem: str) -> None:
    obj = {
        "images": coco_images("a.jpg", "b.jpg"),
        "annotations": [{"id": 1, **ann}],
        "categories": COCO_CATS,
    }
    path = make_coco(make_image, tmp_path, obj, {"a.jpg": (40, 20), "b.jpg": (40, 20)})
    with pytest.raises(DataError) as err:
        read("coco", path)
    assert "ann.json" in str(err.value) and problem in str(err.value)
    rs = read("coco", path, SKIP)
    assert "imgs/b.jpg" in by_rel(rs) and len(rs.problems) == 1
    assert rs.problems.problems[0].kind == "bad_annotation"


def test_coco_bad_images_and_files(make_image, tmp_path: Path) -> None:
    obj = {
        "images": coco_images("a.jpg", "b.jpg", "c.jpg", **{"b.jpg": {"label": "lion"}}),
        "annotations": [],
        "categories": COCO_CATS,
    }
    sizes = {"a.jpg": (30, 20), "b.jpg": (40, 20), "c.jpg": (40, 20)}
    path = make_coco(make_image, tmp_path, obj, sizes)
    with pytest.raises(
        DataError, match=r"a\.jpg: images\[0\]: the json says 40x20 but the image file is 30x20"
    ):
        read("coco", path)
    rs = read("coco", path, SKIP)
    assert [s.rel for s in rs] == ["imgs/c.jpg"]
    assert [p.kind for p in rs.problems.problems] == ["bad_image", "bad_annotation"]
    assert "images[1]: unknown class label='lion'" in str(rs.problems.problems[1])
    write(tmp_path / "ann.json", '{\n  "images": [,]\n}')
    with pytest.raises(DataError, match=r"ann\.json:2: not valid JSON"):
        read("coco", tmp_path / "ann.json")


def test_coco_round_trip_is_exact(tmp_path: Path, make_kaggle_tree) -> None:
    source = read("kaggle_bbox", make_kaggle_tree(tmp_path / "data", size=(50, 30)))
    out = write_coco(source, tmp_path / "out" / "set.json", include_other_boxes=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["set.json"]  # no temp file left
    back = read("coco", out)
    assert back.classes == source.classes and len(back) == len(source)
    for a, b in zip(source, back, strict=True):
        assert (a.path, a.rel, a.label, a.width, a.height, a.source, a.split) == (
            b.path,
            b.rel,
            b.label,
            b.width,
            b.height,
            b.source,
            b.split,
        )
        assert (a.tumour_type, a.sequence) == (b.tumour_type, b.sequence)
        assert a.boxes.dtype == b.boxes.dtype == np.float32
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.other_boxes, b.other_boxes)
    without = read("coco", write_coco(source, tmp_path / "lean.json"))
    assert sum(len(s.other_boxes) for s in without) == 0
    assert [s.has_box for s in without] == [s.has_box for s in source]


def test_coco_round_trip_44_classes_and_folder_detection(make_image, tmp_path: Path) -> None:
    for folder in ("Astrocitoma T1C+", "_NORMAL T2"):
        make_image(tmp_path / "set" / folder / "a.jpg")
    source = read("class_folders", tmp_path / "set")
    write_coco(source, tmp_path / "set" / "annotations.json")
    assert get_reader("coco").detect(tmp_path / "set")
    back = read("coco", tmp_path / "set")
    assert back.classes == source.classes
    assert [(s.rel, s.label, s.tumour_type, s.sequence, s.source) for s in back] == [
        (s.rel, s.label, s.tumour_type, s.sequence, s.source) for s in source
    ]
    obj = json.loads((tmp_path / "set" / "annotations.json").read_text())
    assert obj["info"]["mtbrain"]["images_root"] == "."
    assert {"images", "annotations", "categories"} <= set(obj)


def test_write_coco_refuses_boxes_without_class(tmp_path: Path, make_kaggle_tree) -> None:
    rs = read("kaggle_bbox", make_kaggle_tree(tmp_path, {"Glioma": {"a.jpg": ["0 .5 .5 .5 .5"]}}))
    rs[0].label = None
    with pytest.raises(DataError, match="has boxes but no class"):
        write_coco(rs, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_coco_stated_no_tumor_with_tumour_only_categories(make_image, tmp_path: Path) -> None:
    obj = {
        "images": coco_images("a.jpg", **{"a.jpg": {"label": "No Tumor"}}),
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 20]}],
        "categories": COCO_CATS,
    }
    rs = read("coco", make_coco(make_image, tmp_path, obj, {"a.jpg": (40, 20)}))
    assert rs.classes == list(CANONICAL_CLASSES)
    assert rs[0].label == "no_tumor" and not rs[0].has_box and len(rs[0].other_boxes) == 1


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_mri_bbox_train(real_data: Path) -> None:
    root = real_data / "mri-bbox" / "Train"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    start = time.perf_counter()
    rs = read("kaggle_bbox", root)
    seconds = time.perf_counter() - start
    assert rs.counts() == {"glioma": 1153, "meningioma": 1449, "no_tumor": 711, "pituitary": 1424}
    assert rs.classes == list(CANONICAL_CLASSES) and len(rs.problems) == 0
    no_tumor = [s for s in rs if s.label == "no_tumor"]
    assert all(not s.has_box and len(s.other_boxes) == 1 for s in no_tumor)
    assert all(s.has_box for s in rs if s.label != "no_tumor")
    assert max(len(s.boxes) for s in rs) == 5
    assert len({(s.width, s.height) for s in rs}) > 100
    assert seconds < 30, f"reading 4737 images took {seconds:.1f} s"


@pytest.mark.realdata
def test_real_nickparvar_224(real_data: Path) -> None:
    root = real_data / "nickparvar-224"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    rs = read("class_folders", root)
    assert len(rs) == 6106 and rs.classes == list(CANONICAL_CLASSES)
    assert set(rs.counts()) == set(CANONICAL_CLASSES)
    assert {s.split for s in rs} == {"Training", "Testing"}
    assert not any(s.has_box for s in rs)
    assert {(s.width, s.height) for s in rs} == {(224, 224)}
