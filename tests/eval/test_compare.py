"""mtbrain compare: several models, one split, one budget, one evaluator, resumable."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.cli import main

TINY = {"model": {"backbone": "mobilenetv3_small_050", "pretrained": False},
        "data": {"size": 64, "cache": "memory"},
        "train": {"batch_size": 8, "epochs": 1, "max_steps_per_epoch": 2}}


@pytest.fixture
def split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> Path:
    from mtbrain.data.synthetic import generate

    monkeypatch.setenv("MTBRAIN_CACHE", str(tmp_path / "cache"))
    data = generate(tmp_path / "syn", n_per_class=6, size=64, seed=0)
    out = tmp_path / "split.json"
    assert main(["split", str(data), "--out", str(out), "--val", "0.25", "--test", "0.25"]) == 0
    return out


def test_compare_trains_scores_and_resumes(tmp_path: Path, split: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    argv = ["compare", "--split", str(split), "--config", str(cfg), "--budget-s", "30",
            "--out", str(tmp_path / "cmp")]
    yolo = importlib.util.find_spec("ultralytics") is not None
    if yolo:
        ycfg = tmp_path / "yolo.yaml"
        ycfg.write_text(yaml.safe_dump({"yolo": {"imgsz": 64, "epochs": 1, "batch": 8}}))
        argv += ["--yolo-config", str(ycfg)]
    assert main(argv) == 0
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = {r["name"]: r for r in table["rows"]}
    assert set(rows) == ({"tiny", "yolo"} if yolo else {"tiny"})
    for row in rows.values():
        assert 0.0 <= row["accuracy"] <= 1.0 and row["ms_per_image"] > 0
    assert rows["tiny"]["params_m"] > 0 and rows["tiny"]["train_s"] > 0
    assert (tmp_path / "cmp" / "tiny" / "metrics.json").exists()
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| tiny | mtbrain |" in md
    capsys.readouterr()
    assert main(argv) == 0  # finished entries are reused, not retrained
    assert "already done" in capsys.readouterr().out
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"] == table["rows"]


def test_compare_needs_something(split: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", "--split", str(split)]) == 2
    assert "nothing to compare" in capsys.readouterr().err


def test_compare_keeps_the_sets_a_config_mixes_in(tmp_path: Path, split: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The split replaces the config's box set only; a classification-only set it mixes in
    (with its weight) still trains, minus its duplicates of the split's val/test images."""
    from mtbrain.engine import trainer as trainer_module
    from mtbrain.eval.compare import compare, extra_datasets

    cfg = tmp_path / "mixed.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "datasets": [
        {"path": "somewhere/else"}, {"path": str(tmp_path / "syn"), "weight": 0.25}]}}))
    assert extra_datasets(cfg) == [str(tmp_path / "syn")]
    seen = {}

    class Stop(Exception):
        pass

    class Spy:
        def __init__(self, cfg, out, **kw):
            seen["datasets"] = [(d.path, d.weight) for d in cfg.data.datasets]
            raise Stop

    monkeypatch.setattr(trainer_module, "Trainer", Spy)
    with pytest.raises(Stop):
        compare(split, tmp_path / "cmp", configs=[cfg], budget_s=5, log=lambda m: None)
    assert seen["datasets"] == [(str(split), 1.0), (str(tmp_path / "syn"), 0.25)]
