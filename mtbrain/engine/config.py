"""The training configuration schema (``configs/*.yaml``).

Every key, its type, default and meaning is here; ``mtbrain train --set a.b=c`` overrides
any of them and an unknown key is an error naming it. The docs' configuration reference is
generated from these dataclasses (:func:`mtbrain.config.describe`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtbrain.config import apply_overrides, from_dict, read_yaml, to_dict
from mtbrain.data.transforms import AugmentConfig
from mtbrain.errors import ConfigError
from mtbrain.models.heads import check_box_head
from mtbrain.models.losses import LossConfig


@dataclass
class DatasetEntry:
    """One data set to train on.

    Attributes:
        path: A folder in any supported layout, a COCO json, a split file (``split.json``),
            or ``synthetic`` for the built-in generated set.
        layout: Reader name; ``null`` autodetects.
        weight: Sampling weight: the share of each batch drawn from this set is
            proportional to it (within the first set's epoch length).
        policy: Label policy options (:class:`mtbrain.data.policy.LabelPolicy`).
    """

    path: str = "synthetic"
    layout: str | None = None
    weight: float = 1.0
    policy: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Data sets, split, input size, cache and augmentation.

    Attributes:
        datasets: The data sets. The first one is the box-annotated set that is split into
            train/val/test; further ones are mixed into training only (classification-only
            sets train the classifier through the masked loss).
        split: A split file (from ``mtbrain split``) for the first data set. ``null``: a
            leak-free split is made with ``val_fraction``/``test_fraction`` and saved as
            ``split.json`` in the output folder.
        val_fraction: Share of the first set held out for validation when no split is given.
        test_fraction: Share held out for the final test when no split is given.
        drop_leaks: Remove from mixed-in sets every image that duplicates (exactly or
            nearly) a validation or test image of the first set.
        size: Network input size in pixels (square).
        keep_ratio: Letterbox (keep the aspect ratio and pad) instead of stretching.
        cache: Decoded-image cache: ``memory``, ``disk`` (memory-mapped file), or ``none``.
        num_workers: DataLoader worker processes. ``null``: none with a cache (augmenting
            decoded images costs little next to the model's step, and extra processes only
            compete for the cores: 2x slower on a 2-core machine), else ``min(4, CPUs)``.
            Decoding into the cache always uses every CPU.
        synthetic_per_class: Images per class of the built-in synthetic set.
        augment: Training augmentation.
    """

    datasets: list[DatasetEntry] = field(default_factory=lambda: [DatasetEntry()])
    split: str | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    drop_leaks: bool = True
    size: int = 256
    keep_ratio: bool = True
    cache: Literal["memory", "disk", "none"] = "memory"
    num_workers: int | None = None
    synthetic_per_class: int = 150
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelSection:
    """The model (:class:`mtbrain.Model`).

    Attributes:
        backbone: Any timm model name.
        pretrained: Load ImageNet weights (offline for tf_efficientnet_lite0/1/2).
        checkpoint_path: A local weights file for the backbone (or an mtbrain checkpoint).
        in_chans: Input channels (1: grayscale; 3: grey replicated).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth of the backbone.
        box_head: ``dense`` (centre-based, on spatial features), ``pooled``, or ``none``
            (a classification-only model: no box head, no box loss, no boxes predicted).
        box_head_options: Options of the box head (see :mod:`mtbrain.models.heads`).
        box_threshold: Below this box confidence a prediction has no box.
    """

    backbone: str = "tf_efficientnet_lite0"
    pretrained: bool = True
    checkpoint_path: str | None = None
    in_chans: int = 1
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    box_head: str = "dense"
    box_head_options: dict[str, Any] = field(default_factory=dict)
    box_threshold: float = 0.1


@dataclass
class TrainSection:
    """Optimisation, schedule, stopping, precision and logging.

    Attributes:
        epochs: Maximum number of epochs.
        batch_size: Images per batch (per process under torchrun).
        optimizer: ``adamw`` or ``adam``.
        lr: Peak learning rate.
        weight_decay: Weight decay (decoupled for AdamW).
        backbone_lr_scale: Learning rate of the backbone relative to the heads.
        scheduler: ``cosine`` (with linear warm-up), ``plateau`` (reduce on plateau of the
            monitored value) or ``none``.
        warmup_epochs: Linear warm-up length (cosine), in epochs (may be fractional).
        min_lr_ratio: Final learning rate of the cosine schedule relative to ``lr``.
        plateau_factor: Factor of the plateau scheduler.
        plateau_patience: Epochs without improvement before the plateau scheduler acts.
        monitor: Validation value that picks ``best.pt`` and drives early stopping:
            ``score`` (mean of macro-F1 and mean IoU), ``accuracy``, ``macro_f1``,
            ``mean_iou`` or ``loss``.
        early_stop_patience: Stop after this many epochs without improvement (0: never).
        min_delta: Smallest change of the monitored value that counts as improvement.
        freeze_backbone_epochs: Train only the heads for the first N epochs.
        freeze_stages: Keep the backbone's stem and its first N stages frozen for the
            whole run (timm's stage grouping; 0: train everything). The backward pass
            then stops above them: ImageNet's low-level filters serve MRI well, and a
            training step of Lite0 at 256 px costs about half with 2 (fp32, 2 cores).
        grad_clip: Clip the gradient norm to this value (0: off).
        precision: ``fp32``, ``bf16`` (autocast) or ``auto``: bf16 where the device
            computes it natively (CPUs with AVX-512 BF16 or AMX, bf16-capable GPUs), fp32
            elsewhere, where bf16 is emulated and slower (:mod:`mtbrain.engine.precision`).
            The choice is logged and recorded in ``summary.json``. Measure a machine with
            ``benchmarks/trainer_efficiency.py``.
        channels_last: Use the channels-last memory format (about 1.8x faster on CPU).
        max_time_s: Stop training after this many seconds (0: no limit); the run still
            validates, saves and logs cleanly.
        schedule_to_budget: With ``max_time_s`` and the cosine scheduler, run the cosine on
            the larger of step progress and the share of the time budget spent, so that the
            learning rate reaches its minimum when the budget ends (``epochs`` is then a
            cap). The schedule then depends on the machine's speed: a resumed or repeated
            run is no longer step-for-step identical.
        max_steps_per_epoch: Cap on the steps of one epoch (0: the whole set).
        seed: Seed of every random choice (data order, augmentation, initialisation).
        deterministic: Ask PyTorch for deterministic algorithms.
        ema: Keep an exponential moving average of the weights (decay), 0 to disable.
        tta_flip: Validate with horizontal-flip test-time augmentation.
        val_every: Validate every N epochs, and always after the last one (also when the
            time budget or early stopping ends the run); 0: only after the last one.
            Epochs without validation log no validation values, cannot become ``best.pt`` and do not count for early
            stopping or the plateau scheduler. With ``schedule_to_budget`` the last epoch
            is nearly always the best, and validating less leaves more of the budget to
            training (a validation of 712 images costs about a fifth of an epoch).
        tensorboard: Also log to TensorBoard (needs the ``tensorboard`` package).
        refit_epochs: After the main phase, re-initialise the box head's refining stage
            (``box_head_options.roi_refine``) and train it alone for this many epochs on
            the frozen features of the train part's box-annotated images, cached in one
            pass (:mod:`mtbrain.engine.refit`), then validate and save again; 0: off.
        refit_lr: Peak learning rate of the refit (one-cycle AdamW).
        refit_time_s: Seconds of ``max_time_s`` kept for the refit: the main phase stops
            (and its schedule ends) at ``max_time_s - refit_time_s``.
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    backbone_lr_scale: float = 1.0
    scheduler: Literal["cosine", "plateau", "none"] = "cosine"
    warmup_epochs: float = 0.5
    min_lr_ratio: float = 0.02
    plateau_factor: float = 0.3
    plateau_patience: int = 2
    monitor: Literal["score", "accuracy", "macro_f1", "mean_iou", "loss"] = "score"
    early_stop_patience: int = 0
    min_delta: float = 0.0
    freeze_backbone_epochs: int = 0
    freeze_stages: int = 0
    grad_clip: float = 5.0
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    channels_last: bool = True
    max_time_s: float = 0.0
    schedule_to_budget: bool = False
    max_steps_per_epoch: int = 0
    seed: int = 0
    deterministic: bool = False
    ema: float = 0.0
    tta_flip: bool = False
    val_every: int = 1
    tensorboard: bool = False
    refit_epochs: int = 0
    refit_lr: float = 1e-3
    refit_time_s: float = 0.0


@dataclass
class TrainConfig:
    """A whole training run: ``data``, ``model``, ``loss`` and ``train`` sections.

    Attributes:
        data: Data sets, split, input size, cache and augmentation.
        model: The model.
        loss: Loss weights and options (:class:`mtbrain.models.losses.LossConfig`).
        train: Optimisation, schedule, stopping, precision and logging.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def loader_workers(cfg: DataConfig) -> int:
    """The DataLoader worker count of ``cfg`` (resolving ``num_workers: null``)."""
    if cfg.num_workers is not None:
        return max(0, int(cfg.num_workers))
    return 0 if cfg.cache != "none" else min(4, os.cpu_count() or 1)


def _check_refit(cfg: TrainConfig) -> None:
    tc = cfg.train
    if tc.refit_epochs < 0:
        raise ConfigError(f"train.refit_epochs={tc.refit_epochs}: must be at least 0 (0: no refit)")
    if tc.refit_epochs and not (cfg.model.box_head == "dense"
                                and cfg.model.box_head_options.get("roi_refine") is True):
        raise ConfigError("train.refit_epochs > 0 refits the refining stage of the box head: "
                          "it needs model.box_head: dense with box_head_options.roi_refine: true")
    if not tc.refit_lr > 0:
        raise ConfigError(f"train.refit_lr={tc.refit_lr}: must be > 0")
    if tc.refit_time_s < 0 or (tc.refit_time_s and tc.max_time_s <= 0):
        raise ConfigError(f"train.refit_time_s={tc.refit_time_s}: must be >= 0, and is a part "
                          "of train.max_time_s (set that too)")
    if tc.max_time_s > 0 and tc.refit_time_s >= tc.max_time_s:
        raise ConfigError(f"train.refit_time_s={tc.refit_time_s} leaves nothing of "
                          f"train.max_time_s={tc.max_time_s} to the main phase")


def load_config(path: str | Path | None = None, *, overrides: list[str] | None = None,
                data: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, apply ``--set`` overrides and ``--data`` paths, and validate.

    Args:
        path: YAML file; ``None`` starts from the defaults.
        overrides: ``key=value`` strings (``train.lr=3e-4``).
        data: Data set paths replacing ``data.datasets`` (the first is the box-annotated set,
            further ones are mixed in with weight 1).
    """
    values = read_yaml(path) if path is not None else {}
    if data:
        old = values.get("data", {}).get("datasets", []) if isinstance(values.get("data"), dict) else []
        entries = []
        for i, p in enumerate(data):
            entry = dict(old[i]) if i < len(old) and isinstance(old[i], dict) else {}
            entry["path"] = str(p)
            if i >= len(old):
                entry.pop("layout", None)
            entries.append(entry)
        values.setdefault("data", {})
        if not isinstance(values["data"], dict):
            raise ConfigError(f"{path}: 'data' must be a mapping")
        values["data"]["datasets"] = entries
    values = apply_overrides(values, overrides or [])
    try:
        cfg = from_dict(TrainConfig, values)
        if not cfg.data.datasets:
            raise ConfigError("data.datasets is empty: name at least one data set")
        if cfg.data.size < 32 or cfg.data.size % 32:
            raise ConfigError(f"data.size={cfg.data.size}: must be a multiple of 32, at least 32")
        if cfg.train.val_every < 0:
            raise ConfigError(f"train.val_every={cfg.train.val_every}: must be at least 0 "
                              "(0: validate only after the last epoch)")
        if cfg.train.freeze_stages < 0:
            raise ConfigError(f"train.freeze_stages={cfg.train.freeze_stages}: must be at least 0")
        if cfg.train.batch_size < 1:
            raise ConfigError(f"train.batch_size={cfg.train.batch_size}: must be at least 1")
        if not (0 <= cfg.data.val_fraction < 1 and 0 <= cfg.data.test_fraction < 1
                and cfg.data.val_fraction + cfg.data.test_fraction < 1):
            raise ConfigError("data.val_fraction + data.test_fraction must be in [0, 1)")
        check_box_head(cfg.model.box_head, cfg.model.box_head_options)
        _check_refit(cfg)
    except ConfigError as exc:
        if path is None:
            raise
        raise ConfigError(f"{path}{' with --set overrides' if overrides else ''}: {exc}") from None
    return cfg
