"""Reading the predictions file of ``mtbrain predict`` and ``mtbrain evaluate``, and
matching its records to the samples of a data set.

One JSON list, one object per image (``image``, ``label``, ``probs``, ``box``,
``box_score``; or ``image`` and ``error`` for an unreadable input): the contract in
``CONTRACT.md``. Every reader of such a file (``tools/visualize_boxes.py``, the
benchmarks) goes through :func:`read_predictions` and :func:`match_predictions`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from mtbrain.data.records import RecordSet
from mtbrain.errors import DataError, MtbrainWarning


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


def match_predictions(predictions: list[dict[str, Any]], records: RecordSet, path: str | Path,
                      data: str) -> list[dict[str, Any]]:
    """The predictions of samples of ``records``, named by the samples' ``rel``.

    A record names its image by ``rel``, or by a file path (absolute, or relative to the
    current folder) of a sample's image. Records naming no sample are dropped with a
    :class:`~mtbrain.errors.MtbrainWarning` that counts them.
    """
    rels = {s.rel for s in records}
    by_path = {s.path.resolve(): s.rel for s in records}
    matched, unknown = [], []
    for rec in predictions:
        name = rec["image"]
        if name in rels:
            matched.append(rec)
            continue
        rel = by_path.get(Path(name).resolve())
        if rel is not None:
            matched.append({**rec, "image": rel})
        else:
            unknown.append(name)
    if not matched:
        raise DataError(f"none of the {len(predictions)} predictions names an image of {data} "
                        f"(e.g. {unknown[0]!r}); names must be the images' paths relative to "
                        f"the data root, as `mtbrain predict --input` writes them", path=path)
    if unknown:
        warnings.warn(f"{path}: {len(unknown)} prediction(s) name images that are not in "
                      f"{data} (e.g. {unknown[0]!r}); ignored", MtbrainWarning, stacklevel=2)
    return matched
