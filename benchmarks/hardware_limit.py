"""Hardware limit: achieved training FLOP/s over the FLOP/s of a large matrix product.

For each precision (fp32, bf16 autocast), in one run and interleaved (these machines are
noisy):

- ``matmul``: FLOP/s of an ``--n`` x ``--n`` matrix product (2 n^3 FLOPs) in that dtype,
  median of ``--repeat`` products: what the machine can do at best through torch;
- ``train step``: FLOPs of one training step of ``mtbrain.Model`` (forward + backward of
  the multitask loss, counted by ``torch.utils.flop_counter.FlopCounterMode`` with a
  groups-aware convolution backward, :func:`mtbrain.export.profile.flop_counter`: torch's
  own formula counts a depthwise convolution's backward ~channels times over) over the
  median time of ``--steps`` steps
  (forward, backward, AdamW step; channels_last, as the trainer runs it).

The ratio is the fraction of the matrix-product rate that training achieves. Depthwise
convolutions and elementwise work have little arithmetic per byte, so a mobile network
lands far below 1 on any hardware; the figure says how far, and where the time goes is for
a profiler.

Usage::

    python benchmarks/hardware_limit.py --size 256 --batch 32 --steps 3
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from model_step import make_batch  # noqa: E402  (benchmarks/model_step.py)

import mtbrain  # noqa: E402,F401  (offline environment first)
from mtbrain.models import Model  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_flops_per_s(n: int, dtype: torch.dtype, repeat: int) -> float:
    """FLOP/s of an n x n by n x n product, median of ``repeat`` after one warm-up."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def _autocast(precision: str) -> contextlib.AbstractContextManager:
    return (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
            else contextlib.nullcontext())


def train_step_flops(model: Model, images: torch.Tensor, targets: dict, precision: str) -> int:
    """FLOPs of one forward + backward pass of the training loss (groups-aware)."""
    from mtbrain.export.profile import flop_counter

    with flop_counter() as counter:
        with _autocast(precision):
            loss = model(images, targets)["loss"]
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def train_step_seconds(model: Model, opt: torch.optim.Optimizer, images: torch.Tensor,
                       targets: dict, precision: str, steps: int, warmup: int) -> float:
    """Median seconds of a full training step (forward, backward, optimiser step)."""
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with _autocast(precision):
            loss = model(images, targets)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--n", type=int, default=2048, help="matrix side of the product")
    parser.add_argument("--repeat", type=int, default=5, help="timed matrix products")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                        choices=list(DTYPES))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.backbone} at "
          f"{args.size} px, batch {args.batch}, channels_last; matmul {args.n}^2", flush=True)
    images, targets = make_batch(args.batch, args.size)
    images = images.contiguous(memory_format=torch.channels_last)
    rows = []
    for precision in args.precision:
        torch.manual_seed(0)
        model = Model(backbone=args.backbone, img_size=args.size, pretrained=False).train()
        model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        flops = train_step_flops(model, images, targets, precision)
        peak = matmul_flops_per_s(args.n, DTYPES[precision], args.repeat)
        seconds = train_step_seconds(model, opt, images, targets, precision, args.steps,
                                     args.warmup)
        peak_after = matmul_flops_per_s(args.n, DTYPES[precision], args.repeat)
        peak = max(peak, peak_after)  # the better of the two, around the training steps
        achieved = flops / seconds
        rows.append((precision, flops, seconds, achieved, peak))
        print(f"{precision}: step {flops / 1e9:.1f} GFLOP in {seconds:.2f} s = "
              f"{achieved / 1e9:.1f} GFLOP/s; matmul {peak / 1e9:.1f} GFLOP/s; "
              f"ratio {achieved / peak:.3f}", flush=True)
    print("\n| precision | train step (GFLOP) | step (s) | achieved (GFLOP/s) "
          "| matmul (GFLOP/s) | achieved / matmul |")
    print("|---|---|---|---|---|---|")
    for precision, flops, seconds, achieved, peak in rows:
        print(f"| {precision} | {flops / 1e9:.1f} | {seconds:.2f} | {achieved / 1e9:.1f} | "
              f"{peak / 1e9:.1f} | {achieved / peak:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
