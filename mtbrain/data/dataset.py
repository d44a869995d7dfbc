"""The training/evaluation Dataset: image tensor + class label + tumour boxes per sample.

Each item is the letterboxed grayscale image (``1 x S x S`` float in [0, 1]) and a target
dict; :func:`collate` pads the boxes of a batch into fixed-shape tensors with masks, so a
batch can mix samples with boxes, without boxes and without a class label (the multitask
loss masks what a sample lacks). Several data sets are mixed with :class:`MixedDataset`
(and a weighted sampler, :class:`mtbrain.engine.sampler.EpochSampler`).

Random augmentation (training only) is seeded per item from ``(seed, epoch, index)``
(:meth:`MRIDataset.set_epoch`): an item's augmentation does not depend on which worker
process draws it or how many workers there are, so a resumed run sees exactly the images
an uninterrupted run would have seen.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from mtbrain.classes import check_class_names
from mtbrain.data.boxes import Letterbox, clip
from mtbrain.data.cache import DecodedCache
from mtbrain.data.records import RecordSet, Sample
from mtbrain.data.transforms import augment, check_transform, decode_letterboxed, letterbox_image
from mtbrain.errors import ConfigError, DataError

Target = dict[str, Any]


def preprocess(gray: np.ndarray, size: int, keep_ratio: bool = True) -> tuple[np.ndarray, Letterbox]:
    """The deterministic network input of a decoded ``H x W`` uint8 image (prediction uses it).

    Same as training and evaluation: :func:`mtbrain.data.transforms.letterbox_image`.
    Returns the ``size`` x ``size`` uint8 image and the geometry that maps boxes back.
    """
    return letterbox_image(gray, size, keep_ratio=keep_ratio)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``S x S`` uint8 image -> ``1 x S x S`` float32 tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0).float().div_(255.0)


class MRIDataset(Dataset):
    """Samples of one data set as ``(image, target)`` pairs.

    Args:
        records: A :class:`RecordSet` or a sequence of :class:`Sample`.
        classes: Class names in class-index order (labels outside it are an error).
        size: Network input side in pixels.
        keep_ratio: Letterbox (keep the aspect ratio, pad) instead of stretching.
        transform: Training augmentation from
            :func:`mtbrain.data.transforms.build_train_transform`; ``None`` for evaluation.
        cache: Decoded-image cache serving every sample's file (same ``size``/``keep_ratio``).
        source: Id of this data set in a mix (copied into each target).
        seed: Seed of the augmentation (with the epoch and the item index).
        boxes_known: The set annotates tumour boxes, so a sample without one truly has none
            (box-confidence target 0). ``None``: from the layout
            (:attr:`RecordSet.boxes_annotated`), or for a plain list, whether any sample has
            a box.

    Items:
        ``image``: ``1 x S x S`` float32 in [0, 1]. ``target``: ``label`` (int, -1 = no
        label), ``boxes`` ((K, 4) float32 xyxy pixels of the network input, after
        augmentation; K may be 0), ``index`` (position in ``records``), ``source``, and
        ``boxes_lost`` (boxes the augmentation pushed out of the image; when it removed all
        of a sample's boxes, the sample has no box for the box loss).
    """

    def __init__(self, records: RecordSet | Sequence[Sample], classes: Sequence[str], *,
                 size: int = 256, keep_ratio: bool = True, transform: Any = None,
                 cache: DecodedCache | None = None, source: int = 0, seed: int = 0,
                 boxes_known: bool | None = None) -> None:
        if boxes_known is None:
            boxes_known = (records.boxes_annotated if isinstance(records, RecordSet)
                           else any(s.has_box for s in records))
        self.boxes_known = bool(boxes_known)
        self.seed, self.epoch = int(seed), 0
        self.samples: list[Sample] = list(records)
        self.classes = check_class_names(classes)
        self.size, self.keep_ratio, self.source = int(size), bool(keep_ratio), int(source)
        index = {name: i for i, name in enumerate(self.classes)}
        self.labels: list[int] = []
        for s in self.samples:
            if s.label is not None and s.label not in index:
                raise DataError(f"label {s.label!r} is not one of the classes {self.classes}",
                                path=s.path)
            self.labels.append(-1 if s.label is None else index[s.label])
        if transform is not None:
            check_transform(transform)
        self.transform = transform
        if cache is not None:
            if (cache.size, cache.keep_ratio) != (self.size, self.keep_ratio):
                raise ConfigError(
                    f"cache holds size={cache.size}, keep_ratio={cache.keep_ratio} images; "
                    f"the dataset wants size={self.size}, keep_ratio={self.keep_ratio}")
            for s in self.samples:
                if s.path not in cache:
                    raise DataError("the decoded-image cache does not serve this file", path=s.path)
        self.cache = cache

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The letterboxed image (``S x S`` uint8) and boxes (network pixels) of a sample."""
        s = self.samples[index]
        if self.cache is not None:
            image, geo = self.cache.get(s.path)
        else:
            image, geo = decode_letterboxed(s.path, self.size, keep_ratio=self.keep_ratio)
        if (geo.width, geo.height) != (s.width, s.height):
            raise DataError(f"decoded image is {geo.width}x{geo.height} but its record says "
                            f"{s.width}x{s.height} (file changed since it was read?)",
                            path=s.path, kind="bad_image")
        boxes = clip(geo.forward(s.boxes), self.size, self.size).astype(np.float32)
        return image, boxes

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentation the items get (call before each epoch)."""
        self.epoch = int(epoch)

    def item_seed(self, index: int) -> int:
        """The augmentation seed of item ``index`` in the current epoch."""
        return int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image, boxes = self.load(index)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        lost = int((~valid).sum())
        boxes = boxes[valid]
        if self.transform is not None:
            if hasattr(self.transform, "set_random_seed"):
                self.transform.set_random_seed(self.item_seed(index))
            image, boxes, moved_out = augment(self.transform, image, boxes)
            lost += moved_out
        known = self.boxes_known and not (lost and len(boxes) == 0)
        target: Target = {"label": self.labels[index], "boxes": torch.from_numpy(boxes),
                          "index": index, "source": self.source, "boxes_lost": lost,
                          "box_known": known}
        return to_tensor(image), target


def collate(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Stack a batch; pad its boxes to the batch's largest box count.

    Returns:
        ``images`` (B, 1, S, S) float32 and ``targets``: ``labels`` (B,) long (-1 = none),
        ``label_mask`` (B,) bool, ``boxes`` (B, K, 4) float32 (K >= 1, zero padding),
        ``box_valid`` (B, K) bool, ``box_mask`` (B,) bool (the sample has a box),
        ``box_known`` (B,) bool (its boxes are annotated, even if there are none),
        ``index``, ``source`` and ``boxes_lost`` (B,) long.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    images = torch.stack([image for image, _ in batch])
    targets = [t for _, t in batch]
    k = max(1, max(len(t["boxes"]) for t in targets))
    boxes = torch.zeros((len(batch), k, 4), dtype=torch.float32)
    box_valid = torch.zeros((len(batch), k), dtype=torch.bool)
    for i, t in enumerate(targets):
        n = len(t["boxes"])
        if n:
            boxes[i, :n] = torch.as_tensor(t["boxes"], dtype=torch.float32)
            box_valid[i, :n] = True
    labels = torch.tensor([int(t["label"]) for t in targets], dtype=torch.long)

    def column(name: str) -> torch.Tensor:
        return torch.tensor([int(t.get(name, 0)) for t in targets], dtype=torch.long)

    return images, {
        "labels": labels,
        "label_mask": labels >= 0,
        "boxes": boxes,
        "box_valid": box_valid,
        "box_mask": box_valid.any(dim=1),
        "box_known": torch.tensor([bool(t.get("box_known", True)) for t in targets]),
        "index": column("index"),
        "source": column("source"),
        "boxes_lost": column("boxes_lost"),
    }


class MixedDataset(ConcatDataset):
    """Several :class:`MRIDataset` as one, each target's ``source`` set to its set's position.

    All sets must share the input size and the class list. Draw from it with a weighted
    sampler over :attr:`sizes`, e.g.
    ``EpochSampler(mixed.sizes, weights=[1.0, 0.5], seed=seed)`` (set ``set_epoch`` each epoch).
    """

    def __init__(self, datasets: Sequence[MRIDataset]) -> None:
        if not datasets:
            raise ConfigError("MixedDataset needs at least one data set")
        first = datasets[0]
        for d in datasets[1:]:
            if (d.size, d.keep_ratio) != (first.size, first.keep_ratio):
                raise ConfigError(f"mixed data sets disagree on the input: size={d.size}, "
                                  f"keep_ratio={d.keep_ratio} vs size={first.size}, "
                                  f"keep_ratio={first.keep_ratio}")
            if d.classes != first.classes:
                raise ConfigError(f"mixed data sets disagree on the classes: {d.classes} vs {first.classes}")
        super().__init__(datasets)
        self.classes = first.classes

    @property
    def sizes(self) -> list[int]:
        """Number of samples of each set, in order."""
        return [len(d) for d in self.datasets]

    def locate(self, index: int) -> tuple[int, int]:
        """``(set position, index within that set)`` of a global index."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        part = bisect.bisect_right(self.cumulative_sizes, index)
        return part, index - (self.cumulative_sizes[part - 1] if part else 0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        part, local = self.locate(index)
        image, target = self.datasets[part][local]
        target["source"] = part
        return image, target
