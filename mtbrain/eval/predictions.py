"""Reading the predictions file of ``mtbrain predict`` and ``mtbrain evaluate``.

One JSON list, one object per image (``image``, ``label``, ``probs``, ``box``,
``box_score``; or ``image`` and ``error`` for an unreadable input): the contract in
``CONTRACT.md``. Every reader of such a file (``tools/visualize_boxes.py``, the
benchmarks) goes through :func:`read_predictions`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtbrain.errors import DataError


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """The records of a predictions file (``mtbrain predict`` / ``evaluate``), checked.

    Raises:
        DataError: naming the file (and the line or record) for a missing or unreadable
            file, bad JSON, an empty list, or a record without ``image``, with a malformed
            ``box`` or with neither ``label`` nor ``error``.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("predictions file not found", path=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the predictions file: {exc}", path=file) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg} (column {exc.colno})", path=file,
                        line=exc.lineno) from None
    if not isinstance(obj, list):
        raise DataError(f"a predictions file holds a JSON list of records (as written by "
                        f"`mtbrain predict`), this one holds a {type(obj).__name__}", path=file)
    if not obj:
        raise DataError("the predictions list is empty", path=file)
    for i, rec in enumerate(obj):
        if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
            raise DataError(f"record {i} is not an object with an 'image' name", path=file)
        box = rec.get("box")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in box)):
            raise DataError(f"record {i} ({rec['image']}): 'box' must be [x1, y1, x2, y2] "
                            f"or null, got {box!r}", path=file)
        if rec.get("error") is None and not isinstance(rec.get("label"), str):
            raise DataError(f"record {i} ({rec['image']}): no 'label' (and no 'error')",
                            path=file)
    return obj
