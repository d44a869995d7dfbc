"""Pieces every reader shares: problem routing, class-name sets, and the final record set."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mtbrain.classes import CANONICAL_CLASSES, canonical_class, name_key
from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import DataError, ProblemLog


def report(log: ProblemLog, error: DataError) -> None:
    """Route a sample's :class:`DataError` through the log (raise, or record and skip).

    Called from an ``except`` block: under ``on_error="raise"`` the error itself is raised
    again, without a second chained traceback.
    """
    if log.on_error == "raise":
        raise error from None
    p = error.problem
    log.report(p.path, p.problem, line=p.line, kind=p.kind)


def rel_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators (a sample's stable name)."""
    full, base = os.fspath(path), os.fspath(root)
    if full.startswith(base + os.sep):  # the fast path: no pathlib parsing
        return full[len(base) + 1 :].replace(os.sep, "/")
    return path.relative_to(root).as_posix()


def class_set(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The record set's classes for annotation class names, and each name's class.

    When every name is one of the canonical 4 classes (in any spelling), the classes are
    the canonical 4 in their fixed order; otherwise the names as given, in their order.
    """
    canon = {n: canonical_class(n) for n in names}
    if names and all(canon.values()):
        return list(CANONICAL_CLASSES), {n: c for n, c in canon.items() if c is not None}
    return list(dict.fromkeys(names)), {n: n for n in names}


def match_class(folder: str, classes: Sequence[str]) -> str | None:
    """The class in ``classes`` a folder name stands for (canonical or same key), or None."""
    canon = canonical_class(folder)
    if canon is not None and canon in classes:
        return canon
    key = name_key(folder)
    return next((c for c in classes if name_key(c) == key), None)


def finish(
    root: Path, layout: str, classes: list[str], samples: list[Sample], log: ProblemLog
) -> RecordSet:
    """Sort the samples by ``rel`` and build the record set; no usable sample is an error."""
    if not samples:
        detail = f": {log.summary()}" if len(log) else ""
        raise DataError(
            f"no usable images found ({layout} layout){detail}", path=root, kind="empty"
        )
    samples.sort(key=lambda s: s.rel)
    return RecordSet(
        root=root,
        layout=layout,
        classes=list(classes),
        samples=samples,
        problems=ProblemLog("skip", list(log.problems)),
    )
