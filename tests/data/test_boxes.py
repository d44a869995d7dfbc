import numpy as np
import pytest

from mtbrain.data.boxes import Letterbox, convert, iou_matrix, union_box

W, H = 300, 200


def test_convert_round_trips_between_all_formats():
    xyxy = np.array([[30.0, 40.0, 90.0, 160.0], [0.0, 0.0, 300.0, 200.0]])
    for fmt in ("xywh", "cxcywh_n", "xyxy_n"):
        there = convert(xyxy, "xyxy", fmt, width=W, height=H)
        back = convert(there, fmt, "xyxy", width=W, height=H)
        np.testing.assert_allclose(back, xyxy, atol=1e-9)
    np.testing.assert_allclose(
        convert(xyxy[:1], "xyxy", "cxcywh_n", width=W, height=H), [[0.2, 0.5, 0.2, 0.6]]
    )
    np.testing.assert_allclose(convert(xyxy[:1], "xyxy", "xywh"), [[30, 40, 60, 120]])


def test_convert_needs_size_for_normalised_and_checks_shape():
    with pytest.raises(ValueError, match="width and height"):
        convert([[0.5, 0.5, 0.1, 0.1]], "cxcywh_n", "xyxy")
    with pytest.raises(ValueError, match="4 columns"):
        convert([[1, 2, 3]], "xyxy", "xywh")
    assert convert([], "xyxy", "xywh").shape == (0, 4)


def test_iou_and_union():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])
    np.testing.assert_allclose(union_box(b), [[0, 0, 30, 30]])


@pytest.mark.parametrize(
    ("w", "h", "size"),
    [(300, 200, 256), (150, 1375, 224), (512, 512, 256), (97, 33, 64), (2000, 1999, 128)],
)
@pytest.mark.parametrize("keep_ratio", [True, False])
def test_letterbox_inverse_within_a_pixel(w, h, size, keep_ratio):
    geo = Letterbox.fit(w, h, size, keep_ratio=keep_ratio)
    assert geo.new_w <= size and geo.new_h <= size
    if keep_ratio:
        assert max(geo.new_w, geo.new_h) == size
    boxes = np.array([[0, 0, w, h], [w * 0.1, h * 0.3, w * 0.5, h * 0.9]])
    back = geo.inverse(geo.forward(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-6)
    fwd = geo.forward(np.array([[0, 0, w, h]]))[0]
    np.testing.assert_allclose(
        fwd, [geo.pad_x, geo.pad_y, geo.pad_x + geo.new_w, geo.pad_y + geo.new_h]
    )
