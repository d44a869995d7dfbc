"""The explain() entry point: heat maps in the original image's pixels, for both methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.data.boxes import Letterbox
from mtbrain.explain import Explanation, explain, pointing_game, to_original
from mtbrain.models import Model
from mtbrain.viz.draw import GT_COLOR, PRED_COLOR

SIZE = 64


def rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def test_to_original_crops_the_padding_and_resizes() -> None:
    geo = Letterbox.fit(40, 20, SIZE)  # 40 x 20 -> 64 x 32 content, 16 px bands above/below
    assert (geo.new_w, geo.new_h, geo.pad_x, geo.pad_y) == (64, 32, 0, 16)
    heat = torch.zeros(SIZE, SIZE)
    heat[:16] = 1.0  # the top padding band: must be cropped away
    heat[16:48, :32] = 0.5  # left half of the content
    out = to_original(heat, geo)
    assert out.shape == (20, 40) and out.dtype == np.float32
    assert out.max() == pytest.approx(1.0)  # divided by the new maximum
    assert np.allclose(out[:, :15], 1.0) and np.allclose(out[:, 25:], 0.0)
    assert to_original(np.zeros((SIZE, SIZE)), geo).max() == 0.0
    small = to_original(heat, Letterbox.fit(16, 8, SIZE))  # shrinking, antialiased
    assert small.shape == (8, 16) and small[:, :6].min() > 0.9 and small[:, 10:].max() < 0.1
    with pytest.raises(ValueError, match="heatmap must be"):
        to_original(np.zeros((32, 32)), geo)


@pytest.mark.parametrize("method", ["gradcam", "shap"])
def test_explain_gives_maps_in_original_pixels(method: str, tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = Model(backbone="resnet18", img_size=SIZE, num_classes=3, pretrained=False)
    gray = (np.arange(50 * 90) % 251).astype(np.uint8).reshape(50, 90)  # H 50, W 90
    options = {"n_samples": 2} if method == "shap" else {}
    e = explain(model, gray, method=method, **options)
    assert isinstance(e, Explanation) and e.method == method
    assert e.heatmap.shape == (50, 90) and e.heatmap.dtype == np.float32
    assert e.heatmap.min() >= 0.0 and e.heatmap.max() <= 1.0
    assert e.image.shape == (50, 90) and e.name is None
    assert e.target == e.prediction.label  # default: the predicted class
    assert explain(model, gray, method=method, target="class_2", **options).target == "class_2"
    assert explain(model, gray, method=method, target=1, **options).target == "class_1"
    path = tmp_path / "x.png"
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(path)  # RGB file
    from_file = explain(model, path, method=method, **options)
    assert from_file.heatmap.shape == (50, 90) and from_file.name == str(path)
    with pytest.raises(ValueError, match="not a class"):
        explain(model, gray, method=method, target="glioma")
    with pytest.raises(ValueError, match="out of range"):
        explain(model, gray, method=method, target=3, **options)
    with pytest.raises(ValueError, match="unknown explanation method"):
        explain(model, gray, method="occlusion")


def test_picture_draws_the_boxes_at_their_pixels() -> None:
    from mtbrain.models.model import Prediction

    gray = np.full((240, 320), 90, dtype=np.uint8)  # line width 2 at this size
    heat = np.zeros((240, 320), dtype=np.float32)
    pred = Prediction(label="glioma", probs={"glioma": 0.9, "pituitary": 0.1},
                      box=[200.0, 40.0, 300.0, 120.0], box_score=0.8)
    e = Explanation("gradcam", "glioma", heat, gray, pred)
    pic = e.picture(true_boxes=[[40, 60, 120, 200]], true_label="glioma")
    assert pic.shape == (240, 320, 3) and pic.dtype == np.uint8
    green, orange, black = rgb(GT_COLOR), rgb(PRED_COLOR), (0, 0, 0)
    # true box: a 2 px ring just outside its pixels (columns 38-39, rows 200-201), edged black
    assert [tuple(pic[150, x]) for x in (37, 38, 39, 40)] == [black, green, green, black]
    assert [tuple(pic[y, 80]) for y in (199, 200, 201, 202)] == [black, green, green, black]
    # predicted box: on its own first and last pixels (x 200-201 and 298-299), edged black
    assert [tuple(pic[100, x]) for x in (199, 200, 201, 202)] == [black, orange, orange, black]
    assert [tuple(pic[100, x]) for x in (297, 298, 299, 300)] == [black, orange, orange, black]
    # the heat map (all zero: inferno's darkest colour) is blended over the image
    assert tuple(pic[230, 160]) != (90, 90, 90)


@pytest.mark.slow
def test_explain_undoes_the_letterbox(squares_model: Model) -> None:
    """A wide image is letterboxed (bands above and below); the map in original pixels
    still peaks on the square, for both methods, far more often than chance (1/8 of the
    image). Sixteen images: with six, one host's float rounding moved Grad-CAM from 4 to 3
    hits (11 of 16 there), so the count is taken over enough images to be stable."""
    rng = np.random.default_rng(0)
    hits = {"gradcam": 0, "shap": 0}
    for _ in range(16):
        gray = (0.3 * 255 * rng.random((48, 96))).astype(np.uint8)  # H 48, W 96: scale 2/3
        x0, y0 = int(rng.integers(0, 96 - 24)), int(rng.integers(0, 48 - 24))
        gray[y0 : y0 + 24, x0 : x0 + 24] = (255 * (0.7 + 0.3 * rng.random((24, 24)))).astype(
            np.uint8)
        box = [[x0, y0, x0 + 24, y0 + 24]]
        for method, options in (("gradcam", {"level": -3}), ("shap", {"n_samples": 4})):
            e = explain(squares_model, gray, method=method, target=1, **options)
            assert e.heatmap.shape == (48, 96)
            hits[method] += pointing_game(e.heatmap, box)
    assert hits["gradcam"] >= 8 and hits["shap"] >= 13, hits  # chance: P(>= 8 of 16) < 1e-3
