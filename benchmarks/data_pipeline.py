"""Throughput of the training input pipeline: decode + letterbox + augment through a DataLoader.

Prints images/s for:

- ``cold``: no decoded-image cache, every JPEG decoded every epoch;
- ``disk, filling``: first epoch over an empty disk cache (the workers decode and store);
- ``disk, warm``: a later epoch, every image read from the memory-mapped file;
- ``memory, warm()``: filling a memory cache with ``DecodedCache.warm`` (parallel decode);
- ``memory, warm``: an epoch over the filled memory cache;
- ``memory, warm, no aug``: the same without augmentation (the augmentation's share).

"cold" means not decoded yet: the JPEG bytes are read once before timing, so every figure
has them in the OS page cache. Each figure is the median of ``--repeat`` runs (fresh caches
each run); worker start-up is included, as in training with non-persistent workers.

Usage::

    python benchmarks/data_pipeline.py --size 256 --batch 32 --workers 2 --n 512

``--data`` defaults to ``../shared/data/mri-bbox/Train`` (or ``$MTBRAIN_DATA/mri-bbox/Train``);
when that is absent, a synthetic set is generated in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import mtbrain  # noqa: E402,F401  (offline environment before albumentations)
from mtbrain.data import load_dataset  # noqa: E402
from mtbrain.data.cache import DecodedCache  # noqa: E402
from mtbrain.data.dataset import MRIDataset, collate, to_tensor  # noqa: E402
from mtbrain.data.records import RecordSet  # noqa: E402
from mtbrain.data.transforms import (  # noqa: E402
    AugmentConfig,
    augment,
    build_train_transform,
    decode_letterboxed,
)
from mtbrain.io import write_json  # noqa: E402


def default_data() -> Path:
    env = os.environ.get("MTBRAIN_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    return root / "mri-bbox" / "Train"


def pick(records: RecordSet, n: int, seed: int = 0) -> RecordSet:
    """``n`` samples drawn at random (all classes), in a fixed order."""
    if n >= len(records):
        return records
    chosen = np.random.default_rng(seed).choice(len(records), size=n, replace=False)
    return records.subset([records[int(i)].rel for i in sorted(chosen)])


def epoch(dataset: MRIDataset, *, batch: int, workers: int) -> float:
    """Images per second of one pass through a DataLoader."""
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=collate,
                        shuffle=False, persistent_workers=False)
    start = time.perf_counter()
    seen = sum(len(images) for images, _ in loader)
    return seen / (time.perf_counter() - start)


def stage_costs(records: RecordSet, size: int, transform: object, n: int = 200) -> dict[str, float]:
    """CPU milliseconds per image of each stage, in this process (robust to a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in DataLoader workers
    subset = records.samples[:n]
    costs: dict[str, float] = {}
    first, geo0 = decode_letterboxed(subset[0].path, size)  # first calls load libraries: untimed
    to_tensor(augment(transform, first, geo0.forward(subset[0].boxes))[0])
    start = time.process_time()
    decoded = [decode_letterboxed(s.path, size) for s in subset]
    costs["decode+letterbox"] = time.process_time() - start
    boxes = [np.clip(geo.forward(s.boxes), 0, size) for s, (_, geo) in zip(subset, decoded, strict=True)]
    start = time.process_time()
    augmented = [augment(transform, img, b)[0] for (img, _), b in zip(decoded, boxes, strict=True)]
    costs["augment"] = time.process_time() - start
    start = time.process_time()
    for img in augmented:
        to_tensor(img)
    costs["to_tensor"] = time.process_time() - start
    torch.set_num_threads(threads)
    return {k: v * 1000 / len(subset) for k, v in costs.items()}


def one_run(records: RecordSet, transform: object, common: dict, run: dict, folder: Path,
            workers: int, figures: dict[str, list[float]]) -> None:
    """One measurement of every figure, with fresh caches."""

    def report(name: str, rate: float) -> None:
        figures.setdefault(name, []).append(rate)

    report("cold (no cache)", epoch(MRIDataset(records, transform=transform, **common), **run))
    disk = DecodedCache(records, size=common["size"], backend="disk", folder=folder)
    on_disk = MRIDataset(records, transform=transform, cache=disk, **common)
    report("disk, filling", epoch(on_disk, **run))
    report("disk, warm", epoch(on_disk, **run))
    memory = DecodedCache(records, size=common["size"], backend="memory")
    start = time.perf_counter()
    problems = memory.warm(num_workers=workers)
    report("memory, warm()", len(records) / (time.perf_counter() - start))
    for p in problems:
        print(f"  cannot decode: {p}")
    report("memory, warm", epoch(MRIDataset(records, transform=transform, cache=memory, **common), **run))
    report("memory, warm, no aug", epoch(MRIDataset(records, cache=memory, **common), **run))
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="data set folder (any layout)")
    parser.add_argument("--size", type=int, default=256, help="network input side")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--n", type=int, default=512, help="images per pass")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="mtbrain-bench-"))
    try:
        data = args.data or default_data()
        if not data.exists():
            from mtbrain.data.synthetic import generate

            print(f"{data} not found: generating a synthetic set", flush=True)
            data = generate(tmp / "synthetic", n_per_class=max(1, -(-args.n // 4)),
                            sizes=(200, 600)) / "Train"
        records = pick(load_dataset(data), args.n)
        transform = build_train_transform(AugmentConfig(), args.size)
        common = {"classes": records.classes, "size": args.size}
        run = {"batch": args.batch, "workers": args.workers}
        figures: dict[str, list[float]] = {}
        for sample in records:  # the file bytes into the OS page cache, outside the timings
            sample.path.read_bytes()
        print(f"data={data} images={len(records)} size={args.size} batch={args.batch} "
              f"workers={args.workers} cpus={os.cpu_count()} repeat={args.repeat}", flush=True)
        costs = stage_costs(records, args.size, transform)
        print("  CPU ms per image: " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()), flush=True)
        for r in range(args.repeat):
            one_run(records, transform, common, run, tmp / f"cache{r}", args.workers, figures)
        for name, rates in figures.items():
            print(f"  {name:<24} {statistics.median(rates):8.1f} images/s   "
                  f"(runs: {', '.join(f'{v:.0f}' for v in rates)})", flush=True)
        if args.json:
            write_json(args.json, {"data": str(data), "images": len(records), "size": args.size,
                                   "batch": args.batch, "workers": args.workers,
                                   "images_per_s": {k: statistics.median(v) for k, v in figures.items()},
                                   "runs": figures, "cpu_ms_per_image": costs})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
