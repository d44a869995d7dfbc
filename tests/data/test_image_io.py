import numpy as np
import pytest
from PIL import Image

from mtbrain.data.image_io import image_size, is_image_name, read_gray
from mtbrain.errors import DataError


def _save(tmp_path, name, im, fmt=None):
    p = tmp_path / name
    im.save(p, format=fmt)
    return p


def test_every_mode_becomes_uint8_gray(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[5:10, 5:10] = (255, 255, 255)
    cases = {
        "L": Image.fromarray(rgb[..., 0]),
        "RGB": Image.fromarray(rgb),
        "RGBA": Image.fromarray(np.dstack([rgb, np.full((20, 30), 255, np.uint8)])),
        "P": Image.fromarray(rgb).convert("P"),
        "I;16": Image.fromarray(rgb[..., 0].astype(np.uint16) * 200),
    }
    for mode, im in cases.items():
        p = _save(tmp_path, f"{mode.replace(';', '')}.png", im)
        gray = read_gray(p)
        assert gray.dtype == np.uint8 and gray.shape == (20, 30), mode
        assert gray[7, 7] == 255 and gray[0, 0] == 0, mode


def test_rgba_transparent_becomes_black(tmp_path):
    arr = np.full((8, 8, 4), 255, np.uint8)
    arr[..., 3] = 0
    assert read_gray(_save(tmp_path, "t.png", Image.fromarray(arr))).max() == 0


def test_png_bytes_under_jpg_name(tmp_path):
    p = _save(tmp_path, "fake.jpg", Image.fromarray(np.full((5, 7), 9, np.uint8)), fmt="PNG")
    assert image_size(p) == (7, 5) and read_gray(p)[0, 0] == 9


def test_bad_files_name_file_and_problem(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    good = _save(
        tmp_path,
        "good.jpg",
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)),
    )
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    for path, problem in (
        (empty, "empty file"),
        (text, "not an image"),
        (cut, "truncated"),
        (tmp_path / "missing.jpg", "not found"),
    ):
        with pytest.raises(DataError) as info:
            read_gray(path)
        assert path.name in str(info.value) and problem in str(info.value)


def test_is_image_name():
    assert (
        is_image_name("a/B.JPG") and not is_image_name(".hidden.jpg") and not is_image_name("x.txt")
    )
