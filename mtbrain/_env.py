"""Offline environment, set in one place before any third-party import.

mtbrain runs on machines without internet access. Several libraries reach for the
network at import or first use unless told otherwise; this module sets the variables
that stop them. It is imported first by :mod:`mtbrain` and by every entry point, and only
sets a variable when the user has not set it already.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OFFLINE_DEFAULTS: dict[str, str] = {
    # timm / huggingface_hub: no 46 s of retries when a hub name is resolved offline.
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # albumentations checks PyPI for a newer version at import.
    "NO_ALBUMENTATIONS_UPDATE": "1",
    # ultralytics (optional YOLO baseline): no hub, no font download, no settings sync.
    "YOLO_OFFLINE": "1",
}


def cache_root() -> Path:
    """Folder for mtbrain's own caches (decoded images, ultralytics settings)."""
    return Path(os.environ.get("MTBRAIN_CACHE", Path.home() / ".cache" / "mtbrain"))


def configure_offline() -> None:
    """Set the offline variables that the user has not set already."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_root() / "ultralytics"))


def ensure_ultralytics_font() -> Path:
    """Place a local font where ultralytics looks for ``Arial.ttf``.

    ultralytics downloads Arial.ttf on its first plot or dataset check; with a file
    already at ``$YOLO_CONFIG_DIR/Ultralytics/Arial.ttf`` it never tries. matplotlib ships
    DejaVu Sans, which serves the same purpose.
    """
    configure_offline()
    target = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics" / "Arial.ttf"
    if not target.exists():
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    return target


configure_offline()
