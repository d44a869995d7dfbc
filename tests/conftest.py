"""Shared test fixtures: the real-data folder and tiny synthetic data trees.

Real data (``../shared/data`` relative to the repo root, or ``$MTBRAIN_DATA``) is never
copied into the repository; tests that need it use the :func:`real_data` fixture, which
skips with a clear reason when the folder is absent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

import mtbrain  # noqa: F401  (offline environment before any test imports albumentations/timm)

REPO_ROOT = Path(__file__).resolve().parents[1]

# YOLO lines per image; ``None`` writes no label file at all.
LabelSpec = Sequence[str] | str | None
KaggleSpec = Mapping[str, Mapping[str, LabelSpec]]

DEFAULT_KAGGLE_SPEC: dict[str, dict[str, LabelSpec]] = {
    # folder class -> {image file name -> YOLO label lines}
    "Glioma": {
        "g1.jpg": ["0 0.5 0.5 0.25 0.25"],
        "g2.jpg": ["0 0.25 0.25 0.25 0.25", "3 0.75 0.75 0.125 0.125"],  # foreign class-3 box
    },
    "Meningioma": {"m1.jpg": ["1 0.5 0.5 0.5 0.25"]},
    "No Tumor": {"n1.jpg": ["2 0.5 0.5 0.75 0.75"]},  # whole-brain box, as in the Kaggle set
    "Pituitary": {"p1.png": ["3 0.5 0.5 0.125 0.25"]},
}


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def single_thread() -> Callable[[], contextlib.AbstractContextManager[None]]:
    """``with single_thread():`` runs torch with one thread inside the block (for module- and
    session-scoped fixtures, which cannot use :func:`one_thread`)."""
    return lambda: _torch_threads(1)


@pytest.fixture
def one_thread(single_thread: Callable[[], contextlib.AbstractContextManager[None]],
               ) -> Iterator[None]:
    """One torch thread for the test. Tiny 64 px models gain nothing from 2 threads, and
    OpenMP with 2 threads on 2 busy cores (other processes, data-loader workers) is up to
    100x slower."""
    with single_thread():
        yield


@pytest.fixture
def real_data() -> Path:
    """Folder of the real data sets (``$MTBRAIN_DATA`` or ``../shared/data``); skips when absent."""
    env = os.environ.get("MTBRAIN_DATA")
    root = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not root.is_dir():
        where = f"$MTBRAIN_DATA={env}" if env else str(root)
        pytest.skip(f"real data not found at {where}; set MTBRAIN_DATA to run this test")
    return root


def write_image(
    path: Path, size: tuple[int, int] = (32, 32), *, mode: str = "L", seed: int = 0
) -> Path:
    """Write a tiny random image (format from the suffix) and return its path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    im = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


@pytest.fixture
def make_image() -> Callable[..., Path]:
    """``make_image(path, size=(32, 32), *, mode="L", seed=0)``: write a tiny image."""
    return write_image


@pytest.fixture
def make_kaggle_tree() -> Callable[..., Path]:
    """Write a tiny Kaggle box-layout tree: ``<root>/<split>/<Class>/images|labels``.

    ``make_kaggle_tree(root, spec=None, *, split="Train", size=(32, 32))`` writes, for each
    ``{Class: {image name: label lines}}`` in ``spec`` (default :data:`DEFAULT_KAGGLE_SPEC`),
    the image and ``labels/<stem>.txt`` (no label file when the lines are ``None``; a string
    is written verbatim). With ``split=None`` the classes sit directly under ``root``.
    Returns ``root``.
    """

    def make(
        root: Path,
        spec: KaggleSpec | None = None,
        *,
        split: str | None = "Train",
        size: tuple[int, int] = (32, 32),
    ) -> Path:
        base = root / split if split else root
        for i, (cls, images) in enumerate((spec or DEFAULT_KAGGLE_SPEC).items()):
            for j, (name, lines) in enumerate(images.items()):
                write_image(base / cls / "images" / name, size, seed=100 * i + j)
                if lines is None:
                    continue
                label = base / cls / "labels" / (Path(name).stem + ".txt")
                label.parent.mkdir(parents=True, exist_ok=True)
                text = lines if isinstance(lines, str) else "".join(f"{ln}\n" for ln in lines)
                label.write_text(text, encoding="utf-8")
        return root

    return make
