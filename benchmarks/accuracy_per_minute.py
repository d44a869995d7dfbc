"""Accuracy per CPU-minute: held-out accuracy and mAP50 of mtbrain and the YOLO baseline
after 5, 10 and 20 minutes of training on one split.

For each budget, :func:`mtbrain.eval.compare.compare` trains the mtbrain config and the YOLO
baseline from scratch on the split's train part with that training-time budget and scores
both on the split's test part with the one evaluator. Each budget is its own run (a 5-minute
run is not the first 5 minutes of a 20-minute one): ultralytics fits its epochs to the
budget; mtbrain's trainer is run with ``train.schedule_to_budget=true``, so its cosine
schedule ends with each budget too (``train.epochs`` of the config is only a cap). Each
budget has its own folder ``OUT/<minutes>min``; finished entries are reused, so an
interrupted run resumes.

The full measurement takes about twice the sum of the budgets (70 minutes for 5, 10, 20)::

    python benchmarks/accuracy_per_minute.py --split runs/lite0/split.json \\
        --config configs/mri_bbox_effnet_lite0.yaml --yolo-config configs/yolo_baseline.yaml

``--smoke`` checks the machinery in about two minutes: a tiny synthetic split, tiny models
at 64 px, budgets in seconds (``--minutes 0.25 0.5``); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import mtbrain  # noqa: E402,F401  (offline environment first)
from mtbrain.eval.compare import compare  # noqa: E402
from mtbrain.io import write_json, write_text  # noqa: E402

SMOKE_MTBRAIN = {"model": {"backbone": "mobilenetv3_small_050", "pretrained": False},
                 "data": {"size": 64, "cache": "memory"},
                 "train": {"batch_size": 8, "epochs": 2}}
SMOKE_YOLO = {"yolo": {"imgsz": 64, "epochs": 2, "batch": 8}}


def smoke_setup(out: Path) -> tuple[Path, Path, Path]:
    """A tiny synthetic split and tiny configs for both models, under ``out/smoke``."""
    import yaml

    from mtbrain.data import load_dataset
    from mtbrain.data.split import make_split
    from mtbrain.data.synthetic import generate

    folder = out / "smoke"
    data = folder / "syn"
    if not data.exists():
        generate(data, n_per_class=8, size=64, seed=0)
    split = folder / "split.json"
    if not split.exists():  # synthetic images have no duplicates: no groups to keep whole
        make_split(load_dataset(data), [], val=0.25, test=0.25, seed=0).write(split)
    config, yolo = folder / "tiny.yaml", folder / "yolo-tiny.yaml"
    write_text(config, yaml.safe_dump(SMOKE_MTBRAIN))
    write_text(yolo, yaml.safe_dump(SMOKE_YOLO))
    return split, config, yolo


def render(results: list[tuple[float, list[dict[str, Any]]]]) -> str:
    """The table: per budget and model, accuracy, mAP50 and training seconds, and the
    mtbrain / YOLO ratios."""
    def cell(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = ["| budget (min) | model | accuracy | mAP50 | train (s) | accuracy / YOLO "
             "| mAP50 / YOLO |", "|---|---|---|---|---|---|---|"]
    for minutes, rows in results:
        yolo = next((r for r in rows if r["kind"] == "yolo"), None)
        for r in rows:
            ratios = ["n/a", "n/a"]
            if yolo is not None and r is not yolo:
                ratios = [f"{r[k] / yolo[k]:.2f}" if r.get(k) is not None and yolo.get(k)
                          else "n/a" for k in ("accuracy", "map50")]
            lines.append(f"| {minutes:g} | {r['name']} | {cell(r.get('accuracy'))} | "
                         f"{cell(r.get('map50'))} | {r.get('train_s') or 0:.0f} | "
                         f"{ratios[0]} | {ratios[1]} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default=None, help="split file with train/val/test parts")
    parser.add_argument("--config", default=str(REPO / "configs" / "quick_cpu.yaml"),
                        help="mtbrain training config (its data is replaced by the split)")
    parser.add_argument("--yolo-config", default=str(REPO / "configs" / "yolo_baseline.yaml"))
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 20],
                        help="training budgets in minutes")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override for the mtbrain config")
    parser.add_argument("--out", default="runs/accuracy_per_minute")
    parser.add_argument("--no-yolo", action="store_true", help="mtbrain only")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny synthetic split and tiny models (checks the machinery)")
    args = parser.parse_args()
    out = Path(args.out)
    split, config, yolo = args.split, args.config, args.yolo_config
    if args.smoke:
        split, config, yolo = smoke_setup(out)
    if split is None:
        parser.error("--split is required (or --smoke)")
    results = []
    for minutes in args.minutes:
        print(f"== {minutes:g} min budget", flush=True)
        overrides = ["train.schedule_to_budget=true", *args.overrides]
        rows = compare(split, out / f"{minutes:g}min", configs=[config],
                       yolo_config=None if args.no_yolo else yolo, budget_s=60 * minutes,
                       overrides=overrides)
        results.append((minutes, rows))
    table = render(results)
    write_json(out / "accuracy_per_minute.json",
               {"split": str(split), "results": [{"minutes": m, "rows": r} for m, r in results]})
    write_text(out / "accuracy_per_minute.md", table)
    print(f"\nsplit {split}, test part; every model scored by the same evaluator\n")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
