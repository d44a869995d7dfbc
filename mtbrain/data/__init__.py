"""Data: records, label policy, readers for every layout, and :func:`load_dataset`.

The public names are imported lazily (on first use), so ``import mtbrain.data`` stays
cheap and pulls in neither PIL nor the readers until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtbrain.data.policy import LabelPolicy
    from mtbrain.data.readers import list_layouts, load_dataset, write_coco
    from mtbrain.data.records import RecordSet, Sample

_EXPORTS: dict[str, str] = {
    "load_dataset": "mtbrain.data.readers",
    "list_layouts": "mtbrain.data.readers",
    "write_coco": "mtbrain.data.readers",
    "LabelPolicy": "mtbrain.data.policy",
    "RecordSet": "mtbrain.data.records",
    "Sample": "mtbrain.data.records",
}

__all__ = ["LabelPolicy", "RecordSet", "Sample", "list_layouts", "load_dataset", "write_coco"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
