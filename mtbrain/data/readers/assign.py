"""Turning an image's annotated boxes into tumour boxes and other boxes, by the label policy.

The rules (see :class:`mtbrain.data.policy.LabelPolicy`), in this order for each box:

1. A box of class ``no_tumor``, or any box on an image of class ``no_tumor``, follows
   ``no_tumor_boxes``: ``"ignore"`` moves it to ``other_boxes``; ``"keep"`` goes on to 2.
2. A box whose class differs from the image's class follows ``foreign_box_ids``:
   ``"keep"`` keeps it as a tumour box, ``"drop"`` moves it to ``other_boxes``,
   ``"error"`` is a problem.
3. Everything else is a tumour box.

Then ``multi_box`` reduces the tumour boxes (``all``, ``largest`` or their ``union``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtbrain.classes import NO_TUMOR
from mtbrain.data.boxes import area, union_box
from mtbrain.data.policy import LabelPolicy
from mtbrain.errors import DataError


def class_from_boxes(names: Sequence[str], boxes: np.ndarray) -> str | None:
    """The image class implied by its boxes' classes, for layouts without a class folder.

    Tumour classes decide when there are any (a whole-brain ``no_tumor`` box next to a
    tumour box does not make the image tumour-free); the most frequent class wins, a tie
    goes to the class of the largest box among the tied classes. ``None`` without boxes.
    """
    if not len(names):
        return None
    tumour = [i for i, n in enumerate(names) if n != NO_TUMOR]
    chosen = tumour or list(range(len(names)))
    counts = Counter(names[i] for i in chosen)
    top = max(counts.values())
    tied = {n for n, c in counts.items() if c == top}
    if len(tied) == 1:
        return tied.pop()
    areas = area(boxes)
    best = max((i for i in chosen if names[i] in tied), key=lambda i: areas[i])
    return names[best]


def assign_boxes(
    label: str | None,
    names: Sequence[str],
    boxes: np.ndarray,
    *,
    policy: LabelPolicy,
    path: Path,
    lines: Sequence[int | None] | None = None,
    refs: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split an image's boxes into ``(tumour boxes, other boxes)``, float32 xyxy pixels.

    Args:
        label: The image's class.
        names: Class name of each box.
        boxes: (N, 4) xyxy pixels.
        policy: The label policy.
        path: The annotation file, named in problems.
        lines: Line of each box in ``path`` (for problems), if it has lines.
        refs: How to name each box in a problem when it has no line (``"annotation 7"``).

    Raises:
        DataError: for a foreign box under ``foreign_box_ids="error"``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    tumour: list[int] = []
    other: list[int] = []
    for i, name in enumerate(names):
        if (name == NO_TUMOR or label == NO_TUMOR) and policy.no_tumor_boxes == "ignore":
            other.append(i)
        elif label is not None and name != label:
            if policy.foreign_box_ids == "error":
                line = lines[i] if lines is not None else None
                ref = f" ({refs[i]})" if refs is not None else ""
                raise DataError(
                    f"box of class {name!r}{ref} differs from the image's class {label!r} "
                    "(label policy foreign_box_ids='error'; 'keep' or 'drop' accept it)",
                    path=path,
                    line=line,
                    kind="foreign_box",
                )
            (tumour if policy.foreign_box_ids == "keep" else other).append(i)
        else:
            tumour.append(i)
    kept = boxes[tumour]
    if len(kept) > 1 and policy.multi_box == "largest":
        kept = kept[[int(np.argmax(area(kept)))]]
    elif len(kept) > 1 and policy.multi_box == "union":
        kept = union_box(kept)
    return kept.astype(np.float32), boxes[other].astype(np.float32)
