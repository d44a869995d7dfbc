"""Reading images of any mode into one layout.

Real MRI sets mix JPEG and PNG (sometimes PNG bytes under a ``.jpg`` name), and RGB,
grayscale, RGBA, palette and 16-bit modes. Everything is brought to **8-bit grayscale**
(``H x W`` uint8), the layout the rest of mtbrain uses; the model turns it into 3 channels
when its backbone wants them. The format is taken from the file's bytes, not its name.

Mode policy:
    - ``L`` (8-bit grey): as is.
    - ``RGB``/``YCbCr``/``CMYK``: ITU-R 601 luma (PIL's ``convert("L")``).
    - ``RGBA``/``LA``/``PA``: composited over black (MRI background), then luma.
    - ``P`` (palette): expanded through its palette (with transparency), then as above.
    - ``I;16*``/``I``/``F`` (16-bit, 32-bit, float): min-max scaled to 0..255.
    - ``1`` (bilevel): 0/255.

EXIF orientation tags are ignored: box labels refer to the stored pixel grid.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mtbrain.errors import DataError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"}
)

# Refuse decompression bombs loudly rather than with PIL's generic warning.
Image.MAX_IMAGE_PIXELS = 20000 * 20000


def is_image_name(path: str | Path) -> bool:
    """True for a visible file whose suffix is an image suffix (case-insensitive)."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels.

    Raises:
        DataError: naming the file, when it is missing, empty or not an image.
    """
    p = Path(path)
    try:
        if p.stat().st_size == 0:
            raise DataError("empty file (0 bytes), not an image", path=p, kind="bad_image")
        with Image.open(p) as im:
            w, h = im.size
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError("file not found", path=p, kind="bad_image") from None
    except UnidentifiedImageError:
        raise DataError("not an image file (unknown or corrupt format)", path=p, kind="bad_image") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image header: {exc}", path=p, kind="bad_image") from None
    if w <= 0 or h <= 0:
        raise DataError(f"image has zero size {w}x{h}", path=p, kind="bad_image")
    return w, h


def to_gray(im: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to an ``H x W`` uint8 array (see module policy)."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba)
        mode = "RGB"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
            return np.zeros(arr.shape[:2], dtype=np.uint8)
        return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    if mode == "1":
        return np.asarray(im, dtype=np.uint8) * 255
    if mode != "L":
        im = im.convert("L")
    return np.asarray(im, dtype=np.uint8)


def read_gray(path: str | Path) -> np.ndarray:
    """Decode an image file fully into an ``H x W`` uint8 array.

    Raises:
        DataError: naming the file, when it is empty, truncated, corrupt or not an image.
    """
    p = Path(path)
    image_size(p)  # clear messages for missing/empty/non-image files
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                im.load()
                return to_gray(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            msg = "truncated image file (the data ends early)"
        raise DataError(f"cannot decode image: {msg}", path=p, kind="bad_image") from None
