"""MRIDataset items, collate padding/masks, mixing several sets, worker seeding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mtbrain.data.boxes import Letterbox
from mtbrain.data.cache import DecodedCache
from mtbrain.data.dataset import MixedDataset, MRIDataset, collate, preprocess, to_tensor
from mtbrain.data.records import RecordSet, Sample
from mtbrain.data.transforms import AugmentConfig, build_train_transform, letterbox_image
from mtbrain.errors import ConfigError, DataError

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]
SIZE = 64


def make_sample(
    root: Path, name: str, width: int, height: int, label: str | None, boxes: list[list[float]]
) -> Sample:
    """A grey image with a bright rectangle at each box (PNG: exact pixels)."""
    arr = np.full((height, width), 30, dtype=np.uint8)
    for x1, y1, x2, y2 in boxes:
        arr[int(y1) : int(y2), int(x1) : int(x2)] = 240
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "L").save(path)
    return Sample(
        path=path,
        rel=name,
        label=label,
        width=width,
        height=height,
        source="tiny",
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
    )


@pytest.fixture
def records(tmp_path: Path) -> RecordSet:
    samples = [
        make_sample(
            tmp_path, "two_boxes.png", 80, 40, "glioma", [[4, 4, 20, 20], [40, 10, 70, 36]]
        ),
        make_sample(tmp_path, "no_box.png", 30, 90, "no_tumor", []),
        make_sample(tmp_path, "no_label.png", 50, 50, None, [[10, 10, 30, 40]]),
        make_sample(tmp_path, "tall.png", 33, 101, "pituitary", [[5, 60, 25, 90]]),
    ]
    return RecordSet(root=tmp_path, layout="test", classes=CLASSES, samples=samples)


def bright_bbox(image: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(image >= 135)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def test_item_is_letterboxed_image_and_forward_boxes(records: RecordSet) -> None:
    dataset = MRIDataset(records, CLASSES, size=SIZE)
    assert len(dataset) == 4
    image, target = dataset[3]
    assert image.shape == (1, SIZE, SIZE) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    s = records[3]
    geo = Letterbox.fit(s.width, s.height, SIZE)
    assert target["label"] == CLASSES.index("pituitary") and target["index"] == 3
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (1, 4)
    np.testing.assert_allclose(target["boxes"].numpy(), geo.forward(s.boxes), atol=1e-4)
    pixels = (image[0].numpy() * 255).round().astype(np.uint8)
    assert np.abs(bright_bbox(pixels) - target["boxes"][0].numpy()).max() <= 1.0
    assert dataset[1][1]["boxes"].shape == (0, 4) and dataset[2][1]["label"] == -1


def test_augmented_item_box_follows_pixels(records: RecordSet) -> None:
    cfg = AugmentConfig(
        hflip_p=1.0,
        rotate_p=0.0,
        affine_p=1.0,
        brightness_contrast_p=0.0,
        scale=(0.9, 1.1),
        translate=0.05,
    )
    dataset = MRIDataset(records, CLASSES, size=SIZE, transform=build_train_transform(cfg, SIZE))
    for epoch in range(3):
        dataset.set_epoch(epoch)
        image, target = dataset[3]
        pixels = (image[0].numpy() * 255).round().astype(np.uint8)
        assert target["boxes_lost"] == 0
        assert np.abs(bright_bbox(pixels) - target["boxes"][0].numpy()).max() <= 2.0


def test_collate_pads_boxes_and_builds_masks(records: RecordSet) -> None:
    dataset = MRIDataset(records, CLASSES, size=SIZE)
    images, targets = collate([dataset[i] for i in range(4)])
    assert images.shape == (4, 1, SIZE, SIZE)
    assert targets["labels"].tolist() == [0, 2, -1, 3] and targets["labels"].dtype == torch.long
    assert targets["label_mask"].tolist() == [True, True, False, True]
    assert targets["boxes"].shape == (4, 2, 4) and targets["boxes"].dtype == torch.float32
    assert targets["box_valid"].tolist() == [
        [True, True],
        [False, False],
        [True, False],
        [True, False],
    ]
    assert targets["box_mask"].tolist() == [True, False, True, True]
    assert targets["index"].tolist() == [0, 1, 2, 3]
    assert targets["boxes_lost"].tolist() == [0, 0, 0, 0]
    assert float(targets["boxes"][1].abs().sum()) == 0.0  # padding is zeros
    np.testing.assert_allclose(targets["boxes"][0, 1].numpy(), dataset[0][1]["boxes"][1].numpy())


def test_collate_without_any_box_keeps_one_slot(records: RecordSet) -> None:
    dataset = MRIDataset(records, CLASSES, size=SIZE)
    _, targets = collate([dataset[1], dataset[1]])
    assert targets["boxes"].shape == (2, 1, 4)
    assert not targets["box_valid"].any() and not targets["box_mask"].any()


def test_sample_that_loses_its_only_box_has_no_box(tmp_path: Path) -> None:
    corner = make_sample(tmp_path, "corner.png", 64, 64, "glioma", [[0, 0, 6, 6]])
    cfg = AugmentConfig(
        hflip_p=0.0,
        rotate_p=0.0,
        affine_p=1.0,
        brightness_contrast_p=0.0,
        scale=(1.0, 1.0),
        translate=0.3,
    )
    dataset = MRIDataset([corner], CLASSES, size=SIZE, transform=build_train_transform(cfg, SIZE))
    items = []
    for epoch in range(30):
        dataset.set_epoch(epoch)
        items.append(dataset[0])
    lost = [t for _, t in items if t["boxes_lost"]]
    assert lost and all(t["boxes"].shape == (0, 4) for t in lost)
    assert len(lost) < len(items)
    _, targets = collate(items)
    assert targets["box_mask"].sum() == len(items) - len(lost)
    assert targets["boxes_lost"].sum() == len(lost) and targets["label_mask"].all()


def test_bad_labels_sizes_and_cache_mismatch(records: RecordSet, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="two_boxes.png.*not one of the classes"):
        MRIDataset(records, ["meningioma", "no_tumor", "pituitary"], size=SIZE)
    with pytest.raises(ConfigError, match="size=32"):
        MRIDataset(records, CLASSES, size=SIZE, cache=DecodedCache(records, size=32))
    with pytest.raises(DataError, match="does not serve"):
        MRIDataset(records, CLASSES, size=SIZE, cache=DecodedCache(records.samples[:2], size=SIZE))
    wrong = Sample(path=records[0].path, rel="x", label="glioma", width=81, height=40, source="t")
    with pytest.raises(DataError, match="80x40 but its record says 81x40"):
        MRIDataset([wrong], CLASSES, size=SIZE)[0]


def test_cached_items_equal_uncached(records: RecordSet) -> None:
    plain = MRIDataset(records, CLASSES, size=SIZE)
    cached = MRIDataset(records, CLASSES, size=SIZE, cache=DecodedCache(records, size=SIZE))
    for i in range(len(records)):
        (a, ta), (b, tb) = plain[i], cached[i]
        assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])


def test_mixed_dataset_tags_sources(records: RecordSet, tmp_path: Path) -> None:
    first = MRIDataset(records, CLASSES, size=SIZE)
    extra = [make_sample(tmp_path / "cls", f"c{i}.png", 40, 40, "meningioma", []) for i in range(3)]
    second = MRIDataset(extra, CLASSES, size=SIZE)
    mixed = MixedDataset([first, second])
    assert len(mixed) == 7 and mixed.sizes == [4, 3]
    assert mixed.locate(5) == (1, 1) and mixed.locate(-1) == (1, 2) and mixed.locate(3) == (0, 3)
    _, targets = collate([mixed[i] for i in (0, 4, 6)])
    assert targets["source"].tolist() == [0, 1, 1] and targets["index"].tolist() == [0, 0, 2]
    assert targets["labels"].tolist() == [0, 1, 1]
    with pytest.raises(ConfigError, match="size"):
        MixedDataset([first, MRIDataset(extra, CLASSES, size=32)])
    with pytest.raises(ConfigError, match="classes"):
        MixedDataset([first, MRIDataset(extra, ["meningioma"], size=SIZE)])


def flips_seen(dataset: MRIDataset, workers: int) -> list[bool]:
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=collate,
                        timeout=60 if workers else 0)
    return [bool(t["boxes"][0, 0, 0] > SIZE / 2) for _, t in loader]


def test_augmentation_depends_on_seed_epoch_and_index_not_on_workers(tmp_path: Path) -> None:
    sample = make_sample(tmp_path, "s.png", 64, 64, "glioma", [[2, 20, 20, 40]])
    cfg = AugmentConfig(hflip_p=0.5, rotate_p=0.0, affine_p=0.0, brightness_contrast_p=0.0)
    dataset = MRIDataset(
        [sample] * 16, CLASSES, size=SIZE, transform=build_train_transform(cfg, SIZE), seed=7
    )
    torch.manual_seed(1)
    run0 = flips_seen(dataset, 0)
    torch.manual_seed(2)
    run2 = flips_seen(dataset, 2)
    assert run0 == run2  # same draws in the main process and in 2 workers
    assert 0 < sum(run0) < 16  # items differ from each other
    dataset.set_epoch(1)
    assert flips_seen(dataset, 0) != run0  # a new epoch, new draws
    dataset.set_epoch(0)
    dataset.seed = 8
    assert flips_seen(dataset, 0) != run0  # another seed, other draws


def test_box_known_follows_the_layout(records: RecordSet) -> None:
    assert records.boxes_annotated
    _, targets = collate([MRIDataset(records, CLASSES, size=SIZE)[i] for i in range(2)])
    assert targets["box_known"].all()
    class_only = MRIDataset(records, CLASSES, size=SIZE, boxes_known=False)
    _, targets = collate([class_only[i] for i in range(2)])
    assert not targets["box_known"].any()


def test_preprocess_is_the_letterbox(records: RecordSet) -> None:
    gray = np.asarray(Image.open(records[0].path))
    image, geo = preprocess(gray, SIZE)
    expected, expected_geo = letterbox_image(gray, SIZE)
    assert np.array_equal(image, expected) and geo == expected_geo
    stretched, sgeo = preprocess(gray, SIZE, keep_ratio=False)
    assert stretched.shape == (SIZE, SIZE) and sgeo.pad_x == sgeo.pad_y == 0
    tensor = to_tensor(image)
    assert tensor.shape == (1, SIZE, SIZE) and float(tensor.max()) == pytest.approx(240 / 255)
