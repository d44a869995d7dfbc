"""A tiny hook protocol for the trainer (after detectron2): logging, checkpoints, stopping.

A hook sees the trainer at four moments. The trainer itself only optimises and validates;
everything else it does is a hook, and a user can add their own::

    class PrintLR(Hook):
        def after_epoch(self, trainer, record):
            print(record["lr"])

    Trainer(cfg, out_dir, hooks=[PrintLR()]).train()

Hooks run on every process; those that write files act only on rank 0.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtbrain.engine import distributed as dist
from mtbrain.io import atomic_write

if TYPE_CHECKING:
    from mtbrain.engine.trainer import Trainer


class Hook:
    """Base class: override any of the four methods."""

    def before_train(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer, loss_dict: dict[str, float]) -> None: ...

    def after_epoch(self, trainer: Trainer, record: dict[str, Any]) -> None: ...

    def after_train(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CSVLogger(Hook):
    """Writes one row per epoch (every metric) to ``log.csv``, rewritten atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def after_epoch(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if not dist.is_main():
            return
        rows = trainer.history
        keys: list[str] = []
        for row in rows:
            keys.extend(k for k in row if k not in keys)

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=keys)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.path, write)


class TensorBoardLogger(Hook):
    """Logs every epoch's numbers to TensorBoard (optional ``tensorboard`` package)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.writer: Any = None

    def before_train(self, trainer: Trainer) -> None:
        if dist.is_main():
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir))

    def after_epoch(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(key, value, record["epoch"])

    def after_train(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()


class EarlyStopping(Hook):
    """Stops training when the monitored value has not improved for ``patience`` validated
    epochs (epochs skipped by ``train.val_every`` do not count)."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.bad_epochs = 0

    def after_epoch(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.patience <= 0 or f"val_{trainer.monitor}" not in record:
            return
        if record.get("improved"):
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            trainer.request_stop(f"early stopping: no improvement of {trainer.monitor} "
                                 f"for {self.patience} epochs")

    def state_dict(self) -> dict[str, Any]:
        return {"bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad_epochs = int(state.get("bad_epochs", 0))


class CurvePlot(Hook):
    """Plots loss and validation curves from the history at the end (``curves.png``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def after_train(self, trainer: Trainer) -> None:
        if dist.is_main() and trainer.history:
            from mtbrain.eval.plots import plot_training_curves

            plot_training_curves(trainer.history, self.path)


class TimeBudget(Hook):
    """Asks the trainer to stop once ``max_time_s`` seconds of training have passed."""

    def __init__(self, max_time_s: float) -> None:
        self.max_time_s = max_time_s
        self.start = time.monotonic()

    def before_train(self, trainer: Trainer) -> None:
        self.start = time.monotonic() - trainer.elapsed_s

    def after_step(self, trainer: Trainer, loss_dict: dict[str, float]) -> None:
        if self.max_time_s > 0 and time.monotonic() - self.start >= self.max_time_s:
            trainer.request_stop(f"time budget of {self.max_time_s:g} s reached", mid_epoch=True)
