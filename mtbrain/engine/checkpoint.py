"""Training checkpoints: the model file format plus the trainer's state, in one file.

A training checkpoint is an ordinary mtbrain model checkpoint
(:mod:`mtbrain.models.checkpoint`: weights, model config, format marker, checksum; written
atomically; read with ``torch.load(..., weights_only=True)``), whose ``extra`` section
holds:

- ``trainer_state``: whatever ``--resume`` needs (optimizer, scheduler, scaler, EMA,
  epoch, early-stopping state, RNG states...), tensors and plain data only; ``None`` for
  a model-only file such as ``best.pt``.
- ``train_config_json``: the training config, as a JSON string (or absent).

So ``best.pt`` and ``last.pt`` are both loadable with :meth:`mtbrain.Model.load` (for
evaluation, prediction, export), and ``last.pt`` also resumes training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from mtbrain.errors import DataError
from mtbrain.models.checkpoint import read_checkpoint


def unwrap_model(model: nn.Module) -> nn.Module:
    """The :class:`mtbrain.Model` inside DistributedDataParallel / AveragedModel wrappers."""
    while not hasattr(model, "save") and hasattr(model, "module"):
        model = model.module  # type: ignore[assignment]
    if not hasattr(model, "save"):
        raise TypeError(
            f"expected an mtbrain Model (or a wrapper of one), got {type(model).__name__}"
        )
    return model


def save_training_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    trainer_state: Mapping[str, Any] | None = None,
    train_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write model + trainer state atomically to one verified file.

    Args:
        path: Destination (``last.pt``, ``best.pt``...).
        model: The model (DDP / EMA wrappers are unwrapped).
        trainer_state: Resume state, tensors and plain data only (checked before writing;
            NumPy scalars are converted, NumPy arrays must become tensors); ``None`` for a
            model-only file.
        train_config: The training config (JSON-serialisable), stored as a JSON string.

    Raises:
        TypeError: naming the key path of a value that cannot be stored safely.
    """
    extra: dict[str, Any] = {
        "trainer_state": dict(trainer_state) if trainer_state is not None else None
    }
    if train_config is not None:
        extra["train_config_json"] = json.dumps(dict(train_config), sort_keys=True)
    return unwrap_model(model).save(path, extra=extra)


def load_training_checkpoint(path: str | Path, model: nn.Module | None = None) -> dict[str, Any]:
    """Read a training checkpoint and (optionally) load its weights into ``model`` in place.

    Returns:
        A mapping with ``trainer_state`` (dict or ``None``), ``train_config`` (dict or
        ``None``), ``model_config`` (dict), ``meta`` (dict) and ``model``: the given model
        (weights loaded) or, when none was given, a new one built from the file.

    Raises:
        DataError: naming the file when it is missing, truncated, tampered with, foreign,
            or its weights do not fit ``model``.
    """
    ckpt = read_checkpoint(path)
    if model is None:
        from mtbrain.models.model import Model

        target: nn.Module = Model.from_checkpoint(ckpt)
    else:
        target = unwrap_model(model)
        try:
            target.load_state_dict(ckpt.state_dict, strict=True)
        except RuntimeError as exc:
            raise DataError(
                f"checkpoint weights do not fit this model: {str(exc)[:300]}", path=path
            ) from None
    train_config = None
    if "train_config_json" in ckpt.extra:
        try:
            train_config = json.loads(ckpt.extra["train_config_json"])
        except (TypeError, json.JSONDecodeError) as exc:
            raise DataError(
                f"checkpoint training config is not valid JSON: {exc}", path=path
            ) from None
    return {
        "trainer_state": ckpt.extra.get("trainer_state"),
        "train_config": train_config,
        "model_config": ckpt.config,
        "meta": ckpt.meta,
        "model": target,
    }
