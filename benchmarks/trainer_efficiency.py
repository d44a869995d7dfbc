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
    """The minimal loop: one real batch kept in memory, the same model and optimiser."""
    from mtbrain.models import Model

    model = Model.from_config(trainer.model.config, load_weights=False).train()
    model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
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
    parser.add_argument("--data", default=default_data())
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="interleaved repetitions")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16"])
    args = parser.parse_args()
    print(f"data {args.data}; {args.backbone} at {args.size} px, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, channels_last; median of {args.repeat}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precision:
            cfg = load_config(None, data=[args.data], overrides=[
                f"model.backbone={args.backbone}", f"data.size={args.size}",
                f"train.batch_size={args.batch}", f"train.precision={precision}",
                "train.channels_last=true", "data.cache=memory", "model.pretrained=false"])
            trainer = Trainer(cfg, Path(tmp) / precision, log=False)
            trainer.setup()
            ours, bare = [], []
            for _ in range(args.repeat):
                ours.append(measure_trainer(trainer, args.steps, args.warmup, args.batch))
                bare.append(measure_bare(trainer, args.steps, args.warmup, precision))
            a, b = statistics.median(ours), statistics.median(bare)
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
