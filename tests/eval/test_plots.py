"""Report pictures: the most confident mistakes and the explanation grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.data import load_dataset
from mtbrain.eval.evaluate import render_report
from mtbrain.eval.plots import confident_mistakes, plot_confident_mistakes, plot_explanations
from mtbrain.explain.agreement import ImageAgreement, summarize
from mtbrain.viz.draw import GAP


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mtbrain.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("plots") / "s", n_per_class=2, size=64, seed=1)


def _pred(rel: str, label: str, p: float, classes: list[str]) -> dict:
    rest = (1 - p) / (len(classes) - 1)
    return {"image": rel, "label": label, "probs": {c: p if c == label else rest for c in classes},
            "box": None, "box_score": 0.5}


def test_confident_mistakes_ranks_wrong_classes_by_confidence(syn: Path, tmp_path: Path) -> None:
    records = load_dataset(syn)
    classes = records.classes
    s = list(records)
    other = {c: classes[(i + 1) % len(classes)] for i, c in enumerate(classes)}
    preds = [_pred(x.rel, x.label, 0.9, classes) for x in s]  # all right ...
    preds[0] = _pred(s[0].rel, other[s[0].label], 0.6, classes)  # ... but three
    preds[3] = _pred(s[3].rel, other[s[3].label], 0.95, classes)
    preds[5] = _pred(s[5].rel, other[s[5].label], 0.7, classes)
    preds[6] = {"image": s[6].rel, "error": "cannot decode"}  # errors are not shown
    ranked = confident_mistakes(s, preds)
    assert [(x.rel, p) for x, p in ranked] == [
        (s[3].rel, pytest.approx(0.95)), (s[5].rel, pytest.approx(0.7)),
        (s[0].rel, pytest.approx(0.6))]
    assert [x.rel for x, _ in confident_mistakes(s, preds, n=1)] == [s[3].rel]
    path = plot_confident_mistakes(s, preds, tmp_path / "m.png", n=2, tile=64)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width == 2 * 64 + 3 * GAP  # 2 tiles, one row
    right = [_pred(x.rel, x.label, 0.9, classes) for x in s]
    assert confident_mistakes(s, right) == []
    assert plot_confident_mistakes(s, right, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_report_mentions_the_mistakes_grid_or_its_absence() -> None:
    metrics = {"n_images": 2, "classes": ["a", "b"], "per_class": {},
               "confusion_matrix": [[1, 0], [0, 1]]}
    pics = ["confusion_matrix.png"]
    assert "No image has a wrong class" in render_report(metrics, title="t", pictures=pics)
    text = render_report(metrics, title="t", pictures=[*pics, "confident_mistakes.png"])
    assert "most confident wrong-class predictions" in text


def test_explanation_grid_draws_the_kept_maps(syn: Path, tmp_path: Path) -> None:
    records = load_dataset(syn)
    boxed = [s for s in records if s.has_box][:3]
    rows = [ImageAgreement(s.rel, s.label, s.label, k == 0, 0.3, 0.05, False,
                           heatmap=np.full((s.height, s.width), 0.8, np.float32) if k < 2
                           else None) for k, s in enumerate(boxed)]
    summary = summarize(rows, method="shap", target="true class")
    path = plot_explanations(list(records), None, rows, summary, tmp_path / "e.png", tile=64)
    with Image.open(path) as im:
        assert im.width == 2 * 64 + 3 * GAP  # the 2 rows with a map
    nothing = [ImageAgreement(s.rel, s.label, s.label, False, 0.0, 0.1, True) for s in boxed]
    assert plot_explanations(list(records), None, nothing, summary, tmp_path / "x.png") is None


def test_training_curves_from_the_csv_log(tmp_path: Path) -> None:
    from mtbrain.errors import DataError
    from mtbrain.eval.plots import plot_training_curves, read_training_log

    log = tmp_path / "log.csv"
    log.write_text("epoch,lr,train_loss,val_loss,val_accuracy,val_mean_iou,improved\n"
                   "1,0.001,2.5,2.7,0.4,,True\n2,0.0005,1.5,1.9,0.6,0.3,False\n")
    rows = read_training_log(log)
    assert rows[0] == {"epoch": 1, "lr": 0.001, "train_loss": 2.5, "val_loss": 2.7,
                       "val_accuracy": 0.4, "val_mean_iou": None, "improved": "True"}
    assert rows[1]["epoch"] == 2 and rows[1]["val_mean_iou"] == 0.3
    path = plot_training_curves(rows, tmp_path / "curves.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > im.height > 200
    with pytest.raises(DataError, match="not found"):
        read_training_log(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="epoch"):
        read_training_log(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("epoch,x\n1,2\nthree,4\n")
    with pytest.raises(DataError, match=r"bad2.csv:3: epoch 'three'"):
        read_training_log(tmp_path / "bad2.csv")


def test_roc_and_reliability_pictures_with_and_without_probabilities(tmp_path: Path) -> None:
    from mtbrain.eval.plots import plot_reliability, plot_roc

    metrics = {"roc_curves": {c: {"fpr": [0, 0.2, 1], "tpr": [0, 0.8, 1], "auc": 0.8}
                              for c in ("a", "b", "c")}, "macro_auc": 0.8, "ece": 0.1,
               "reliability": [{"lower": 0.5, "upper": 0.75, "count": 3, "confidence": 0.6,
                                "accuracy": 0.67},
                               {"lower": 0.75, "upper": 1.0, "count": 5, "confidence": 0.9,
                                "accuracy": 0.8}]}
    for plot, name in ((plot_roc, "roc.png"), (plot_reliability, "rel.png")):
        for m, suffix in ((metrics, ""), ({}, "-empty")):
            path = plot(m, tmp_path / f"{suffix}{name}")
            with Image.open(path) as im:
                assert im.format == "PNG" and min(im.size) > 300
