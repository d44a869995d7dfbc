"""The one evaluator: every model's predictions are scored here, the same way.

A model (ours, or a baseline) first becomes a *predictions list* in the format of
``CONTRACT.md`` (one record per image: ``image``, ``label``, ``probs``, ``box`` in original
pixels, ``box_score``); :func:`score_predictions` then compares it with the ground truth of
a :class:`~mtbrain.data.records.RecordSet`, matched by the sample's ``rel`` name:

- classification over the labelled images (:func:`~mtbrain.eval.metrics.classification_metrics`:
  accuracy, balanced accuracy, macro/per-class precision, recall, F1 and F2, Cohen's kappa,
  MCC, and from the records' ``probs``: one-vs-rest ROC AUC, expected calibration error and
  the reliability bins; ``roc_curves`` holds the curves for the plot, at most 101 points per
  class);
- localization over the images with a ground-truth tumour box: the IoU of the predicted
  box with the best-matching true box, 0 when no box was predicted
  (:func:`~mtbrain.eval.metrics.localization_metrics`);
- COCO mAP50 and mAP50-95 (pycocotools, :func:`~mtbrain.eval.coco.coco_map`) over the
  tumour classes, i.e. the classes that have tumour boxes in the data (the "No Tumor"
  whole-brain boxes are not tumour boxes: see :class:`~mtbrain.data.policy.LabelPolicy`).
  A prediction is a detection of its predicted class with score ``box_score``.
- The same mAP *with the No Tumor whole-brain boxes included*, as published numbers on the
  Kaggle box set count them (``map50_all_boxes``, ``map50_95_all_boxes``): the ground truth
  also holds the ``other_boxes`` of every sample labelled ``no_tumor``, as ``no_tumor``
  boxes. Our model gives no box for ``no_tumor``, so in this variant a readable record
  predicted ``no_tumor`` whose ``box`` is null contributes one detection, the whole image
  ``[0, 0, width, height]``, scored by its ``no_tumor`` probability (1.0 when the record
  has no probabilities). A record that has a box contributes that box only, as above.

Rules for imperfect records:

- Error records (unreadable image, or a label outside the classes) count as a wrong class,
  no box, and *uniform* probabilities (1/C each): they stay in every metric, so an
  evaluator cannot look better by failing on hard images; their confidence 1/C and wrong
  answer enter the calibration error, their tied scores the ROC AUC.
- If a readable record has no ``probs`` dict with a number for every class, the
  probability metrics (AUC, ECE, reliability, ROC curves) are left out for the whole set
  (None / empty, ``has_probs`` false) rather than guessed.

:func:`evaluate` runs a model over a data set and writes ``metrics.json``,
``predictions.json``, ``report.md``, ``report.html`` and the pictures
(``confusion_matrix.png``, ``roc.png``, ``reliability.png``, and
``confident_mistakes.png`` when some class is wrong) into a folder. With ``explain`` it
also explains the class head on the images with a tumour box and scores the heat maps
against the boxes (:mod:`mtbrain.explain.agreement`: pointing game, energy inside the
box, and the box's share of the image as the chance level, per true class), under the
``explain`` key of ``metrics.json``, in a report table and in ``explanations.png``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import DataError
from mtbrain.eval.metrics import (
    ECE_BINS,
    classification_metrics,
    localization_metrics,
    roc_curves,
)
from mtbrain.io import write_json, write_text

NO_TUMOR: str = "no_tumor"
"""The class whose whole-brain ``other_boxes`` the all-boxes mAP variant counts."""

PICTURES: tuple[str, ...] = ("confusion_matrix.png", "roc.png", "reliability.png")
"""The pictures :func:`evaluate` always writes and both reports embed."""

MISTAKES_PICTURE = "confident_mistakes.png"
"""The grid of the most confident wrong-class predictions (written when there are some)."""

EXPLAIN_PICTURE = "explanations.png"
"""The grid of explanation heat maps (written with ``explain``)."""


@torch.inference_mode()
def predict_records(model: Any, records: RecordSet, *, batch_size: int = 32,
                    num_workers: int = 0, progress: bool = False,
                    tta_flip: bool = False) -> list[dict[str, Any]]:
    """Run an :class:`mtbrain.Model` over the samples of a set: one predictions record each.

    Images go through the same decoding and letterbox as in training; boxes are mapped back
    to original pixels. ``image`` is the sample's ``rel`` name.
    """
    from torch.utils.data import DataLoader

    from mtbrain.data.boxes import Letterbox
    from mtbrain.data.dataset import MRIDataset, collate

    classes = model.classes
    dataset = MRIDataset(records, classes, size=model.img_size,
                         keep_ratio=model.config.keep_ratio, boxes_known=True)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate)
    device = next(model.parameters()).device
    model.eval()
    rows: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset), desc="predict", unit="img")
    for images, targets in loader:
        images = images.to(device).contiguous(memory_format=torch.channels_last)
        out = model(images, tta_flip=tta_flip)
        probs = out["probs"].float().cpu().numpy()
        boxes = out["boxes"].float().cpu().numpy().astype(np.float64)
        scores = out["box_score"].float().cpu().numpy()
        for j, idx in enumerate(targets["index"].tolist()):
            s = dataset.samples[idx]
            label = classes[int(probs[j].argmax())]
            box = None
            if model.keeps_box(label, float(scores[j])):
                geo = Letterbox.fit(s.width, s.height, model.img_size,
                                    keep_ratio=model.config.keep_ratio)
                box = [round(float(v), 2) for v in geo.inverse(boxes[j][None])[0]]
            rows.append({"image": s.rel, "label": label,
                         "probs": {c: float(p) for c, p in zip(classes, probs[j], strict=True)},
                         "box": box, "box_score": float(scores[j])})
        if bar is not None:
            bar.update(len(images))
    if bar is not None:
        bar.close()
    return rows


@dataclass
class _Row:
    """One sample's truth and prediction as class indices (see the module doc's rules).

    Attributes:
        y_true: True class index, -1 when unlabelled (or a class outside the report).
        y_pred: Predicted class index (a wrong one for error records).
        box: Predicted box (xyxy original pixels) or None.
        box_score: Score of ``box``.
        probs: Probabilities in class order; None when the record has none.
        error: True for an error record.
    """

    y_true: int
    y_pred: int
    box: np.ndarray | None
    box_score: float
    probs: list[float] | None
    error: bool


def _record_probs(record: dict[str, Any], classes: Sequence[str]) -> list[float] | None:
    """The record's probabilities in class order, or None unless every class has one."""
    probs = record.get("probs")
    if not isinstance(probs, dict) or any(probs.get(c) is None for c in classes):
        return None
    return [float(probs[c]) for c in classes]


def _row(sample: Sample, record: dict[str, Any], classes: Sequence[str]) -> _Row:
    """A :class:`_Row` from a sample and its predictions record."""
    index = {c: i for i, c in enumerate(classes)}
    true = index.get(sample.label, -1) if sample.label is not None else -1
    if record.get("error") is not None or record.get("label") not in index:
        n = len(classes)  # unreadable: a wrong answer, no box, uniform probabilities
        return _Row(true, _wrong(true, n), None, 0.0, [1.0 / n] * n, True)
    box = record.get("box")
    return _Row(true, index[record["label"]],
                np.asarray(box, dtype=np.float64).reshape(4) if box is not None else None,
                float(record.get("box_score") or 0.0), _record_probs(record, classes), False)


def _match(records: RecordSet, predictions: Sequence[dict[str, Any]]) -> dict[str, dict]:
    """Predictions by image name; raises DataError when they do not match the samples."""
    by_image = {str(p.get("image")): p for p in predictions}
    rels = {s.rel for s in records}
    missing = [s.rel for s in records if s.rel not in by_image]
    extra = sorted(set(by_image) - rels)
    if missing or extra:
        raise DataError(f"predictions do not match the data: {len(missing)} image(s) without a "
                        f"prediction (e.g. {missing[:3]}), {len(extra)} unknown image(s) "
                        f"(e.g. {extra[:3]})", path=records.root)
    return by_image


def _truth(records: RecordSet, rows: Sequence[_Row], whole_brain: int | None) -> list[Any]:
    """COCO ground truth per image: tumour boxes, plus the ``other_boxes`` of the samples
    of class ``whole_brain`` (labelled with it) when that is not None."""
    from mtbrain.eval.coco import ImageTruth

    out = []
    for s, r in zip(records, rows, strict=True):
        boxes = np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4)
        if r.y_true < 0:
            boxes = np.zeros((0, 4))
        if whole_brain is not None and r.y_true == whole_brain:
            boxes = np.concatenate([boxes, np.asarray(s.other_boxes, np.float64).reshape(-1, 4)])
        out.append(ImageTruth(s.width, s.height, boxes, [r.y_true] * len(boxes)))
    return out


def _detections(records: RecordSet, rows: Sequence[_Row], whole_brain: int | None) -> list[Any]:
    """COCO detections per image: the predicted box; with ``whole_brain`` set, a box-less
    readable prediction of that class detects the whole image (module doc)."""
    from mtbrain.eval.coco import ImageDetections

    out = []
    for s, r in zip(records, rows, strict=True):
        if r.box is not None:
            out.append(ImageDetections(r.box[None], [r.box_score], [r.y_pred]))
        elif whole_brain is not None and not r.error and r.y_pred == whole_brain:
            score = r.probs[whole_brain] if r.probs is not None else 1.0
            out.append(ImageDetections(np.array([[0.0, 0.0, s.width, s.height]]), [score],
                                       [whole_brain]))
        else:
            out.append(ImageDetections(np.zeros((0, 4)), [], []))
    return out


def _coco(records: RecordSet, rows: Sequence[_Row], classes: Sequence[str],
          categories: Sequence[int], whole_brain: int | None) -> dict[str, Any]:
    """:func:`~mtbrain.eval.coco.coco_map` over ``categories`` (all None when empty)."""
    from mtbrain.eval.coco import coco_map

    if not categories:
        return {"map50": None, "map50_95": None, "per_class": {}}
    return coco_map(_truth(records, rows, whole_brain), _detections(records, rows, whole_brain),
                    classes, categories=categories)


def _detection_metrics(records: RecordSet, rows: Sequence[_Row],
                       classes: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any], list, list]:
    """Both mAP variants and their class lists: (tumour only, all boxes, classes, classes)."""
    index = {c: i for i, c in enumerate(classes)}
    tumour = sorted({index[s.label] for s in records if s.has_box and s.label in index})
    brain = index.get(NO_TUMOR)
    with_brain = brain is not None and any(
        r.y_true == brain and len(s.other_boxes) for s, r in zip(records, rows, strict=True))
    all_boxes = sorted(set(tumour) | ({brain} if with_brain else set()))
    return (_coco(records, rows, classes, tumour, None),
            _coco(records, rows, classes, all_boxes, brain if with_brain else None),
            [classes[i] for i in tumour], [classes[i] for i in all_boxes])


def _per_class_localization(records: RecordSet, rows: Sequence[_Row],
                            classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Mean IoU, IoU>=0.5 share and boxed count per true class."""
    out = {}
    for c in classes:
        members = [k for k, s in enumerate(records) if s.label == c]
        m = localization_metrics([rows[k].box for k in members],
                                 [records[k].boxes for k in members])
        out[c] = {"mean_iou": m["mean_iou"], "iou50_rate": m["iou50_rate"],
                  "n_boxed": m["n_boxed"]}
    return out


def _all_boxes_ap(per_class: dict[str, Any]) -> dict[str, Any]:
    """The all-boxes variant's per-class AP, under ``*_all_boxes`` keys."""
    return {f"{k}_all_boxes": v for k, v in per_class.items()}


def score_predictions(records: RecordSet, predictions: Sequence[dict[str, Any]],
                      classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Score predictions records against the ground truth of ``records`` (see module doc).

    Args:
        records: The ground truth.
        predictions: Records in the predictions-file format; ``image`` must be a sample's
            ``rel`` name. Every sample needs exactly one record; error records count as
            wrong class, no box and uniform probabilities.
        classes: Class order of the report (default: the set's classes).

    Returns:
        The ``metrics.json`` content (keys in CONTRACT.md, and more).

    Raises:
        DataError: when a sample has no prediction or a prediction names an unknown image.
    """
    classes = list(classes or records.classes)
    by_image = _match(records, predictions)
    rows = [_row(s, by_image[s.rel], classes) for s in records]
    y_true = [r.y_true for r in rows]
    probs = None if any(r.probs is None for r in rows) else np.array([r.probs for r in rows])
    cls_m = classification_metrics(y_true, [r.y_pred for r in rows], classes, probs)
    loc_m = localization_metrics([r.box for r in rows], [s.boxes for s in records])
    coco, coco_all, map_classes, all_classes = _detection_metrics(records, rows, classes)
    iou = _per_class_localization(records, rows, classes)
    per_class = {c: {**cls_m["per_class"].get(c, {}), **iou[c], **coco["per_class"].get(c, {}),
                     **_all_boxes_ap(coco_all["per_class"].get(c, {}))} for c in classes}
    return {
        "n_images": len(records), "n_errors": sum(r.error for r in rows), "classes": classes,
        "has_probs": probs is not None,
        **{k: cls_m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "macro_f2",
                                 "macro_precision", "macro_recall", "cohen_kappa", "mcc",
                                 "macro_auc", "ece", "ece_bins")},
        "per_class": per_class,
        "confusion_matrix": cls_m["confusion_matrix"],
        "mean_iou": loc_m["mean_iou"], "iou50_rate": loc_m["iou50_rate"],
        "n_boxed": loc_m["n_boxed"],
        "map50": coco["map50"], "map50_95": coco["map50_95"], "map_classes": map_classes,
        "map50_all_boxes": coco_all["map50"], "map50_95_all_boxes": coco_all["map50_95"],
        "map_all_boxes_classes": all_classes,
        "reliability": cls_m["reliability"],
        "roc_curves": roc_curves(y_true, probs, classes) if probs is not None else {},
        "classification_report": cls_m["classification_report"],
    }


def _wrong(true: int, n_classes: int) -> int:
    """A class index different from ``true`` (an unreadable image is a wrong answer)."""
    return (true + 1) % n_classes if true >= 0 else 0


# --------------------------------------------------------------------------- reports

Block = tuple[str, Any]
"""A report element: ``("h1" | "h2" | "p", text)``, ``("table", (header, rows))`` or
``("img", relative path)``; :func:`report_blocks` builds them, two renderers print them."""

SUMMARY: tuple[tuple[str, str], ...] = (
    ("accuracy", "share of images with the right class"),
    ("balanced_accuracy", "mean recall over the classes present"),
    ("macro_f1", "mean F1 over the classes present"),
    ("macro_f2", "mean F2 (recall weighs 4x: a missed tumour costs more than a false alarm)"),
    ("macro_precision", "mean precision over the classes present"),
    ("macro_recall", "mean recall over the classes present"),
    ("cohen_kappa", "Cohen's kappa: agreement beyond chance"),
    ("mcc", "Matthews correlation coefficient (multiclass)"),
    ("macro_auc", "mean one-vs-rest ROC AUC"),
    ("ece", "expected calibration error (lower is better)"),
    ("mean_iou", "mean IoU of the predicted box, images with a tumour box"),
    ("iou50_rate", "share of those images with IoU >= 0.5"),
    ("map50", "COCO mAP@0.5, tumour boxes only (our headline)"),
    ("map50_95", "COCO mAP@0.5:0.95, tumour boxes only"),
    ("map50_all_boxes", "COCO mAP@0.5, No Tumor whole-brain boxes included (as published)"),
    ("map50_95_all_boxes", "COCO mAP@0.5:0.95, No Tumor whole-brain boxes included"),
)
"""Rows of the summary table: metrics.json key and what it means."""

PER_CLASS: tuple[tuple[str, str], ...] = (
    ("precision", "precision"), ("recall", "recall"), ("f1", "f1"), ("f2", "f2"),
    ("auc", "AUC"), ("support", "support"), ("mean_iou", "mean IoU"),
    ("iou50_rate", "IoU>=0.5"), ("ap50", "AP50"), ("ap50_all_boxes", "AP50 all boxes"),
)
"""Columns of the per-class table: per-class key and header."""


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _notes(metrics: dict[str, Any]) -> list[str]:
    """The paragraphs under the summary table: what each number is computed over."""
    notes = [
        f"mean IoU and IoU>=0.5 are over the images with a ground-truth tumour box "
        f"({metrics.get('n_boxed', 0)}); mAP is over the classes "
        f"{', '.join(metrics.get('map_classes', [])) or 'none'} (pycocotools).",
        "The all-boxes mAP adds the whole-brain boxes of the no_tumor images to the ground "
        f"truth (classes: {', '.join(metrics.get('map_all_boxes_classes', [])) or 'none'}); "
        "a no_tumor prediction without a box counts as a detection of the whole image, "
        "scored by its no_tumor probability. Published numbers on the Kaggle box set count "
        "these easy boxes; the tumour-only mAP does not.",
        "Macro averages run over the classes present in the truth. F2 = 5PR/(4P+R). "
        "Unreadable images count as a wrong class with uniform probabilities and no box.",
    ]
    if metrics.get("has_probs", True):
        notes.append(f"ECE: {metrics.get('ece_bins', ECE_BINS)} equal-width bins over the "
                     "largest probability; sum over bins of (bin share) x |accuracy - mean "
                     "confidence|.")
    else:
        notes.append("The predictions carry no (complete) probabilities: AUC and calibration "
                     "are not available.")
    return notes


def _summary_rows(metrics: dict[str, Any]) -> list[list[str]]:
    return [[key, _fmt(metrics.get(key)), meaning] for key, meaning in SUMMARY]


def _per_class_rows(metrics: dict[str, Any]) -> list[list[str]]:
    return [[c, *(_fmt(m.get(key, 0 if key == "support" else None)) for key, _ in PER_CLASS)]
            for c, m in metrics["per_class"].items()]


def _confusion_rows(metrics: dict[str, Any]) -> list[list[str]]:
    return [[c, *(str(v) for v in row)]
            for c, row in zip(metrics["classes"], metrics["confusion_matrix"], strict=False)]


EXPLAIN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("n_images", "images"), ("pointing_game", "pointing game"),
    ("energy_inside", "energy inside box"), ("box_area_share", "box area share (chance)"),
)
"""Columns of the explanation table: key of a ``metrics["explain"]`` entry and header."""


def _explain_blocks(explain: dict[str, Any]) -> list[Block]:
    """The section on explanations vs tumour boxes (``metrics["explain"]``)."""
    name = explain.get("method_name", explain.get("method"))
    rows = [[c, *(_fmt(m.get(k)) for k, _ in EXPLAIN_COLUMNS)]
            for c, m in explain.get("per_class", {}).items()]
    rows.append(["all", *(_fmt(explain.get(k)) for k, _ in EXPLAIN_COLUMNS)])
    skipped = explain.get("n_candidates", 0) - explain.get("n_images", 0)
    note = (f"{name} of the {explain.get('target', 'true class')}, in the original image's "
            f"pixels, on {explain.get('n_images', 0)} images with a ground-truth tumour box "
            f"(classes taking turns; {max(0, skipped)} more not explained, at most "
            f"{explain.get('max_images', 'all')}). Pointing game: share of images whose heat "
            "map peaks inside a true box. Energy inside: mean share of the map's sum inside "
            "the true boxes. Box area share: mean share of the image inside the true boxes, "
            "the chance level of both (a flat map, or a peak at a random pixel).")
    if explain.get("options"):
        note += " Options: " + ", ".join(f"{k}={v}" for k, v in explain["options"].items()) + "."
    if explain.get("n_empty_maps"):
        note += (f" {explain['n_empty_maps']} map(s) had no positive evidence and count as "
                 "misses with energy 0.")
    return [("h2", f"Explanations vs tumour boxes ({name})"), ("p", note),
            ("table", (["class", *(h for _, h in EXPLAIN_COLUMNS)], rows))]


def _mistakes_note(metrics: dict[str, Any], pictures: Sequence[str]) -> str | None:
    if MISTAKES_PICTURE in pictures:
        return (f"{MISTAKES_PICTURE}: the most confident wrong-class predictions, most "
                "confident first (true box green, predicted box orange).")
    cm = np.asarray(metrics.get("confusion_matrix") or [[0]], dtype=np.int64)
    if pictures and cm.size and int(cm.sum() - np.trace(cm)) == 0:
        return "No image has a wrong class: no grid of confident mistakes."
    return None


def report_blocks(metrics: dict[str, Any], *, title: str,
                  pictures: Sequence[str] = ()) -> list[Block]:
    """The report's content, independent of the output format (the one source of both)."""
    count = f"{metrics['n_images']} images" + (
        f", {metrics['n_errors']} unreadable" if metrics.get("n_errors") else "") + "."
    blocks: list[Block] = [("h1", title), ("p", count),
                           ("table", (["metric", "value", "meaning"], _summary_rows(metrics)))]
    blocks += [("p", note) for note in _notes(metrics)]
    blocks += [("h2", "Per class"),
               ("table", (["class", *(h for _, h in PER_CLASS)], _per_class_rows(metrics))),
               ("h2", "Confusion matrix (rows: true, columns: predicted)"),
               ("table", (["", *metrics["classes"]], _confusion_rows(metrics)))]
    if metrics.get("explain"):
        blocks += _explain_blocks(metrics["explain"])
    if pictures:
        blocks += [("h2", "Pictures"), *(("img", pic) for pic in pictures)]
        note = _mistakes_note(metrics, pictures)
        blocks += [("p", note)] if note else []
    return blocks


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _markdown(blocks: Sequence[Block]) -> str:
    """Blocks as Markdown."""
    lines: list[str] = []
    for kind, data in blocks:
        if kind == "table":
            header, rows = data
            lines += [_md_row(header), "|" + "---|" * len(header), *map(_md_row, rows)]
        elif kind == "img":
            lines.append(f"![{Path(data).stem}]({data})")
        else:
            lines.append({"h1": "# ", "h2": "## ", "p": ""}[kind] + data)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


_STYLE = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
          "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #999;"
          "padding:.2em .6em;text-align:right}th:first-child,td:first-child,"
          "td:nth-child(3){text-align:left}img{max-width:100%;display:block;margin:1em 0}")


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cells(tag: str, row: Sequence[str]) -> str:
        return "<tr>" + "".join(f"<{tag}>{html.escape(v)}</{tag}>" for v in row) + "</tr>"

    return "<table>\n" + "\n".join([cells("th", header), *(cells("td", r) for r in rows)]) \
        + "\n</table>"


def _html(blocks: Sequence[Block]) -> str:
    """Blocks as one self-contained HTML page (inline style, images by relative path)."""
    body: list[str] = []
    title = next((data for kind, data in blocks if kind == "h1"), "report")
    for kind, data in blocks:
        if kind == "table":
            body.append(_html_table(*data))
        elif kind == "img":
            body.append(f'<img src="{html.escape(data)}" alt="{html.escape(Path(data).stem)}">')
        else:
            body.append(f"<{kind}>{html.escape(data)}</{kind}>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def render_report(metrics: dict[str, Any], *, title: str, pictures: Sequence[str] = ()) -> str:
    """A Markdown report of :func:`score_predictions`' metrics."""
    return _markdown(report_blocks(metrics, title=title, pictures=pictures))


def render_html(metrics: dict[str, Any], *, title: str, pictures: Sequence[str] = ()) -> str:
    """The same report as :func:`render_report`, as a self-contained HTML page."""
    return _html(report_blocks(metrics, title=title, pictures=pictures))


def plot_confusion(metrics: dict[str, Any], path: str | Path) -> Path:
    """The confusion matrix as a PNG (counts, row-normalised colours)."""
    from mtbrain.eval.plots import _pyplot, save_figure

    plt = _pyplot()
    cm = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    classes = metrics["classes"]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.1 * len(classes) + 1.5))
    ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if cm.size:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                        color="black" if norm[i, j] > 0.5 else "white")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return save_figure(fig, path)


def evaluate(model: Any, records: RecordSet, out_dir: str | Path, *, batch_size: int = 32,
             num_workers: int = 0, progress: bool = False, tta_flip: bool = False,
             explain: str | None = None, explain_max: int = 100,
             explain_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Predict ``records`` with ``model``, score, and write the results into ``out_dir``.

    Writes ``predictions.json``, ``metrics.json``, the pictures of :data:`PICTURES`
    (confusion matrix, ROC curves, reliability diagram), :data:`MISTAKES_PICTURE` when
    some class is wrong, ``report.md`` and ``report.html`` (each atomically). ``tta_flip``
    averages each prediction with that of the mirrored image.

    With ``explain`` (``"gradcam"`` or ``"shap"``), up to ``explain_max`` images with a
    tumour box are explained (their true class; ``explain_options`` go to the method, see
    :func:`mtbrain.explain.heatmaps`) and scored against their boxes
    (:func:`mtbrain.explain.agreement.explain_records`): ``metrics["explain"]``, a report
    table and :data:`EXPLAIN_PICTURE`. Returns the metrics.

    Raises:
        ImportError: for ``explain="shap"`` without captum (checked before predicting).
    """
    from mtbrain.eval.plots import (
        plot_confident_mistakes,
        plot_explanations,
        plot_reliability,
        plot_roc,
    )

    if explain == "shap":
        from mtbrain.explain.shap import require_captum

        require_captum()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    predictions = predict_records(model, records, batch_size=batch_size,
                                  num_workers=num_workers, progress=progress, tta_flip=tta_flip)
    predict_s = time.perf_counter() - started
    metrics = score_predictions(records, predictions, model.classes)
    metrics["data"] = str(records.root)
    metrics["tta_flip"] = tta_flip
    metrics["predict_s"] = round(predict_s, 3)  # decoding and the model, no scoring or plots
    write_json(out / "predictions.json", predictions)
    plot_confusion(metrics, out / "confusion_matrix.png")
    plot_roc(metrics, out / "roc.png")
    plot_reliability(metrics, out / "reliability.png")
    pictures = list(PICTURES)
    for extra in (MISTAKES_PICTURE, EXPLAIN_PICTURE):  # none left over from an earlier run
        (out / extra).unlink(missing_ok=True)
    if plot_confident_mistakes(list(records), predictions, out / MISTAKES_PICTURE):
        pictures.append(MISTAKES_PICTURE)
    if explain is not None:
        from mtbrain.explain.agreement import explain_records

        summary, rows = explain_records(model, records, method=explain, max_images=explain_max,
                                        keep_maps=9, progress=progress,
                                        **dict(explain_options or {}))
        metrics["explain"] = summary
        if plot_explanations(list(records), predictions, rows, summary,
                             out / EXPLAIN_PICTURE):
            pictures.append(EXPLAIN_PICTURE)
    title = f"Evaluation on {records.root}"
    write_text(out / "report.md", render_report(metrics, title=title, pictures=pictures))
    write_text(out / "report.html", render_html(metrics, title=title, pictures=pictures))
    write_json(out / "metrics.json", metrics)
    return metrics
