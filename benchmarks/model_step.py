"""Time one training step (forward + backward) of mtbrain.Model on random data.

Prints seconds per batch and images/s for each combination of box head, precision,
memory format and number of frozen backbone stages (``train.freeze_stages``), e.g.::

    .venv/bin/python benchmarks/model_step.py --backbone tf_efficientnet_lite0 --size 256 --batch 32
    .venv/bin/python benchmarks/model_step.py --heads dense16 --modes fp32+cl,bf16+cl --freeze 0,2,3
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

import mtbrain  # noqa: F401  (offline env first)
from mtbrain.models import Model


def make_batch(batch: int, size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 1, size, size, generator=g)
    xy = torch.rand(batch, 2, generator=g) * size * 0.6
    wh = size * (0.1 + 0.3 * torch.rand(batch, 2, generator=g))
    boxes = torch.cat([xy, xy + wh], dim=1).clamp(max=size)[:, None, :]
    has_box = torch.arange(batch) % 4 != 0
    return images, {
        "labels": torch.randint(0, 4, (batch,), generator=g),
        "label_mask": torch.ones(batch, dtype=torch.bool),
        "boxes": boxes,
        "box_valid": has_box[:, None],
        "box_mask": has_box,
    }


def time_step(
    model: Model,
    images: torch.Tensor,
    targets: dict,
    *,
    bf16: bool,
    channels_last: bool,
    steps: int,
    warmup: int,
) -> float:
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    model.train()
    times = []
    for i in range(warmup + steps):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        t0 = time.perf_counter()
        with ctx:
            loss = model(images, targets)["loss"]
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--heads",
        default="pooled,dense16,dense8",
        help="pooled, dense16 (dense, out_stride 16), dense8 (out_stride 8)",
    )
    ap.add_argument("--modes", default="fp32,bf16,fp32+cl,bf16+cl")
    ap.add_argument("--freeze", default="0", help="stem + N stages frozen, comma-separated")
    args = ap.parse_args()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.backbone} "
        f"{args.size}px batch {args.batch} (median of {args.steps} steps)"
    )
    images, targets = make_batch(args.batch, args.size)
    cases = [(h, m, int(f)) for h in args.heads.split(",") for f in args.freeze.split(",")
             for m in args.modes.split(",")]
    for head, mode, freeze in cases:
        torch.manual_seed(0)
        kind, opts = (
            ("pooled", {})
            if head == "pooled"
            else ("dense", {"out_stride": 8 if head == "dense8" else 16})
        )
        model = Model(
            backbone=args.backbone, img_size=args.size, box_head=kind, box_head_options=opts
        )
        model.backbone.freeze_stages(freeze)
        sec = time_step(
            model,
            images,
            targets,
            bf16="bf16" in mode,
            channels_last="cl" in mode,
            steps=args.steps,
            warmup=args.warmup,
        )
        print(
            f"  head={head:7s} {mode:8s} freeze={freeze} {sec:6.3f} s/batch  "
            f"{args.batch / sec:6.1f} img/s",
            flush=True,
        )


if __name__ == "__main__":
    main()
