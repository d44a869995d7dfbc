"""Trainer efficiency: images/s of ``mtbrain train`` over a bare PyTorch loop, same model.

For each precision, in one run and interleaved (these machines are noisy):

- ``mtbrain``: the real :class:`~mtbrain.engine.trainer.Trainer` on real JPEGs (decoded-image
  cache, augmentation, masked multitask loss, gradient clipping, scheduler, hooks), timed
  over the training steps after ``--warmup`` steps (validation and set-up excluded);
- ``bare``: the same model, optimiser, batch size, resolution, precision and memory format
  on one batch of in-memory tensors: forward, loss, backward, step, nothing else.

The ratio mtbrain/bare is the trainer's efficiency (target >= 0.9).

Usage::

    python benchmarks/trainer_efficiency.py --size 256 --batch 32 --steps 10 --precision fp32 bf16
    python benchmarks/trainer_efficiency.py --config configs/mri_bbox_effnet_lite0.yaml --precision bf16

With ``--config`` the trainer runs that config (its data sets, box head, frozen stages...;
``--set a.b=c`` as for ``mtbrain train``) and the bare loop freezes the same stages, so the
figure is the efficiency of that very training run; ``--data``, ``--backbone``, ``--size``
and ``--batch`` then apply only when given.

``--data`` defaults to ``../shared/data/mri-bbox/Train`` (or ``$MTBRAIN_DATA/mri-bbox/Train``);
when absent, the built-in synthetic set is used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import mtbrain  # noqa: E402,F401  (offline environment first)
from mtbrain.engine.config import load_config  # noqa: E402
from mtbrain.engine.hooks import Hook  # noqa: E402
from mtbrain.engine.trainer import Trainer  # noqa: E402
from mtbrain.errors import ConfigError  # noqa: E402


class StepTimer(Hook):
    """Records the time after every training step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def after_step(self, trainer: Trainer, loss_dict: dict[str, float]) -> None:
        self.times.append(time.perf_counter())


def default_data() -> str:
    env = os.environ.get("MTBRAIN_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    path = root / "mri-bbox" / "Train"
    return str(path) if path.is_dir() else "synthetic"


def images_per_s(times: list[float], warmup: int, batch: int) -> float:
    t = times[warmup:]
    return batch * (len(t) - 1) / (t[-1] - t[0])


def measure_trainer(trainer: Trainer, steps: int, warmup: int, batch: int) -> float:
    timer = StepTimer()
    trainer.hooks.append(timer)
    trainer.cfg.train.max_steps_per_epoch = steps + warmup + 1
    trainer.train_one_epoch(0)
    trainer.hooks.remove(timer)
    return images_per_s(timer.times, warmup, batch)


def measure_bare(trainer: Trainer, steps: int, warmup: int, precision: str) -> float:
    """The minimal loop: one real batch kept in memory, the same model (and frozen stages)
    and optimiser."""
    from mtbrain.models import Model

    model = Model.from_config(trainer.model.config, load_weights=False).train()
    model.backbone.freeze_stages(trainer.cfg.train.freeze_stages)
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    images, targets = next(iter(trainer.train_loader))
    images = images.contiguous(memory_format=torch.channels_last)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    times = []
    for _ in range(steps + warmup + 1):
        with autocast:
            loss = model(images, targets)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter())
    return images_per_s(times, warmup, images.shape[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="a training config (YAML) to measure")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override, as for mtbrain train")
    parser.add_argument("--data", default=None,
                        help="box set; replaces the config's first data set (without --config: "
                        "the shared box set, else the synthetic one)")
    parser.add_argument("--backbone", default=None, help="default tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=None, help="default 256")
    parser.add_argument("--batch", type=int, default=None, help="default 32")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="interleaved repetitions")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16", "auto"],
                        help="auto: what train.precision=auto picks on this machine")
    args = parser.parse_args()
    if args.config is None:  # the defaults of a plain run
        args.data = args.data or default_data()
        args.backbone = args.backbone or "tf_efficientnet_lite0"
        args.size, args.batch = args.size or 256, args.batch or 32
    given = [("model.backbone", args.backbone), ("data.size", args.size),
             ("train.batch_size", args.batch)]
    base = [f"{k}={v}" for k, v in given if v is not None]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precision:
            try:
                cfg = load_config(args.config, data=[args.data] if args.data else None, overrides=[
                    *base, *args.overrides, f"train.precision={precision}",
                    "train.channels_last=true", "data.cache=memory", "model.pretrained=false"])
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            if not rows:
                print(f"config {args.config or '(defaults)'}; data "
                      f"{', '.join(d.path for d in cfg.data.datasets)}; {cfg.model.backbone} at "
                      f"{cfg.data.size} px, batch {cfg.train.batch_size}, frozen stages "
                      f"{cfg.train.freeze_stages}, box head {cfg.model.box_head} "
                      f"{cfg.model.box_head_options}; {torch.get_num_threads()} threads, "
                      f"channels_last; median of {args.repeat}", flush=True)
            trainer = Trainer(cfg, Path(tmp) / precision, log=False)
            trainer.setup()
            batch = cfg.train.batch_size
            ours, bare = [], []
            for _ in range(args.repeat):
                ours.append(measure_trainer(trainer, args.steps, args.warmup, batch))
                bare.append(measure_bare(trainer, args.steps, args.warmup, trainer.precision))
            a, b = statistics.median(ours), statistics.median(bare)
            if precision != trainer.precision:
                precision = f"{precision} ({trainer.precision})"
            rows.append((precision, a, b))
            print(f"{precision}: mtbrain {a:.1f} img/s, bare loop {b:.1f} img/s, "
                  f"efficiency {a / b:.2f}", flush=True)
    print("\n| precision | mtbrain train (img/s) | bare loop (img/s) | efficiency |")
    print("|---|---|---|---|")
    for precision, a, b in rows:
        print(f"| {precision} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
