"""Walking data folders: visible image files, and images paired with their label files.

Hidden entries (names starting with ``.``, e.g. ``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints``)
and ``__MACOSX`` folders are never data. Files whose suffix is not an image suffix
(``Thumbs.db``, ``desktop.ini``, ``README.md``) are not images and are passed over.
Listing uses :func:`os.scandir` only: no file is opened here.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mtbrain.data.image_io import IMAGE_EXTENSIONS
from mtbrain.errors import ProblemLog

LABEL_SUFFIX = ".txt"
# Files that may sit in a labels folder without being a label file of an image.
NOT_LABEL_FILES = frozenset({"classes.txt", "notes.txt", "readme.txt"})


def is_hidden(name: str) -> bool:
    """True for names that are never data: dot-files and macOS archive folders."""
    return name.startswith(".") or name == "__MACOSX"


def visible_dirs(folder: Path) -> list[Path]:
    """The visible sub-folders of ``folder``, sorted by name (empty if not a folder)."""
    try:
        with os.scandir(folder) as it:
            dirs = [Path(e.path) for e in it if not is_hidden(e.name) and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(dirs, key=lambda p: p.name)


def is_image_file_name(name: str) -> bool:
    """:func:`~mtbrain.data.image_io.is_image_name` on a bare name, without pathlib (fast)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def has_image_file(folder: Path) -> bool:
    """True when ``folder`` directly holds at least one visible image file."""
    try:
        with os.scandir(folder) as it:
            return any(e.is_file() and is_image_file_name(e.name) for e in it)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _walk(folder: Path, *, recursive: bool, images: bool, suffix: str) -> list[str]:
    found: list[str] = []
    stack = [os.fspath(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            if is_hidden(e.name):
                continue
            if e.is_dir():
                if recursive:
                    stack.append(e.path)
            elif is_image_file_name(e.name) if images else e.name.lower().endswith(suffix):
                found.append(e.path)
    return sorted(found)


def list_files(
    folder: Path, *, recursive: bool = True, images: bool = True, suffix: str = LABEL_SUFFIX
) -> list[Path]:
    """Visible image files (or, with ``images=False``, files with ``suffix``), sorted.

    Hidden files and folders are skipped; with ``recursive`` sub-folders are walked too.
    """
    return [Path(p) for p in _walk(folder, recursive=recursive, images=images, suffix=suffix)]


def _key(path: str, base: str) -> tuple[str, str]:
    """``(sub-folder under base, stem)`` of a file path found under ``base``."""
    rel = path[len(base) + 1 :]
    sub, name = os.path.split(rel)
    return sub.replace(os.sep, "/") or ".", os.path.splitext(name)[0]


@dataclass(frozen=True)
class Pair:
    """An image and its label file (``None`` when the label file is missing)."""

    image: Path
    label: Path | None
    labels_dir: Path
    key: tuple[str, str]

    @property
    def expected_label(self) -> Path:
        """Where the label file of the image is (or would be)."""
        sub, stem = self.key
        return self.labels_dir / sub / f"{stem}{LABEL_SUFFIX}"


def pair_images_labels(images_dir: Path, labels_dir: Path, log: ProblemLog) -> list[Pair]:
    """Pair ``images_dir/<sub>/<stem>.<ext>`` with ``labels_dir/<sub>/<stem>.txt``.

    Reports to ``log``: several images sharing one stem (their label file is ambiguous:
    each is skipped) and label files without an image. Returns the pairs, sorted by image.
    """
    image_base, label_base = os.fspath(images_dir), os.fspath(labels_dir)
    by_key: dict[tuple[str, str], list[str]] = defaultdict(list)
    for image in _walk(images_dir, recursive=True, images=True, suffix=""):
        by_key[_key(image, image_base)].append(image)

    labels: dict[tuple[str, str], str] = {}
    for label in _walk(labels_dir, recursive=True, images=False, suffix=LABEL_SUFFIX):
        key = _key(label, label_base)
        if key[0] == "." and os.path.basename(label).lower() in NOT_LABEL_FILES:
            continue
        labels[key] = label

    pairs: list[Pair] = []
    for key, images in sorted(by_key.items()):
        if len(images) > 1:
            names = ", ".join(os.path.basename(p) for p in images)
            expected = f"{key[1]}{LABEL_SUFFIX}"
            for image in images:
                log.report(
                    image,
                    f"{len(images)} images share the stem {key[1]!r} ({names}); the label file "
                    f"{expected} is ambiguous, rename or remove one",
                    kind="duplicate_stem",
                )
            continue
        label = labels.get(key)
        pairs.append(Pair(Path(images[0]), Path(label) if label else None, labels_dir, key))

    for key in sorted(set(labels) - set(by_key)):
        sub, stem = key
        where = (images_dir / sub).as_posix()
        log.report(
            labels[key],
            f"label file without an image (no {stem}.<image suffix> in {where})",
            kind="orphan_label",
        )
    return sorted(pairs, key=lambda p: os.fspath(p.image))
