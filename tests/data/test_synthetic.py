"""Tests of the built-in synthetic data generator (mtbrain.data.synthetic)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtbrain.classes import CANONICAL_CLASSES
from mtbrain.data import synthetic
from mtbrain.data.boxes import convert
from mtbrain.data.image_io import read_gray
from mtbrain.data.synthetic import (
    CLASS_FOLDERS,
    CLASS_IDS,
    FILE_MODES,
    generate,
    plant_duplicates,
    render_slice,
    sample_rng,
)

TUMOURS = ("glioma", "meningioma", "pituitary")


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name == "images")


def _label_of(image: Path) -> Path:
    return image.parent.parent / "labels" / f"{image.stem}.txt"


def _parse_label(path: Path) -> list[tuple[int, list[float]]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        fields = line.split(" ")
        assert len(fields) == 5, f"{path}: {line!r}"
        assert all(len(f.split(".")[1]) == 6 for f in fields[1:]), f"{path}: {line!r}"
        out.append((int(fields[0]), [float(f) for f in fields[1:]]))
    return out


# --------------------------------------------------------------------------- render_slice


@pytest.mark.parametrize("label", TUMOURS)
@pytest.mark.parametrize("size", [64, (96, 72), (40, 90)])
def test_tumour_box_is_tight_to_the_mask_and_the_tumour_stands_out(label, size):
    for i in range(6):
        sl = render_slice(label, sample_rng(3, label, i), size=size)
        h, w = sl.image.shape
        assert sl.image.dtype == np.uint8 and (w, h) == (
            size if isinstance(size, tuple) else (size, size)
        )
        assert sl.tumour_mask is not None and sl.tumour_mask.shape == (h, w)
        x1, y1, x2, y2 = (int(c) for c in sl.tumour_box)
        assert np.array_equal(sl.tumour_box, [x1, y1, x2, y2])
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        mask = sl.tumour_mask
        # the rows and columns just inside each edge hold tumour pixels...
        assert mask[y1:y2, x1].any() and mask[y1:y2, x2 - 1].any()
        assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()
        # ...and nothing of the tumour lies outside the box
        outside = mask.copy()
        outside[y1:y2, x1:x2] = False
        assert not outside.any()
        # the tumour lies inside the head
        hx1, hy1, hx2, hy2 = sl.brain_box
        assert hx1 <= x1 and hy1 <= y1 and x2 <= hx2 and y2 <= hy2
        # the tumour differs from the tissue around its box
        img = sl.image.astype(np.float64)
        ring = np.zeros_like(mask)
        ring[max(0, y1 - 4) : y2 + 4, max(0, x1 - 4) : x2 + 4] = True
        ring[y1:y2, x1:x2] = False
        reference = np.median(img[ring])
        inside = img[mask]
        assert np.abs(inside - reference).mean() > 20
        if label != "glioma":  # meningioma and pituitary tumours are bright
            assert inside.mean() > reference + 15


def test_no_tumor_slice_has_a_head_box_and_no_tumour():
    for i in range(4):
        sl = render_slice("no_tumor", sample_rng(0, "no_tumor", i), size=(80, 64))
        assert sl.tumour_box is None and sl.tumour_mask is None
        x1, y1, x2, y2 = (int(c) for c in sl.brain_box)
        assert 0 <= x1 < x2 <= 80 and 0 <= y1 < y2 <= 64
        assert (x2 - x1) * (y2 - y1) > 0.4 * 80 * 64
        outside = np.ones((64, 80), dtype=bool)
        outside[y1:y2, x1:x2] = False
        assert sl.image[outside].mean() < 20  # background is dark
        assert sl.image[y1:y2, x1:x2].mean() > 60  # the head is not
        assert sl.label_box[0] == 2 and np.array_equal(sl.label_box[1], sl.brain_box)


def test_classes_differ_in_tumour_location():
    def centre(label: str, i: int) -> np.ndarray:
        sl = render_slice(label, sample_rng(5, label, i), size=64)
        b, h = sl.tumour_box, sl.brain_box
        return np.array(
            [((b[0] + b[2]) / 2 - h[0]) / (h[2] - h[0]), ((b[1] + b[3]) / 2 - h[1]) / (h[3] - h[1])]
        )

    pit = np.array([centre("pituitary", i) for i in range(8)])
    assert np.all(np.abs(pit[:, 0] - 0.5) < 0.1) and np.all(pit[:, 1] > 0.65)  # lower centre
    men = np.array([centre("meningioma", i) for i in range(8)])
    assert np.all(np.hypot(men[:, 0] - 0.5, men[:, 1] - 0.5) > 0.25)  # at the brain edge


def test_render_is_deterministic_and_checks_its_arguments():
    a = render_slice("glioma", np.random.default_rng(7), size=48)
    b = render_slice("glioma", np.random.default_rng(7), size=48)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.tumour_box, b.tumour_box)
    c = render_slice("glioma", np.random.default_rng(8), size=48)
    assert not np.array_equal(a.image, c.image)
    with pytest.raises(ValueError, match="unknown class"):
        render_slice("astrocytoma", np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least"):
        render_slice("glioma", np.random.default_rng(0), size=8)
    with pytest.raises(ValueError, match="size"):
        render_slice("glioma", np.random.default_rng(0), size="big")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- generate


def test_generate_is_deterministic(tmp_path):
    kwargs = dict(n_per_class=3, splits={"Train": 2, "Val": 1}, size=48, modes=True, seed=4)
    first = _tree_digest(generate(tmp_path / "a", **kwargs))
    second = _tree_digest(generate(tmp_path / "b", **kwargs))
    assert first == second and len(first) == 4 * 3 * 2
    third = _tree_digest(generate(tmp_path / "c", **{**kwargs, "seed": 5}))
    assert third.keys() == first.keys() and third != first
    # the first images do not change when more are asked for
    more = _tree_digest(
        generate(tmp_path / "d", **{**kwargs, "n_per_class": 6, "splits": {"Train": 1}})
    )
    train = {k: v for k, v in first.items() if k.startswith("Train/")}
    assert all(more[k] == v for k, v in train.items())


def test_layout_labels_and_ids(tmp_path):
    root = generate(
        tmp_path / "syn", n_per_class=5, splits={"Train": 0.8, "Val": 0.2}, size=(72, 60), seed=2
    )
    assert root == tmp_path / "syn"
    assert sorted(p.name for p in root.iterdir()) == ["Train", "Val"]
    for split, count in (("Train", 4), ("Val", 1)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(CLASS_FOLDERS.values())
        for label, folder in CLASS_FOLDERS.items():
            images = sorted((root / split / folder / "images").iterdir())
            labels = sorted((root / split / folder / "labels").iterdir())
            assert len(images) == len(labels) == count
            assert [p.stem for p in images] == [p.stem for p in labels]
            for image in images:
                index = int(image.stem.rsplit("_", 1)[1])
                sl = render_slice(label, sample_rng(2, label, index), size=(72, 60))
                lines = _parse_label(_label_of(image))
                assert len(lines) == 1
                class_id, values = lines[0]
                assert class_id == CLASS_IDS[label] == CANONICAL_CLASSES.index(label)
                assert all(0.0 <= x <= 1.0 for x in values)
                box = convert(values, "cxcywh_n", "xyxy", width=72, height=60)[0]
                expected = sl.brain_box if label == "no_tumor" else sl.tumour_box
                np.testing.assert_allclose(box, expected, atol=1e-3)
                assert Image.open(image).size == (72, 60)
    assert CLASS_IDS == {"glioma": 0, "meningioma": 1, "no_tumor": 2, "pituitary": 3}


def test_sizes_are_random_and_the_same_for_every_class(tmp_path):
    root = generate(tmp_path / "syn", n_per_class=8, size=64, sizes=(40, 100), seed=1)
    per_class: dict[str, Counter] = {}
    for label, folder in CLASS_FOLDERS.items():
        sizes = [Image.open(p).size for p in _images(root / "Train" / folder)]
        per_class[label] = Counter(sizes)
        assert all(40 <= w <= 100 and 40 <= h <= 100 for w, h in sizes)
    reference = per_class["glioma"]
    assert all(c == reference for c in per_class.values())  # size says nothing of the class
    assert len(reference) >= 6 and any(w != h for w, h in reference)


def test_modes_are_the_promised_ones(tmp_path):
    root = generate(tmp_path / "syn", n_per_class=len(FILE_MODES), size=40, modes=True)
    expected = {
        ("L-jpeg", ".jpg", "JPEG", "L"),
        ("RGB-jpeg", ".jpg", "JPEG", "RGB"),
        ("L-png-as-jpg", ".jpg", "PNG", "L"),
        ("P-png", ".png", "PNG", "P"),
        ("I16-png", ".png", "PNG", "I;16"),
        ("RGBA-png", ".png", "PNG", "RGBA"),
    }
    for label, folder in CLASS_FOLDERS.items():
        found = set()
        for path in _images(root / "Train" / folder):
            index = int(path.stem.rsplit("_", 1)[1])
            with Image.open(path) as im:
                mode = "I;16" if im.mode in ("I;16", "I") else im.mode
                found.add((FILE_MODES[index], path.suffix, im.format, mode))
            gray = read_gray(path)
            original = render_slice(label, sample_rng(0, label, index), size=40).image
            if mode == "I;16":  # lossless, and the reader stretches 16 bits to 0..255
                lo, hi = int(original.min()), int(original.max())
                stretched = np.round((original - lo) * (255.0 / (hi - lo)))
                assert np.abs(gray - stretched).max() <= 1
            elif im.format == "PNG":  # lossless
                assert np.array_equal(gray, original)
            else:
                assert np.abs(gray.astype(int) - original).mean() < 3
        assert found == expected


def test_generate_refuses_a_non_empty_folder_and_overwrites_on_request(tmp_path):
    out = tmp_path / "syn"
    out.mkdir()
    generate(out, n_per_class=1, size=40)  # an empty folder is fine
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        generate(out, n_per_class=1, size=40)
    assert (out / "keep.txt").read_text() == "mine"
    generate(out, n_per_class=2, size=40, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert len(_images(out)) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no temporary leftovers
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        generate(tmp_path / "file", n_per_class=1, overwrite=True)


def test_an_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = synthetic._write_sample

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_write_sample", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "syn", n_per_class=2, size=40)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_per_class": -1}, "n_per_class"),
        ({"seed": -1}, "seed"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"sizes": (10, 20)}, "sizes"),
        ({"sizes": (90, 60)}, "sizes"),
        ({"size": 16}, "at least"),
        ({"splits": {}}, "at least one split"),
        ({"splits": {"Train": 0.0}}, "positive"),
        ({"splits": {"../x": 1.0}}, "split folder"),
    ],
)
def test_generate_rejects_bad_options(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "syn", **kwargs)
    assert not (tmp_path / "syn").exists()


def test_split_counts_share_each_class_exactly():
    assert synthetic._split_counts(10, {"Train": 0.8, "Val": 0.2}) == [("Train", 8), ("Val", 2)]
    assert synthetic._split_counts(5, {"Train": 0.7, "Val": 0.15, "Test": 0.15}) == [
        ("Train", 3),
        ("Val", 1),
        ("Test", 1),
    ]
    assert synthetic._split_counts(2, {"A": 1, "B": 1, "C": 1}) == [("A", 1), ("B", 1), ("C", 0)]


# --------------------------------------------------------------------------- duplicates


def test_plant_duplicates(tmp_path):
    root = generate(tmp_path / "syn", n_per_class=3, size=64, modes=True)
    before = set(p.relative_to(root).as_posix() for p in _images(root))
    pairs = plant_duplicates(root, n_exact=3, n_near=3, seed=1)
    assert len(pairs) == 6
    assert len({orig for orig, _ in pairs}) == 6 and all(orig in before for orig, _ in pairs)
    after = set(p.relative_to(root).as_posix() for p in _images(root))
    assert after == before | {copy for _, copy in pairs}
    for k, (orig, copy) in enumerate(pairs):
        a, b = root / orig, root / copy
        assert a.parent == b.parent
        assert _label_of(b).read_text() == _label_of(a).read_text()
        if k < 3:
            assert b.read_bytes() == a.read_bytes()
        else:
            assert b.read_bytes() != a.read_bytes()
            ga, gb = read_gray(a), read_gray(b)
            scale = gb.shape[1] / ga.shape[1]
            assert 0.68 <= scale <= 0.92 and abs(gb.shape[0] / ga.shape[0] - scale) < 0.03
            back = np.asarray(Image.fromarray(gb).resize(ga.shape[::-1], Image.Resampling.BILINEAR))
            assert np.abs(back.astype(int) - ga).mean() < 12  # same picture
    # deterministic
    other = generate(tmp_path / "other", n_per_class=3, size=64, modes=True)
    assert plant_duplicates(other, n_exact=3, n_near=3, seed=1) == pairs
    assert _tree_digest(other) == _tree_digest(root)
    # a second planting does not clobber the first copies
    again = plant_duplicates(root, n_exact=3, n_near=0, seed=1)
    assert all(copy not in {c for _, c in pairs} for _, copy in again)
    with pytest.raises(ValueError, match="duplicates of"):
        plant_duplicates(root, n_exact=100, n_near=0)
    with pytest.raises(ValueError, match=">= 0"):
        plant_duplicates(root, n_exact=-1, n_near=0)
