"""mtbrain.eval.predictions: matching predictions records to the samples of a set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import DataError, MtbrainWarning
from mtbrain.eval.predictions import match_predictions

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def _records(root: Path) -> RecordSet:
    def sample(rel: str, label: str) -> Sample:
        return Sample(path=root / rel, rel=rel, label=label, width=100, height=100, source="t",
                      boxes=np.zeros((0, 4), np.float32), other_boxes=np.zeros((0, 4), np.float32))

    return RecordSet(root, "kaggle_bbox", CLASSES,
                     [sample("g/a.jpg", "glioma"), sample("n/b.jpg", "no_tumor")])


def test_match_by_rel_and_by_path_and_warn_on_the_rest(tmp_path: Path) -> None:
    records = _records(tmp_path)
    preds = [{"image": "g/a.jpg", "label": "glioma"},
             {"image": str(tmp_path / "n" / "b.jpg"), "label": "no_tumor"},
             {"image": "elsewhere.jpg", "label": "glioma"},
             {"image": "g/zz.jpg", "label": "glioma"}]
    with pytest.warns(MtbrainWarning, match=r"p\.json: 2 prediction\(s\).*'elsewhere\.jpg'"):
        matched = match_predictions(preds, records, "p.json", "the set")
    assert [m["image"] for m in matched] == ["g/a.jpg", "n/b.jpg"]  # paths become rel names
    assert [m["label"] for m in matched] == ["glioma", "no_tumor"]


def test_no_match_at_all_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"none of the 1 predictions.*'x\.jpg'") as info:
        match_predictions([{"image": "x.jpg", "label": "glioma"}], _records(tmp_path),
                          tmp_path / "p.json", "the set")
    assert "p.json" in str(info.value)
