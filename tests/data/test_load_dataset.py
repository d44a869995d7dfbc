"""``mtbrain.data.load_dataset``: autodetection, options, split files, public exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mtbrain.data
from mtbrain.data import LabelPolicy, RecordSet, Sample, list_layouts, load_dataset, write_coco
from mtbrain.data.splitfile import SplitFile
from mtbrain.errors import ConfigError, DataError


def test_public_exports() -> None:
    assert sorted(mtbrain.data.__all__) == sorted(
        ["LabelPolicy", "RecordSet", "Sample", "list_layouts", "load_dataset", "write_coco"]
    )
    assert Sample.__name__ == "Sample" and RecordSet.__name__ == "RecordSet"
    assert list_layouts() == ["kaggle_bbox", "yolo_flat", "class_folders", "coco"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = mtbrain.data.nope


def test_import_is_light() -> None:
    code = "import sys, mtbrain.data; print(sorted(m for m in ('PIL', 'yaml', 'numpy') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"


def test_autodetects_every_layout(tmp_path: Path, make_kaggle_tree, make_image) -> None:
    kaggle = make_kaggle_tree(tmp_path / "kaggle")
    assert load_dataset(kaggle).layout == "kaggle_bbox"
    assert load_dataset(kaggle / "Train").layout == "kaggle_bbox"

    yolo = tmp_path / "yolo"
    make_image(yolo / "images" / "train" / "a.jpg")
    (yolo / "labels" / "train").mkdir(parents=True)
    (yolo / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    assert load_dataset(yolo).layout == "yolo_flat"

    folders = tmp_path / "folders"
    make_image(folders / "Training" / "glioma" / "a.jpg")
    rs = load_dataset(folders, name="nick")
    assert rs.layout == "class_folders" and rs[0].source == "nick" and rs.name == "nick"

    coco = write_coco(load_dataset(kaggle), tmp_path / "coco" / "set.json")
    assert load_dataset(coco).layout == "coco"
    assert load_dataset(str(coco)).layout == "coco"


def test_explicit_layout_and_policy(tmp_path: Path, make_kaggle_tree) -> None:
    root = make_kaggle_tree(tmp_path)
    rs = load_dataset(root, layout="kaggle_bbox", policy=LabelPolicy(no_tumor_boxes="keep"))
    assert all(s.has_box for s in rs)
    with pytest.raises(DataError, match="no images/ folder"):
        load_dataset(root, layout="yolo_flat")
    with pytest.raises(
        ConfigError, match=r"unknown data layout 'voc'; known layouts: \['kaggle_bbox'"
    ):
        load_dataset(root, layout="voc")
    with pytest.raises(ConfigError, match=r"takes no images root \(only \['coco'\]\)"):
        load_dataset(root, images=tmp_path)


def test_unknown_layout_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path / "empty")
    message = str(err.value)
    assert str(tmp_path / "empty") in message and "no known data layout" in message
    for layout in list_layouts():
        assert f"  {layout}: " in message
    assert "<root>/<split>/<Class>/images" in message and "COCO json" in message
    with pytest.raises(DataError, match=r"nowhere: data path not found"):
        load_dataset(tmp_path / "nowhere")


def make_split(tmp_path: Path, data: str, parts: dict[str, list[str]], **kw: object) -> Path:
    split = SplitFile(data=data, layout=kw.pop("layout", "kaggle_bbox"), parts=parts, **kw)
    return split.write(tmp_path / "split.json")


def test_split_file_selects_a_part(tmp_path: Path, make_kaggle_tree) -> None:
    root = make_kaggle_tree(tmp_path / "data")
    val = ["Train/Pituitary/images/p1.png", "Train/Glioma/images/g2.jpg"]
    train = ["Train/Glioma/images/g1.jpg", "Train/Meningioma/images/m1.jpg"]
    path = make_split(
        tmp_path, "data", {"train": train, "val": val}, policy={"foreign_box_ids": "drop"}
    )
    rs = load_dataset(f"{path}:val")
    assert [s.rel for s in rs] == val
    assert rs.root == (tmp_path / "data").resolve() and rs.layout == "kaggle_bbox"
    g2 = rs[1]
    assert (len(g2.boxes), len(g2.other_boxes)) == (1, 1)  # the split's policy
    g2 = load_dataset(f"{path}:val", policy=LabelPolicy())[1]
    assert (len(g2.boxes), len(g2.other_boxes)) == (2, 0)  # the argument overrides it
    assert [s.rel for s in load_dataset(str(path) + ":train")] == train
    assert root.exists()


def test_split_file_errors(tmp_path: Path, make_kaggle_tree) -> None:
    make_kaggle_tree(tmp_path / "data")
    path = make_split(
        tmp_path,
        str((tmp_path / "data").resolve()),
        {"train": ["Train/Glioma/images/g1.jpg"], "test": ["Train/Glioma/images/gone.jpg"]},
    )
    with pytest.raises(
        DataError, match=r"split\.json: this is a split file: choose a part .*\['test', 'train'\]"
    ):
        load_dataset(path)
    with pytest.raises(DataError, match=r"split has no part 'val'; parts: \['test', 'train'\]"):
        load_dataset(f"{path}:val")
    with pytest.raises(ConfigError, match="differs from the split's layout 'kaggle_bbox'"):
        load_dataset(f"{path}:train", layout="class_folders")
    with pytest.raises(
        DataError, match=r"part 'test' names 'Train/Glioma/images/gone\.jpg'.*did the data change"
    ):
        load_dataset(f"{path}:test")
    rs = load_dataset(f"{path}:test", policy=LabelPolicy(on_error="skip"))
    assert len(rs) == 0 and [p.kind for p in rs.problems.problems] == ["missing_sample"]
    with pytest.raises(DataError, match=r"missing\.json: split file not found"):
        load_dataset(f"{tmp_path / 'missing.json'}:val")


def test_coco_images_option(tmp_path: Path, make_kaggle_tree) -> None:
    source = load_dataset(make_kaggle_tree(tmp_path / "data"))
    out = write_coco(source, tmp_path / "c.json")
    obj = json.loads(out.read_text())
    del obj["info"]
    (tmp_path / "bare.json").write_text(json.dumps(obj))
    with pytest.raises(DataError, match="file not found"):
        load_dataset(tmp_path / "bare.json")
    rs = load_dataset(tmp_path / "bare.json", images=tmp_path / "data")
    assert [s.path for s in rs] == [s.path for s in source]
