"""Heat maps scored against the true boxes over a data set (pointing game, energy, chance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.data import load_dataset
from mtbrain.explain.agreement import (
    ImageAgreement,
    box_area_share,
    explain_records,
    summarize,
)
from mtbrain.models import Model


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mtbrain.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("syn") / "s", n_per_class=3, size=64,
                    sizes=(48, 80), seed=2)


def test_box_area_share_counts_pixel_centres() -> None:
    assert box_area_share((10, 10), [[0, 0, 5, 2]]) == pytest.approx(0.1)
    assert box_area_share((10, 10), [[0, 0, 5, 2], [0, 0, 5, 2]]) == pytest.approx(0.1)  # union
    assert box_area_share((4, 4), np.zeros((0, 4))) == 0.0


def test_summarize_means_per_class_and_overall() -> None:
    rows = [ImageAgreement("a", "glioma", "glioma", True, 0.5, 0.1, False),
            ImageAgreement("b", "glioma", "glioma", False, 0.1, 0.3, False),
            ImageAgreement("c", "pituitary", "pituitary", False, 0.0, 0.05, True)]
    s = summarize(rows, method="gradcam", target="true class", options={"level": -2},
                  n_unreadable=1)
    assert s["method_name"] == "Grad-CAM" and s["options"] == {"level": -2}
    assert s["n_images"] == 3 and s["n_candidates"] == 4 and s["n_empty_maps"] == 1
    assert s["pointing_game"] == pytest.approx(1 / 3)
    assert s["energy_inside"] == pytest.approx(0.2)
    assert s["box_area_share"] == pytest.approx(0.15)
    assert list(s["per_class"]) == ["glioma", "pituitary"]
    g = s["per_class"]["glioma"]
    assert (g["n_images"], g["pointing_game"], g["energy_inside"], g["box_area_share"]) == (
        2, 0.5, pytest.approx(0.3), pytest.approx(0.2))
    empty = summarize([], method="shap", target="true class")
    assert empty["pointing_game"] is None and empty["per_class"] == {}


def test_explain_records_on_a_data_set(syn: Path) -> None:
    records = load_dataset(syn)
    torch.manual_seed(0)
    model = Model(backbone="resnet18", img_size=64, pretrained=False)  # the 4 classes
    summary, rows = explain_records(model, records, method="gradcam", max_images=5,
                                    keep_maps=2, level=-2)
    boxed = [s for s in records if s.has_box]
    assert summary["n_candidates"] == len(boxed) == 9 and summary["n_images"] == len(rows) == 5
    assert summary["target"] == "true class" and summary["options"] == {"level": -2}  # all
    assert set(summary["per_class"]) == {"glioma", "meningioma", "pituitary"}  # turns
    for entry in [summary, *summary["per_class"].values()]:
        for key in ("pointing_game", "energy_inside", "box_area_share"):
            assert 0.0 <= entry[key] <= 1.0
    by_rel = {s.rel: s for s in records}
    assert all(r.target == r.label == by_rel[r.rel].label for r in rows)
    assert [r.heatmap is not None for r in rows] == [True, True, False, False, False]
    for r in rows[:2]:
        s = by_rel[r.rel]
        assert r.heatmap.shape == (s.height, s.width)  # original pixels
        assert r.area_share == pytest.approx(box_area_share((s.height, s.width), s.boxes))
    predicted, _ = explain_records(model, records, method="gradcam", target="predicted",
                                   max_images=2)
    assert predicted["target"] == "predicted class" and predicted["n_images"] == 2
    with pytest.raises(ValueError, match="target"):
        explain_records(model, records, target="best")
    with pytest.raises(ValueError, match="no option n_samples"):
        explain_records(model, records, method="gradcam", n_samples=4)
    with pytest.raises(ValueError, match="max_images"):
        explain_records(model, records, max_images=0)


def test_unreadable_images_are_counted_not_fatal(syn: Path, tmp_path: Path) -> None:
    import shutil

    root = Path(shutil.copytree(syn, tmp_path / "copy"))
    records = load_dataset(root)
    first = next(s for s in records if s.has_box)
    first.path.write_bytes(b"not an image")
    model = Model(backbone="resnet18", img_size=64, pretrained=False)
    summary, rows = explain_records(model, records, max_images=9, level=-2)
    assert summary["n_unreadable"] == 1 and summary["n_images"] == 8
    assert first.rel not in {r.rel for r in rows}
