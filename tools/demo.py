#!/usr/bin/env python
"""The main job of ``make demo``: audit, train, evaluate on built-in synthetic data.

1. generate the synthetic set (once; cached) and audit it (``mtbrain audit``);
2. train the multitask model of ``configs/demo_synthetic.yaml`` (``mtbrain train``),
   on a leak-free split it makes and saves;
3. score the best checkpoint on the held-out test part (``mtbrain evaluate``);
4. print where the report, metrics and pictures are.

Usage: ``python tools/demo.py [--out runs/demo] [--set key=value ...]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtbrain.cli import main as cli  # noqa: E402


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run(argv: list[str]) -> None:
    code = cli(argv)
    if code:
        raise SystemExit(code)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo_synthetic.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override passed to training")
    args = parser.parse_args()
    out = Path(args.out)
    start = time.monotonic()

    from mtbrain.engine.config import load_config
    from mtbrain.engine.data import synthetic_root

    cfg = load_config(args.config, overrides=args.overrides)
    step("1/3 synthetic data and its audit")
    data = synthetic_root(cfg.data.synthetic_per_class, seed=cfg.train.seed)
    print(f"synthetic set: {data}")
    run(["audit", str(data), "--json", str(out / "audit.json")])

    step("2/3 training (configs/demo_synthetic.yaml)")
    sets = [f"--set={o}" for o in args.overrides]
    run(["train", "--config", args.config, "--out", str(out / "model"), "--overwrite", *sets])

    step("3/3 evaluation of best.pt on the held-out test part")
    run(["evaluate", "--checkpoint", str(out / "model" / "best.pt"),
         "--data", f"{out / 'model' / 'split.json'}:test", "--out", str(out / "eval")])
    print(f"\ndemo finished in {time.monotonic() - start:.0f} s. Look at:")
    for path in ("eval/report.md", "eval/metrics.json", "eval/confusion_matrix.png",
                 "eval/predictions.json", "model/curves.png", "model/log.csv",
                 "model/best.pt", "audit.json"):
        print(f"  {out / path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
