"""mtbrain: find and name brain tumours on MRI with one multitask model."""

from typing import Any

from mtbrain import _env  # noqa: F401  (must run before timm/albumentations are imported)

__version__ = "0.1.0"

# Imported on first use, so that `import mtbrain` stays light (no torch/timm).
_LAZY = {
    "Model": "mtbrain.models",
    "ModelConfig": "mtbrain.models",
    "LossConfig": "mtbrain.models",
    "Prediction": "mtbrain.models",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mtbrain' has no attribute {name!r}")
