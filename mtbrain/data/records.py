"""Sample records: what every reader returns, whatever the layout on disk.

A :class:`Sample` is one image with its class label (or none) and its tumour boxes (zero or
more, **xyxy pixels of the original image**, see :mod:`mtbrain.data.boxes`). A
:class:`RecordSet` is the samples of one data set with its class names, the layout it was
read from, and the problems found while reading it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mtbrain.errors import ConfigError, ProblemLog


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


@dataclass
class Sample:
    """One image and its annotations.

    Attributes:
        path: Absolute path of the image file.
        rel: Path relative to the data set root, with ``/`` separators: the sample's stable
            name in splits, predictions and reports.
        label: Class name, or ``None`` when the sample has no class label.
        boxes: Tumour boxes the box head learns from, (N, 4) float32 xyxy original pixels.
            Empty when the image has no tumour box (``has_box`` is then False).
        width: Original image width in pixels.
        height: Original image height in pixels.
        source: Name of the data set the sample came from.
        other_boxes: Annotated boxes that are *not* tumour boxes under the label policy
            (e.g. the whole-brain box on "No Tumor" images), kept for evaluations that
            count them.
        split: The upstream split folder (``Train``, ``Testing``...) when the layout has one.
        tumour_type: For names like ``Astrocitoma T1C+``: the tumour type (``astrocitoma``).
        sequence: For names like ``Astrocitoma T1C+``: the MRI sequence (``T1C+``).
    """

    path: Path
    rel: str
    label: str | None
    width: int
    height: int
    source: str
    boxes: np.ndarray = field(default_factory=_empty_boxes)
    other_boxes: np.ndarray = field(default_factory=_empty_boxes)
    split: str | None = None
    tumour_type: str | None = None
    sequence: str | None = None

    @property
    def has_box(self) -> bool:
        """True when the sample has at least one tumour box (box loss applies)."""
        return len(self.boxes) > 0

    @property
    def has_label(self) -> bool:
        """True when the sample has a class label (class loss applies)."""
        return self.label is not None


@dataclass
class RecordSet:
    """The samples of one data set.

    Attributes:
        root: The folder (or json file) the set was read from.
        layout: The reader that read it (``kaggle_bbox``, ``yolo_flat``, ``class_folders``,
            ``coco``).
        classes: Class names in class-index order.
        samples: The samples, in a deterministic order (sorted by ``rel``).
        problems: Problems found while reading (skipped samples), under ``on_error="skip"``.
    """

    root: Path
    layout: str
    classes: list[str]
    samples: list[Sample]
    problems: ProblemLog = field(default_factory=lambda: ProblemLog("skip"))

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    @property
    def name(self) -> str:
        return self.samples[0].source if self.samples else self.root.name

    @property
    def boxes_annotated(self) -> bool:
        """True when the layout annotates tumour boxes: an image without a box has none.

        False for classification-only layouts (class folders): their tumour images have a
        tumour nobody drew, so they teach neither box regression nor box confidence.
        """
        from mtbrain.data.readers import get_reader

        try:
            return get_reader(self.layout).has_boxes
        except ConfigError:  # an unregistered layout name: judge by the samples
            return any(s.has_box or len(s.other_boxes) for s in self.samples)

    def class_index(self, label: str | None) -> int:
        """Index of a class name; -1 for ``None`` (no label)."""
        return -1 if label is None else self.classes.index(label)

    def subset(self, rels: Iterable[str], *, strict: bool = True) -> RecordSet:
        """The samples whose ``rel`` is in ``rels``, in the order of ``rels``.

        With ``strict``, a name that is not in the set raises ``KeyError`` naming it.
        """
        index = {s.rel: s for s in self.samples}
        chosen = []
        for rel in rels:
            if rel in index:
                chosen.append(index[rel])
            elif strict:
                raise KeyError(f"{rel!r} is not a sample of {self.root}")
        return replace(self, samples=chosen)

    def counts(self) -> Counter[str]:
        """Number of samples per class (``None`` for unlabelled samples)."""
        return Counter(s.label for s in self.samples)
