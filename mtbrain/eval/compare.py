"""Side-by-side comparison of models on one split, under one training budget, one evaluator.

:func:`compare` trains each mtbrain config on the split's train part (validation on its val
part) for at most ``budget_s`` seconds, optionally the YOLO baseline under the same budget,
adds already trained checkpoints, and scores every model on the split's test part with
:func:`mtbrain.eval.evaluate.score_predictions`. Each entry's results are kept in its own
folder (``OUT/<name>/metrics.json``; its single-number metrics in
``OUT/<name>/compare-entry.json``, written last); a rerun skips finished entries and resumes
an interrupted training from its ``last.pt``, so an interrupted comparison resumes. The table goes to ``OUT/compare.json`` and ``OUT/compare.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtbrain.errors import ConfigError
from mtbrain.io import write_json, write_text

COLUMNS = ("accuracy", "macro_f1", "macro_f2", "mean_iou", "iou50_rate", "map50", "map50_95",
           "params_m", "train_s", "ms_per_image")


def _evaluate_checkpoint(ckpt: Path, split: Path, out: Path) -> dict[str, Any]:
    from mtbrain.data import load_dataset
    from mtbrain.eval.evaluate import evaluate
    from mtbrain.models import Model
    from mtbrain.models.backbones import count_parameters

    model = Model.load(ckpt)
    test = load_dataset(f"{split}:test")
    metrics = evaluate(model, test, out)
    metrics["ms_per_image"] = 1000 * metrics["predict_s"] / max(1, len(test))
    metrics["params_m"] = count_parameters(model) / 1e6
    return metrics


def _train_config(config: Path, split: Path, out: Path, budget_s: float,
                  overrides: Sequence[str]) -> dict[str, Any]:
    from mtbrain.engine.config import load_config
    from mtbrain.engine.trainer import Trainer

    done = out / "train" / "summary.json"
    if done.exists() and (out / "train" / "best.pt").exists():
        summary = json.loads(done.read_text())  # trained; killed while scoring: score only
    else:
        cfg = load_config(config, data=[str(split), *extra_datasets(config)],
                          overrides=[*overrides, f"train.max_time_s={budget_s}"])
        resume = (out / "train" / "last.pt").exists()  # an interrupted comparison continues
        summary = Trainer(cfg, out / "train", resume=resume, log=False).train()
    metrics = _evaluate_checkpoint(out / "train" / "best.pt", split, out)
    metrics["train_s"] = summary["elapsed_s"]
    return metrics


def extra_datasets(config: Path) -> list[str]:
    """Paths of the data sets a config mixes in after its first (box-annotated) one.

    A comparison replaces the first set by the split and keeps these (for example the
    classification-only set of the reference config, trained through the masked loss);
    the trainer drops their images that duplicate a validation or test image of the split.
    """
    from mtbrain.config import read_yaml

    data = read_yaml(config).get("data")
    datasets = data.get("datasets") if isinstance(data, dict) else None
    if not isinstance(datasets, list):
        return []
    return [str(d["path"]) for d in datasets[1:] if isinstance(d, dict) and "path" in d]


def epochs_override(overrides: Sequence[str]) -> int | None:
    """The epoch budget set by a ``train.epochs=E`` override (the last one), or ``None``."""
    epochs = None
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == "train.epochs":
            try:
                epochs = int(value)
            except ValueError:
                raise ConfigError(f"--set {item}: train.epochs must be an integer") from None
    return epochs


def _train_yolo(config: Path, split: Path, out: Path, budget_s: float,
                epochs: int | None) -> dict[str, Any]:
    from mtbrain.baselines.yolo import YoloBaselineConfig, run_yolo_baseline
    from mtbrain.data import load_dataset

    cfg = YoloBaselineConfig.from_yaml(config)
    cfg.time_budget_s = budget_s if budget_s > 0 else None  # 0: the epoch budget alone
    if epochs is not None:
        cfg.epochs = epochs
    parts = [load_dataset(f"{split}:{p}") for p in ("train", "val", "test")]
    try:
        metrics = run_yolo_baseline(*parts, out, cfg)
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    metrics["ms_per_image"] = 1000 * metrics.get("predict_s", 0.0) / max(1, len(parts[2]))
    return metrics


def compare(split: str | Path, out_dir: str | Path, *, configs: Sequence[str | Path] = (),
            checkpoints: Sequence[str | Path] = (), yolo_config: str | Path | None = None,
            budget_s: float = 600.0, overrides: Sequence[str] = (),
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train/evaluate every entry and write the comparison table (see the module doc).

    Args:
        split: A split file with train, val and test parts (``mtbrain split``).
        out_dir: Output folder; finished entries in it are reused.
        configs: mtbrain training configs (their first, box-annotated data set is replaced
            by the split; further sets they mix in are kept, see :func:`extra_datasets`).
        checkpoints: Already trained mtbrain checkpoints (evaluated only).
        yolo_config: A YOLO baseline config (``configs/yolo_baseline.yaml``), or ``None``.
        budget_s: Training time budget of every trained entry, in seconds (0: no time
            limit; give an epoch budget with ``train.epochs=E`` in ``overrides``).
        overrides: ``--set`` overrides for every mtbrain config; a ``train.epochs=E``
            among them is the YOLO baseline's epoch count too (the same budget).

    Returns:
        One row per entry: ``name``, ``kind`` and the :data:`COLUMNS`.
    """
    split, out = Path(split), Path(out_dir)
    jobs: list[tuple[str, str, Callable[[Path], dict[str, Any]]]] = []
    for c in configs:
        jobs.append((Path(c).stem, "mtbrain",
                     lambda o, c=Path(c): _train_config(c, split, o, budget_s, overrides)))
    for k in checkpoints:
        jobs.append((f"ckpt-{Path(k).parent.name}-{Path(k).stem}", "checkpoint",
                     lambda o, k=Path(k): _evaluate_checkpoint(k, split, o)))
    if yolo_config is not None:
        epochs = epochs_override(overrides)
        jobs.append(("yolo", "yolo",
                     lambda o: _train_yolo(Path(yolo_config), split, o, budget_s, epochs)))
    if not jobs:
        raise ConfigError("nothing to compare: give --config, --checkpoint or --yolo-config")
    names = [name for name, _, _ in jobs]
    if len(set(names)) != len(names):
        raise ConfigError(f"two entries share a name: {names}")
    rows = []
    for name, kind, run in jobs:
        folder = out / name
        done = folder / "compare-entry.json"
        if done.exists():
            log(f"{name}: already done, reusing {done}")
            metrics = json.loads(done.read_text())
        else:
            log(f"{name}: running ({kind})")
            metrics = run(folder)
            write_json(done, {**scalar_metrics(metrics), **{k: metrics.get(k) for k in COLUMNS}})
        rows.append({"name": name, "kind": kind, **{k: metrics.get(k) for k in COLUMNS}})
    write_json(out / "compare.json", {"split": str(split), "budget_s": budget_s, "rows": rows})
    write_text(out / "compare.md", render_table(rows, split=split, budget_s=budget_s))
    return rows


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float | int | None]:
    """The single-number entries of a metrics dict (what an entry file keeps)."""
    return {k: v for k, v in metrics.items()
            if v is None or (isinstance(v, int | float) and not isinstance(v, bool))}


def render_table(rows: Sequence[dict[str, Any]], *, split: Path, budget_s: float) -> str:
    """The comparison as a Markdown table."""
    def cell(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    budget = (f"Training budget {budget_s:.0f} s per trained entry" if budget_s > 0
              else "No training time limit (the configs' epochs)")
    lines = [f"# Comparison on {split}:test", "",
             f"{budget}; every model scored by the "
             "same evaluator (mAP: pycocotools over the tumour classes); ms_per_image: "
             "time to predict the test part (decoding and the model; batches of 32 "
             "images for mtbrain, 16 for YOLO) over its images.", "",
             "| model | kind | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append(f"| {r['name']} | {r['kind']} | "
                     + " | ".join(cell(r.get(k)) for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"
