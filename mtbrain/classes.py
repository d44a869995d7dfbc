"""Class names: the canonical 4-class names and the parsing of other naming schemes.

Folder names are matched case-insensitively with spaces, underscores and hyphens ignored,
so ``No Tumor``, ``notumor`` and ``no_tumor`` all map to ``no_tumor`` (CONTRACT.md).
Sets whose folders are not the 4 classes keep their own names; the 44-class naming
``"<Tumour> <Sequence>"`` (``Astrocitoma T1C+``, ``_NORMAL T2``) is parsed into a tumour
type and an MRI sequence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

CANONICAL_CLASSES: tuple[str, ...] = ("glioma", "meningioma", "no_tumor", "pituitary")
NO_TUMOR = "no_tumor"

_ALIASES: dict[str, str] = {
    "glioma": "glioma",
    "gliomatumor": "glioma",
    "meningioma": "meningioma",
    "meningiomatumor": "meningioma",
    "notumor": "no_tumor",
    "notumour": "no_tumor",
    "nontumor": "no_tumor",
    "healthy": "no_tumor",
    "pituitary": "pituitary",
    "pituitarytumor": "pituitary",
    "pituitarytumour": "pituitary",
}

_SEQUENCE = re.compile(r"^(?P<tumour>.*?)[\s_-]+(?P<seq>T1C\+|T1CE|T1C|T1|T2|FLAIR|PD|DWI)$", re.I)


def name_key(name: str) -> str:
    """The matching key of a name: lower case, no spaces, underscores or hyphens."""
    return re.sub(r"[\s_\-]+", "", name).lower()


def canonical_class(name: str) -> str | None:
    """The canonical 4-class name for a folder or label name, or ``None``."""
    return _ALIASES.get(name_key(name))


def parse_tumour_sequence(name: str) -> tuple[str, str] | None:
    """Split a 44-class style name into ``(tumour_type, sequence)``.

    ``"Astrocitoma T1C+"`` gives ``("astrocitoma", "T1C+")``; ``"_NORMAL T2"`` gives
    ``("normal", "T2")``. Returns ``None`` when the name has no sequence suffix.
    """
    match = _SEQUENCE.match(name.strip())
    if not match:
        return None
    tumour = re.sub(r"[\s_\-]+", "_", match["tumour"].strip(" _-")).lower()
    if not tumour:
        return None
    return tumour, match["seq"].upper()


def class_names_for(folder_names: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Class names of a set and the map from each folder name to its class.

    When every folder maps to a canonical class, the classes are the canonical 4 in their
    fixed order (so YOLO ids 0..3 of the Kaggle set line up). Otherwise the set keeps its
    own names, sorted.
    """
    folders = sorted(set(folder_names))
    canon = {f: canonical_class(f) for f in folders}
    if folders and all(canon.values()):
        mapping = {f: c for f, c in canon.items() if c is not None}
        return list(CANONICAL_CLASSES), mapping
    return folders, {f: f for f in folders}


def check_class_names(names: Sequence[str]) -> list[str]:
    """Validate a list of class names (non-empty, unique) and return it as a list."""
    names = list(names)
    if not names:
        raise ValueError("class list is empty")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate class names: {sorted(dup)}")
    return names
