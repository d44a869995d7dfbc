"""The YOLO baseline: dataset export, label conversion, predictions records, a tiny real run.

ultralytics is the optional extra ``yolo``: without it the whole module is skipped. The
module does not import ultralytics itself at collection (importing it changes OpenCV's
thread count and ``OMP_NUM_THREADS`` for the whole test session); the functions under test
import it inside their offline session and restore that state.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

if importlib.util.find_spec("ultralytics") is None:
    pytest.skip("ultralytics is not installed (optional extra: pip install 'mtbrain[yolo]')",
                allow_module_level=True)

from mtbrain.baselines.yolo import (  # noqa: E402
    MANIFEST_NAME,
    boxes_to_yolo_lines,
    export_yolo_dataset,
    predict_yolo,
    read_export_manifest,
    train_yolo,
    yolo_lines_to_boxes,
    yolo_to_predictions,
)
from mtbrain.data import load_dataset  # noqa: E402
from mtbrain.data.records import RecordSet, Sample  # noqa: E402
from mtbrain.data.synthetic import generate  # noqa: E402
from mtbrain.errors import ConfigError  # noqa: E402
from mtbrain.eval.evaluate import score_predictions  # noqa: E402

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory) -> RecordSet:
    """16 synthetic 64x64 images, 4 per class (read-only for the tests)."""
    root = generate(tmp_path_factory.mktemp("yolo") / "syn", n_per_class=4, size=64, seed=0)
    return load_dataset(root)


def _snapshot(root: Path) -> dict[str, tuple[int, int, bool]]:
    """Every path under ``root`` with its mtime, size and whether it is a link."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mtime_ns, st.st_size, p.is_symlink())
    st = root.stat()
    out["."] = (st.st_mtime_ns, st.st_size, False)
    return out


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """Block and record every DNS lookup and socket connection."""
    calls: list[tuple[str, object]] = []

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> None:
        calls.append(("getaddrinfo", host))
        raise OSError("network blocked by the test")

    def connect(self: socket.socket, address: object) -> None:
        calls.append(("connect", address))
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    return calls


def _sample(tmp: Path, rel: str, label: str | None, boxes: list[list[float]] | None = None,
            *, size: tuple[int, int] = (40, 30), other: list[list[float]] | None = None) -> Sample:
    from PIL import Image

    path = tmp / "src" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, 128).save(path)
    return Sample(path=path, rel=rel, label=label, width=size[0], height=size[1], source="t",
                  boxes=np.asarray(boxes or [], np.float32).reshape(-1, 4),
                  other_boxes=np.asarray(other or [], np.float32).reshape(-1, 4))


def _records(tmp: Path, samples: list[Sample]) -> RecordSet:
    return RecordSet(root=tmp / "src", layout="kaggle_bbox", classes=CLASSES, samples=samples)


# --------------------------------------------------------------------------- conversion


def test_boxes_to_yolo_lines_exact() -> None:
    lines = boxes_to_yolo_lines([[10, 20, 30, 60], [0, 0, 100, 200]], [1, 3], 100, 200)
    assert lines == ["1 0.2000000000 0.2000000000 0.2000000000 0.2000000000",
                     "3 0.5000000000 0.5000000000 1.0000000000 1.0000000000"]
    assert boxes_to_yolo_lines(np.zeros((0, 4)), 0, 10, 10) == []


def test_label_round_trip_within_1e6() -> None:
    rng = np.random.default_rng(0)
    for width, height in [(64, 64), (512, 380), (1375, 1920)]:
        xy = rng.uniform(0, [width, height], size=(20, 2))
        wh = rng.uniform(1, [width, height], size=(20, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, [width, height])], axis=1)
        boxes = boxes.astype(np.float32)  # as records store them
        ids = rng.integers(0, 4, size=20)
        lines = boxes_to_yolo_lines(boxes, ids, width, height)
        back, back_ids = yolo_lines_to_boxes(lines, width, height)
        np.testing.assert_allclose(back, boxes.astype(np.float64), rtol=0, atol=1e-6)
        assert back_ids.tolist() == ids.tolist()
        text_back, _ = yolo_lines_to_boxes("\n".join(lines) + "\n\n", width, height)
        np.testing.assert_array_equal(text_back, back)


def test_bad_label_line_names_the_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        yolo_lines_to_boxes(["0 0.5 0.5 0.1 0.1", "0 0.5 0.5 0.1"], 10, 10)


# --------------------------------------------------------------------------- export


def test_export_links_labels_and_leaves_source_untouched(syn: RecordSet, tmp_path: Path) -> None:
    before = _snapshot(syn.root)
    data_yaml = export_yolo_dataset(syn, syn, tmp_path / "work")
    assert _snapshot(syn.root) == before

    import yaml

    data = yaml.safe_load(data_yaml.read_text())
    assert data == {"path": str((tmp_path / "work").resolve()), "train": "images/train",
                    "val": "images/val", "names": dict(enumerate(CLASSES))}
    manifest = read_export_manifest(data_yaml)
    assert manifest["placed"] == {"symlink": 32} and manifest["skipped"] == []
    by_rel = {p["rel"]: p for p in manifest["parts"]["train"]}
    assert set(by_rel) == {s.rel for s in syn}
    for s in syn:
        image = tmp_path / "work" / "images" / "train" / by_rel[s.rel]["file"]
        assert image.is_symlink() and os.readlink(image) == os.path.abspath(s.path)
        label = (tmp_path / "work" / "labels" / "train" / image.stem).with_suffix(".txt")
        expected = ""
        for x1, y1, x2, y2 in np.asarray(s.boxes, np.float64):  # written out by hand
            cx, cy = (x1 + x2) / 2 / s.width, (y1 + y2) / 2 / s.height
            w, h = (x2 - x1) / s.width, (y2 - y1) / s.height
            expected += f"{CLASSES.index(s.label)} {cx:.10f} {cy:.10f} {w:.10f} {h:.10f}\n"
        assert label.read_text() == expected
        assert (expected == "") == (s.label == "no_tumor")  # no_tumor: background, no lines


def test_export_other_boxes_as_published(syn: RecordSet, tmp_path: Path) -> None:
    data_yaml = export_yolo_dataset(syn, syn, tmp_path / "work", include_other_boxes=True)
    manifest = read_export_manifest(data_yaml)
    for row in manifest["parts"]["val"]:
        s = next(x for x in syn if x.rel == row["rel"])
        label = tmp_path / "work" / "labels" / "val" / (Path(row["file"]).stem + ".txt")
        lines = label.read_text().splitlines()
        assert len(lines) == len(s.boxes) + len(s.other_boxes) == 1
        if s.label == "no_tumor":
            assert lines[0].startswith("2 ")
            boxes, _ = yolo_lines_to_boxes(lines, s.width, s.height)
            np.testing.assert_allclose(boxes, s.other_boxes, atol=1e-4)


def test_export_unique_names_and_skips(tmp_path: Path) -> None:
    samples = [
        _sample(tmp_path, "a/b.jpg", "glioma", [[1, 2, 11, 12]]),
        _sample(tmp_path, "a__b.jpg", "glioma", [[1, 2, 11, 12]]),
        _sample(tmp_path, "a__B.png", "meningioma", [[0, 0, 40, 30]]),  # same stem, other case
        _sample(tmp_path, "x y/No Tumor.png", "no_tumor", other=[[0, 0, 40, 30]]),
        _sample(tmp_path, "g/unboxed.jpg", "glioma"),  # a tumour nobody drew
        _sample(tmp_path, "u/unlabelled.jpg", None),
    ]
    records = _records(tmp_path, samples)
    data_yaml = export_yolo_dataset(records, records, tmp_path / "work")
    manifest = read_export_manifest(data_yaml)
    files = [p["file"] for p in manifest["parts"]["train"]]
    assert files == ["a__b.jpg", "a__b-1.jpg", "a__B-2.png", "x_y__No_Tumor.png"]
    stems = sorted(p.stem.lower() for p in (tmp_path / "work" / "labels" / "train").iterdir())
    assert len(set(stems)) == 4
    assert {(s["rel"], s["part"]) for s in manifest["skipped"]} == {
        ("g/unboxed.jpg", "train"), ("g/unboxed.jpg", "val"),
        ("u/unlabelled.jpg", "train"), ("u/unlabelled.jpg", "val")}
    # exporting again into the same folder replaces the export
    export_yolo_dataset(records.subset(["a/b.jpg"]), records.subset(["a/b.jpg"]),
                        tmp_path / "work")
    assert [p.name for p in (tmp_path / "work" / "images" / "train").iterdir()] == ["a__b.jpg"]


def test_export_refuses_unsafe_work_dirs(tmp_path: Path) -> None:
    records = _records(tmp_path, [_sample(tmp_path, "a.jpg", "glioma", [[1, 1, 5, 5]])])
    with pytest.raises(ConfigError, match="inside the source"):
        export_yolo_dataset(records, records, tmp_path / "src" / "yolo")
    with pytest.raises(ConfigError, match="contains the source"):
        export_yolo_dataset(records, records, tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        export_yolo_dataset(records, records, tmp_path / "busy")
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"


def test_export_falls_back_to_hardlinks_and_says_so(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    records = _records(tmp_path, [_sample(tmp_path, "a.jpg", "glioma", [[1, 1, 5, 5]])])

    def no_symlink(*args: object, **kwargs: object) -> None:
        raise OSError("symlinks not allowed here")

    monkeypatch.setattr(os, "symlink", no_symlink)
    with caplog.at_level(logging.WARNING, logger="mtbrain.baselines.yolo"):
        data_yaml = export_yolo_dataset(records, records, tmp_path / "work")
    assert read_export_manifest(data_yaml)["placed"] == {"hardlink": 2}
    assert "2 by hardlink" in caplog.text
    image = tmp_path / "work" / "images" / "train" / "a.jpg"
    assert not image.is_symlink() and image.samefile(records[0].path)


# --------------------------------------------------------------------------- predictions


def _result(boxes: list[list[float]], scores: list[float], ids: list[int],
            orig_shape: tuple[int, int] | None = None, *, torch_tensors: bool = False) -> object:
    xyxy, conf, cls = (np.asarray(boxes, np.float32).reshape(-1, 4),
                       np.asarray(scores, np.float32), np.asarray(ids, np.float32))
    if torch_tensors:
        import torch

        xyxy, conf, cls = torch.from_numpy(xyxy), torch.from_numpy(conf), torch.from_numpy(cls)
    return SimpleNamespace(boxes=SimpleNamespace(xyxy=xyxy, conf=conf, cls=cls),
                           orig_shape=orig_shape)


def test_yolo_to_predictions_rules(tmp_path: Path) -> None:
    samples = [_sample(tmp_path, f"s{i}.png", "glioma", [[1, 1, 9, 9]], size=(40, 30))
               for i in range(6)]
    records = _records(tmp_path, samples)
    results = [
        # best box wins, whatever the order; class of the best box
        _result([[1, 2, 10, 12], [5.123, 6.5, 20.25, 28.0]], [0.4, 0.9], [0, 3], (30, 40)),
        _result([], [], []),  # no box at all
        _result([[1, 2, 10, 12]], [0.1], [1]),  # below min_score
        # orig_shape twice the record's size: boxes come back in the record's pixels
        _result([[10, 20, 50, 70]], [0.6], [1], (60, 80), torch_tensors=True),
        _result([[-5, -5, 100, 100]], [0.5], [0], (30, 40)),  # clipped to the image
        "cannot read s5.png: not a readable image",
    ]
    preds = yolo_to_predictions(results, records, {i: c for i, c in enumerate(CLASSES)})
    assert [p["image"] for p in preds] == [s.rel for s in samples]
    best, nobox, weak, scaled, clipped, error = preds
    assert best["label"] == "pituitary" and best["box"] == [5.12, 6.5, 20.25, 28.0]
    assert best["box_score"] == pytest.approx(0.9)
    assert nobox == {"image": "s1.png", "label": "no_tumor", "box": None, "box_score": None,
                     "probs": {"glioma": 0.0, "meningioma": 0.0, "no_tumor": 1.0,
                               "pituitary": 0.0}}
    assert weak["label"] == "no_tumor" and weak["box"] is None
    assert weak["box_score"] == pytest.approx(0.1)
    assert scaled["label"] == "meningioma" and scaled["box"] == [5.0, 10.0, 25.0, 30.0]
    assert clipped["box"] == [0.0, 0.0, 40.0, 30.0]
    assert error == {"image": "s5.png", "error": "cannot read s5.png: not a readable image"}
    for p in preds[:5]:
        assert sum(p["probs"].values()) == pytest.approx(1.0)
        assert max(p["probs"], key=p["probs"].get) == p["label"]
    assert best["probs"]["pituitary"] == pytest.approx(0.9 + 0.1 / 4, abs=1e-6)
    assert weak["probs"]["no_tumor"] == pytest.approx(0.9 + 0.1 / 4, abs=1e-6)
    metrics = score_predictions(records, preds)  # the one evaluator takes them as they are
    assert metrics["n_images"] == 6 and metrics["n_errors"] == 1


def test_yolo_to_predictions_without_background_class(tmp_path: Path) -> None:
    samples = [_sample(tmp_path, f"s{i}.png", "glioma", [[1, 1, 9, 9]]) for i in range(2)]
    records = _records(tmp_path, samples)
    preds = yolo_to_predictions([_result([[1, 2, 3, 4]], [0.05], [1]), _result([], [], [])],
                                records, ["glioma", "meningioma"])
    assert preds[0]["label"] == "meningioma" and preds[0]["box"] == [1.0, 2.0, 3.0, 4.0]
    assert preds[1]["label"] == "glioma" and preds[1]["box"] is None
    assert preds[1]["probs"] == {"glioma": 0.5, "meningioma": 0.5}
    with pytest.raises(ValueError, match="1 results for 2 samples"):
        yolo_to_predictions(preds[:1], records, CLASSES)


def test_missing_weights_are_not_downloaded(tmp_path: Path, no_network: list) -> None:
    records = _records(tmp_path, [_sample(tmp_path, "a.jpg", "glioma", [[1, 1, 5, 5]])])
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        predict_yolo(tmp_path / "yolov8n.pt", records)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        train_yolo(tmp_path / "data.yaml", tmp_path / "run", model="yolov8n.pt")
    assert no_network == []


# --------------------------------------------------------------------------- a real, tiny run


def test_session_is_offline_and_restores_process_state(monkeypatch: pytest.MonkeyPatch,
                                                       no_network: list) -> None:
    import cv2
    import torch

    from mtbrain.baselines.yolo import ultralytics_session

    monkeypatch.setenv("ULTRALYTICS_API_KEY", "secret")
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    np_print = np.get_printoptions()
    with ultralytics_session() as ultralytics:
        from ultralytics.utils import ONLINE, SETTINGS, USER_CONFIG_DIR

        settings_file = Path(SETTINGS.file).read_text()
        assert not ONLINE and SETTINGS["sync"] is False and SETTINGS["mlflow"] is False
        assert "ULTRALYTICS_API_KEY" not in os.environ
        assert (Path(USER_CONFIG_DIR) / "Arial.ttf").is_file()
        assert (Path(USER_CONFIG_DIR) / "Arial.Unicode.ttf").is_file()
        assert ultralytics.__version__
        torch.set_num_threads(threads + 2)  # what ultralytics does to the process
        cv2.setNumThreads(0)
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ["PYTHONHASHSEED"] = "7"
        np.set_printoptions(linewidth=320, formatter={"float_kind": "{:11.5g}".format})
    assert np.get_printoptions() == np_print
    assert Path(SETTINGS.file).read_text() == settings_file  # in memory only
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (threads, cv2_threads)
    assert not torch.are_deterministic_algorithms_enabled()
    assert "PYTHONHASHSEED" not in os.environ
    assert os.environ["ULTRALYTICS_API_KEY"] == "secret"
    assert no_network == []


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_train_predict_score_offline(syn: RecordSet, tmp_path: Path, no_network: list) -> None:
    import cv2
    import torch

    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    omp = os.environ.get("OMP_NUM_THREADS")
    before = _snapshot(syn.root)
    started = time.perf_counter()
    data_yaml = export_yolo_dataset(syn, syn, tmp_path / "data")
    weights = train_yolo(data_yaml, tmp_path / "run", imgsz=64, epochs=1, batch=8)
    preds = predict_yolo(weights, syn)
    elapsed = time.perf_counter() - started
    assert weights.is_file() and weights.name == "best.pt"
    assert weights.parent.parent == (tmp_path / "run").resolve()
    assert [p["image"] for p in preds] == [s.rel for s in syn]
    for p in preds:
        assert "error" not in p and p["label"] in CLASSES
        assert set(p) == {"image", "label", "probs", "box", "box_score"}
    metrics = score_predictions(syn, preds)
    for key in ("accuracy", "macro_f1", "mean_iou", "iou50_rate", "map50", "map50_95"):
        assert key in metrics
    assert metrics["n_images"] == len(syn) and metrics["n_errors"] == 0
    assert no_network == []  # nothing reached for the network
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (threads, cv2_threads)
    assert os.environ.get("OMP_NUM_THREADS") == omp
    assert not torch.are_deterministic_algorithms_enabled()
    assert _snapshot(syn.root) == before
    assert (tmp_path / "data" / MANIFEST_NAME).is_file()
    assert json.loads((tmp_path / "data" / MANIFEST_NAME).read_text())["placed"] == {
        "symlink": 32}
    assert elapsed < 60, f"the tiny YOLO run took {elapsed:.0f} s"


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_run_yolo_baseline_from_config(syn: RecordSet, tmp_path: Path, no_network: list) -> None:
    from mtbrain.baselines.yolo import YoloBaselineConfig, run_yolo_baseline

    cfg = YoloBaselineConfig.from_yaml(Path(__file__).parents[2] / "configs" / "yolo_baseline.yaml")
    assert cfg.model == "yolov8n.yaml" and cfg.conf == 0.001
    cfg.imgsz, cfg.epochs, cfg.batch, cfg.time_budget_s = 64, 1, 8, None
    metrics = run_yolo_baseline(syn, syn, syn, tmp_path / "out", cfg)
    assert metrics["n_images"] == len(syn) and metrics["model"] == "yolo:yolov8n.yaml"
    for name in ("predictions.json", "metrics.json", "report.md"):
        assert (tmp_path / "out" / name).is_file()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["train_s"] > 0
    assert 2.9 < metrics["params_m"] < 3.1  # YOLOv8n with a 4-class detect head: 3.01 M
    assert no_network == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("yolo:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="yolo.epoch"):
        YoloBaselineConfig.from_yaml(bad)


def test_session_leaves_pil_open_alone(tmp_path: Path) -> None:
    """ultralytics patches PIL.Image.open (a run-time pip install of pi-heif on a bad file);
    after a session our readers still get PIL's own error for a non-image file."""
    from PIL import Image, UnidentifiedImageError

    from mtbrain.baselines.yolo import ultralytics_session

    original = Image.open
    with ultralytics_session():
        assert Image.open is original
    assert Image.open is original
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(UnidentifiedImageError):
        Image.open(bad)
