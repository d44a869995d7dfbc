"""Boxes on images and grids of samples (``mtbrain.viz``) and ``mtbrain visualize``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageColor

from mtbrain.cli import main
from mtbrain.data import load_dataset
from mtbrain.data.records import Sample
from mtbrain.viz import GT_COLOR, OTHER_COLOR, PRED_COLOR, draw_boxes, grid
from mtbrain.viz.draw import (
    GAP,
    UNREADABLE_BG,
    _Canvas,
    candidate_order,
    default_line_width,
    prediction_error,
    render_tile,
    select_samples,
    text_color_on,
)

REPO = Path(__file__).resolve().parents[2]
GREY = 100


def rgb(color: str) -> tuple[int, int, int]:
    return tuple(ImageColor.getrgb(color)[:3])  # type: ignore[return-value]


def px(image: np.ndarray, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in image[y, x])  # type: ignore[return-value]


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic set: 3 images per class, 128 px."""
    from mtbrain.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("viz") / "syn", n_per_class=3, size=128, seed=0)


def perfect_predictions(records) -> list[dict]:  # noqa: ANN001
    out = []
    for s in records:
        out.append({"image": s.rel, "label": s.label,
                    "probs": {c: 0.9 if c == s.label else 0.1 / 3 for c in records.classes},
                    "box": s.boxes[0].tolist() if s.has_box else None, "box_score": 0.8})
    return out


# --------------------------------------------------------------------------- draw_boxes


@pytest.mark.parametrize("box", [[10, 12, 30, 35], [9.6, 11.6, 30.4, 35.4]])
def test_outline_lies_exactly_on_the_rounded_box(box: list[float]) -> None:
    image = np.full((48, 50), GREY, np.uint8)
    out = draw_boxes(image, [box], color=GT_COLOR, width=1)
    green = rgb(GT_COLOR)
    for x in range(10, 31):  # top and bottom edges
        assert px(out, x, 12) == green and px(out, x, 35) == green
    for y in range(12, 36):  # left and right edges
        assert px(out, 10, y) == green and px(out, 30, y) == green
    grey = (GREY,) * 3
    # just outside and just inside stay as they were
    assert px(out, 20, 11) == grey and px(out, 20, 36) == grey
    assert px(out, 9, 20) == grey and px(out, 31, 20) == grey
    assert px(out, 20, 13) == grey and px(out, 11, 20) == grey
    assert out.shape == (48, 50, 3) and out.dtype == np.uint8
    assert (image == GREY).all()  # input untouched


def test_line_width_grows_inwards_only() -> None:
    out = draw_boxes(np.full((48, 50), GREY, np.uint8), [[10, 12, 30, 35]], color=PRED_COLOR,
                     width=3)
    orange, grey = rgb(PRED_COLOR), (GREY,) * 3
    assert [px(out, 20, y) for y in (11, 12, 13, 14, 15)] == [grey, orange, orange, orange, grey]
    assert [px(out, x, 20) for x in (31, 30, 28, 27)] == [grey, orange, orange, grey]


def test_boxes_are_clipped_to_the_image_and_rgb_input_kept() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = draw_boxes(image, [[0, 0, 30, 20], [100, 100, 120, 120]], color=(255, 0, 0), width=1)
    assert out.shape == (20, 30, 3)
    assert px(out, 29, 10) == (255, 0, 0) and px(out, 15, 19) == (255, 0, 0)
    assert (out[1:-1, 1:-1] == image[1:-1, 1:-1]).all()  # the off-image box drew nothing


def test_no_boxes_gives_the_image_as_rgb() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = draw_boxes(image, np.zeros((0, 4)))
    assert out.shape == (3, 4, 3) and (out[..., 1] == image).all()


@pytest.mark.parametrize(
    ("image", "kwargs"),
    [
        (np.zeros((8, 8), np.float32), {}),
        (np.zeros((8, 8, 4), np.uint8), {}),
        (np.zeros((8, 8), np.uint8), {"labels": ["a", "b"]}),
        (np.zeros((8, 8), np.uint8), {"color": [GT_COLOR, PRED_COLOR]}),
    ],
)
def test_bad_arguments_raise(image: np.ndarray, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        draw_boxes(image, [[1, 1, 4, 4]], **kwargs)


def test_default_width_scales_with_the_image() -> None:
    assert default_line_width(128, 128) < default_line_width(512, 512)
    assert default_line_width(1024, 1024) < default_line_width(2048, 2048)
    assert default_line_width(10, 10) >= 1


def test_label_has_a_filled_background_with_contrasting_text() -> None:
    image = np.full((120, 160), GREY, np.uint8)
    out = draw_boxes(image, [[40, 60, 100, 100]], color=PRED_COLOR, labels=["pred: glioma 0.9"],
                     width=2, font_size=14)
    band = out[30:60, 40:160].reshape(-1, 3)  # above the box, where the label goes
    fill = (band == rgb(PRED_COLOR)).all(axis=1).sum()
    ink = (band.max(axis=1) < 60).sum()  # black text (orange is light: dark text on it)
    assert text_color_on(PRED_COLOR) == (0, 0, 0) and text_color_on("#0072B2") == (255,) * 3
    assert fill > 300 and ink > 30


def test_labels_of_close_boxes_do_not_overlap() -> None:
    canvas = _Canvas(Image.new("RGB", (120, 100)), line_width=1, font_size=12)
    first = canvas.label("true: glioma", GT_COLOR, near=(20, 40, 60, 80))
    second = canvas.label("pred: glioma 0.93", PRED_COLOR, near=(22, 42, 62, 82))
    apart = (first[2] < second[0] or second[2] < first[0]
             or first[3] < second[1] or second[3] < first[1])
    assert apart
    for r in (first, second):
        assert 0 <= r[0] <= r[2] < 120 and 0 <= r[1] <= r[3] < 100
    # and through the public function: both labels' colours are there
    out = draw_boxes(np.full((100, 120), GREY, np.uint8), [[20, 40, 60, 80], [22, 42, 62, 82]],
                     color=[GT_COLOR, PRED_COLOR], labels=["true", "pred: glioma 0.93"],
                     width=1, font_size=12)
    for color in (GT_COLOR, PRED_COLOR):
        assert (out.reshape(-1, 3) == rgb(color)).all(axis=1).sum() > 150


def test_long_label_is_shortened_to_stay_inside_the_image() -> None:
    canvas = _Canvas(Image.new("RGB", (60, 60)), line_width=1, font_size=12)
    rect = canvas.label("pred: meningioma 0.99 | box 0.99", PRED_COLOR, near=(50, 50, 58, 58))
    assert rect[0] >= 0 and rect[2] <= 59 and rect[3] <= 59


# --------------------------------------------------------------------------- tiles and grid


def _sample(path: Path, w: int, h: int, boxes: list, **kw) -> Sample:  # noqa: ANN003
    return Sample(path=path, rel=path.name, label=kw.pop("label", "glioma"), width=w, height=h,
                  source="t", boxes=np.asarray(boxes, np.float32).reshape(-1, 4), **kw)


def test_tile_maps_boxes_onto_a_letterboxed_odd_sized_image(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    rgba = np.full((100, 200, 4), 80, np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(path)  # RGBA, 2:1
    s = _sample(path, 200, 100, [[50, 20, 100, 60]])
    tile = render_tile(s, {"image": s.rel, "label": "glioma", "box": [50, 20, 100, 60],
                           "box_score": 0.9}, tile=100)
    arr = np.asarray(tile)
    assert tile.size == (100, 100)
    # scale 0.5, padded by 25 rows on top: the box is x 25..50, y 35..55 in the tile;
    # the true box is drawn just outside its pixels, the predicted one just inside
    assert px(arr, 24, 45) == rgb(GT_COLOR) and px(arr, 25, 45) == rgb(PRED_COLOR)
    assert px(arr, 50, 45) == rgb(GT_COLOR) and px(arr, 49, 45) == rgb(PRED_COLOR)
    assert px(arr, 37, 45) == (80, 80, 80)  # the image inside the box
    assert px(arr, 37, 5) == (0, 0, 0)  # letterbox padding


def test_other_boxes_are_drawn_dashed_in_the_neutral_colour(tmp_path: Path) -> None:
    path = tmp_path / "n.png"
    Image.fromarray(np.full((64, 64), 80, np.uint8)).save(path)
    s = _sample(path, 64, 64, [], label="no_tumor",
                other_boxes=np.array([[8, 8, 56, 56]], np.float32))
    arr = np.asarray(render_tile(s, tile=128))
    ring = [px(arr, x, 15) for x in range(16, 112)]  # the top edge of the box (x2 = 2)
    assert rgb(OTHER_COLOR) in ring and (80, 80, 80) in ring  # dashes and gaps


def test_unreadable_image_gives_a_tile_saying_why(tmp_path: Path) -> None:
    s = _sample(tmp_path / "gone.jpg", 64, 64, [[1, 1, 9, 9]])
    arr = np.asarray(render_tile(s, {"image": s.rel, "label": "glioma", "box": None}, tile=96))
    assert arr.shape == (96, 96, 3)
    assert px(arr, 1, 1) == rgb(UNREADABLE_BG)
    assert (arr.reshape(-1, 3) > 200).all(axis=1).sum() > 50  # the (white) text


@pytest.mark.parametrize(("n", "tiles"), [(1, 1), (4, 4), (5, 5), (9, 9), (50, 12)])
def test_grid_has_n_tiles_of_the_tile_size(syn: Path, n: int, tiles: int) -> None:
    records = load_dataset(syn)
    image = grid(records, n=n, tile=64)
    placed = image.info["tiles"]
    assert len(placed) == tiles and len({rel for rel, _ in placed}) == tiles
    for _, (x0, y0, x1, y1) in placed:
        assert (x1 - x0, y1 - y0) == (64, 64)
        assert x0 >= 0 and x1 <= image.width and y1 <= image.height
    cols = math.ceil(math.sqrt(tiles))
    assert image.width == cols * 64 + (cols + 1) * GAP
    assert image.mode == "RGB"


def test_grid_is_deterministic_and_balanced(syn: Path) -> None:
    records = load_dataset(syn)
    a, b = grid(records, n=4, tile=64, seed=3), grid(records, n=4, tile=64, seed=3)
    assert a.tobytes() == b.tobytes()
    shown = [rel for rel, _ in a.info["tiles"]]
    assert sorted({records.subset([r])[0].label for r in shown}) == records.classes
    order = [s.rel for s in candidate_order(records, seed=3)]
    assert order != [s.rel for s in candidate_order(records, seed=4)]
    assert sorted(order) == sorted(s.rel for s in records)


def test_grid_filters_classes_and_errors(syn: Path) -> None:
    records = load_dataset(syn)
    only = grid(records, n=16, tile=64, classes=["pituitary"])
    assert all("Pituitary" in rel for rel, _ in only.info["tiles"])
    preds = perfect_predictions(records)
    preds[0] = {**preds[0], "label": "meningioma"}  # wrong class
    preds[1] = {**preds[1], "box": [0, 0, 5, 5]}  # box far off
    wrong = grid(records, predictions=preds, n=16, tile=64, only_errors=True)
    assert [rel for rel, _ in wrong.info["tiles"]] == [preds[0]["image"], preds[1]["image"]]
    with pytest.raises(ValueError, match="predictions"):
        grid(records, n=4, only_errors=True)
    with pytest.raises(ValueError, match="no samples"):
        grid(records, predictions=perfect_predictions(records), only_errors=True)


def test_grid_keeps_a_given_order_and_shows_heat_maps_and_notes(syn: Path) -> None:
    import matplotlib

    records = load_dataset(syn)
    ranked = list(reversed(records))[:3]
    plain = grid(ranked, n=3, tile=64, keep_order=True)
    assert [rel for rel, _ in plain.info["tiles"]] == [s.rel for s in ranked]  # as given
    first = ranked[0]
    heat = np.ones((first.height, first.width), dtype=np.float32)  # all "high"
    shown = grid(ranked, n=3, tile=64, keep_order=True, heatmaps={first.rel: heat},
                 heatmap_legend="heat", notes={first.rel: "note"})
    assert shown.height > plain.height  # a third caption line (and the colour bar item)
    def yellowish(image: Image.Image) -> float:  # share of pixels with red well above blue
        x0, y0, x1, y1 = image.info["tiles"][0][1]
        tile = np.asarray(image)[y0:y1, x0:x1].reshape(-1, 3).astype(int)
        return float(((tile[:, 0] - tile[:, 2]) > 30).mean())

    # tinted towards inferno's brightest colour (pale yellow); grey without a map
    assert yellowish(shown) > 0.8 and yellowish(plain) < 0.1
    legend = np.asarray(shown)[: shown.info["tiles"][0][1][1]].reshape(-1, 3).astype(int)
    low = np.asarray(matplotlib.colormaps["inferno"](0.0)[:3]) * 255
    assert (np.abs(legend - low).sum(axis=1) < 30).any()  # the colour bar's dark end
    with pytest.raises(ValueError, match="n must be"):
        grid(ranked, n=0, keep_order=True)


def test_prediction_error_reasons(tmp_path: Path) -> None:
    s = _sample(tmp_path / "x.jpg", 100, 100, [[10, 10, 50, 50]])
    right = {"label": "glioma", "box": [12, 10, 50, 52], "box_score": 0.9}
    assert prediction_error(s, right) is None
    assert prediction_error(s, None) is None
    assert prediction_error(s, {**right, "label": "pituitary"}) == "wrong class"
    assert "IoU 0.00" in prediction_error(s, {**right, "box": [60, 60, 90, 90]})
    assert prediction_error(s, {**right, "box": None}) == "no box"
    assert "failed" in prediction_error(s, {"image": "x.jpg", "error": "truncated"})
    none = _sample(tmp_path / "n.jpg", 100, 100, [], label="no_tumor")
    assert prediction_error(none, {"label": "no_tumor", "box": None}) is None


def test_select_samples_keeps_only_predicted_images(syn: Path) -> None:
    records = load_dataset(syn)
    preds = perfect_predictions(records)[:2]
    chosen = select_samples(records, predictions=preds, n=10)
    assert sorted(s.rel for s in chosen) == sorted(p["image"] for p in preds)


# --------------------------------------------------------------------------- command line


def run_cli(*argv: str) -> int:
    return main(["visualize", *argv])


def test_cli_draws_a_grid_with_predictions(syn: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    records = load_dataset(syn)
    preds = perfect_predictions(records)
    preds[2] = {**preds[2], "label": "pituitary"}
    preds[4] = {"image": preds[4]["image"], "error": "cannot decode image"}
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    out = tmp_path / "pics" / "grid.png"
    assert run_cli("--data", str(syn), "--predictions", str(tmp_path / "preds.json"),
                   "--out", str(out), "--n", "4", "--tile", "64") == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width == 2 * 64 + 3 * GAP and im.height > 2 * 64
    assert "wrote" in capsys.readouterr().err
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left nothing behind
    assert run_cli("--data", str(syn), "--predictions", str(tmp_path / "preds.json"),
                   "--out", str(out), "--only-errors", "--tile", "64") == 0


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "empty"),
        ("{not json", "not valid JSON"),
        ('{"image": "a.jpg"}', "JSON list"),
        ('[{"label": "glioma"}]', "'image'"),
        ('[{"image": "x.jpg", "label": "glioma", "box": [1, 2]}]', "box"),
        ('[{"image": "nowhere/x.jpg", "label": "glioma"}]', "none of the 1 predictions"),
    ],
)
def test_cli_bad_predictions_file_is_an_error_naming_it(
        syn: Path, tmp_path: Path, capsys: pytest.CaptureFixture, content: str,
        message: str) -> None:
    preds = _write(tmp_path / "preds.json", content)
    out = tmp_path / "grid.png"
    assert run_cli("--data", str(syn), "--predictions", str(preds), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(preds) in err and message in err
    assert not out.exists()


def test_cli_missing_files_are_one_line_errors(syn: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "grid.png"
    missing = tmp_path / "nope.json"
    assert run_cli("--data", str(syn), "--predictions", str(missing), "--out", str(out)) == 2
    assert capsys.readouterr().err == f"error: {missing}: predictions file not found\n"
    nowhere = tmp_path / "no-data"
    assert run_cli("--data", str(nowhere), "--out", str(out)) == 2
    assert capsys.readouterr().err == f"error: {nowhere}: data path not found\n"
    assert run_cli("--data", str(syn), "--checkpoint", str(tmp_path / "m.pt"),
                   "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "m.pt" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_predictions_of_unknown_images_are_ignored_with_a_warning(
        syn: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    records = load_dataset(syn)
    preds = perfect_predictions(records)[:3] + [{"image": "elsewhere.jpg", "label": "glioma"}]
    # a prediction may also name its image by file path
    preds[0] = {**preds[0], "image": str(records[0].path)}
    path = _write(tmp_path / "p.json", json.dumps(preds))
    out = tmp_path / "g.png"
    assert run_cli("--data", str(syn), "--predictions", str(path), "--out", str(out),
                   "--tile", "64") == 0
    err = capsys.readouterr().err
    assert "warning" in err and "elsewhere.jpg" in err and "1 prediction" in err
    assert out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--only-errors"], "--only-errors needs predictions"),
        (["--classes", "astrocytoma"], "not a class"),
        (["--n", "0"], "--n"),
        (["--out", "x.jpg"], ".png"),
    ],
)
def test_cli_bad_options_exit_2(syn: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                extra: list[str], message: str) -> None:
    args = ["--data", str(syn), "--out", str(tmp_path / "g.png"), *extra]
    assert run_cli(*args) == 2
    assert message in capsys.readouterr().err


def test_cli_no_samples_left_is_an_error(syn: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    records = load_dataset(syn)
    preds = [p for p in perfect_predictions(records) if p["label"] == "glioma"]
    path = _write(tmp_path / "p.json", json.dumps(preds))
    assert run_cli("--data", str(syn), "--predictions", str(path), "--classes", "Pituitary",
                   "--out", str(tmp_path / "g.png")) == 2
    assert "no samples left" in capsys.readouterr().err
    assert run_cli("--data", str(syn), "--predictions", str(path), "--only-errors",
                   "--out", str(tmp_path / "g.png")) == 2


def _count(path: Path, color: str) -> int:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB")).reshape(-1, 3)
    return int((arr == rgb(color)).all(axis=1).sum())


def test_cli_unreadable_images_get_a_tile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    from mtbrain import cli
    from mtbrain.data.synthetic import generate

    root = generate(tmp_path / "syn", n_per_class=1, size=64, seed=1)
    records = load_dataset(root)
    # a file whose header reads but whose data is cut short
    data = records[0].path.read_bytes()
    records[0].path.write_bytes(data[: len(data) // 3])
    out = tmp_path / "g.png"
    assert run_cli("--data", str(root), "--out", str(out), "--tile", "64") == 0
    assert _count(out, UNREADABLE_BG) > 64 * 64 // 2
    # a file that disappears after the data set was listed
    real_load = cli._load

    def load_then_delete(data: str, args):  # noqa: ANN001, ANN202
        found = real_load(data, args)
        found[1].path.unlink()
        return found

    monkeypatch.setattr(cli, "_load", load_then_delete)
    assert run_cli("--data", str(root), "--out", str(out), "--tile", "64") == 0
    assert _count(out, UNREADABLE_BG) > 2 * (64 * 64 // 2)
    assert "error" not in capsys.readouterr().err


def test_cli_predicts_with_a_checkpoint(syn: Path, tmp_path: Path) -> None:
    from mtbrain.models import Model

    ckpt = Model(backbone="mobilenetv3_small_050", img_size=64).save(tmp_path / "m.pt")
    out = tmp_path / "g.png"
    assert run_cli("--data", str(syn), "--checkpoint", str(ckpt), "--out", str(out),
                   "--n", "2", "--tile", "64") == 0
    assert out.exists()
    # an untrained model is wrong somewhere: the error search finds some
    assert run_cli("--data", str(syn), "--checkpoint", str(ckpt), "--out", str(out),
                   "--n", "2", "--tile", "64", "--only-errors", "--classes", "glioma") == 0


def test_tool_script_is_the_command(syn: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.png"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "visualize_boxes.py"), "--data", str(syn),
         "--out", str(out), "--n", "2", "--tile", "64"],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        assert im.size[0] == 2 * 64 + 3 * GAP


@pytest.mark.realdata
def test_real_data_smoke(real_data: Path, tmp_path: Path) -> None:
    train = real_data / "mri-bbox" / "Train"
    if not train.is_dir():
        pytest.skip(f"{train} not found")
    out = tmp_path / "real.png"
    assert run_cli("--data", str(train), "--out", str(out), "--n", "4", "--seed", "1") == 0
    with Image.open(out) as im:
        assert im.width == 2 * 256 + 3 * GAP
        arr = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert (arr == rgb(GT_COLOR)).all(axis=1).any() or (arr == rgb(OTHER_COLOR)).all(
        axis=1).any()
