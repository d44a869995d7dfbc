"""Tests of the post-training refit of the refining stage (mtbrain.engine.refit) and of
its place in the trainer, on tiny synthetic data."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
import torch

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.data import load_dataset
from mtbrain.data.dataset import MRIDataset
from mtbrain.data.synthetic import generate
from mtbrain.engine import refit as refit_module
from mtbrain.engine.config import load_config
from mtbrain.engine.hooks import Hook
from mtbrain.engine.refit import cache_roi_maps, refit_refiner
from mtbrain.engine.trainer import Trainer
from mtbrain.errors import ConfigError
from mtbrain.models import Model
from mtbrain.models.checkpoint import read_checkpoint

TINY = "mobilenetv3_small_050"
BASE = [f"model.backbone={TINY}", "model.pretrained=false", "data.size=64",
        "data.synthetic_per_class=8", "data.cache=memory", "train.batch_size=8",
        "train.max_steps_per_epoch=3", "train.epochs=2",
        "model.box_head_options={roi_refine: true}"]


@pytest.fixture(autouse=True)
def env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
        one_thread: None) -> None:
    monkeypatch.setenv("MTBRAIN_CACHE", str(tmp_path_factory.getbasetemp() / "mtbrain_cache"))


def config(*extra: str):
    return load_config(None, overrides=[*BASE, *extra])


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, n_per_class=6, size=64, seed=3)
    records = load_dataset(root)
    torch.manual_seed(0)
    model = Model(backbone=TINY, classes=records.classes, img_size=64, pretrained=False,
                  box_head_options={"roi_refine": True})
    ds = MRIDataset(records, records.classes, size=64)
    cache = cache_roi_maps(model, [ds], batch_size=8, device=torch.device("cpu"))
    return model, cache, sum(s.has_box for s in records)


def test_cache_holds_each_box_image_once(tiny_cache) -> None:
    model, cache, n_box = tiny_cache
    assert len(cache) == n_box > 0
    assert cache.maps.dtype == torch.bfloat16 and cache.maps.shape[-2:] == (8, 8)
    assert cache.image_hw == (64, 64)
    assert cache.valid.any(dim=1).all()  # only images with a box are kept
    assert cache.decoded.shape == (n_box, 4)


def test_refit_lowers_the_loss_is_seeded_and_touches_only_the_stage(tiny_cache) -> None:
    model, cache, _ = tiny_cache
    before = {k: v.clone() for k, v in model.state_dict().items()}
    short = refit_refiner(model, cache, epochs=1, lr=3e-3, batch_size=8, seed=5)
    long = refit_refiner(model, cache, epochs=40, lr=3e-3, batch_size=8, seed=5)
    fitted = {k: v.clone() for k, v in model.state_dict().items()}
    again = refit_refiner(model, cache, epochs=40, lr=3e-3, batch_size=8, seed=5)
    assert long["refine_l1"] < 0.7 * short["refine_l1"]
    assert long["refine_giou"] < short["refine_giou"]
    assert again == long
    assert all(torch.equal(fitted[k], v) for k, v in model.state_dict().items())
    changed = {k for k, v in fitted.items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith("box_head.roi_head.") for k in changed), changed
    assert not model.training


def test_refit_needs_a_refining_stage(tiny_cache) -> None:
    _, cache, _ = tiny_cache
    plain = Model(backbone=TINY, classes=["glioma", "no_tumor"], img_size=64, pretrained=False)
    with pytest.raises(ConfigError, match="roi_refine"):
        refit_refiner(plain, cache, epochs=1)


@pytest.mark.parametrize("extra, message", [
    (["model.box_head_options={}", "train.refit_epochs=2"], "roi_refine: true"),
    (["train.refit_epochs=-1"], "at least 0"),
    (["train.refit_time_s=10"], "max_time_s"),
    (["train.max_time_s=60", "train.refit_time_s=60"], "leaves nothing"),
    (["train.refit_lr=0"], "refit_lr"),
])
def test_bad_refit_settings_fail_at_config_read(extra: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(*extra)


def test_refit_time_is_taken_out_of_the_main_budget(tmp_path: Path) -> None:
    trainer = Trainer(config("train.max_time_s=100", "train.refit_time_s=30"), tmp_path,
                      log=False)
    assert trainer.main_budget_s == 70
    assert Trainer(config(), tmp_path, log=False).main_budget_s == 0


def test_trainer_refits_after_the_main_phase(tmp_path: Path) -> None:
    plain, refit = tmp_path / "plain", tmp_path / "refit"
    Trainer(config(), plain, log=False).train()
    summary = Trainer(config("train.refit_epochs=3"), refit, log=False).train()

    rows = read_log(refit / "log.csv")
    assert [r["phase"] for r in rows] == ["", "", "refit"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 2]
    assert float(rows[-1]["train_loss_refine_l1"]) > 0 and rows[-1]["val_mean_iou"] != ""
    assert summary["refit"]["epochs"] == 3 and summary["refit"]["images"] > 0
    assert summary["refit"]["total_s"] >= summary["refit"]["fit_s"] > 0
    assert summary["epochs_done"] == 2

    # the main phase is the plain run's; the refit changes the refining stage only
    a = read_checkpoint(plain / "last.pt").state_dict
    b = read_checkpoint(refit / "last.pt").state_dict
    differ = {k for k in a if not torch.equal(a[k], b[k])}
    assert differ and all(k.startswith("box_head.roi_head.") for k in differ), differ
    best = read_checkpoint(refit / "best.pt").state_dict
    expected = b if rows[-1]["improved"] == "True" else read_checkpoint(plain / "best.pt").state_dict
    assert all(torch.equal(best[k], expected[k]) for k in best)

    # a finished run (refit done) resumes to nothing
    digest = hashlib.sha256((refit / "last.pt").read_bytes()).hexdigest()
    Trainer(config("train.refit_epochs=3"), refit, resume=True, log=False).train()
    assert hashlib.sha256((refit / "last.pt").read_bytes()).hexdigest() == digest
    assert len(read_log(refit / "log.csv")) == 3


class StopAfterFirstEpoch(Hook):
    def after_epoch(self, trainer: Trainer, record: dict) -> None:
        if trainer.epoch == 1:
            trainer.request_stop("test")


def test_run_killed_during_the_refit_resumes_into_it(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    plain, run = tmp_path / "plain", tmp_path / "run"
    Trainer(config(), plain, hooks=[StopAfterFirstEpoch()], log=False).train()

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(refit_module, "refit_refiner", killed)
        with pytest.raises(KeyboardInterrupt):
            Trainer(config("train.refit_epochs=2"), run, hooks=[StopAfterFirstEpoch()],
                    log=False).train()
    assert [r["epoch"] for r in read_log(run / "log.csv")] == ["1"]
    summary = Trainer(config("train.refit_epochs=2"), run, resume=True, log=False).train()

    # no further training step: only the refining stage differs from the stopped plain run
    assert [r.get("phase") for r in read_log(run / "log.csv")] == ["", "refit"]
    assert summary["epochs_done"] == 1 and summary["refit"]["epochs"] == 2
    a = read_checkpoint(plain / "last.pt").state_dict
    b = read_checkpoint(run / "last.pt").state_dict
    differ = {k for k in a if not torch.equal(a[k], b[k])}
    assert differ and all(k.startswith("box_head.roi_head.") for k in differ), differ
