"""YOLO label files (``cls cx cy w h``, normalised) and class-name files, validated.

Every problem names the file, the line (1-based, counted in the file as written) and
what is wrong. Files may have a UTF-8 byte-order mark, CRLF line ends and blank lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtbrain.data.boxes import clip, convert
from mtbrain.errors import DataError

YOLO_COLUMNS = "class cx cy w h"
# Slack for float rounding of 6-decimal labels (cy + h/2 = 1.0000000000000002): not a quirk.
ROUNDING_SLACK = 1e-6
NAMES_FILES: tuple[str, ...] = (
    "data.yaml",
    "data.yml",
    "dataset.yaml",
    "dataset.yml",
    "classes.txt",
)


def read_lines(path: Path, *, what: str = "label file") -> list[tuple[int, str]]:
    """The non-blank lines of a text file as ``(line number, stripped text)``.

    Raises:
        DataError: when the file cannot be read or is not UTF-8 text.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read {what}: {exc.strerror or exc}", path=path, kind="bad_label"
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{what} is not UTF-8 text", path=path, kind="bad_label") from None
    lines = text.splitlines()
    return [(i, ln.strip()) for i, ln in enumerate(lines, start=1) if ln.strip()]


@dataclass(frozen=True)
class YoloBoxes:
    """The boxes of one label file.

    Attributes:
        ids: Class id of each box, (N,) int64.
        boxes: Boxes as xyxy pixels of the image, (N, 4) float64, clipped to the image.
        lines: Line number of each box in the file.
    """

    ids: np.ndarray
    boxes: np.ndarray
    lines: list[int]


def _number(token: str, column: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ValueError(f"{column} is not a number: {token!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{column} is not a finite number: {token!r}")
    return value


def parse_yolo_line(
    text: str, *, num_classes: int | None, names: list[str] | None = None
) -> tuple[int, list[float]]:
    """Parse one ``cls cx cy w h`` line into ``(class id, [cx, cy, w, h])``.

    Checks the column count, numbers, finiteness, the class id and a positive size; the
    position is checked by :func:`outside_problems` once the file's boxes are converted.

    Raises:
        ValueError: saying what is wrong with the line (the caller adds file and line).
    """
    tokens = text.split()
    if len(tokens) != 5:
        extra = " (polygon/segment labels are not supported)" if len(tokens) > 5 else ""
        raise ValueError(f"expected 5 columns '{YOLO_COLUMNS}', got {len(tokens)}{extra}")
    cls_value = _number(tokens[0], "class id")
    if cls_value != int(cls_value):
        raise ValueError(f"class id must be a whole number, got {tokens[0]!r}")
    cls = int(cls_value)
    if cls < 0 or (num_classes is not None and cls >= num_classes):
        known = f"0..{num_classes - 1}" if num_classes else "none"
        named = f" ({', '.join(names)})" if names else ""
        raise ValueError(f"unknown class id {cls}; known ids: {known}{named}")
    values = [_number(t, c) for t, c in zip(tokens[1:], ("cx", "cy", "w", "h"), strict=True)]
    if values[2] <= 0 or values[3] <= 0:
        raise ValueError(
            f"box width and height must be positive, got w={values[2]:g} h={values[3]:g}"
        )
    return cls, values


def outside_problems(xyxy_n: np.ndarray, *, tolerance: float) -> list[str | None]:
    """For each normalised xyxy box: what is wrong with its position, or ``None``.

    A box may leave [0, 1] by at most ``tolerance`` (it is then clipped); after clipping it
    must still have an area.
    """
    limit = tolerance + ROUNDING_SLACK
    outside = (xyxy_n < -limit).any(axis=1) | (xyxy_n > 1 + limit).any(axis=1)
    clipped = xyxy_n.clip(0.0, 1.0)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    problems: list[str | None] = []
    for box, out, flat in zip(xyxy_n, outside, empty, strict=True):
        if out:
            x1, y1, x2, y2 = (float(v) for v in box)
            problems.append(
                f"box outside the image: corners x1={x1:g} y1={y1:g} x2={x2:g} y2={y2:g} "
                f"leave [0, 1] by more than box_tolerance={tolerance:g}"
            )
        else:
            problems.append("box has no area inside the image after clipping" if flat else None)
    return problems


def read_yolo_file(
    path: Path,
    *,
    width: int,
    height: int,
    tolerance: float,
    num_classes: int | None,
    names: list[str] | None = None,
) -> YoloBoxes:
    """Read and validate a YOLO label file; boxes come back in pixels of a WxH image.

    Boxes leaving the image by at most ``tolerance`` (normalised) are clipped to it.

    Raises:
        DataError: at the first bad line, naming the file, the line and the problem.
    """
    ids: list[int] = []
    rows: list[list[float]] = []
    lines: list[int] = []
    for number, text in read_lines(path):
        try:
            cls, values = parse_yolo_line(text, num_classes=num_classes, names=names)
        except ValueError as exc:
            raise DataError(str(exc), path=path, line=number, kind="bad_label") from None
        ids.append(cls)
        rows.append(values)
        lines.append(number)
    pixels = convert(
        np.array(rows, dtype=np.float64).reshape(-1, 4),
        "cxcywh_n",
        "xyxy",
        width=width,
        height=height,
    )
    scale = np.array([width, height, width, height], dtype=np.float64)
    for number, problem in zip(
        lines, outside_problems(pixels / scale, tolerance=tolerance), strict=True
    ):
        if problem is not None:
            raise DataError(problem, path=path, line=number, kind="bad_label")
    return YoloBoxes(np.array(ids, dtype=np.int64), clip(pixels, width, height), lines)


def _names_from_yaml(path: Path) -> list[str] | None:
    import yaml

    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise DataError(
            f"not valid YAML: {exc.problem}", path=path, line=line, kind="names"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read YAML: {exc}", path=path, kind="names") from None
    if not isinstance(obj, dict) or "names" not in obj:
        return None
    names = obj["names"]
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DataError(
                "'names' keys must be class ids 0, 1, ...", path=path, kind="names"
            ) from None
        if sorted(by_id) != list(range(len(by_id))):
            raise DataError(
                f"'names' ids must be 0..{len(by_id) - 1} without gaps, got {sorted(by_id)}",
                path=path,
                kind="names",
            )
        return [by_id[i] for i in range(len(by_id))]
    if isinstance(names, list) and all(isinstance(n, str | int) for n in names):
        return [str(n) for n in names]
    raise DataError(
        "'names' must be a list of class names or a mapping id -> name", path=path, kind="names"
    )


def read_names_file(root: Path) -> tuple[list[str], Path] | None:
    """Class names by YOLO id from ``data.yaml`` (``names``) or ``classes.txt`` in ``root``.

    Only ``names`` is used from a YAML file (its ``path``/``train``/``val`` keys are not).
    Returns ``(names, file)`` or ``None`` when there is no such file.

    Raises:
        DataError: for a malformed file, or duplicate or empty names.
    """
    for file_name in NAMES_FILES:
        path = root / file_name
        if not path.is_file():
            continue
        if path.suffix == ".txt":
            names = [text for _, text in read_lines(path, what="class-name file")]
        else:
            names = _names_from_yaml(path)
            if names is None:
                continue
        if not names:
            raise DataError("the class-name list is empty", path=path, kind="names")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DataError(f"duplicate class names {dup}", path=path, kind="names")
        return names, path
    return None
