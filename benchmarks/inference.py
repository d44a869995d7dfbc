"""Inference latency: mtbrain (eager, ONNX, int8) over ultralytics YOLOv8n, same input size.

Every runtime predicts the same decoded image (a 512 x 512 synthetic slice in memory; no
file decoding) at batch 1, end to end as a user calls it:

- mtbrain: ``Model.predict(array)`` (eager fp32 and bf16) and ``OnnxPredictor.predict``
  (fp32, dynamic int8, static int8): letterbox, network, box decoding, mapping back;
- YOLOv8n: ``YOLO.predict(array, imgsz=S)``: letterbox, network, NMS, ``Results``.

and, separately, the network alone on a ready (1, C, S, S) tensor. Runtimes are measured in
turns (``--rounds``), so that the load of a shared machine hits all of them alike; the
figures are medians (p50) over every call. The ratio is mtbrain's p50 over YOLOv8n's (below
1: mtbrain is faster).

YOLOv8n is built from ``yolov8n.yaml`` with 4 classes (random weights: the weights do not
change the latency), offline, through mtbrain's YOLO baseline helpers; ultralytics sets torch
to one thread during predict, the callback puts it back to ``--threads``. mtbrain's model is
untrained unless ``--checkpoint`` is given (same reason).

Usage::

    python benchmarks/inference.py --size 256 --iters 30 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mtbrain  # noqa: E402,F401  (offline environment first)
from mtbrain.export.profile import synthetic_calibration  # noqa: E402
from mtbrain.models import Model  # noqa: E402


def test_image(size: int = 512) -> np.ndarray:
    """A glioma slice of the synthetic generator, ``size`` px, H x W uint8."""
    from mtbrain.data.synthetic import render_slice, sample_rng

    return render_slice("glioma", sample_rng(0, "glioma", 0), size=size).image


def yolo_runners(size: int, threads: int, image: np.ndarray,
                 folder: Path) -> tuple[Callable[[], Any], Callable[[], Any], Any]:
    """(predict, network-only) calls of a 4-class YOLOv8n, and the session to close."""
    import yaml

    # the baseline module's offline ultralytics session and its thread-count callback
    from mtbrain.baselines.yolo import keep_threads, load_yolo, ultralytics_session

    session = ultralytics_session()
    session.__enter__()
    from ultralytics.nn.tasks import yaml_model_load

    cfg = yaml_model_load("yolov8n.yaml")  # the packaged YAML, scale n
    cfg = {k: v for k, v in cfg.items() if k != "yaml_file"} | {"nc": 4}
    model_yaml = folder / "yolov8n-4cls.yaml"  # the name keeps the scale letter 'n'
    model_yaml.write_text(yaml.safe_dump(cfg))
    yolo = load_yolo(model_yaml)
    yolo.add_callback("on_predict_start", keep_threads(threads))
    bgr = np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    net = yolo.model.eval()
    tensor = torch.rand(1, 3, size, size)

    def predict() -> Any:
        return yolo.predict(bgr, imgsz=size, device="cpu", verbose=False, save=False,
                            conf=0.001, max_det=10)

    def network() -> Any:
        with torch.inference_mode():
            return net(tensor)

    predict()  # ultralytics builds its predictor on the first call
    torch.set_num_threads(threads)
    return predict, network, session


def mtbrain_runners(model: Model, image: np.ndarray, runtimes: list[str], folder: Path,
                    threads: int) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    from mtbrain.export.onnx import OnnxPredictor, export_onnx
    from mtbrain.export.quantize import quantize_onnx

    size = model.config.img_size
    tensor = torch.rand(1, 1, size, size)
    batch = tensor.numpy()
    out: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    fp32 = None
    for name in runtimes:
        if name.startswith("eager"):
            precision = name.split("-")[1]

            def predict(p: str = precision) -> Any:
                return model.predict(image, precision=p)

            def network(p: str = precision) -> Any:
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                            enabled=p == "bf16"):
                    return model(tensor)

            out[name] = (predict, network)
            continue
        if fp32 is None:
            fp32 = export_onnx(model, folder / "fp32.onnx")
        path = fp32
        if name != "onnx-fp32":
            mode = name.rsplit("-", 1)[1]
            path = quantize_onnx(fp32, folder / f"{mode}.onnx", mode=mode,  # type: ignore[arg-type]
                                 calibration=synthetic_calibration(16))
        predictor = OnnxPredictor(path, threads=threads)
        out[name] = ((lambda p=predictor: p.predict(image)),
                     (lambda p=predictor: p.run(batch)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="network input size (both)")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--checkpoint", default=None, help="an mtbrain .pt (default: untrained)")
    parser.add_argument("--iters", type=int, default=30, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="turns over the runtimes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtimes", nargs="+", default=[
        "eager-fp32", "eager-bf16", "onnx-fp32", "onnx-int8-dynamic", "onnx-int8-static"])
    parser.add_argument("--no-yolo", action="store_true", help="skip the YOLOv8n baseline")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        model = Model.load(args.checkpoint)
        if model.config.img_size != args.size:
            raise SystemExit(f"{args.checkpoint} takes {model.config.img_size} px, not "
                             f"--size {args.size}")
    else:
        torch.manual_seed(0)
        model = Model(backbone=args.backbone, img_size=args.size, pretrained=False)
    model.eval()
    image = test_image()
    print(f"torch {torch.__version__}, {args.threads} threads; {model.config.backbone} at "
          f"{args.size} px vs YOLOv8n at {args.size} px; batch 1; {args.rounds} rounds x "
          f"{args.iters} calls (after {args.warmup} warm-up calls each)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runners = mtbrain_runners(model, image, args.runtimes, Path(tmp), args.threads)
        session = None
        if not args.no_yolo:
            predict, network, session = yolo_runners(args.size, args.threads, image, Path(tmp))
            runners["yolov8n"] = (predict, network)
        times: dict[str, dict[str, list[float]]] = {n: {"predict": [], "network": []}
                                                    for n in runners}
        try:
            for r in range(args.rounds):
                for name, calls in runners.items():
                    for kind, call in zip(("predict", "network"), calls, strict=True):
                        torch.set_num_threads(args.threads)
                        for _ in range(args.warmup):
                            call()
                        for _ in range(args.iters):
                            start = time.perf_counter()
                            call()
                            times[name][kind].append(time.perf_counter() - start)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            if session is not None:
                session.__exit__(None, None, None)
    p50 = {n: {k: 1000 * statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    ref = p50.get("yolov8n")
    print("\n| runtime | predict p50 (ms) | network p50 (ms) | predict / YOLOv8n predict |")
    print("|---|---|---|---|")
    for name, row in p50.items():
        ratio = f"{row['predict'] / ref['predict']:.2f}" if ref else "n/a"
        label = "YOLOv8n (ultralytics)" if name == "yolov8n" else f"mtbrain {name}"
        print(f"| {label} | {row['predict']:.1f} | {row['network']:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
