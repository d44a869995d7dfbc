"""The one evaluator (hand-computed cases) and the evaluate/predict command lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.cli import main
from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import DataError
from mtbrain.eval.evaluate import render_report, score_predictions

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]
CONTRACT_KEYS = {"accuracy", "macro_f1", "per_class", "confusion_matrix", "mean_iou",
                 "iou50_rate", "map50", "map50_95", "n_images"}


def sample(rel: str, label: str | None, boxes: list[list[float]]) -> Sample:
    return Sample(path=Path("/nowhere") / rel, rel=rel, label=label, width=100, height=100,
                  source="t", boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4))


def pred(rel: str, label: str, box: list[float] | None, score: float = 0.9) -> dict:
    probs = {c: (0.7 if c == label else 0.1) for c in CLASSES}
    return {"image": rel, "label": label, "probs": probs, "box": box, "box_score": score}


@pytest.fixture
def records() -> RecordSet:
    return RecordSet(Path("/nowhere"), "kaggle_bbox", CLASSES, [
        sample("a.jpg", "glioma", [[10, 10, 30, 30]]),
        sample("b.jpg", "meningioma", [[50, 50, 70, 90]]),
        sample("c.jpg", "no_tumor", []),
        sample("d.jpg", "pituitary", [[40, 60, 50, 70]]),
    ])


def test_hand_computed_scores(records: RecordSet) -> None:
    preds = [
        pred("a.jpg", "glioma", [10, 10, 30, 30]),          # perfect: IoU 1
        pred("b.jpg", "meningioma", [50, 60, 70, 100]),     # shifted: 300/500 -> IoU 0.6
        pred("c.jpg", "no_tumor", None),
        pred("d.jpg", "glioma", None),                      # wrong class, no box: IoU 0
    ]
    m = score_predictions(records, preds)
    assert set(m) >= CONTRACT_KEYS
    assert m["n_images"] == 4 and m["accuracy"] == pytest.approx(0.75)
    assert m["mean_iou"] == pytest.approx((1 + 0.6 + 0) / 3)
    assert m["iou50_rate"] == pytest.approx(2 / 3) and m["n_boxed"] == 3
    assert m["confusion_matrix"][3] == [1, 0, 0, 0]
    assert m["per_class"]["pituitary"]["recall"] == 0.0
    assert m["per_class"]["meningioma"]["mean_iou"] == pytest.approx(0.6)
    # mAP over the tumour classes (no_tumor has no boxes): glioma AP 1, meningioma AP50 1,
    # pituitary AP 0 (never detected) -> mAP50 = 2/3
    assert m["map_classes"] == ["glioma", "meningioma", "pituitary"]
    assert m["map50"] == pytest.approx(2 / 3, abs=1e-6)
    text = render_report(m, title="t")
    assert "| accuracy | 0.7500 |" in text and "| pituitary | 0.0000 |" in text


def test_errors_count_as_wrong_and_mismatches_are_named(records: RecordSet) -> None:
    preds = [pred("a.jpg", "glioma", [10, 10, 30, 30]), {"image": "b.jpg", "error": "broken"},
             pred("c.jpg", "no_tumor", None), pred("d.jpg", "pituitary", [40, 60, 50, 70])]
    m = score_predictions(records, preds)
    assert m["n_errors"] == 1 and m["accuracy"] == pytest.approx(0.75)
    assert m["mean_iou"] == pytest.approx(2 / 3)
    with pytest.raises(DataError, match=r"1 image\(s\) without a prediction.*b.jpg"):
        score_predictions(records, [p for p in preds if p["image"] != "b.jpg"])
    with pytest.raises(DataError, match=r"1 unknown image.*zz.jpg"):
        score_predictions(records, [*preds, pred("zz.jpg", "glioma", None)])


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    from mtbrain.models import Model

    torch.manual_seed(0)
    model = Model(backbone="mobilenetv3_small_050", classes=CLASSES, img_size=64)
    return model.save(tmp_path / "model.pt")


def test_predict_cli_writes_records_and_error_records(tmp_path: Path, checkpoint: Path,
                                                      make_image) -> None:
    folder = tmp_path / "in"
    make_image(folder / "x.png", (80, 60))
    make_image(folder / "sub" / "y.jpg", (50, 90))
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / ".DS_Store").write_bytes(b"junk")
    out = tmp_path / "preds.json"
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(folder),
                 "--out", str(out)]) == 0
    records = {r["image"]: r for r in json.loads(out.read_text())}
    assert sorted(records) == ["broken.jpg", "sub/y.jpg", "x.png"]
    assert records["broken.jpg"]["error"]
    assert set(records["broken.jpg"]) == {"image", "error"}
    for name, (w, h) in {"x.png": (80, 60), "sub/y.jpg": (50, 90)}.items():
        r = records[name]
        assert r["label"] in CLASSES and sum(r["probs"].values()) == pytest.approx(1, abs=1e-4)
        assert 0.0 <= r["box_score"] <= 1.0
        if r["box"] is not None:
            x1, y1, x2, y2 = r["box"]
            assert -1 <= x1 <= x2 <= w + 1 and -1 <= y1 <= y2 <= h + 1
    assert main(["predict", "--checkpoint", str(checkpoint), "--input",
                 str(tmp_path / "missing")]) == 2


def test_evaluate_cli_writes_contract_metrics(tmp_path: Path, checkpoint: Path,
                                              make_kaggle_tree) -> None:
    root = make_kaggle_tree(tmp_path / "data")
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(root),
                 "--out", str(out), "--workers", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= CONTRACT_KEYS
    assert metrics["n_images"] == len(json.loads((out / "predictions.json").read_text()))
    assert (out / "report.md").read_text().startswith("# Evaluation")
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*.tmp"))
