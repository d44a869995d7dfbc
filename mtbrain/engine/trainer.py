"""The trainer: one loop for one process or many (torchrun), readable top to bottom.

``Trainer(cfg, out_dir).train()``:

1. set up: seeds, device, process group, data (split, mixing, cache), model, optimiser,
   scheduler, hooks; with ``resume=True`` everything is restored from ``last.pt``;
2. for each epoch: train (masked multitask loss, bf16 autocast if asked, gradient clipping,
   a stop on a non-finite loss), validate (classification and box metrics), then the
   hooks log, checkpoint and decide whether to stop;
3. with ``train.refit_epochs``: the box head's refining stage is re-initialised and
   trained alone on cached features of the train part (:mod:`mtbrain.engine.refit`),
   then validated and saved like an epoch (a ``phase: refit`` row in ``log.csv``);
4. at the end: ``last.pt`` and ``best.pt``, ``log.csv``, ``curves.png``, ``summary.json``.

Every epoch's data order and augmentation is a function of ``(seed, epoch)`` and the RNG
states are saved with each checkpoint, so a run killed at any moment and resumed ends
with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from mtbrain.config import to_dict
from mtbrain.data.boxes import Letterbox
from mtbrain.engine import distributed as dist
from mtbrain.engine.checkpoint import load_training_checkpoint, save_training_checkpoint
from mtbrain.engine.config import TrainConfig, loader_workers
from mtbrain.engine.data import TrainData, build_data, make_dataset
from mtbrain.engine.hooks import (
    CSVLogger,
    CurvePlot,
    EarlyStopping,
    Hook,
    TensorBoardLogger,
    TimeBudget,
)
from mtbrain.engine.precision import resolve_precision
from mtbrain.engine.sampler import EpochSampler
from mtbrain.errors import ConfigError
from mtbrain.eval.metrics import classification_metrics, localization_metrics
from mtbrain.io import write_json


def cosine_factor(step: int, *, warmup: int, total: int, min_ratio: float,
                  spent: float = 0.0) -> float:
    """Learning-rate factor of the cosine schedule with linear warm-up.

    Args:
        step: Optimizer steps taken.
        warmup: Warm-up steps (linear from ``1/warmup`` to 1).
        total: Steps of the whole schedule (``epochs x steps per epoch``).
        min_ratio: Factor at the end of the schedule.
        spent: Share of the time budget already spent (0 without one). The cosine runs on
            the larger of step progress and ``spent``, so that it reaches ``min_ratio``
            when the budget ends however many steps fit in it.

    Returns:
        The factor that multiplies the peak learning rate.
    """
    if step < warmup and spent < 1.0:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), spent))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training stops instead of ruining the weights."""


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in a form ``torch.load(weights_only=True)`` reads."""
    np_state = np.random.get_state()
    return {
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[1], tuple(py[0]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])


class Trainer:
    """Trains an :class:`mtbrain.Model` from a :class:`TrainConfig`.

    Args:
        cfg: The configuration.
        out_dir: Where checkpoints, logs, the split and plots go.
        resume: Continue from ``out_dir/last.pt``.
        hooks: Extra hooks, run after the built-in ones.
        log: Print progress (rank 0 only).
    """

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False,
                 hooks: list[Hook] | None = None, log: bool = True) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.extra_hooks = list(hooks or [])
        self.verbose = log
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.elapsed_s = 0.0
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.stop_reason: str | None = None
        self.refit: dict[str, Any] | None = None  # what the refit did, once done
        self._stop_mid_epoch = False
        self.monitor = cfg.train.monitor
        self._epoch_start: float | None = None

    # ------------------------------------------------------------------ set-up
    def log(self, message: str) -> None:
        if self.verbose and dist.is_main():
            print(message, flush=True)

    def setup(self) -> None:
        tc = self.cfg.train
        self.device = dist.init_from_env()
        self.precision, note = resolve_precision(tc.precision, self.device)
        if note:
            self.log(note)
        seed_everything(tc.seed, deterministic=tc.deterministic)
        if dist.is_main():
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temporaries()
        self.data: TrainData = build_data(self.cfg.data, self.out_dir, seed=tc.seed, log=self.log)
        if tc.refit_epochs > 0 and not any(s.has_box for rs in self.data.train_sets for s in rs):
            roots = ", ".join(str(rs.root) for rs in self.data.train_sets)
            raise ConfigError(f"train.refit_epochs={tc.refit_epochs}: no training image of "
                              f"{roots} has a tumour box, so there is nothing to refit the "
                              "box head's refining stage on")
        self.model = self._build_model()
        self._build_loaders()
        self.optimizer = self._build_optimizer()
        self.scheduler = self._build_scheduler()
        self.hooks: list[Hook] = [CSVLogger(self.out_dir / "log.csv"),
                                  EarlyStopping(tc.early_stop_patience, tc.min_delta),
                                  TimeBudget(self.main_budget_s), CurvePlot(self.out_dir / "curves.png")]
        if tc.tensorboard:
            self.hooks.append(TensorBoardLogger(self.out_dir / "tensorboard"))
        self.hooks.extend(self.extra_hooks)
        self.ema = None
        if tc.ema > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema))
        if self.resume:
            self._load(self.out_dir / "last.pt")
        self.ddp_model: torch.nn.Module = self.model
        if dist.is_distributed():
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)

    OUTPUTS = ("last.pt", "best.pt", "log.csv", "curves.png", "summary.json", "split.json")

    def _remove_stale_temporaries(self) -> None:
        """Delete the temporary files (``.last.pt.XXXX.tmp``...) of an atomic write that a
        killed run left behind; the files they were meant to replace are intact."""
        for name in self.OUTPUTS:
            for tmp in self.out_dir.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)

    def _build_model(self) -> torch.nn.Module:
        from mtbrain.models import Model

        mc = self.cfg.model
        model = Model(backbone=mc.backbone, classes=self.data.classes, in_chans=mc.in_chans,
                      img_size=self.cfg.data.size, keep_ratio=self.cfg.data.keep_ratio,
                      pretrained=mc.pretrained, checkpoint_path=mc.checkpoint_path,
                      drop_rate=mc.drop_rate, drop_path_rate=mc.drop_path_rate,
                      box_head=mc.box_head, box_head_options=mc.box_head_options,
                      loss=self.cfg.loss, box_threshold=mc.box_threshold)
        self._frozen = {f"backbone.{n}"
                        for n in model.backbone.freeze_stages(self.cfg.train.freeze_stages)}
        model.to(self.device)
        if not self.cfg.train.channels_last:  # models are built channels-last
            model.to(memory_format=torch.contiguous_format)
        return model

    def _param_groups(self) -> list[dict[str, Any]]:
        tc = self.cfg.train
        backbone = [p for n, p in self.model.named_parameters() if n.startswith("backbone.")]
        heads = [p for n, p in self.model.named_parameters() if not n.startswith("backbone.")]
        return [{"params": backbone, "lr": tc.lr * tc.backbone_lr_scale, "name": "backbone"},
                {"params": heads, "lr": tc.lr, "name": "heads"}]

    def _build_optimizer(self) -> torch.optim.Optimizer:
        tc = self.cfg.train
        cls = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
        return cls(self._param_groups(), lr=tc.lr, weight_decay=tc.weight_decay)

    def _build_scheduler(self) -> Any:
        tc = self.cfg.train
        steps = len(self.train_loader)
        if tc.max_steps_per_epoch:
            steps = min(steps, tc.max_steps_per_epoch)
        if tc.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min" if self.monitor == "loss" else "max",
                factor=tc.plateau_factor, patience=tc.plateau_patience)
        if tc.scheduler == "none":
            return None
        total = max(1, steps * tc.epochs)
        warmup = int(round(tc.warmup_epochs * steps))
        by_budget = tc.schedule_to_budget and tc.max_time_s > 0
        spent_at: dict[int, float] = {}  # one clock reading per step for all param groups

        def factor(step: int) -> float:
            if by_budget and step not in spent_at:
                spent_at.clear()
                spent_at[step] = self.budget_fraction()
            return cosine_factor(step, warmup=warmup, total=total, min_ratio=tc.min_lr_ratio,
                                 spent=spent_at.get(step, 0.0))

        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    @property
    def main_budget_s(self) -> float:
        """Seconds of the main phase: ``max_time_s`` less the refit's ``refit_time_s``
        (0: no limit)."""
        tc = self.cfg.train
        return max(0.0, tc.max_time_s - tc.refit_time_s) if tc.max_time_s > 0 else 0.0

    def budget_fraction(self) -> float:
        """Share of the main phase's time budget (:attr:`main_budget_s`) spent so far
        (training and validation), the same on every rank (their mean), in [0, 1]."""
        max_time = self.main_budget_s
        if max_time <= 0:
            return 0.0
        now = self.elapsed_s
        if self._epoch_start is not None:
            now += time.monotonic() - self._epoch_start
        return min(1.0, dist.mean_over_ranks(now / max_time))

    def _build_loaders(self) -> None:
        dc, tc = self.cfg.data, self.cfg.train
        from mtbrain.data.dataset import collate

        workers = loader_workers(dc)
        decoders = os.cpu_count() or 1
        train_sets = [make_dataset(rs, self.data, train=True, seed=tc.seed, source=i,
                                   num_workers=decoders, log=self.log)
                      for i, rs in enumerate(self.data.train_sets)]
        weights = [e.weight for e in dc.datasets][:len(train_sets)]
        self.train_dataset = ConcatDataset(train_sets)
        self._sampler = EpochSampler([len(d) for d in train_sets],
                                     weights=weights if len(train_sets) > 1 else None,
                                     seed=tc.seed, rank=dist.rank(), world=dist.world_size())
        # Workers are forked anew each epoch (not persistent) so that they see the epoch
        # set on the datasets: augmentation is a function of (seed, epoch, index).
        loader_kw: dict[str, Any] = {"num_workers": workers, "collate_fn": collate}
        self.train_loader = DataLoader(self.train_dataset, batch_size=tc.batch_size,
                                       sampler=self._sampler,
                                       drop_last=len(self._sampler) > tc.batch_size, **loader_kw)
        self.train_sets = train_sets
        self.val_dataset = make_dataset(self.data.val, self.data, train=False, seed=tc.seed,
                                        num_workers=decoders, log=self.log)
        val_sampler = EpochSampler([len(self.val_dataset)], shuffle=False,
                                   rank=dist.rank(), world=dist.world_size())
        self.val_loader = DataLoader(self.val_dataset, batch_size=tc.batch_size,
                                     sampler=val_sampler, **loader_kw)
        self._val_sampler = val_sampler

    # ------------------------------------------------------------------ loop
    def request_stop(self, reason: str, *, mid_epoch: bool = False) -> None:
        """Ask the loop to stop (after this step with ``mid_epoch``, else after the epoch)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop_mid_epoch = self._stop_mid_epoch or mid_epoch

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _set_backbone_trainable(self, epoch: int) -> None:
        frozen = epoch < self.cfg.train.freeze_backbone_epochs
        for name, p in self.model.named_parameters():
            if name.startswith("backbone."):
                p.requires_grad_(not frozen and name not in self._frozen)

    def train(self) -> dict[str, Any]:
        """Run the whole training; returns the summary written to ``summary.json``."""
        if not hasattr(self, "model"):
            self.setup()
        tc = self.cfg.train
        for hook in self.hooks:
            hook.before_train(self)
        if self.epoch >= tc.epochs:
            self.log(f"nothing to do: {self.epoch} of {tc.epochs} epochs already done")
        try:
            while self.epoch < tc.epochs and not self._should_stop():
                start = self._epoch_start = time.monotonic()
                train_stats = self.train_one_epoch(self.epoch)
                val = self.validate() if self._validate_now() else {}
                self.elapsed_s += time.monotonic() - start
                self._epoch_start = None
                self._end_epoch(train_stats, val)
            if tc.refit_epochs > 0 and self.refit is None and self.history:
                self._refit()
        finally:
            for hook in self.hooks:
                hook.after_train(self)
        summary = self._summary()
        if dist.is_main():
            write_json(self.out_dir / "summary.json", summary)
        dist.barrier()
        return summary

    def _validate_now(self) -> bool:
        """Validate after this epoch? Every ``val_every``-th (none with 0), the last, and
        before a stop."""
        done, every = self.epoch + 1, self.cfg.train.val_every
        return ((every > 0 and done % every == 0) or done >= self.cfg.train.epochs
                or self._should_stop())

    def _should_stop(self) -> bool:
        flag = 1.0 if self.stop_reason else 0.0
        return dist.mean_over_ranks(flag) > 0

    def _should_stop_mid_epoch(self) -> bool:
        # Collective on every rank and every step under torchrun: a stop asked on one rank
        # only (the time budget runs on each rank's own clock) must stop all of them after
        # the same step, or the rank that asked waits in an all_reduce the others never join.
        if not dist.is_distributed():
            return self._stop_mid_epoch
        return dist.mean_over_ranks(1.0 if self._stop_mid_epoch else 0.0) > 0

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        tc = self.cfg.train
        self.ddp_model.train()
        self._set_backbone_trainable(epoch)
        self._sampler.set_epoch(epoch)
        for ds in self.train_sets:
            ds.set_epoch(epoch)
        totals: dict[str, float] = {}
        n = 0
        steps = len(self.train_loader)
        if tc.max_steps_per_epoch:
            steps = min(steps, tc.max_steps_per_epoch)
        progress = None
        if self.verbose and dist.is_main():
            from tqdm import tqdm

            progress = tqdm(total=steps, desc=f"epoch {epoch + 1}/{tc.epochs}", leave=False,
                            disable=not sys.stderr.isatty(),
                            dynamic_ncols=True)
        for step, (images, targets) in enumerate(self.train_loader):
            if step >= steps:
                break
            images = images.to(self.device, non_blocking=True)
            if tc.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = {k: v.to(self.device, non_blocking=True) for k, v in targets.items()}
            with self._autocast():
                loss_dict = self.ddp_model(images, targets)
            loss = loss_dict["loss"]
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"non-finite loss {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                    f"({', '.join(f'{k}={v.item():.4g}' for k, v in loss_dict.items())}); "
                    "lower train.lr, enable train.grad_clip, or check the data for bad boxes")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
                self.scheduler.step()
            values = {k: float(v.detach()) for k, v in loss_dict.items()}
            for k, v in values.items():
                totals[k] = totals.get(k, 0.0) + v
            n += 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{values['loss']:.3f}")
            for hook in self.hooks:
                hook.after_step(self, values)
            if self._should_stop_mid_epoch():
                break
        if progress is not None:
            progress.close()
        return {f"train_{k}": dist.mean_over_ranks(v / max(1, n)) for k, v in totals.items()}

    @torch.no_grad()
    def predict_loader(self, model: torch.nn.Module, loader: DataLoader) -> dict[str, Any]:
        """Predictions of ``model`` over a loader, gathered from every rank (in order).

        Returns ``probs`` (N, C), ``boxes`` (N, 4) xyxy pixels of the network input,
        ``box_score`` (N,) in dataset order, and the mean validation ``loss``.
        """
        model.eval()
        rows: list[tuple[int, list[float], list[float], float]] = []
        losses = []
        for images, targets in loader:
            images = images.to(self.device)
            if self.cfg.train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets_d = {k: v.to(self.device) for k, v in targets.items()}
            with self._autocast():
                out = model(images, targets_d, tta_flip=self.cfg.train.tta_flip)
            losses.append(float(out["loss"]))
            probs = out["logits"].float().softmax(1).cpu().numpy()
            boxes = out["boxes"].float().cpu().numpy()
            scores = out["box_score"].float().cpu().numpy()
            for i, idx in enumerate(targets["index"].tolist()):
                rows.append((idx, probs[i].tolist(), boxes[i].tolist(), float(scores[i])))
        gathered = [r for part in dist.all_gather_objects(rows) for r in part]
        seen: dict[int, tuple[list[float], list[float], float]] = {}
        for idx, p, b, sc in gathered:
            seen.setdefault(idx, (p, b, sc))
        order = sorted(seen)
        loss = dist.mean_over_ranks(float(np.mean(losses)) if losses else 0.0)
        return {"probs": np.asarray([seen[i][0] for i in order], dtype=np.float64),
                "boxes": np.asarray([seen[i][1] for i in order], dtype=np.float64).reshape(-1, 4),
                "box_score": np.asarray([seen[i][2] for i in order], dtype=np.float64),
                "loss": loss}

    def validate(self) -> dict[str, Any]:
        model = self.ema.module if self.ema is not None else self.model
        result = self.predict_loader(model, self.val_loader)
        records = self.val_dataset.samples
        classes = self.data.classes
        size, keep = self.cfg.data.size, self.cfg.data.keep_ratio
        y_pred = result["probs"].argmax(1).tolist()
        boxes = [Letterbox.fit(s.width, s.height, size, keep_ratio=keep)
                 .inverse(result["boxes"][i]).reshape(4)
                 if self.model.keeps_box(classes[y_pred[i]], result["box_score"][i]) else None
                 for i, s in enumerate(records)]
        y_true = [classes.index(s.label) if s.label is not None else -1 for s in records]
        cls_m = classification_metrics(y_true, y_pred, classes)
        loc_m = localization_metrics(boxes, [s.boxes for s in records])
        out = {"accuracy": cls_m["accuracy"], "macro_f1": cls_m["macro_f1"],
               "mean_iou": loc_m["mean_iou"], "iou50_rate": loc_m["iou50_rate"],
               "loss": result["loss"]}
        parts = [v for v in (out["macro_f1"], out["mean_iou"]) if v is not None]
        out["score"] = float(np.mean(parts)) if parts else None
        return out

    @staticmethod
    def _shown(record: dict[str, Any]) -> str:
        """A log row's values for the log line, `` *`` when it improved on the best."""
        shown = ", ".join(f"{k}={v:.4f}" for k, v in record.items()
                          if isinstance(v, float) and k not in ("lr", "elapsed_s"))
        return shown + (" *" if record.get("improved") else "")

    def _improves(self, value: float | None) -> bool:
        """Whether a validation value of the monitor beats the best so far."""
        if value is None:
            return False
        sign = -1.0 if self.monitor == "loss" else 1.0
        return self.best_value is None or sign * (value - self.best_value) > self.cfg.train.min_delta

    def _refit(self) -> None:
        """Refit the refining stage on cached features, validate, save (module doc, 3.)."""
        from mtbrain.data.dataset import MRIDataset
        from mtbrain.engine.refit import cache_roi_maps, refit_refiner

        tc = self.cfg.train
        model = self.ema.module if self.ema is not None else self.model
        start = time.monotonic()
        datasets = []  # the train sets' box images, un-augmented, from their decoded caches
        for ds in self.train_sets:
            boxed = [s for s in ds.samples if s.has_box]
            if boxed:
                datasets.append(MRIDataset(boxed, ds.classes, size=ds.size,
                                           keep_ratio=ds.keep_ratio, cache=ds.cache,
                                           boxes_known=True))
        cache = cache_roi_maps(model, datasets, batch_size=tc.batch_size, device=self.device,
                               channels_last=tc.channels_last, autocast=self._autocast())
        cached_s = time.monotonic() - start
        losses = refit_refiner(model, cache, epochs=tc.refit_epochs, lr=tc.refit_lr,
                               weight_decay=tc.weight_decay, batch_size=tc.batch_size,
                               seed=tc.seed, device=self.device)
        n_images = len(cache)
        del cache
        if dist.is_distributed():  # every rank refits alike; rank 0's weights are the ones
            state = dist.broadcast_object({k: v.cpu() for k, v in
                                           model.box_head.roi_head.state_dict().items()})
            model.box_head.roi_head.load_state_dict(state)
        if model is not self.model:  # EMA: last.pt (self.model) carries the refit too
            self.model.box_head.roi_head.load_state_dict(model.box_head.roi_head.state_dict())
        fitted_s = time.monotonic() - start - cached_s
        val = self.validate()
        seconds = time.monotonic() - start
        self.elapsed_s += seconds
        self.refit = {"images": n_images, "epochs": tc.refit_epochs,
                      "cache_s": round(cached_s, 2), "fit_s": round(fitted_s, 2),
                      "total_s": round(seconds, 2)}
        improved = self._improves(val.get(self.monitor))
        record: dict[str, Any] = {"epoch": self.epoch, "phase": "refit", "lr": tc.refit_lr,
                                  **{f"train_loss_{k}": v for k, v in losses.items()},
                                  **{f"val_{k}": v for k, v in val.items()},
                                  "improved": improved, "elapsed_s": round(self.elapsed_s, 2)}
        if improved:
            self.best_value, self.best_epoch = val.get(self.monitor), self.epoch
        self.history.append(record)
        for hook in self.hooks:
            hook.after_epoch(self, record)
        self._save(best=improved)
        self.log(f"refit of the refining stage ({n_images} images cached in {cached_s:.0f} s, "
                 f"{tc.refit_epochs} epochs in {fitted_s:.0f} s): {self._shown(record)}")

    def _end_epoch(self, train_stats: dict[str, float], val: dict[str, Any]) -> None:
        tc = self.cfg.train
        value = val.get(self.monitor)
        improved = self._improves(value)
        record: dict[str, Any] = {"epoch": self.epoch + 1,
                                  "lr": self.optimizer.param_groups[-1]["lr"], **train_stats}
        record.update({f"val_{k}": v for k, v in val.items()})
        record["improved"] = improved
        record["elapsed_s"] = round(self.elapsed_s, 2)
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and value is not None:
            self.scheduler.step(value)
        if improved:
            self.best_value, self.best_epoch = value, self.epoch + 1
        self.history.append(record)
        self.epoch += 1
        for hook in self.hooks:
            hook.after_epoch(self, record)
        self._save(best=improved)
        self.log(f"epoch {self.epoch}/{tc.epochs}: {self._shown(record)}")
        if self.stop_reason:
            self.log(f"stopping: {self.stop_reason}")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything ``--resume`` needs, in a form ``torch.load(weights_only=True)`` reads."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch,
            "elapsed_s": self.elapsed_s,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "stop_reason": self.stop_reason,
            "refit": self.refit,
            "history": self.history,
            "hooks": {type(h).__name__: h.state_dict() for h in self.hooks},
            "rng": rng_state(),
        }

    def _save(self, *, best: bool) -> None:
        if not dist.is_main():
            return
        config = to_dict(self.cfg)
        # best.pt first: last.pt is the commit point of an epoch. A run killed between the
        # two writes resumes from the previous last.pt and redoes this epoch, which writes
        # best.pt again; the other order would leave a last.pt whose best_epoch has no
        # best.pt (and resume never writes it).
        if best:
            model = self.ema.module if self.ema is not None else self.model
            save_training_checkpoint(self.out_dir / "best.pt", model, trainer_state=None,
                                     train_config=config)
        save_training_checkpoint(self.out_dir / "last.pt", self.model, trainer_state=self.state_dict(),
                                 train_config=config)

    def _load(self, path: Path) -> None:
        state = load_training_checkpoint(path, self.model)
        ts = state["trainer_state"]
        if ts is None:
            raise FileNotFoundError(f"{path}: holds no trainer state (a best/exported model?); "
                                    "resume needs last.pt")
        self.optimizer.load_state_dict(ts["optimizer"])
        if self.scheduler is not None and ts["scheduler"] is not None:
            self.scheduler.load_state_dict(ts["scheduler"])
        if self.ema is not None and ts.get("ema") is not None:
            self.ema.load_state_dict(ts["ema"])
        self.epoch = int(ts["epoch"])
        self.elapsed_s = float(ts["elapsed_s"])
        self.best_value, self.best_epoch = ts["best_value"], ts["best_epoch"]
        self.history = list(ts["history"])
        for hook in self.hooks:
            hook.load_state_dict(ts["hooks"].get(type(hook).__name__, {}))
        set_rng_state(ts["rng"])
        self.refit = ts.get("refit")
        # A run whose refit is done is finished, and one stopped before a pending refit
        # (killed during it) goes straight to it; else training goes on where it stopped.
        keep = self.refit is not None or self.cfg.train.refit_epochs > 0
        self.stop_reason = ts["stop_reason"] if keep else None
        self.log(f"resumed from {path} after epoch {self.epoch}")

    def _summary(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {"epochs_done": self.epoch, "best_epoch": self.best_epoch,
                "monitor": self.monitor, "best_value": self.best_value,
                "stop_reason": self.stop_reason, "elapsed_s": round(self.elapsed_s, 2),
                "refit": self.refit,
                "precision": self.precision, "last": last, "classes": self.data.classes,
                "n_train": [len(s) for s in self.data.train_sets], "n_val": len(self.data.val)}
