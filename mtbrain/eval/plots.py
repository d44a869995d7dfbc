"""Plots people expect: training curves, ROC curves, reliability diagram, and image grids
of the most confident mistakes and of explanation heat maps. Written atomically as PNG.

Colours come from the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies); curves also differ in line style so that they stay apart in grey print.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtbrain.io import atomic_write

OKABE_ITO: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00",
                              "#56B4E9", "#F0E442", "#000000")
"""Okabe-Ito colours, strongest contrast on white first (yellow late)."""

LINE_STYLES: tuple[str, ...] = ("-", "--", "-.", ":")


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


TRAIN_CURVES: tuple[tuple[str, str], ...] = (("train_loss", "train loss"),
                                             ("val_loss", "validation loss"))
"""Keys of the loss panel of :func:`plot_training_curves` and their legend names."""

VAL_CURVES: tuple[tuple[str, str], ...] = (
    ("val_accuracy", "accuracy"), ("val_macro_f1", "macro F1"),
    ("val_mean_iou", "mean IoU"), ("val_iou50_rate", "IoU>=0.5 rate"))
"""Keys of the validation panel of :func:`plot_training_curves` and their legend names."""

MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P")


def _curve_panel(ax: Any, history: Sequence[dict[str, Any]],
                 curves: Sequence[tuple[str, str]]) -> None:
    """One line per key that has a value somewhere: Okabe-Ito colour, own style and marker."""
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    for k, (key, name) in enumerate(curves):
        values = [row.get(key) for row in history]
        values = [float(v) if v not in (None, "") else float("nan") for v in values]
        if all(v != v for v in values):  # all NaN: not logged
            continue
        ax.plot(epochs, values, color=OKABE_ITO[k % len(OKABE_ITO)],
                linestyle=LINE_STYLES[k % len(LINE_STYLES)], marker=MARKERS[k % len(MARKERS)],
                markersize=5, linewidth=2, label=name)
    ax.set_xlabel("epoch", fontsize=11)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=10,
                  frameon=False)


def plot_training_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Loss (train/val) and validation metrics per epoch, from the trainer's history (the
    rows of ``log.csv``; :func:`read_training_log` reads that file back)."""
    plt = _pyplot()
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4.4))
    _curve_panel(ax_loss, history, TRAIN_CURVES)
    ax_loss.set_ylabel("loss", fontsize=11)
    ax_loss.set_title("Loss")
    _curve_panel(ax_metric, history, VAL_CURVES)
    ax_metric.set_ylim(0, 1.02)
    ax_metric.set_title("Validation")
    fig.tight_layout()
    return save_figure(fig, path)


def read_training_log(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a trainer's ``log.csv`` (numbers as floats, ``epoch`` as int).

    Raises:
        DataError: naming the file when it is missing, empty or has no ``epoch`` column.
    """
    import csv

    from mtbrain.errors import DataError

    file = Path(path)
    try:
        with open(file, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise DataError("training log not found", path=file) from None
    if not rows or "epoch" not in rows[0]:
        raise DataError("not a training log: no rows with an 'epoch' column", path=file)

    def number(text: str | None) -> Any:
        if text in (None, ""):
            return None
        try:
            return float(text)
        except ValueError:
            return text

    out = []
    for line, row in enumerate(rows, start=2):
        try:
            epoch = int(float(row["epoch"]))
        except (TypeError, ValueError):
            raise DataError(f"epoch {row['epoch']!r} is not a number", path=file,
                            line=line) from None
        out.append({**{k: number(v) for k, v in row.items()}, "epoch": epoch})
    return out


def _no_data(ax: Any, text: str) -> None:
    """An empty axis that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11)


def plot_roc(metrics: dict[str, Any], path: str | Path) -> Path:
    """One-vs-rest ROC curve per class from ``metrics["roc_curves"]``, chance diagonal.

    Args:
        metrics: :func:`~mtbrain.eval.evaluate.score_predictions` output (or any dict with
            ``roc_curves``: ``{class: {"fpr", "tpr", "auc"}}``; optional ``macro_auc``).
        path: Where the PNG goes.

    Returns:
        ``path``. Without curves (no probabilities) the figure says so.
    """
    plt = _pyplot()
    curves = metrics.get("roc_curves") or {}
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    ax.plot([0, 1], [0, 1], color="#888888", linestyle=":", linewidth=1, label="chance")
    for k, (name, curve) in enumerate(curves.items()):
        ax.plot(curve["fpr"], curve["tpr"], color=OKABE_ITO[k % len(OKABE_ITO)],
                linestyle=LINE_STYLES[k % len(LINE_STYLES)],
                linewidth=2, label=f"{name} (AUC {curve['auc']:.3f})")
    if not curves:
        _no_data(ax, "no probabilities: no ROC curves")
    macro = metrics.get("macro_auc")
    ax.set_title("ROC, one class vs rest" + (f" (macro AUC {macro:.3f})" if macro else ""))
    ax.set_xlabel("false positive rate (1 - specificity)", fontsize=11)
    ax.set_ylabel("true positive rate (sensitivity)", fontsize=11)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9 if len(curves) <= 8 else 6)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_reliability(metrics: dict[str, Any], path: str | Path) -> Path:
    """Reliability diagram from ``metrics["reliability"]``: accuracy per confidence bin
    against the diagonal of perfect calibration, with the bin counts underneath.

    Args:
        metrics: :func:`~mtbrain.eval.evaluate.score_predictions` output (or any dict with
            ``reliability``: bins ``{"lower", "upper", "count", "confidence", "accuracy"}``;
            optional ``ece``).
        path: Where the PNG goes.

    Returns:
        ``path``. Without bins (no probabilities) the figure says so.
    """
    plt = _pyplot()
    bins = metrics.get("reliability") or []
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(5.6, 6.4), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="#888888", linestyle=":", linewidth=1.5,
            label="perfect calibration")
    full = [b for b in bins if b["count"]]
    lefts = [b["lower"] for b in full]
    widths = [b["upper"] - b["lower"] for b in full]
    ax.bar(lefts, [b["accuracy"] for b in full], width=widths, align="edge",
           color=OKABE_ITO[0], edgecolor="white", label="accuracy in bin")
    ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o",
            color=OKABE_ITO[1], markeredgecolor="black",
            label="bin: (mean confidence, accuracy)")
    if not bins:
        _no_data(ax, "no probabilities: no reliability diagram")
    ece = metrics.get("ece")
    ax.set_title("Reliability diagram" + (f" (ECE {ece:.3f})" if ece is not None else ""))
    ax.set_ylabel("accuracy", fontsize=11)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    bars = ax_n.bar(lefts, [b["count"] for b in full], width=widths, align="edge",
                    color=OKABE_ITO[2], edgecolor="white")
    ax_n.bar_label(bars, fontsize=8)
    ax_n.set_ylabel("images", fontsize=11)
    ax_n.set_xlabel("confidence (largest probability)", fontsize=11)
    ax_n.margins(y=0.3)
    fig.tight_layout()
    # the legend goes under the figure: bars can stand anywhere in the diagram
    fig.legend(*ax.get_legend_handles_labels(), loc="upper center", fontsize=9, ncol=2,
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    return save_figure(fig, path)


def plot_critical_difference(names: Sequence[str], ranks: Sequence[float],
                             groups: Sequence[Sequence[str]], path: str | Path, *,
                             title: str, note: str = "") -> Path:
    """A critical-difference diagram (Demšar, 2006) of average ranks over folds.

    The axis runs from rank 1 (best, left) to rank ``k``; each model hangs from its average
    rank, the better half labelled on the left, the other half on the right. Thick bars
    join the models that no test finds different (``groups``, e.g. from
    :func:`mtbrain.eval.stats.different_groups`).

    Args:
        names: Model names.
        ranks: Their average ranks (1 = best).
        groups: Runs of models not significantly different (two or more names each).
        path: Where the PNG goes.
        title: Title (the metric and the omnibus test).
        note: A line under the diagram (which post-hoc test the bars come from).
    """
    plt = _pyplot()
    k = len(names)
    order = sorted(range(k), key=lambda i: (ranks[i], i))
    hi = max(k, 2)
    n_left = (k + 1) // 2
    rows = max(n_left, k - n_left)
    bar_y = [-0.22 - 0.14 * g for g in range(len(groups))]
    first_row = (bar_y[-1] if bar_y else 0.0) - 0.3
    row_step = 0.34
    bottom = first_row - row_step * (rows - 1) - 0.25
    fig, ax = plt.subplots(figsize=(8.5, 1.3 + 0.55 * (-bottom)))
    ax.hlines(0, 1, hi, color="black", linewidth=1.5)
    for t in range(1, hi + 1):
        ax.vlines(t, 0, 0.12, color="black", linewidth=1.5)
        ax.text(t, 0.18, str(t), ha="center", va="bottom", fontsize=12)
        if t < hi:
            ax.vlines(t + 0.5, 0, 0.06, color="black", linewidth=1)
    ax.text((1 + hi) / 2, 0.55, "average rank (1 = best)", ha="center", va="bottom",
            fontsize=11)
    span = hi - 1
    for pos, i in enumerate(order):
        x = float(ranks[i])
        colour = OKABE_ITO[pos % len(OKABE_ITO)] if k <= len(OKABE_ITO) else "black"
        if pos < n_left:
            y, end, ha = first_row - row_step * pos, 1 - 0.12 * span, "right"
        else:
            y, end, ha = first_row - row_step * (k - 1 - pos), hi + 0.12 * span, "left"
        ax.plot([x, x, end], [0, y, y], color=colour, linewidth=1.6)
        ax.plot([x], [0], "o", color=colour, markersize=5)
        ax.text(end + (-0.04 if ha == "right" else 0.04) * span, y, f"{names[i]}  ({x:.2f})"
                if ha == "left" else f"({x:.2f})  {names[i]}", ha=ha, va="center",
                fontsize=12)
    for g, members in zip(bar_y, groups, strict=False):
        xs = [float(ranks[names.index(m)]) for m in members]
        ax.hlines(g, min(xs) - 0.03 * span, max(xs) + 0.03 * span, color="black",
                  linewidth=5)
    ax.set_xlim(1 - 0.45 * span, hi + 0.45 * span)
    ax.set_ylim(bottom, 0.95)
    ax.axis("off")
    ax.set_title(title, fontsize=12)
    if note:
        fig.text(0.5, 0.0, note, ha="center", va="top", fontsize=9.5, wrap=True)
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------- image grids


def confident_mistakes(samples: Sequence[Any], predictions: Sequence[dict[str, Any]],
                       *, n: int | None = None) -> list[tuple[Any, float]]:
    """Wrong-class predictions of readable images, most confident first.

    Args:
        samples: The samples (:class:`~mtbrain.data.records.Sample`), matched to the
            records by ``rel == image``.
        predictions: Predictions records (CONTRACT.md format).
        n: Keep the first ``n`` (default: all).

    Returns:
        ``(sample, probability of the predicted class)`` pairs; ties by name. Samples
        without a true label and error records are left out.
    """
    by_image = {str(p.get("image")): p for p in predictions}
    found = []
    for s in samples:
        p = by_image.get(s.rel)
        if p is None or p.get("error") is not None or s.label is None:
            continue
        if p.get("label") != s.label:
            probs = p.get("probs") if isinstance(p.get("probs"), dict) else {}
            conf = probs.get(p.get("label"))
            found.append((s, float(conf) if isinstance(conf, int | float) else float("nan")))
    found.sort(key=lambda item: (-item[1] if item[1] == item[1] else 1.0, item[0].rel))
    return found if n is None else found[:n]


def _save_png(image: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def plot_confident_mistakes(samples: Sequence[Any], predictions: Sequence[dict[str, Any]],
                            path: str | Path, *, n: int = 9, tile: int = 256) -> Path | None:
    """A grid of the ``n`` most confident wrong-class predictions (:func:`confident_mistakes`)
    with their true and predicted boxes (:func:`mtbrain.viz.draw.grid`), as a PNG.

    Returns ``path``, or None (and nothing written) when no prediction has a wrong class.
    """
    from mtbrain.viz.draw import grid

    mistakes = confident_mistakes(samples, predictions, n=n)
    if not mistakes:
        return None
    total = len(confident_mistakes(samples, predictions))
    title = (f"The {len(mistakes)} most confident wrong-class predictions (of {total}), "
             "most confident first")
    image = grid([s for s, _ in mistakes], predictions=predictions, n=len(mistakes),
                 keep_order=True, tile=tile, title=title)
    return _save_png(image, path)


def _share(value: float | None) -> str:
    """A share for a caption: 2 decimals, 3 below 0.1 (tumour boxes are often < 1 %)."""
    if value is None:
        return "n/a"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def plot_explanations(samples: Sequence[Any], predictions: Sequence[dict[str, Any]] | None,
                      rows: Sequence[Any], summary: dict[str, Any], path: str | Path, *,
                      n: int = 9, tile: int = 256) -> Path | None:
    """A grid of explanation heat maps over their images with the true and predicted boxes.

    Args:
        samples: The samples explained (matched to ``rows`` by ``rel``).
        predictions: Predictions records, to draw the predicted boxes (or None).
        rows: :class:`~mtbrain.explain.agreement.ImageAgreement` rows; those with a kept
            ``heatmap`` are drawn, the first ``n`` of them, in order.
        summary: The :func:`~mtbrain.explain.agreement.summarize` dict (for the title).
        path: Where the PNG goes.
        n: Most tiles.
        tile: Side of each tile in pixels.

    Returns:
        ``path``, or None (nothing written) when no row has a heat map.
    """
    from mtbrain.viz.draw import grid

    shown = [r for r in rows if r.heatmap is not None][:n]
    if not shown:
        return None
    by_rel = {s.rel: s for s in samples}
    name = summary.get("method_name", summary.get("method", "explanation"))
    title = (f"{name} of the {summary.get('target', 'true class')}, {len(shown)} of "
             f"{summary.get('n_images')} images: pointing game "
             f"{_share(summary.get('pointing_game'))}, energy in box "
             f"{_share(summary.get('energy_inside'))} (chance: box area "
             f"{_share(summary.get('box_area_share'))})")
    notes = {r.rel: f"peak {'in' if r.hit else 'outside'} box; energy {_share(r.energy)} "
                    f"(area {_share(r.area_share)})" for r in shown}
    image = grid([by_rel[r.rel] for r in shown], predictions=predictions, n=len(shown),
                 keep_order=True, tile=tile, title=title,
                 heatmaps={r.rel: r.heatmap for r in shown},
                 heatmap_legend=f"{name} heat map: low (dark) to high (bright)", notes=notes)
    return _save_png(image, path)
