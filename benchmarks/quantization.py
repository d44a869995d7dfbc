"""int8 quantization: size, speed and the change in accuracy/IoU/mAP on a validation split.

Exports a checkpoint to ONNX (fp32), quantizes it (dynamic int8; static int8 calibrated on
``--calibration-n`` images of ``--calibration``, the training part), predicts the images of
``--data`` with each file through the same ``OnnxPredictor`` path as ``mtbrain predict``,
and scores each with the one evaluator. Also: file size, latency p50 at batch 1 (network
alone, interleaved) and how often int8 gives the fp32 class.

Usage::

    python benchmarks/quantization.py --checkpoint runs/lite0/best.pt \\
        --data runs/lite0/split.json:val --calibration runs/lite0/split.json:train
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mtbrain  # noqa: E402,F401  (offline environment first)
from mtbrain.data import load_dataset  # noqa: E402
from mtbrain.eval.evaluate import score_predictions  # noqa: E402
from mtbrain.export import OnnxPredictor, calibration_images, export_onnx, quantize_onnx  # noqa: E402
from mtbrain.export.profile import time_calls  # noqa: E402
from mtbrain.models import Model  # noqa: E402
from mtbrain.viz.draw import candidate_order  # noqa: E402

KEYS = ("accuracy", "macro_f1", "mean_iou", "iou50_rate", "map50")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="validation images: SPLIT.json:val")
    parser.add_argument("--calibration", required=True, help="training images: SPLIT.json:train")
    parser.add_argument("--calibration-n", type=int, default=32)
    parser.add_argument("--n", type=int, default=0,
                        help="score only N images of --data, classes in turn (0: all)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                        help="also a static int8 file with these nodes left float "
                        "(e.g. backbone/blocks.2/)")
    args = parser.parse_args()
    records = load_dataset(args.data)
    if args.n:
        records = records.subset([s.rel for s in candidate_order(records)[: args.n]])
    model = Model.load(args.checkpoint)
    threads = args.threads or torch.get_num_threads()
    print(f"{args.checkpoint}: {model.config.backbone} at {model.config.img_size} px; "
          f"{len(records)} images of {args.data}; calibration {args.calibration_n} images of "
          f"{args.calibration}; onnxruntime {threads} threads", flush=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx")
        images = calibration_images(args.calibration, n=args.calibration_n)
        files = {"onnx-fp32": fp32,
                 "onnx-int8-dynamic": quantize_onnx(fp32, Path(tmp) / "dyn.onnx",
                                                    mode="dynamic"),
                 "onnx-int8-static": quantize_onnx(fp32, Path(tmp) / "static.onnx",
                                                   mode="static", calibration=images)}
        if args.keep_float:
            name = f"onnx-int8-static, float {' '.join(args.keep_float)}"
            files[name] = quantize_onnx(fp32, Path(tmp) / "static-mixed.onnx", mode="static",
                                        calibration=images, keep_float=args.keep_float)
        predictors = {k: OnnxPredictor(p, threads=threads) for k, p in files.items()}
        labels = {}
        for name, pred in predictors.items():
            preds = pred.predict([s.path for s in records], on_error="skip")
            records_out = [{**p.to_dict(), "image": s.rel}
                           for s, p in zip(records, preds, strict=True)]
            labels[name] = [p.label for p in preds]
            rows[name] = {k: score_predictions(records, records_out, model.classes).get(k)
                          for k in KEYS}
            rows[name]["mb"] = files[name].stat().st_size / 2**20
            print(f"{name}: scored", flush=True)
        batch = np.random.default_rng(0).random(
            (1, 1, model.config.img_size, model.config.img_size), dtype=np.float32)
        times: dict[str, list[float]] = {k: [] for k in predictors}
        for _ in range(args.rounds):
            for name, pred in predictors.items():
                times[name] += time_calls(lambda p=pred: p.run(batch), iters=args.iters,
                                          warmup=3)
    ref = labels["onnx-fp32"]
    print("\n| file | MiB | p50 ms (b1) | accuracy | macro-F1 | mean IoU | IoU >= 0.5 | mAP50 "
          "| same class as fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        same = np.mean([a == b for a, b in zip(ref, labels[name], strict=True)])
        cells = " | ".join("n/a" if r[k] is None else f"{r[k]:.3f}" for k in KEYS)
        print(f"| {name} | {r['mb']:.2f} | {1000 * statistics.median(times[name]):.1f} | "
              f"{cells} | {same:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
