"""Data-set readers, one per on-disk layout, behind a registry.

Importing this package registers the built-in layouts; autodetection tries them in the
order ``kaggle_bbox``, ``yolo_flat``, ``class_folders``, ``coco``. A new layout is a
:class:`Reader` subclass decorated with :func:`register_reader`.
"""

from __future__ import annotations

# Importing the reader modules registers them (autodetection order is by priority).
from mtbrain.data.readers import class_folders, kaggle_bbox, yolo_flat  # noqa: F401
from mtbrain.data.readers.coco import write_coco
from mtbrain.data.readers.load import load_dataset
from mtbrain.data.readers.registry import (
    Reader,
    describe_layouts,
    detect_layout,
    get_reader,
    list_layouts,
    register_reader,
)

__all__ = [
    "Reader",
    "describe_layouts",
    "detect_layout",
    "get_reader",
    "list_layouts",
    "load_dataset",
    "register_reader",
    "write_coco",
]
