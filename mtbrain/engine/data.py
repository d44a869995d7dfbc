"""Training data from a config: built-in synthetic set, split, mixing, leak removal, cache.

:func:`build_data` turns ``DataConfig`` into record sets: the first data set is split
into train/val/test (from a given split file, or a new leak-free split saved as
``split.json`` in the output folder); further data sets are mixed into training only,
after removing every image that duplicates a validation or test image (``drop_leaks``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtbrain._env import cache_root
from mtbrain.data import load_dataset
from mtbrain.data.policy import LabelPolicy
from mtbrain.data.records import RecordSet
from mtbrain.data.splitfile import SplitFile, is_split_file, parse_data_arg
from mtbrain.engine import distributed as dist
from mtbrain.engine.config import DataConfig, DatasetEntry
from mtbrain.errors import ConfigError

SYNTHETIC = "synthetic"


@dataclass
class TrainData:
    """The record sets of one training run.

    Attributes:
        classes: Class names (of the first data set).
        train_sets: The train part of the first set, then each mixed-in set.
        val: Validation part of the first set.
        test: Test part of the first set (may be empty).
        split_path: The split file used.
        size: Network input size.
        keep_ratio: Letterbox or stretch.
        cache: ``memory``, ``disk`` or ``none``.
        augment: Augmentation config.
        dropped_leaks: Mixed-in images dropped because they duplicate val/test images.
    """

    classes: list[str]
    train_sets: list[RecordSet]
    val: RecordSet
    test: RecordSet
    split_path: Path
    size: int
    keep_ratio: bool
    cache: str
    augment: Any
    dropped_leaks: list[str] = field(default_factory=list)


def synthetic_root(per_class: int, *, seed: int = 0) -> Path:
    """The built-in synthetic set (generated once, then reused from the cache folder)."""
    from mtbrain.data.synthetic import generate

    key = hashlib.sha1(json.dumps({"v": 1, "n": per_class, "seed": seed}).encode()).hexdigest()[:12]
    root = cache_root() / "synthetic" / key
    if dist.is_main() and not (root / ".complete").exists():
        generate(root, n_per_class=per_class, seed=seed, overwrite=True)
        (root / ".complete").write_text("ok\n")
    dist.barrier()
    return root


def _load_entry(entry: DatasetEntry, cfg: DataConfig, seed: int) -> RecordSet:
    policy = LabelPolicy.from_dict(entry.policy) if entry.policy else None
    if entry.path == SYNTHETIC:
        return load_dataset(synthetic_root(cfg.synthetic_per_class, seed=seed), layout=entry.layout,
                            policy=policy, name=SYNTHETIC)
    return load_dataset(entry.path, layout=entry.layout, policy=policy)


def _first_set_parts(entry: DatasetEntry, cfg: DataConfig, out_dir: Path, seed: int,
                     log: Callable[[str], None]) -> tuple[RecordSet, SplitFile, Path]:
    path, part = parse_data_arg(entry.path)
    split_path: Path | None = None
    if entry.path != SYNTHETIC and is_split_file(path):
        if part is not None:
            raise ConfigError(f"data.datasets[0].path={entry.path!r}: give the split file without "
                              ":part; its train/val/test parts are used")
        split_path = path
    elif cfg.split:
        split_path = Path(cfg.split)
    if split_path is not None:
        split = SplitFile.read(split_path)
        policy = LabelPolicy.from_dict(entry.policy or split.policy)
        full = load_dataset(split.data, layout=split.layout, policy=policy)
        return full, split, split_path
    full = _load_entry(entry, cfg, seed)
    split_path = out_dir / "split.json"
    # Rank 0 decides and tells the others: a rank that looked for itself could find the
    # split.json rank 0 has just written, return early and skip the barrier below (hang).
    reuse = False
    if dist.is_main() and split_path.exists():
        reuse = Path(SplitFile.read(split_path).data).resolve() == full.root.resolve()
    if dist.broadcast_object(reuse):
        log(f"reusing the split in {split_path}")
        return full, SplitFile.read(split_path), split_path
    split = None
    if dist.is_main():
        from mtbrain.data.dedup import duplicate_groups
        from mtbrain.data.split import make_split

        log(f"making a leak-free split of {full.root} ({len(full)} images)")
        groups = duplicate_groups(full)
        split = make_split(full, groups, val=cfg.val_fraction, test=cfg.test_fraction, seed=seed)
        split.write(split_path)
    dist.barrier()
    return full, SplitFile.read(split_path), split_path


def build_data(cfg: DataConfig, out_dir: Path, *, seed: int = 0,
               log: Callable[[str], None] = print) -> TrainData:
    """Load, split and mix the configured data sets (see module doc)."""
    first, split, split_path = _first_set_parts(cfg.datasets[0], cfg, out_dir, seed, log)
    parts = {name: first.subset(split.part(name, path=split_path)) for name in ("train", "val")}
    test = first.subset(split.parts.get("test", []))
    if len(parts["val"]) == 0:
        raise ConfigError(f"{split_path}: the validation part is empty")
    mixed: list[RecordSet] = []
    for i, entry in enumerate(cfg.datasets[1:], start=1):
        rs = _load_entry(entry, cfg, seed)
        extra = sorted(set(rs.classes) - set(first.classes))
        if extra:
            raise ConfigError(f"data.datasets[{i}] ({entry.path}) has classes {extra} that the first "
                              f"set ({first.classes}) lacks")
        mixed.append(rs)
    dropped: list[str] = []
    if mixed and cfg.drop_leaks:
        from mtbrain.data.dedup import leak_free

        held_out = [parts["val"], test]
        kept = []
        for rs in mixed:
            clean, removed = leak_free(rs, held_out)
            dropped.extend(f"{rs.root}/{r}" for r in removed)
            log(f"{rs.root}: dropped {len(removed)} of {len(rs)} images that duplicate "
                "validation/test images")
            kept.append(clean)
        mixed = kept
    return TrainData(classes=list(first.classes), train_sets=[parts["train"], *mixed],
                     val=parts["val"], test=test, split_path=split_path, size=cfg.size,
                     keep_ratio=cfg.keep_ratio, cache=cfg.cache, augment=cfg.augment,
                     dropped_leaks=dropped)


def make_dataset(records: RecordSet, data: TrainData, *, train: bool, seed: int,
                 source: int = 0, num_workers: int = 0,
                 log: Callable[[str], None] = print) -> Any:
    """An :class:`mtbrain.data.dataset.MRIDataset` over ``records`` with the run's settings.

    With a cache, every image is decoded once here (``num_workers`` processes), before any
    DataLoader worker starts; images that cannot be decoded are skipped with a report
    under the set's ``on_error="skip"`` policy, or stop the run naming every file.
    """
    from mtbrain.data.cache import DecodedCache, exclude_undecodable
    from mtbrain.data.dataset import MRIDataset
    from mtbrain.data.transforms import build_train_transform

    cache = None
    if data.cache != "none":
        cache = DecodedCache(records, size=data.size, keep_ratio=data.keep_ratio,
                             backend=data.cache)
        start = time.monotonic()
        problems = cache.warm(num_workers=num_workers)
        if problems:
            records = exclude_undecodable(records, problems, on_error=records.problems.on_error)
            log(f"{records.root}: skipped {len(problems)} undecodable image(s): "
                + "; ".join(str(p) for p in problems[:3]) + (" ..." if len(problems) > 3 else ""))
        log(f"decoded {len(cache)} images of {records.root} into the {data.cache} cache "
            f"in {time.monotonic() - start:.1f} s")
    transform = build_train_transform(data.augment, data.size) if train else None
    return MRIDataset(records, data.classes, size=data.size, keep_ratio=data.keep_ratio,
                      transform=transform, cache=cache, seed=seed, source=source)
