"""The one evaluator: every model's predictions are scored here, the same way.

A model (ours, or a baseline) first becomes a *predictions list* in the format of
``CONTRACT.md`` (one record per image: ``image``, ``label``, ``probs``, ``box`` in original
pixels, ``box_score``); :func:`score_predictions` then compares it with the ground truth of
a :class:`~mtbrain.data.records.RecordSet`, matched by the sample's ``rel`` name:

- classification over the labelled images (:func:`~mtbrain.eval.metrics.classification_metrics`);
- localization over the images with a ground-truth tumour box: the IoU of the predicted
  box with the best-matching true box, 0 when no box was predicted
  (:func:`~mtbrain.eval.metrics.localization_metrics`);
- COCO mAP50 and mAP50-95 (pycocotools, :func:`~mtbrain.eval.coco.coco_map`) over the
  tumour classes, i.e. the classes that have tumour boxes in the data (the "No Tumor"
  whole-brain boxes are not tumour boxes: see :class:`~mtbrain.data.policy.LabelPolicy`).
  A prediction is a detection of its predicted class with score ``box_score``.

:func:`evaluate` runs a model over a data set and writes ``metrics.json``,
``predictions.json``, ``report.md`` and the pictures into a folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtbrain.data.records import RecordSet
from mtbrain.errors import DataError
from mtbrain.eval.metrics import classification_metrics, localization_metrics
from mtbrain.io import write_json, write_text


@torch.inference_mode()
def predict_records(model: Any, records: RecordSet, *, batch_size: int = 32,
                    num_workers: int = 0, progress: bool = False) -> list[dict[str, Any]]:
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
        out = model(images)
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


def score_predictions(records: RecordSet, predictions: Sequence[dict[str, Any]],
                      classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Score predictions records against the ground truth of ``records`` (see module doc).

    Args:
        records: The ground truth.
        predictions: Records in the predictions-file format; ``image`` must be a sample's
            ``rel`` name. Every sample needs exactly one record; error records count as
            wrong class and no box.
        classes: Class order of the report (default: the set's classes).

    Returns:
        The ``metrics.json`` content (keys in CONTRACT.md, and more).

    Raises:
        DataError: when a sample has no prediction or a prediction names an unknown image.
    """
    from mtbrain.eval.coco import ImageDetections, ImageTruth, coco_map

    classes = list(classes or records.classes)
    index = {c: i for i, c in enumerate(classes)}
    by_image: dict[str, dict[str, Any]] = {}
    for p in predictions:
        by_image[str(p.get("image"))] = p
    rels = {s.rel for s in records}
    missing = [s.rel for s in records if s.rel not in by_image]
    extra = sorted(set(by_image) - rels)
    if missing or extra:
        raise DataError(f"predictions do not match the data: {len(missing)} image(s) without a "
                        f"prediction (e.g. {missing[:3]}), {len(extra)} unknown image(s) "
                        f"(e.g. {extra[:3]})", path=records.root)
    y_true, y_pred, pred_boxes, truth, dets = [], [], [], [], []
    n_errors = 0
    tumour = sorted({index[s.label] for s in records if s.has_box and s.label in index})
    for s in records:
        p = by_image[s.rel]
        y_true.append(index.get(s.label, -1))
        if p.get("error") is not None or p.get("label") not in index:
            n_errors += 1
            y_pred.append(_wrong(y_true[-1], len(classes)))  # unreadable: a wrong answer
            pred_boxes.append(None)
            dets.append(ImageDetections(np.zeros((0, 4)), [], []))
        else:
            y_pred.append(index[p["label"]])
            box = p.get("box")
            pred_boxes.append(np.asarray(box, dtype=np.float64) if box is not None else None)
            if box is not None:
                dets.append(ImageDetections(np.asarray([box], dtype=np.float64),
                                            [float(p.get("box_score") or 0.0)],
                                            [index[p["label"]]]))
            else:
                dets.append(ImageDetections(np.zeros((0, 4)), [], []))
        gt = np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4) if y_true[-1] >= 0 else None
        truth.append(ImageTruth(s.width, s.height, gt if gt is not None else np.zeros((0, 4)),
                                [y_true[-1]] * (len(gt) if gt is not None else 0)))
    cls_m = classification_metrics(y_true, y_pred, classes)
    loc_m = localization_metrics(pred_boxes, [s.boxes for s in records])
    coco = coco_map(truth, dets, classes, categories=tumour) if tumour else {
        "map50": None, "map50_95": None, "per_class": {}}
    per_class_iou = {}
    for c in classes:
        members = [k for k, s in enumerate(records) if s.label == c]
        m = localization_metrics([pred_boxes[k] for k in members],
                                 [records[k].boxes for k in members])
        per_class_iou[c] = {"mean_iou": m["mean_iou"], "iou50_rate": m["iou50_rate"],
                            "n_boxed": m["n_boxed"]}
    per_class = {c: {**cls_m["per_class"].get(c, {}), **per_class_iou[c],
                     **{k: v for k, v in coco["per_class"].get(c, {}).items()}}
                 for c in classes}
    return {
        "n_images": len(records),
        "n_errors": n_errors,
        "classes": classes,
        "accuracy": cls_m["accuracy"],
        "macro_f1": cls_m["macro_f1"],
        "per_class": per_class,
        "confusion_matrix": cls_m["confusion_matrix"],
        "mean_iou": loc_m["mean_iou"],
        "iou50_rate": loc_m["iou50_rate"],
        "n_boxed": loc_m["n_boxed"],
        "map50": coco["map50"],
        "map50_95": coco["map50_95"],
        "map_classes": [classes[i] for i in tumour],
    }


def _wrong(true: int, n_classes: int) -> int:
    """A class index different from ``true`` (an unreadable image is a wrong answer)."""
    return (true + 1) % n_classes if true >= 0 else 0


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def render_report(metrics: dict[str, Any], *, title: str, pictures: Sequence[str] = ()) -> str:
    """A Markdown report of :func:`score_predictions`' metrics."""
    lines = [f"# {title}", "", f"{metrics['n_images']} images"
             + (f", {metrics['n_errors']} unreadable" if metrics.get("n_errors") else "") + ".",
             "", "| metric | value |", "|---|---|"]
    for key in ("accuracy", "macro_f1", "mean_iou", "iou50_rate", "map50", "map50_95"):
        lines.append(f"| {key} | {_fmt(metrics.get(key))} |")
    lines += ["", "mean IoU and IoU>=0.5 are over the images with a ground-truth tumour box "
              f"({metrics.get('n_boxed', 0)}); mAP is over the classes "
              f"{', '.join(metrics.get('map_classes', [])) or 'none'} (pycocotools).", "",
              "## Per class", "",
              "| class | precision | recall | f1 | support | mean IoU | IoU>=0.5 | AP50 |",
              "|---|---|---|---|---|---|---|---|"]
    for c, m in metrics["per_class"].items():
        lines.append(f"| {c} | {_fmt(m.get('precision'))} | {_fmt(m.get('recall'))} | "
                     f"{_fmt(m.get('f1'))} | {m.get('support', 0)} | {_fmt(m.get('mean_iou'))} | "
                     f"{_fmt(m.get('iou50_rate'))} | {_fmt(m.get('ap50'))} |")
    lines += ["", "## Confusion matrix (rows: true, columns: predicted)", "",
              "| | " + " | ".join(metrics["classes"]) + " |",
              "|---" * (len(metrics["classes"]) + 1) + "|"]
    for c, row in zip(metrics["classes"], metrics["confusion_matrix"], strict=False):
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    for pic in pictures:
        lines += ["", f"![{Path(pic).stem}]({pic})"]
    return "\n".join(lines) + "\n"


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
             num_workers: int = 0, progress: bool = False) -> dict[str, Any]:
    """Predict ``records`` with ``model``, score, and write the results into ``out_dir``.

    Writes ``predictions.json``, ``metrics.json``, ``confusion_matrix.png`` and
    ``report.md`` (each atomically). Returns the metrics.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictions = predict_records(model, records, batch_size=batch_size,
                                  num_workers=num_workers, progress=progress)
    metrics = score_predictions(records, predictions, model.classes)
    metrics["data"] = str(records.root)
    write_json(out / "predictions.json", predictions)
    plot_confusion(metrics, out / "confusion_matrix.png")
    write_text(out / "report.md", render_report(
        metrics, title=f"Evaluation on {records.root}", pictures=["confusion_matrix.png"]))
    write_json(out / "metrics.json", metrics)
    return metrics
