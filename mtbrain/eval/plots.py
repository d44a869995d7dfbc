"""Plots people expect: training curves (more in later modules). Written atomically as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtbrain.io import atomic_write


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically as PNG and close it."""
    plt = _pyplot()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi,
                                                          bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_training_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Loss (train/val) and validation metrics per epoch, from the trainer's history."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, style in (("train_loss", "-o"), ("val_loss", "--s")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            ax_loss.plot(epochs, values, style, label=key.replace("_", " "), markersize=4)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    markers = {"val_accuracy": "o", "val_macro_f1": "s", "val_mean_iou": "^", "val_iou50_rate": "d"}
    for key, marker in markers.items():
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            ax_metric.plot(epochs, values, marker=marker, label=key[4:].replace("_", " "),
                           markersize=4)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylim(0, 1.02)
    ax_metric.set_title("Validation")
    ax_metric.grid(alpha=0.3)
    ax_metric.legend(loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)
