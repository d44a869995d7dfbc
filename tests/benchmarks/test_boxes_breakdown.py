"""benchmarks/boxes_breakdown.py: IoU by class, box count and tumour size."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import DataError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "boxes_breakdown.py"
spec = importlib.util.spec_from_file_location("boxes_breakdown", SCRIPT)
boxes_breakdown = importlib.util.module_from_spec(spec)
spec.loader.exec_module(boxes_breakdown)


def sample(rel: str, label: str, boxes: list[list[float]]) -> Sample:
    return Sample(path=Path("/data") / rel, rel=rel, label=label, width=100, height=100,
                  source="t", boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4))


SAMPLES = RecordSet(root=Path("/data"), layout="kaggle_bbox",
                    classes=["glioma", "no_tumor", "pituitary"], samples=[
    sample("a.jpg", "glioma", [[10, 10, 30, 30]]),                       # side 0.20
    sample("b.jpg", "glioma", [[10, 10, 20, 20], [50, 50, 60, 60]]),     # side 0.10
    sample("c.jpg", "pituitary", [[0, 0, 5, 5]]),                        # side 0.05
    sample("d.jpg", "no_tumor", []),                                     # not counted
])
PREDICTIONS = [
    {"image": "a.jpg", "label": "glioma", "box": [10, 10, 30, 30]},                         # IoU 1
    {"image": "b.jpg", "label": "glioma", "box": [50, 50, 60, 65]},                         # best of two: 2/3
    {"image": "c.jpg", "label": "glioma", "box": None},                                     # no box: 0
    {"image": "d.jpg", "label": "glioma", "box": [1, 1, 2, 2]},
]


def test_rows_take_the_best_true_box_and_bin_by_size() -> None:
    rows = boxes_breakdown.rows(SAMPLES, PREDICTIONS)
    assert [r["iou"] for r in rows] == pytest.approx([1.0, 2 / 3, 0.0])
    assert [r["size"] for r in rows] == [">=20%", "8-12%", "<8%"]
    assert [r["class_boxes"] for r in rows] == ["glioma, 1", "glioma, 2", "pituitary, 1"]
    (glioma, pituitary) = boxes_breakdown.table(rows, "class")
    assert glioma[:2] == ("glioma", 2) and glioma[2] == pytest.approx(5 / 6)
    assert glioma[3] == 1.0 and pituitary[1:] == (1, 0.0, 0.0)
    assert [g for g, *_ in boxes_breakdown.table(rows, "size")] == ["<8%", "8-12%", ">=20%"]
    assert boxes_breakdown.count_label(5) == "3+"
    # b.jpg: the enclosing box of its two true boxes is [10, 10, 60, 60]; overlap 10 x 10
    assert [r["enclosing_iou"] for r in rows] == pytest.approx([None, 100 / 2550, None])


def test_a_box_spanning_adjacent_true_boxes_is_counted() -> None:
    samples = RecordSet(root=Path("/data"), layout="kaggle_bbox", classes=["glioma"], samples=[
        sample("e.jpg", "glioma", [[10, 10, 30, 30], [30, 10, 50, 30], [50, 10, 70, 30]]),
        sample("f.jpg", "glioma", [[10, 10, 30, 30], [70, 70, 90, 90]]),
        sample("g.jpg", "glioma", [[10, 10, 30, 30], [30, 10, 50, 30]])])
    rows = boxes_breakdown.rows(samples, [
        {"image": "e.jpg", "label": "glioma", "box": [10, 10, 70, 30]},   # spans all three
        {"image": "f.jpg", "label": "glioma", "box": [40, 40, 60, 60]},   # in between, small
        {"image": "g.jpg", "label": "glioma", "box": [10, 10, 30, 30]}])  # a hit
    assert [r["iou"] for r in rows] == pytest.approx([1 / 3, 0.0, 1.0])
    assert [r["enclosing_iou"] for r in rows] == pytest.approx([1.0, 400 / 6400, 0.5])
    assert boxes_breakdown.spanning_misses(rows) == (3, 2, 1)


def test_a_missing_prediction_names_the_image() -> None:
    with pytest.raises(DataError, match="b.jpg"):
        boxes_breakdown.rows(SAMPLES, PREDICTIONS[:1])


def test_command_line_errors_name_the_file(tmp_path: Path) -> None:
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none.json"),
                              "--data", str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode != 0 and "none.json" in missing.stderr
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps(PREDICTIONS))
    nodata = subprocess.run([sys.executable, str(SCRIPT), str(preds), "--data",
                             str(tmp_path / "nodata")], capture_output=True, text=True)
    assert nodata.returncode != 0 and "nodata" in nodata.stderr


def test_per_slice_counts_each_duplicate_group_once() -> None:
    items = [{"image": rel, "iou": iou} for rel, iou in
             [("a.jpg", 0.1), ("a2.jpg", 0.2), ("a3.jpg", 0.9), ("b.jpg", 0.8), ("c.jpg", 0.3),
              ("d.jpg", 0.7), ("d2.jpg", 0.6)]]
    groups = [["a.jpg", "a2.jpg", "a3.jpg"], ["d.jpg", "d2.jpg"], ["x.jpg", "y.jpg"]]
    slices, share, missed_copies, missed_slices = boxes_breakdown.per_slice(items, groups)
    # slices a (1 hit of 3), b (hit), c (miss), d (2 of 2); x/y are not among the items
    assert slices == 4 and share == pytest.approx((1 / 3 + 1 + 0 + 1) / 4)
    assert (missed_copies, missed_slices) == (2, 1)
    assert boxes_breakdown.per_slice([], groups) == (0, 0.0, 0, 0)
