"""End-to-end tests of the trainer (mtbrain.engine.trainer) on tiny synthetic data.

Every run uses a tiny backbone at 64 px, a few images per class and a few steps, so a
whole training takes about a second; the subprocess tests (SIGKILL, torchrun) pay a few
seconds of interpreter and torch start-up each.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import mtbrain  # noqa: F401  (offline env before timm)
from mtbrain.cli import main
from mtbrain.engine.config import load_config
from mtbrain.engine.hooks import EarlyStopping, Hook
from mtbrain.engine.trainer import NonFiniteLossError, Trainer, cosine_factor
from mtbrain.errors import ConfigError
from mtbrain.models.checkpoint import read_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
TINY = "mobilenetv3_small_050"
CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]

# 8 images per class -> 32: 24 train, 4 val, 4 test; 3 steps of 8 per epoch.
BASE = [
    f"model.backbone={TINY}",
    "model.pretrained=false",
    "data.size=64",
    "data.synthetic_per_class=8",
    "data.cache=memory",
    "train.batch_size=8",
    "train.max_steps_per_epoch=3",
    "train.epochs=2",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MTBRAIN_CACHE per module: the synthetic set is generated once."""
    return tmp_path_factory.mktemp("mtbrain_cache")


@pytest.fixture(autouse=True)
def env(cache_dir: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """Nothing in the home folder; one torch thread (as the subprocesses, see sub_env)."""
    monkeypatch.setenv("MTBRAIN_CACHE", str(cache_dir))


def sub_env(cache_dir: Path) -> dict[str, str]:
    return dict(os.environ, MTBRAIN_CACHE=str(cache_dir), OMP_NUM_THREADS="1",
                PYTHONPATH=str(REPO_ROOT))


def config(*extra: str, data: list[str] | None = None):
    return load_config(None, overrides=[*BASE, *extra], data=data)


def write_config(path: Path, *extra: str) -> Path:
    """The BASE overrides (plus ``extra``) as a YAML config file, for the command line."""
    import yaml

    values: dict[str, Any] = {}
    for item in [*BASE, *extra]:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = values
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(values))
    return path


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).state_dict


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.tmp"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class StopAfterEpoch(Hook):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_epoch(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.epoch == self.epoch:
            trainer.request_stop("test")


class CountSteps(Hook):
    def __init__(self) -> None:
        self.steps = 0

    def after_step(self, trainer: Trainer, loss_dict: dict[str, float]) -> None:
        self.steps += 1


# --------------------------------------------------------------------------- a short run


def test_precision_auto_is_resolved_at_setup(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mtbrain.engine import precision

    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "native_bf16", lambda device, n=native: n)
        trainer = Trainer(config("train.precision=auto"), tmp_path / want, log=False)
        trainer.setup()
        assert trainer.precision == want
        assert isinstance(trainer._autocast(), torch.autocast) == (want == "bf16")


def test_short_run_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = Trainer(config(), out, log=False).train()

    for name in ("best.pt", "last.pt", "log.csv", "curves.png", "summary.json", "split.json"):
        assert (out / name).is_file(), name
    assert temporaries(out) == []
    assert summary["epochs_done"] == 2
    assert summary["stop_reason"] is None
    assert summary["classes"] == CLASSES
    assert summary["n_train"] == [24] and summary["n_val"] == 4
    assert summary["precision"] == "fp32"
    assert json.loads((out / "summary.json").read_text()) == summary

    rows = read_log(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["train_loss"]) > 0 and float(r["val_loss"]) > 0 for r in rows)
    assert int(summary["last"]["epoch"]) == 2
    assert summary["best_epoch"] in (1, 2)
    # The first epoch always improves on nothing.
    assert rows[0]["improved"] == "True"

    split = json.loads((out / "split.json").read_text())
    assert len(split["parts"]["train"]) == 24 and len(split["parts"]["val"]) == 4

    last = read_checkpoint(out / "last.pt")
    assert last.extra["trainer_state"]["epoch"] == 2
    assert len(last.extra["trainer_state"]["history"]) == 2
    best = read_checkpoint(out / "best.pt")
    assert best.extra["trainer_state"] is None
    assert json.loads(best.extra["train_config_json"])["model"]["backbone"] == TINY

    model = mtbrain.Model.load(out / "best.pt")
    image = next(Path(os.environ["MTBRAIN_CACHE"]).rglob("*.jpg"))
    (pred,) = model.predict([image])
    assert pred.label in CLASSES
    assert sorted(pred.probs) == CLASSES
    assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert pred.box_score is not None and 0.0 <= pred.box_score <= 1.0


# --------------------------------------------------------------------------- resume


def test_resume_after_stop_equals_uninterrupted_run(tmp_path: Path) -> None:
    # Dropout, stochastic depth, EMA and the refining stage's jittered boxes draw on the
    # torch RNG and carry state: all must be restored for the resumed run to end bit-identical.
    extra = ("train.epochs=3", "model.drop_rate=0.3", "model.drop_path_rate=0.1", "train.ema=0.9",
             "model.box_head_options={roi_refine: true}")
    a, b = tmp_path / "a", tmp_path / "b"
    full = Trainer(config(*extra), a, log=False).train()

    first = Trainer(config(*extra), b, hooks=[StopAfterEpoch(1)], log=False).train()
    assert first["epochs_done"] == 1 and first["stop_reason"] == "test"
    rest = Trainer(config(*extra), b, resume=True, log=False).train()

    assert rest["epochs_done"] == full["epochs_done"] == 3
    assert rest["stop_reason"] is None
    assert_same_weights(a / "last.pt", b / "last.pt")
    assert_same_weights(a / "best.pt", b / "best.pt")
    sa = read_checkpoint(a / "last.pt").extra["trainer_state"]
    sb = read_checkpoint(b / "last.pt").extra["trainer_state"]
    for key, value in sa["ema"].items():
        assert torch.equal(value, sb["ema"][key]), key
    assert without_time(read_log(a / "log.csv")) == without_time(read_log(b / "log.csv"))
    assert all(float(r["train_loss_refine_l1"]) > 0 for r in read_log(a / "log.csv"))
    assert (rest["best_epoch"], rest["best_value"]) == (full["best_epoch"], full["best_value"])


def test_resume_with_nothing_left_to_do(tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(config(), out, log=False).train()
    before = sha256(out / "last.pt")
    summary = Trainer(config(), out, resume=True, log=False).train()
    assert summary["epochs_done"] == 2
    assert sha256(out / "last.pt") == before
    assert len(read_log(out / "log.csv")) == 2


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path: Path, cache_dir: Path) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", "train.epochs=6")
    ref, out = tmp_path / "ref", tmp_path / "killed"
    assert main(["train", "--config", str(cfg), "--out", str(ref), "--quiet"]) == 0

    proc = subprocess.Popen(
        [PYTHON, "-m", "mtbrain", "train", "--config", str(cfg), "--out", str(out), "--quiet"],
        env=sub_env(cache_dir), cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists():  # epoch 1 is committed
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no last.pt after 120 s"
            time.sleep(0.002)
        # Kill it in the middle of a later checkpoint write when we catch one (the
        # hardest moment: a temporary file half-written), else at once.
        while proc.poll() is None and not temporaries(out) and time.monotonic() < deadline:
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "summary.json").exists()
    done_before = read_checkpoint(out / "last.pt").extra["trainer_state"]["epoch"]
    assert 1 <= done_before < 6
    # Every epoch committed in last.pt has its best.pt: best.pt is written first.
    assert (out / "best.pt").exists()

    assert main(["train", "--config", str(cfg), "--out", str(out), "--resume", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_done"] == 6 and summary["stop_reason"] is None
    assert temporaries(out) == []
    assert_same_weights(ref / "last.pt", out / "last.pt")
    assert_same_weights(ref / "best.pt", out / "best.pt")
    assert without_time(read_log(ref / "log.csv")) == without_time(read_log(out / "log.csv"))


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(config("train.epochs=1"), out, log=False).train()
    for name in (".last.pt.abc123.tmp", ".best.pt.x.tmp", ".log.csv.y.tmp"):
        (out / name).write_bytes(b"half")
    (out / ".notes.tmp").write_text("not ours")
    Trainer(config(), out, resume=True, log=False).train()
    assert temporaries(out) == [".notes.tmp"]


# --------------------------------------------------------------------------- non-finite loss


class PoisonWeights(Hook):
    """After the first step of epoch 2, make a weight NaN (the next loss is NaN)."""

    def __init__(self) -> None:
        self.last_pt_digest: str | None = None

    def after_step(self, trainer: Trainer, loss_dict: dict[str, float]) -> None:
        if trainer.epoch == 1 and self.last_pt_digest is None:
            self.last_pt_digest = sha256(trainer.out_dir / "last.pt")
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))


def test_non_finite_loss_stops_naming_epoch_and_step(tmp_path: Path) -> None:
    out = tmp_path / "run"
    hook = PoisonWeights()
    with pytest.raises(NonFiniteLossError, match=r"at epoch 2, step 2\b"):
        Trainer(config("train.epochs=3"), out, hooks=[hook], log=False).train()
    # last.pt of epoch 1 is untouched, finite, and resumable.
    assert hook.last_pt_digest is not None
    assert sha256(out / "last.pt") == hook.last_pt_digest
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt.extra["trainer_state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt.state_dict.values() if v.is_floating_point())
    assert temporaries(out) == []


def test_huge_learning_rate_gives_non_finite_loss(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, step \d+") as info:
        Trainer(config("train.lr=1e30", "train.warmup_epochs=0"), out, log=False).train()
    assert "lower train.lr" in str(info.value)
    assert not (out / "last.pt").exists()


# --------------------------------------------------------------------------- config errors


def test_cli_unknown_key_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--set", "train.lrr=1e-3", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "train.lrr" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_size_not_multiple_of_32(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", *(a for kv in BASE for a in ("--set", kv)),
                 "--set", "data.size=100", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "data.size=100" in err and "multiple of 32" in err

    with pytest.raises(ConfigError, match="data.size"):
        config("data.size=100")


@pytest.mark.parametrize(("option", "message"), [
    ("{roi_size: 0}", "box_head_options.roi_size=0, must be an integer >= 1"),
    ("{roi_refine: 'yes'}", "box_head_options.roi_refine='yes', must be true or false"),
    ("{channles: 64}", "unknown option(s) ['channles'] for box_head 'dense'"),
])
def test_bad_box_head_option_fails_at_config_read_naming_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture, option: str, message: str) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", f"model.box_head_options={option}")
    out = tmp_path / "x"
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: " in err and message in err
    assert not out.exists()  # refused before a split file or a log is written


def test_cli_resume_without_last_pt(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = write_config(tmp_path / "cfg.yaml")
    code = main(["train", "--config", str(cfg), "--out", str(tmp_path / "none"), "--resume"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "last.pt" in err


def test_cli_existing_run_needs_resume_or_overwrite(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    cfg = write_config(tmp_path / "cfg.yaml", "train.epochs=1")
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"an earlier run")
    code = main(["train", "--config", str(cfg), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert (out / "last.pt").read_bytes() == b"an earlier run"

    assert main(["train", "--config", str(cfg), "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert read_checkpoint(out / "last.pt").extra["trainer_state"]["epoch"] == 1


# --------------------------------------------------------------------------- time budget


def test_time_budget_stops_cleanly_after_one_step(tmp_path: Path) -> None:
    out = tmp_path / "run"
    steps = CountSteps()
    summary = Trainer(config("train.max_time_s=0.001", "train.epochs=3"), out,
                      hooks=[steps], log=False).train()
    assert steps.steps == 1
    assert summary["epochs_done"] == 1
    assert "time" in summary["stop_reason"]
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert len(read_log(out / "log.csv")) == 1
    assert json.loads((out / "summary.json").read_text())["stop_reason"] == summary["stop_reason"]
    mtbrain.Model.load(out / "last.pt")


def test_val_every_validates_every_nth_and_the_last_epoch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = Trainer(config("train.epochs=3", "train.val_every=2"), out, log=False).train()
    rows = read_log(out / "log.csv")
    assert [bool(r["val_accuracy"]) for r in rows] == [False, True, True]
    assert rows[0]["improved"] == "False" and rows[1]["improved"] == "True"
    assert summary["best_epoch"] in (2, 3)
    assert (out / "best.pt").is_file()
    with pytest.raises(ConfigError, match="train.val_every=-1"):
        config("train.val_every=-1")


def test_val_every_still_validates_when_the_budget_ends_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = Trainer(config("train.max_time_s=0.001", "train.epochs=3", "train.val_every=0"),
                      out, log=False).train()
    (row,) = read_log(out / "log.csv")
    assert "time" in summary["stop_reason"]
    assert float(row["val_accuracy"]) >= 0 and summary["best_epoch"] == 1


def test_early_stopping_counts_only_validated_epochs() -> None:
    stops: list[str] = []
    trainer = SimpleNamespace(monitor="score", request_stop=stops.append)
    hook = EarlyStopping(patience=2)
    for record in ({"val_score": 0.5, "improved": True}, {"improved": False},
                   {"improved": False}, {"val_score": 0.4, "improved": False}):
        hook.after_epoch(trainer, record)
    assert stops == [] and hook.bad_epochs == 1
    hook.after_epoch(trainer, {"val_score": 0.4, "improved": False})
    assert len(stops) == 1 and "2 epochs" in stops[0]


def test_freeze_stages_keeps_stem_and_first_stages_unchanged(tmp_path: Path) -> None:
    """Frozen for good: also after ``freeze_backbone_epochs`` unfreezes the backbone."""
    trainer = Trainer(config("train.freeze_stages=1", "train.freeze_backbone_epochs=1"),
                      tmp_path / "run", log=False)
    trainer.setup()
    groups = trainer.model.backbone.stage_parameter_names()
    frozen = {f"backbone.{n}" for g in groups[:2] for n in g}
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    later = [n for g in groups[2:] for n in g]
    assert any(not torch.equal(before[f"backbone.{n}"], after[f"backbone.{n}"]) for n in later)


def test_cosine_factor_follows_the_budget_when_it_runs_ahead_of_the_steps() -> None:
    kw = {"warmup": 10, "total": 110, "min_ratio": 0.02}
    assert cosine_factor(0, **kw) == pytest.approx(0.1)                  # warm-up
    assert cosine_factor(10, **kw) == pytest.approx(1.0)                 # peak
    assert cosine_factor(60, **kw) == pytest.approx(0.51)                # half-way: (1 + 0.02) / 2
    assert cosine_factor(110, **kw) == pytest.approx(0.02)               # end
    assert cosine_factor(20, **kw, spent=0.5) == pytest.approx(0.51)     # time is ahead
    assert cosine_factor(90, **kw, spent=0.5) == pytest.approx(cosine_factor(90, **kw))
    assert cosine_factor(20, **kw, spent=1.0) == pytest.approx(0.02)     # budget spent
    assert cosine_factor(3, **kw, spent=1.0) == pytest.approx(0.02)      # even in warm-up


def test_schedule_to_budget_anneals_by_the_time_spent(tmp_path: Path) -> None:
    """With ``schedule_to_budget`` the learning rate follows the share of ``max_time_s``
    spent (here pretended through ``elapsed_s``) rather than the step count."""
    lrs = {}
    for fit in (False, True):
        trainer = Trainer(config("train.max_time_s=1000", "train.epochs=50", "train.lr=0.01",
                                 "train.warmup_epochs=0", f"train.schedule_to_budget={fit}"),
                          tmp_path / f"run{fit}", log=False)
        trainer.setup()
        trainer.elapsed_s = 750.0                  # three quarters of the budget spent
        assert trainer.budget_fraction() == pytest.approx(0.75)
        trainer.optimizer.step()                   # no gradients: changes nothing
        trainer.scheduler.step()
        lrs[fit] = trainer.optimizer.param_groups[-1]["lr"]
    assert lrs[False] == pytest.approx(0.01, rel=1e-3)      # step 1 of 150: still at the peak
    expected = 0.01 * cosine_factor(1, warmup=0, total=150, min_ratio=0.02, spent=0.75)
    assert lrs[True] == pytest.approx(expected) and lrs[True] < 0.002


# --------------------------------------------------------------------------- mixed data


def test_mixed_class_folder_set_with_leak_removal(tmp_path: Path) -> None:
    from mtbrain.data.synthetic import generate
    from mtbrain.engine.data import build_data

    boxes = generate(tmp_path / "boxes", n_per_class=8, size=64, seed=3)
    out = tmp_path / "run"
    # Make (and save) the split of the box set first, to know its validation images.
    first = build_data(config(data=[str(boxes)]).data, out, seed=0, log=lambda m: None)
    assert (out / "split.json").exists()

    folders = tmp_path / "folders"
    for sample in first.train_sets[0].samples[:12]:
        dst = folders / sample.label / f"extra_{Path(sample.rel).stem}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.open(sample.path).save(dst)  # same pixels, another file format
    leaked = first.val.samples[0]
    copy = folders / leaked.label / f"copy_of_val{leaked.path.suffix}"
    shutil.copyfile(leaked.path, copy)

    trainer = Trainer(config("train.epochs=1", data=[str(boxes), str(folders)]), out, log=False)
    summary = trainer.train()

    assert [Path(p).name for p in trainer.data.dropped_leaks] == [copy.name]
    assert summary["n_train"] == [len(first.train_sets[0]), 12]
    assert sorted(trainer.data.val.samples[i].rel for i in range(len(trainer.data.val))) == \
        sorted(s.rel for s in first.val.samples)  # the saved split was reused
    row = read_log(out / "log.csv")[0]
    for key in ("train_loss_cls", "train_loss_box_l1", "train_loss"):
        assert float(row[key]) == pytest.approx(float(row[key]))  # not NaN
        assert 0 < float(row[key]) < 1e3, key


# --------------------------------------------------------------------------- torchrun


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], cache_dir: Path, log_dir: Path,
             timeout: float = 240) -> subprocess.CompletedProcess:
    """:func:`_torchrun`, once more on another port if the free port was taken meanwhile."""
    res = _torchrun(args, cache_dir, log_dir, timeout)
    if res.returncode != 0 and "address already in use" in res.stderr.lower():
        res = _torchrun(args, cache_dir, log_dir, timeout)
    return res


def _torchrun(args: list[str], cache_dir: Path, log_dir: Path,
              timeout: float = 240) -> subprocess.CompletedProcess:
    """Run torchrun with 2 processes. On a timeout, SIGTERM torchrun (it then stops its
    workers, which run in sessions of their own) and raise ``subprocess.TimeoutExpired``.
    Output goes to files: a worker that outlived torchrun cannot block the test on a pipe."""
    cmd = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    out_path, err_path = log_dir / "torchrun.out", log_dir / "torchrun.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, env=sub_env(cache_dir), cwd=REPO_ROOT, text=True,
                                stdout=out, stderr=err)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out_path.read_text(),
                                       err_path.read_text())


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path: Path, cache_dir: Path) -> None:
    cfg = write_config(tmp_path / "cfg.yaml")
    out = tmp_path / "ddp"
    res = torchrun(["tools/train.py", "--config", str(cfg), "--out", str(out), "--quiet"],
                   cache_dir, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_log(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_done"] == 2 and summary["n_val"] == 4
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt.extra["trainer_state"]["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt.state_dict.values() if v.is_floating_point())
    mtbrain.Model.load(out / "best.pt")
    assert temporaries(out) == []


STOP_ON_RANK0 = textwrap.dedent("""
    import json, sys
    from mtbrain.engine import distributed as dist
    from mtbrain.engine.config import load_config
    from mtbrain.engine.hooks import Hook
    from mtbrain.engine.trainer import Trainer

    class Rank0Stop(Hook):
        # A mid-epoch stop asked on one rank only (as the time budget may be).
        def after_step(self, trainer, values):
            if dist.rank() == 0:
                trainer.request_stop("rank 0 only", mid_epoch=True)

    cfg = load_config(sys.argv[1], overrides=["train.epochs=2"])
    summary = Trainer(cfg, sys.argv[2], hooks=[Rank0Stop()], log=False).train()
    print(json.dumps({"rank": dist.rank(), "epochs_done": summary["epochs_done"]}), flush=True)
""")


@pytest.mark.slow
def test_torchrun_stop_asked_on_one_rank_stops_all(tmp_path: Path, cache_dir: Path) -> None:
    cfg = write_config(tmp_path / "cfg.yaml")
    script = tmp_path / "stop_on_rank0.py"
    script.write_text(STOP_ON_RANK0)
    out = tmp_path / "ddp"
    try:
        res = torchrun([str(script), str(cfg), str(out)], cache_dir, tmp_path, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("torchrun hung: the ranks disagree on a mid-epoch stop")
    assert res.returncode == 0, res.stderr[-3000:]
    done = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert sorted(d["rank"] for d in done) == [0, 1]
    assert all(d["epochs_done"] == 1 for d in done)
    assert len(read_log(out / "log.csv")) == 1
