"""mtbrain study: folds by duplicate group, every model on every fold, resumable, tested."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.cli import main
from mtbrain.data.splitfile import SplitFile
from mtbrain.engine.trainer import Trainer
from mtbrain.eval import compare as compare_module

TINY = {"data": {"size": 64, "cache": "memory"},
        "train": {"batch_size": 8, "max_steps_per_epoch": 2, "channels_last": False}}


def _config(folder: Path, name: str, backbone: str, box_head: str = "dense") -> Path:
    cfg = {**TINY, "model": {"backbone": backbone, "pretrained": False, "box_head": box_head}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def study_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               one_thread: None) -> dict[str, Path]:
    """A small synthetic set with planted duplicates, another set sharing two of its
    images, and two tiny configs (one multitask, one classification-only)."""
    from mtbrain.data.synthetic import generate, plant_duplicates

    monkeypatch.setenv("MTBRAIN_CACHE", str(tmp_path / "cache"))
    data = generate(tmp_path / "syn", n_per_class=6, size=96, seed=0)
    pairs = plant_duplicates(data, n_exact=3, n_near=0, seed=0)
    other = generate(tmp_path / "other", n_per_class=2, size=96, seed=1)
    for k, src in enumerate(sorted((data / "Train" / "Glioma" / "images").glob("*.jpg"))[:2]):
        dst = other / "Train" / "Glioma" / "images" / f"shared_{k}.jpg"
        shutil.copy(src, dst)
        shutil.copy(src.parent.parent / "labels" / f"{src.stem}.txt",
                    dst.parent.parent / "labels" / f"{dst.stem}.txt")
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    return {"data": data, "other": other, "pairs": tmp_path / "pairs.json",
            "mt": _config(tmp_path, "cnn_mt", "mtbrain_smallcnn"),
            "cls": _config(tmp_path, "mnv3_cls", "mobilenetv3_small_050", "none")}


def _argv(d: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["study", "--configs", str(d["mt"]), str(d["cls"]), "--data", str(d["data"]),
            "--folds", "2", "--set", "train.epochs=1", "--out", str(out),
            "--eval-data", str(d["other"]), "--metrics", "accuracy", "macro_f1", "mean_iou",
            "--workers", "1", *extra]


def test_study_runs_resumes_and_reports(tmp_path: Path, study_data: dict[str, Path],
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "study"
    trained: list[str] = []
    scored: list[str] = []
    real_train, real_score = Trainer.train, compare_module._evaluate_checkpoint

    def train(self: Trainer) -> dict:
        trained.append(f"{self.out_dir.parent.parent.name}/{self.out_dir.parent.name}"
                       f"{' (resumed)' if self.resume else ''}")
        return real_train(self)

    def killed_at_third(ckpt: Path, split: Path, unit: Path) -> dict:
        scored.append(f"{unit.parent.name}/{unit.name}")
        if len(scored) == 3:
            raise KeyboardInterrupt  # killed after training the third unit, before scoring
        return real_score(ckpt, split, unit)

    monkeypatch.setattr(Trainer, "train", train)
    monkeypatch.setattr(compare_module, "_evaluate_checkpoint", killed_at_third)
    assert main(_argv(study_data, out)) == 130
    assert trained == ["fold-1/cnn_mt", "fold-1/mnv3_cls", "fold-2/cnn_mt"]
    assert (out / "fold-1" / "mnv3_cls" / "compare-entry.json").exists()
    assert not (out / "fold-2" / "cnn_mt" / "compare-entry.json").exists()
    assert not (out / "results.json").exists() and not (out / "report.md").exists()

    # the folds: every image tested once, duplicate groups whole, classes in both folds
    splits = [SplitFile.read(out / "folds" / f"fold-{i}.json") for i in (1, 2)]
    tests = [set(s.parts["test"]) for s in splits]
    assert not tests[0] & tests[1] and len(tests[0] | tests[1]) == 6 * 4 + 3
    for a, b in json.loads(study_data["pairs"].read_text()):
        for s in splits:
            assert {p for p, rels in s.parts.items() if a in rels} == \
                {p for p, rels in s.parts.items() if b in rels}
    for s in splits:
        assert {r.split("/")[1] for r in s.parts["test"]} == {"Glioma", "Meningioma",
                                                              "No Tumor", "Pituitary"}

    # resume: finished units are skipped, the trained-but-unscored one is only scored
    trained.clear()
    scored.clear()
    monkeypatch.setattr(compare_module, "_evaluate_checkpoint", real_score)
    capsys.readouterr()
    assert main(_argv(study_data, out)) == 0
    assert trained == ["fold-2/mnv3_cls"]
    err = capsys.readouterr().err
    assert err.count("already done") == 2 and "finding duplicate groups" not in err
    results = json.loads((out / "results.json").read_text())
    assert set(results["per_fold"]) == {"cnn_mt", "mnv3_cls"}
    assert all(len(v) == 2 for v in results["per_fold"].values())
    for name, rows in results["per_fold"].items():
        entries = [json.loads((out / f"fold-{i}" / name / "compare-entry.json").read_text())
                   for i in (1, 2)]
        assert [r["accuracy"] for r in rows] == [e["accuracy"] for e in entries]
        assert results["summary"]["accuracy"][name]["values"] == [r["accuracy"] for r in rows]
    assert results["summary"]["mean_iou"]["mnv3_cls"]["mean"] is None  # classification only
    assert results["summary"]["mean_iou"]["cnn_mt"]["mean"] is not None
    assert "skipped" in results["tests"]["mean_iou"]
    acc = results["tests"]["accuracy"]
    assert acc["friedman"] is None and len(acc["pairwise"]) == 1  # two models: Wilcoxon
    assert acc["min_wilcoxon_p"] == 0.5
    assert results["plots"] == {"accuracy": "cd_accuracy.png", "macro_f1": "cd_macro_f1.png"}
    assert (out / "cd_accuracy.png").stat().st_size > 1000
    # cross-dataset: the two shared images were removed before scoring
    assert results["cross_data"]["n_removed"] == 2 and results["cross_data"]["n_kept"] == 8
    cross = json.loads((out / "fold-1" / "cnn_mt" / "cross" / "metrics.json").read_text())
    assert cross["n_images"] == 8
    drop = results["cross"]["accuracy"]["cnn_mt"]
    assert drop["drop"]["values"] == pytest.approx(
        [a - b for a, b in zip(results["summary"]["accuracy"]["cnn_mt"]["values"],
                               drop["other"]["values"], strict=True)])
    report = (out / "report.md").read_text()
    for text in ("## Results: mean [95 % bootstrap CI] over 2 folds", "Wilcoxon signed-rank",
                 "## Cross-dataset", "after removing 2", "![critical-difference diagram",
                 "| mnv3_cls | mtbrain | classification |"):
        assert text in report

    # a third run does nothing but the report
    trained.clear()
    assert main(_argv(study_data, out)) == 0
    assert trained == []
    assert json.loads((out / "results.json").read_text())["per_fold"] == results["per_fold"]

    # a unit killed in training (last.pt, no summary) resumes from its last.pt
    unit = out / "fold-2" / "mnv3_cls"
    (unit / "compare-entry.json").unlink()
    (unit / "train" / "summary.json").unlink()
    assert main(_argv(study_data, out)) == 0
    assert trained == ["fold-2/mnv3_cls (resumed)"]

    # other settings, or a changed config, are refused on the same folder
    capsys.readouterr()
    argv = _argv(study_data, out)
    argv[argv.index("--folds") + 1] = "3"
    assert main(argv) == 2
    assert "holds a study with folds=2" in capsys.readouterr().err
    study_data["cls"].write_text(study_data["cls"].read_text() + "# changed\n")
    assert main(_argv(study_data, out)) == 2
    assert "changed since the study" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--folds", "1"], "--folds must be an integer >= 2"),
    (["--metrics", "accuracy", "speed"], "unknown metric(s) ['speed']"),
    (["--alpha", "1.5"], "--alpha must be in (0, 1)"),
    (["--val", "0"], "--val must be in (0, 1)"),
])
def test_cli_option_errors(tmp_path: Path, study_data: dict[str, Path], extra: list[str],
                           message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(_argv(study_data, tmp_path / "s", *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_cli_member_and_budget_errors(tmp_path: Path, study_data: dict[str, Path],
                                      capsys: pytest.CaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from mtbrain.models import weights

    monkeypatch.setattr(weights, "_hf_cached", lambda name: False)
    base = ["study", "--data", str(study_data["data"]), "--out", str(tmp_path / "s")]
    mt, cls = str(study_data["mt"]), str(study_data["cls"])
    assert main([*base, "--configs", mt, cls]) == 2
    assert "--budget-s S" in capsys.readouterr().err
    assert main([*base, "--configs", mt, "--budget-s", "10"]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main([*base, "--configs", mt, str(tmp_path / "missing.yaml"), "--budget-s", "10"]) == 2
    assert "missing.yaml: config file not found" in capsys.readouterr().err
    same = tmp_path / "copies" / "cnn_mt.yaml"
    same.parent.mkdir()
    shutil.copy(mt, same)
    assert main([*base, "--configs", mt, str(same), "--budget-s", "10"]) == 2
    assert "share the name 'cnn_mt'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    assert main([*base, "--configs", mt, str(bad), "--budget-s", "10"]) == 2
    assert f"{bad}:" in capsys.readouterr().err
    hub = tmp_path / "hub.yaml"
    hub.write_text("model:\n  backbone: resnet50\n  pretrained: true\n")
    assert main([*base, "--configs", mt, str(hub), "--budget-s", "10"]) == 2
    assert "no offline weights" in capsys.readouterr().err
    assert main([*base, "--configs", mt, cls, "--set", "train.epochs=0"]) == 2
    assert "train.epochs=0" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
