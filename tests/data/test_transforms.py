"""Letterbox geometry and the box-preserving training augmentation."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from mtbrain.data.boxes import Letterbox
from mtbrain.data.transforms import (
    AugmentConfig,
    augment,
    build_train_transform,
    check_transform,
    letterbox_image,
)
from mtbrain.errors import ConfigError

# Only one kind of transform at a time, so a test can check it exactly.
OFF = {"hflip_p": 0.0, "rotate_p": 0.0, "affine_p": 0.0, "brightness_contrast_p": 0.0}


def bright_bbox(image: np.ndarray, threshold: int = 128) -> np.ndarray:
    """Tight xyxy box (pixel edges) of the pixels at or above ``threshold``."""
    ys, xs = np.nonzero(image >= threshold)
    assert len(xs), "no bright pixel left"
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def seeded(cfg: AugmentConfig, size: int, seed: int) -> A.Compose:
    transform = build_train_transform(cfg, size)
    assert transform is not None
    transform.set_random_seed(seed)
    return transform


# ------------------------------------------------------------------ letterbox round trip
@pytest.mark.parametrize(
    ("width", "height", "size"),
    [
        (512, 512, 224),  # square
        (301, 777, 255),  # tall, odd sizes
        (1375, 150, 257),  # wide, odd target
        (7, 3, 224),  # tiny, upscaled
        (9000, 4001, 97),  # huge, strongly downscaled
        (1, 640, 64),  # one pixel wide
    ],
)
@pytest.mark.parametrize("keep_ratio", [True, False])
def test_box_round_trip_through_letterbox(
    width: int, height: int, size: int, keep_ratio: bool
) -> None:
    rng = np.random.default_rng(width * 31 + height)
    xy1 = rng.uniform(0, 0.6, size=(20, 2)) * [width, height]
    wh = rng.uniform(0.05, 0.4, size=(20, 2)) * [width, height]
    boxes = np.concatenate([xy1, np.minimum(xy1 + wh, [width, height])], axis=1)
    geo = Letterbox.fit(width, height, size, keep_ratio=keep_ratio)
    net = geo.forward(boxes)
    assert net.min() >= -1e-6 and net.max() <= size + 1e-6  # inside the network input
    back = geo.inverse(net)
    assert np.abs(back - boxes).max() < 1.0
    if keep_ratio:  # aspect ratio kept: one scale for both axes (up to integer rounding)
        assert abs(geo.scale_x - geo.scale_y) <= 1.0 / min(width, height) + 1e-9


@pytest.mark.parametrize(
    ("width", "height", "size", "box"),
    [
        (120, 80, 64, (30, 20, 90, 60)),  # wide, downscaled
        (61, 203, 97, (10, 50, 50, 150)),  # tall, odd
        (9, 5, 64, (2, 1, 6, 4)),  # tiny, upscaled 7x
        (1501, 1201, 128, (300, 400, 1100, 900)),  # large
    ],
)
def test_letterboxed_pixels_follow_forward_boxes(
    width: int, height: int, size: int, box: tuple[int, ...]
) -> None:
    gray = np.zeros((height, width), dtype=np.uint8)
    x1, y1, x2, y2 = box
    gray[y1:y2, x1:x2] = 255
    image, geo = letterbox_image(gray, size)
    assert image.shape == (size, size) and image.dtype == np.uint8
    expected = geo.forward(np.array([box], dtype=np.float64))[0]
    assert np.abs(bright_bbox(image) - expected).max() <= 1.0
    # the padding is black and the resized image sits where the geometry says
    assert image[: geo.pad_y].max(initial=0) == 0 and image[:, : geo.pad_x].max(initial=0) == 0


# ------------------------------------------------------------------ augmentation
def square_image(size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    image = np.full((size, size), 20, dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 230
    return image


def test_horizontal_flip_moves_box_with_pixels() -> None:
    size, box = 96, (10, 20, 41, 47)
    cfg = AugmentConfig(**{**OFF, "hflip_p": 1.0})
    out, boxes, lost = augment(seeded(cfg, size, 0), square_image(size, box), np.array([box]))
    assert lost == 0 and boxes.dtype == np.float32
    np.testing.assert_allclose(boxes[0], [size - 41, 20, size - 10, 47], atol=1e-4)
    np.testing.assert_allclose(bright_bbox(out), boxes[0], atol=0.5)


@pytest.mark.parametrize("seed", range(6))
def test_small_affine_moves_box_with_pixels(seed: int) -> None:
    size, box = 128, (40, 30, 81, 71)
    cfg = AugmentConfig(**{**OFF, "affine_p": 1.0, "scale": (0.85, 1.15), "translate": 0.08})
    out, boxes, lost = augment(seeded(cfg, size, seed), square_image(size, box), np.array([box]))
    assert lost == 0 and boxes.shape == (1, 4)
    assert np.abs(bright_bbox(out) - boxes[0]).max() <= 2.0


def test_rotation_uses_the_tight_ellipse_box() -> None:
    size = 128
    box = np.array([[34.0, 44.0, 94.0, 84.0]])  # a 60 x 40 elliptical "tumour"
    image = np.zeros((size, size), dtype=np.uint8)
    cv2.ellipse(image, (64, 64), (30, 20), 0, 0, 360, 255, thickness=-1)
    cfg = AugmentConfig(**{**OFF, "rotate_p": 1.0, "rotate": (20.0, 20.0)})
    out, boxes, lost = augment(seeded(cfg, size, 0), image, box)
    assert lost == 0
    truth = bright_bbox(out)
    assert np.abs(truth - boxes[0]).max() <= 2.0
    # albumentations' default method would have inflated the box well beyond the pixels
    loose = A.Compose(
        [A.Rotate(limit=(20, 20), p=1.0, border_mode=cv2.BORDER_CONSTANT)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["box_ids"]),
    )
    inflated = np.asarray(loose(image=image, bboxes=box, box_ids=[0])["bboxes"])[0, :4]
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    assert area(inflated) > 1.15 * area(truth) > area(boxes[0])


def test_default_rotation_range_is_minus25_to_plus20() -> None:
    cfg = AugmentConfig()
    assert cfg.rotate == (-25.0, 20.0)
    transform = build_train_transform(cfg, 64)
    rotate = next(t for t in transform.transforms if isinstance(t, A.Rotate))
    assert tuple(rotate.limit) == (-25.0, 20.0) and rotate.rotate_method == "ellipse"


@pytest.mark.parametrize("seed", range(10))
def test_full_pipeline_keeps_boxes_inside_and_in_order(seed: int) -> None:
    size = 64
    boxes = np.array([[2, 2, 30, 20], [40, 35, 63, 62], [20, 20, 44, 44]], dtype=np.float32)
    image = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    cfg = AugmentConfig(
        **{**OFF, "hflip_p": 0.5, "rotate_p": 1.0, "affine_p": 1.0, "brightness_contrast_p": 1.0}
    )
    out, moved, lost = augment(seeded(cfg, size, seed), image, boxes)
    assert out.shape == (size, size) and out.dtype == np.uint8
    assert len(moved) + lost == 3
    assert moved.min() >= 0 and moved.max() <= size
    assert np.all(moved[:, 2] > moved[:, 0]) and np.all(moved[:, 3] > moved[:, 1])


def test_brightness_contrast_leaves_boxes_alone() -> None:
    box = np.array([[5.5, 6.25, 30.0, 40.0]])
    cfg = AugmentConfig(**{**OFF, "brightness_contrast_p": 1.0})
    image = np.full((48, 48), 100, dtype=np.uint8)
    out, moved, lost = augment(seeded(cfg, 48, 1), image, box)
    assert lost == 0 and not np.array_equal(out, image)
    np.testing.assert_allclose(moved, box, atol=1e-4)


def test_box_pushed_out_is_dropped_and_counted_box_partly_out_is_clipped() -> None:
    size = 100
    cfg = AugmentConfig(**{**OFF, "affine_p": 1.0, "scale": (1.0, 1.0), "translate": 0.3})
    corner = np.array([[0, 0, 8, 8]], dtype=np.float32)  # drops when shifted up/left enough
    outcomes = {"lost": 0, "kept": 0}
    for seed in range(40):
        _, moved, lost = augment(seeded(cfg, size, seed), square_image(size, (0, 0, 8, 8)), corner)
        assert len(moved) + lost == 1
        outcomes["lost" if lost else "kept"] += 1
        if lost:
            assert moved.shape == (0, 4)  # consistent: no box at all, not a degenerate one
        else:
            assert moved.min() >= 0 and moved.max() <= size
            assert (moved[0, 2] - moved[0, 0]) >= cfg.min_box_size
    assert outcomes["lost"] > 0 and outcomes["kept"] > 0
    # a box that leaves the image partly keeps its inside part
    cfg_right = AugmentConfig(**{**OFF, "affine_p": 1.0, "scale": (1.0, 1.0), "translate": 0.1})
    big = np.array([[60, 10, 100, 90]], dtype=np.float32)
    for seed in range(5):
        _, moved, lost = augment(
            seeded(cfg_right, size, seed), square_image(size, (60, 10, 100, 90)), big
        )
        assert lost == 0 and moved.max() <= size and moved.min() >= 0


def test_no_boxes_pass_through() -> None:
    out, moved, lost = augment(
        seeded(AugmentConfig(), 32, 0), np.zeros((32, 32), np.uint8), np.zeros((0, 4), np.float32)
    )
    assert out.shape == (32, 32) and moved.shape == (0, 4) and lost == 0


# ------------------------------------------------------------------ configuration
def test_augment_config_from_dict_and_errors() -> None:
    cfg = AugmentConfig.from_dict({"rotate": [-10, 15], "hflip_p": 1})
    assert cfg.rotate == (-10.0, 15.0) and cfg.hflip_p == 1.0
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="rotat_p"):
        AugmentConfig.from_dict({"rotat_p": 0.5})
    with pytest.raises(ConfigError, match="hflip_p"):
        AugmentConfig(hflip_p=1.5)
    with pytest.raises(ConfigError, match="rotate"):
        AugmentConfig(rotate=(20.0, -25.0))
    with pytest.raises(ConfigError, match="scale"):
        AugmentConfig(scale=(0.0, 1.0))


def test_disabled_config_gives_no_transform_and_foreign_pipelines_are_refused() -> None:
    assert build_train_transform(AugmentConfig(enabled=False), 64) is None
    check_transform(build_train_transform(AugmentConfig(), 64))
    with pytest.raises(ConfigError, match="pascal_voc"):
        check_transform(A.Compose([A.HorizontalFlip()]))
    with pytest.raises(ConfigError, match="box_ids"):
        check_transform(
            A.Compose([A.HorizontalFlip()], bbox_params=A.BboxParams(format="pascal_voc"))
        )
