"""mtbrain: find and name brain tumours on MRI with one multitask model."""

from mtbrain import _env  # noqa: F401  (must run before timm/albumentations are imported)

__version__ = "0.1.0"

__all__ = ["__version__"]
