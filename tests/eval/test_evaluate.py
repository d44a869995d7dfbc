"""The one evaluator (hand-computed cases) and the evaluate/predict command lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.cli import main
from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import DataError
from mtbrain.eval.evaluate import render_html, render_report, score_predictions

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]
CONTRACT_KEYS = {"accuracy", "macro_f1", "per_class", "confusion_matrix", "mean_iou",
                 "iou50_rate", "map50", "map50_95", "n_images"}
NEW_KEYS = {"balanced_accuracy", "macro_f2", "macro_precision", "macro_recall", "cohen_kappa",
            "mcc", "macro_auc", "ece", "ece_bins", "reliability", "roc_curves",
            "classification_report", "has_probs", "map50_all_boxes", "map50_95_all_boxes",
            "map_all_boxes_classes"}


def sample(rel: str, label: str | None, boxes: list[list[float]],
           other_boxes: list[list[float]] = ()) -> Sample:
    return Sample(path=Path("/nowhere") / rel, rel=rel, label=label, width=100, height=100,
                  source="t", boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                  other_boxes=np.asarray(other_boxes, dtype=np.float32).reshape(-1, 4))


def pred(rel: str, label: str, box: list[float] | None, score: float = 0.9,
         top: float = 0.7) -> dict:
    rest = (1 - top) / (len(CLASSES) - 1)
    probs = {c: (top if c == label else rest) for c in CLASSES}
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
    assert set(m) >= CONTRACT_KEYS | NEW_KEYS
    json.dumps(m, allow_nan=False)
    assert m["n_images"] == 4 and m["accuracy"] == pytest.approx(0.75)
    # recall 1, 1, 1, 0 -> balanced accuracy 3/4; pituitary F2 0, glioma P=1/2 R=1 -> F2 5/6
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["per_class"]["glioma"]["f2"] == pytest.approx(5 / 6)
    # confidence 0.7 everywhere, 3 of 4 right: one bin, ECE |0.75 - 0.7| = 0.05
    assert m["has_probs"] and m["ece"] == pytest.approx(0.05)
    assert sum(b["count"] for b in m["reliability"]) == 4
    # pituitary scores are 0.1 on every image -> all tied -> AUC 1/2; glioma: positive a 0.7
    # against b 0.1, c 0.1, d 0.7 -> (1 + 1 + 1/2) / 3 = 5/6
    assert m["per_class"]["pituitary"]["auc"] == pytest.approx(0.5)
    assert m["per_class"]["glioma"]["auc"] == pytest.approx(5 / 6)
    # no whole-brain boxes in this set: the all-boxes variant is the tumour-only one
    assert m["map_all_boxes_classes"] == m["map_classes"]
    assert m["map50_all_boxes"] == pytest.approx(m["map50"])
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
    assert "| balanced_accuracy | 0.7500 |" in text and "| ece | 0.0500 |" in text
    assert "| macro_auc |" in text and "| cohen_kappa |" in text and "| mcc |" in text
    assert "| map50_all_boxes |" in text and "whole-brain boxes included" in text
    assert "| class | precision | recall | f1 | f2 | AUC |" in text


def test_html_report_is_self_contained_and_has_the_same_rows(records: RecordSet) -> None:
    preds = [pred("a.jpg", "glioma", [10, 10, 30, 30]), pred("b.jpg", "meningioma", None),
             pred("c.jpg", "no_tumor", None), pred("d.jpg", "glioma", None)]
    m = score_predictions(records, preds)
    md = render_report(m, title="Eval <x>", pictures=["roc.png"])
    page = render_html(m, title="Eval <x>", pictures=["roc.png"])
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>Eval &lt;x&gt;</title>" in page and '<img src="roc.png"' in page
    assert "![roc](roc.png)" in md
    assert "http" not in page and "<script" not in page and "<link" not in page
    for key in ("accuracy", "balanced_accuracy", "macro_f2", "mcc", "map50_95_all_boxes"):
        value = f"{m[key]:.4f}" if m[key] is not None else "n/a"
        assert f"| {key} | {value} |" in md and f"<td>{key}</td><td>{value}</td>" in page
    rows = [line for line in md.splitlines() if line.startswith("|") and "|---" not in line]
    assert len(rows) == page.count("<tr>") == 16 + 1 + 4 + 1 + 4 + 1  # same table rows


def test_all_boxes_map_counts_whole_brain_boxes_by_hand() -> None:
    records = RecordSet(Path("/nowhere"), "kaggle_bbox", CLASSES, [
        sample("a.jpg", "glioma", [[10, 10, 30, 30]]),
        sample("c.jpg", "no_tumor", [], [[5, 5, 95, 95]]),  # whole-brain box, not a tumour
        sample("d.jpg", "pituitary", [[40, 60, 50, 70]]),
    ])
    preds = [pred("a.jpg", "glioma", [10, 10, 30, 30]),
             pred("c.jpg", "no_tumor", None, top=0.9),
             pred("d.jpg", "pituitary", [40, 60, 50, 70])]
    m = score_predictions(records, preds)
    # tumour-only mAP: glioma and pituitary perfect, no_tumor not scored
    assert m["map_classes"] == ["glioma", "pituitary"] and m["map50"] == pytest.approx(1.0)
    # all boxes: c's prediction detects [0, 0, 100, 100] with score 0.9; IoU with the
    # [5, 5, 95, 95] box = 8100 / 10000 = 0.81 -> AP50 = 1; AP at IoU 0.50..0.95 holds for
    # the 7 thresholds 0.50..0.80 -> AP50-95 = 0.7
    nt = m["per_class"]["no_tumor"]
    assert m["map_all_boxes_classes"] == ["glioma", "no_tumor", "pituitary"]
    assert nt["ap50_all_boxes"] == pytest.approx(1.0) and nt["n_gt_all_boxes"] == 1
    assert nt["ap50_95_all_boxes"] == pytest.approx(0.7)
    assert m["map50_all_boxes"] == pytest.approx(1.0)
    assert m["map50_95_all_boxes"] == pytest.approx((1 + 0.7 + 1) / 3)
    assert "ap50" not in nt  # not part of the tumour-only variant

    # the whole-image detection is ranked by the no_tumor probability: a false no_tumor on d
    # scored 0.95 comes first -> precision 1/2 at recall 1 -> AP50 1/2; scored 0.5 -> AP50 1
    for top, ap in ((0.95, 0.5), (0.5, 1.0)):
        wrong = [*preds[:2], pred("d.jpg", "no_tumor", None, top=top)]
        m = score_predictions(records, wrong)
        assert m["per_class"]["no_tumor"]["ap50_all_boxes"] == pytest.approx(ap)

    # a no_tumor record that has a box contributes that box only (not the whole image)
    boxed = [preds[0], pred("c.jpg", "no_tumor", [60, 60, 90, 90], top=0.9), preds[2]]
    m = score_predictions(records, boxed)
    assert m["per_class"]["no_tumor"]["ap50_all_boxes"] == pytest.approx(0.0)
    # error records contribute nothing
    m = score_predictions(records, [preds[0], {"image": "c.jpg", "error": "x"}, preds[2]])
    assert m["per_class"]["no_tumor"]["ap50_all_boxes"] == pytest.approx(0.0)


def test_missing_probabilities_leave_out_the_probability_metrics(records: RecordSet) -> None:
    preds = [pred("a.jpg", "glioma", None), pred("b.jpg", "meningioma", None),
             pred("c.jpg", "no_tumor", None), pred("d.jpg", "pituitary", None)]
    del preds[1]["probs"]["glioma"]
    m = score_predictions(records, preds)
    assert not m["has_probs"] and m["macro_auc"] is None and m["ece"] is None
    assert m["roc_curves"] == {} and m["reliability"] is None and m["accuracy"] == 1.0
    assert "not available" in render_report(m, title="t")


def test_errors_count_as_wrong_and_mismatches_are_named(records: RecordSet) -> None:
    preds = [pred("a.jpg", "glioma", [10, 10, 30, 30]), {"image": "b.jpg", "error": "broken"},
             pred("c.jpg", "no_tumor", None), pred("d.jpg", "pituitary", [40, 60, 50, 70])]
    m = score_predictions(records, preds)
    assert m["n_errors"] == 1 and m["accuracy"] == pytest.approx(0.75)
    assert m["mean_iou"] == pytest.approx(2 / 3)
    # the error record has uniform probabilities (confidence 1/4, bin 3 = (0.2, 0.267]) and
    # a wrong answer: it stays in the calibration error
    assert m["has_probs"] and m["reliability"][3]["count"] == 1
    assert m["reliability"][3]["accuracy"] == 0.0
    assert m["ece"] == pytest.approx(3 / 4 * (1 - 0.7) + 1 / 4 * 0.25)
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
    assert set(metrics) >= CONTRACT_KEYS | NEW_KEYS and metrics["has_probs"]
    assert metrics["n_images"] == len(json.loads((out / "predictions.json").read_text()))
    assert (out / "report.md").read_text().startswith("# Evaluation")
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    for picture in ("confusion_matrix.png", "roc.png", "reliability.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
        assert f'src="{picture}"' in page and f"]({picture})" in (out / "report.md").read_text()
    assert not list(out.glob(".*.tmp"))


def test_evaluate_cli_names_a_model_without_box_head(tmp_path: Path, make_kaggle_tree,
                                                    capsys: pytest.CaptureFixture) -> None:
    from mtbrain.models import Model

    root = make_kaggle_tree(tmp_path / "data")
    ckpt = Model(backbone="mobilenetv3_small_050", classes=CLASSES, img_size=64,
                 box_head="none").save(tmp_path / "cls.pt")
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(root),
                 "--out", str(tmp_path / "eval"), "--workers", "0"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["mean_iou"] == 0.0 and metrics["iou50_rate"] == 0.0
    assert "no box head (classification only)" in capsys.readouterr().out


@pytest.mark.parametrize(("method", "name"), [("gradcam", "Grad-CAM"), ("shap", "Gradient SHAP")])
def test_evaluate_cli_explain_scores_heat_maps_against_boxes(
        tmp_path: Path, checkpoint: Path, make_kaggle_tree, capsys: pytest.CaptureFixture,
        method: str, name: str) -> None:
    root = make_kaggle_tree(tmp_path / "data", size=(48, 40))
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(root),
                 "--out", str(out), "--workers", "0", "--explain", method,
                 "--explain-max", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= CONTRACT_KEYS | NEW_KEYS  # the contract keys stay
    ex = metrics["explain"]
    assert ex["method"] == method and ex["target"] == "true class"
    assert ex["options"] == ({"level": -1} if method == "gradcam" else {  # the defaults used
        "n_samples": 16, "stdevs": 0.1, "baselines": None, "smooth": None, "seed": 0,
        "max_batch": 32})
    assert ex["n_candidates"] == 4 and ex["n_images"] == 3  # the 4 images with a tumour box
    assert ex["per_class"] and set(ex["per_class"]) <= {"glioma", "meningioma", "pituitary"}
    assert sum(e["n_images"] for e in ex["per_class"].values()) == 3
    for entry in [ex, *ex["per_class"].values()]:
        for key in ("pointing_game", "energy_inside", "box_area_share"):
            assert 0.0 <= entry[key] <= 1.0, (key, entry)
    assert 0.0 < ex["box_area_share"] < 1.0
    report = (out / "report.md").read_text()
    assert f"## Explanations vs tumour boxes ({name})" in report
    assert "| all | 3 |" in report and "box area share (chance)" in report
    assert "](explanations.png)" in report and 'src="explanations.png"' in (
        out / "report.html").read_text()
    with Image.open(out / "explanations.png") as im:
        assert im.format == "PNG" and im.width > 3 * 64
    assert "pointing game" in capsys.readouterr().out


def test_evaluate_cli_explain_errors(tmp_path: Path, checkpoint: Path, make_kaggle_tree,
                                     capsys: pytest.CaptureFixture,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    root = make_kaggle_tree(tmp_path / "data")
    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(root), "--out",
            str(out), "--workers", "0"]
    assert main([*args, "--explain", "gradcam", "--explain-max", "0"]) == 2
    assert "--explain-max" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "captum", None)  # captum missing
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    assert main([*args, "--explain", "shap"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install 'mtbrain[explain]'" in err
    assert not out.exists()  # stopped before predicting anything
    assert main([*args, "--explain", "gradcam", "--explain-max", "1"]) == 0  # no captum needed
