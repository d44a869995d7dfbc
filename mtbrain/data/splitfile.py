"""The split file written by ``mtbrain split`` and read wherever ``DATA`` is accepted.

A split file names its data set and lists, per part, the ``rel`` names of its samples.
``DATA`` may be ``split.json:val`` to select the ``val`` part (see :func:`parse_data_arg`).

Format (JSON)::

    {"format": "mtbrain-split", "version": 1,
     "data": "/abs/path/to/dataset", "layout": "kaggle_bbox", "policy": {...},
     "seed": 0, "fractions": {"val": 0.15, "test": 0.15},
     "parts": {"train": ["Glioma/images/a.jpg", ...], "val": [...], "test": [...]},
     "groups": [["Glioma/images/a.jpg", "Glioma/images/a_copy.jpg"], ...]}

``groups`` lists the duplicate groups of more than one image; each falls in one part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtbrain.errors import DataError
from mtbrain.io import write_json

SPLIT_FORMAT = "mtbrain-split"


@dataclass
class SplitFile:
    """A leak-free split of one data set into named parts."""

    data: str
    layout: str
    parts: dict[str, list[str]]
    policy: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    fractions: dict[str, float] = field(default_factory=dict)
    groups: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": SPLIT_FORMAT, "version": 1, "data": self.data, "layout": self.layout,
                "policy": self.policy, "seed": self.seed, "fractions": self.fractions,
                "parts": self.parts, "groups": self.groups}

    def write(self, path: str | Path) -> Path:
        """Write atomically as JSON."""
        return write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> SplitFile:
        """Read and validate a split file; errors name the file and the problem."""
        p = Path(path)
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError("split file not found", path=p) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            line = getattr(exc, "lineno", None)
            raise DataError(f"not valid JSON: {exc}", path=p, line=line) from None
        if not isinstance(obj, dict) or obj.get("format") != SPLIT_FORMAT:
            raise DataError(f"not an mtbrain split file (no \"format\": \"{SPLIT_FORMAT}\")", path=p)
        for key in ("data", "layout", "parts"):
            if key not in obj:
                raise DataError(f"split file lacks the key {key!r}", path=p)
        parts = obj["parts"]
        if not isinstance(parts, dict) or not all(
            isinstance(v, list) and all(isinstance(r, str) for r in v) for v in parts.values()
        ):
            raise DataError("'parts' must map part names to lists of sample names", path=p)
        data = Path(obj["data"])
        if not data.is_absolute():
            data = (p.parent / data).resolve()
        return cls(data=str(data), layout=obj["layout"], parts=parts,
                   policy=obj.get("policy", {}), seed=obj.get("seed", 0),
                   fractions=obj.get("fractions", {}), groups=obj.get("groups", []))

    def part(self, name: str, *, path: str | Path = "<split>") -> list[str]:
        """The sample names of one part; an unknown part is an error naming the known ones."""
        if name not in self.parts:
            raise DataError(f"split has no part {name!r}; parts: {sorted(self.parts)}", path=path)
        return self.parts[name]


def parse_data_arg(arg: str | Path) -> tuple[Path, str | None]:
    """Split ``"split.json:val"`` into ``(Path("split.json"), "val")``.

    A plain path gives ``(path, None)``. Only a ``.json`` path followed by ``:part`` is split,
    so folder names with colons still work.
    """
    text = str(arg)
    head, sep, tail = text.rpartition(":")
    if sep and head.lower().endswith(".json") and tail and "/" not in tail:
        return Path(head), tail
    return Path(text), None


def is_split_file(path: str | Path) -> bool:
    """True when ``path`` is a JSON file with the split format marker."""
    p = Path(path)
    if p.suffix.lower() != ".json" or not p.is_file():
        return False
    try:
        with open(p, encoding="utf-8") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return f'"{SPLIT_FORMAT}"' in head
