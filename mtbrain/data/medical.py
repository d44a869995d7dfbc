"""Medical image files as 8-bit grey images: DICOM (pydicom) and NIfTI (nibabel).

Both readers need the optional extra ``medical`` (``pip install 'mtbrain[medical]'``) and
return ``H x W`` uint8 arrays, the layout the rest of mtbrain uses (see
:mod:`mtbrain.data.image_io`).

DICOM (``.dcm``, ``.dicom``, or any file with the ``DICM`` marker at byte 128)
    1. the modality LUT (Rescale Slope/Intercept, or a Modality LUT Sequence) gives stored
       values their meaning;
    2. the VOI transform of the file (its VOI LUT Sequence, else its first Window
       Center/Width) is applied and its output range mapped linearly to 0..255; without
       one, the image's own min..max is mapped to 0..255;
    3. ``MONOCHROME1`` (white = low values) is inverted, so that bright means high signal
       as in ``MONOCHROME2``; ``PALETTE COLOR`` goes through its palette, and colour images
       become grey by ITU-R 601 luma.

    A multi-frame file gives one image per frame (named ``file.dcm#frame003``).
NIfTI (``.nii``, ``.nii.gz``)
    The volume is reoriented to the closest canonical (RAS+) orientation
    (``nibabel.as_closest_canonical``), so ``axis`` 0, 1 and 2 are sagittal, coronal and
    axial whatever the file's voxel order, and slice indices count along that canonical
    axis (for the usual LAS/RAS files, the stored index along axis 2). Intensities (after
    the file's scaling) are mapped to 0..255 between the volume's 0.5 and 99.5 percentiles,
    the same for every slice. Each slice is shown as radiologists view it (anterior or
    superior up, the patient's right on the image's left). Slice ``k`` along ``axis`` is
    named ``file.nii.gz#axis2:slice040``. A 4-D volume (several time points) is refused.

Unreadable files raise :class:`~mtbrain.errors.DataError` naming the file;
:func:`expand_inputs` turns them into error items, so ``mtbrain predict`` writes the usual
error record and goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtbrain.errors import ConfigError, DataError

DICOM_SUFFIXES: frozenset[str] = frozenset({".dcm", ".dicom"})
NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
DICOM_MAGIC_OFFSET = 128
NIFTI_PERCENTILES = (0.5, 99.5)
SliceChoice = str | Sequence[int] | None


def _name(path: str | Path) -> str:
    return Path(path).name.lower()


def is_nifti_name(path: str | Path) -> bool:
    """True for a visible file named ``*.nii`` or ``*.nii.gz`` (case-insensitive)."""
    name = _name(path)
    return not name.startswith(".") and name.endswith(NIFTI_SUFFIXES)


def has_dicom_magic(path: str | Path) -> bool:
    """True when the file carries the DICOM part-10 marker ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as handle:
            handle.seek(DICOM_MAGIC_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_file(path: str | Path) -> bool:
    """A ``.dcm``/``.dicom`` name, or a suffix-less file with the DICOM marker."""
    p = Path(path)
    if p.name.startswith("."):
        return False
    if p.suffix.lower() in DICOM_SUFFIXES:
        return True
    return p.suffix == "" and p.is_file() and has_dicom_magic(p)


def is_medical_file(path: str | Path) -> bool:
    """A file :func:`read_medical` reads (DICOM or NIfTI)."""
    return is_nifti_name(path) or is_dicom_file(path)


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"reading DICOM and NIfTI files needs {module}: "
                          "pip install 'mtbrain[medical]'") from None


def _scale(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly to 0..255 (clipped); a flat range gives zeros."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    out = (np.asarray(arr, dtype=np.float64) - lo) * (255.0 / (hi - lo))
    return np.round(np.clip(np.nan_to_num(out, nan=0.0), 0, 255)).astype(np.uint8)


# --------------------------------------------------------------------------- DICOM


def dicom_to_gray(ds: Any, pixels: np.ndarray) -> np.ndarray:
    """One frame of a DICOM data set (stored values) -> ``H x W`` uint8 (module doc rules)."""
    from PIL import Image

    from mtbrain.data.image_io import to_gray

    processing = _import("pydicom.pixels.processing")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        pixels = processing.apply_color_lut(pixels, ds)
        photometric = "RGB"
    if pixels.ndim == 3:  # colour (pydicom gives RGB for YBR too): luma
        rgb = _scale(pixels, 0, float(pixels.max()) if pixels.dtype != np.uint8 else 255)
        return to_gray(Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB"))
    values = processing.apply_modality_lut(pixels, ds)
    lut = ds.get("VOILUTSequence")
    if lut:  # a VOI LUT: its output is 0 .. 2**bits - 1 (PS3.3 C.11.2.1.1)
        entries, first, bits = (int(v) for v in lut[0].LUTDescriptor)
        entries = entries or 65536
        # clip the input to the LUT first: pydicom 3.0 wraps values beyond an 8-bit LUT
        index = np.clip(np.round(values), first, first + entries - 1).astype(np.int64)
        gray = _scale(processing.apply_voi(index, ds, index=0), 0, 2**bits - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        windowed = processing.apply_windowing(values, ds, index=0)
        # the window's output range: the lowest and highest inputs pushed through it
        probe = np.array([float(values.min()) - 1e9, float(values.max()) + 1e9])
        lo, hi = (float(v) for v in processing.apply_windowing(probe, ds, index=0))
        gray = _scale(windowed, min(lo, hi), max(lo, hi))
    else:
        values = np.asarray(values, dtype=np.float64)
        gray = _scale(values, float(np.nanmin(values)), float(np.nanmax(values)))
    return 255 - gray if photometric == "MONOCHROME1" else gray


def read_dicom(path: str | Path) -> list[np.ndarray]:
    """The frames of a DICOM file as ``H x W`` uint8 images (one for a single-frame file).

    Raises:
        DataError: naming the file when it is missing, not DICOM, holds no image, or its
            pixel data cannot be decoded (e.g. a compression without its decoder).
        ConfigError: when pydicom is not installed.
    """
    pydicom = _import("pydicom")
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", path=p, kind="bad_image")
    try:
        ds = pydicom.dcmread(p)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad files
        raise DataError(f"not a readable DICOM file: {str(exc)[:200]}", path=p,
                        kind="bad_image") from None
    if "PixelData" not in ds:
        raise DataError("DICOM file holds no image (no Pixel Data)", path=p, kind="bad_image")
    try:
        pixels = ds.pixel_array
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        colour = int(ds.get("SamplesPerPixel", 1) or 1) > 1
        stack = pixels if frames > 1 else pixels[None]
        if stack.ndim != (4 if colour else 3):
            raise ValueError(f"unexpected pixel array shape {pixels.shape}")
        return [dicom_to_gray(ds, frame) for frame in stack]
    except Exception as exc:  # noqa: BLE001 - decoders raise many types
        raise DataError(f"cannot decode the DICOM pixel data: {str(exc)[:200]}", path=p,
                        kind="bad_image") from None


# --------------------------------------------------------------------------- NIfTI


def parse_slices(text: str) -> SliceChoice:
    """``"all"``, ``"middle"`` or indices and inclusive ranges: ``"40"``, ``"30-60,75"``."""
    text = text.strip().lower()
    if text in ("all", "middle"):
        return text
    indices: list[int] = []
    try:
        for part in text.split(","):
            a, sep, b = part.strip().partition("-")
            lo = int(a)
            hi = int(b) if sep else lo
            if lo < 0 or hi < lo:
                raise ValueError
            indices.extend(range(lo, hi + 1))
    except ValueError:
        raise ConfigError(f"slices must be 'all', 'middle' or indices like '40' or "
                          f"'30-60,75', got {text!r}") from None
    return indices


def _slice_indices(slices: SliceChoice, n: int, path: Path, axis: int) -> list[int]:
    if slices is None or slices == "all":
        return list(range(n))
    if slices == "middle":
        return [n // 2]
    if isinstance(slices, str):
        return _slice_indices(parse_slices(slices), n, path, axis)
    chosen = [int(i) for i in slices]
    bad = [i for i in chosen if not 0 <= i < n]
    if bad:
        raise DataError(f"slice {bad[0]} is outside the volume: axis {axis} has slices "
                        f"0..{n - 1}", path=path, kind="bad_image")
    return chosen


def read_nifti(path: str | Path, *, axis: int = 2, slices: SliceChoice = "all",
               percentiles: tuple[float, float] = NIFTI_PERCENTILES) -> list[tuple[str, np.ndarray]]:
    """Slices of a NIfTI volume as ``(suffix, H x W uint8)``, e.g. ``("#axis2:slice040", img)``.

    Args:
        path: A ``.nii`` or ``.nii.gz`` file.
        axis: 0 (sagittal), 1 (coronal) or 2 (axial), in the canonical RAS+ orientation.
        slices: ``"all"`` (default), ``"middle"``, or slice indices along ``axis``.
        percentiles: Volume intensities mapped to 0 and 255 (``(0, 100)``: min-max).

    Raises:
        DataError: naming the file when it is missing, not NIfTI, not a 3-D volume, or a
            slice index is outside it.
        ConfigError: for a bad ``axis``, or when nibabel is not installed.
    """
    nib = _import("nibabel")
    if axis not in (0, 1, 2):
        raise ConfigError(f"NIfTI slice axis must be 0, 1 or 2, got {axis}")
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", path=p, kind="bad_image")
    try:
        img = nib.load(p)
        if not hasattr(img, "affine") or img.affine is None:
            raise ValueError(f"not a NIfTI volume ({type(img).__name__})")
        shape = img.shape
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) > 3:
            raise DataError(f"a {len(shape)}-D volume of shape {tuple(img.shape)}: mtbrain "
                            "reads 3-D volumes; save one volume (e.g. nibabel "
                            "image.slicer[..., 0]) first", path=p, kind="bad_image")
        img = nib.as_closest_canonical(nib.Nifti1Image(
            np.asarray(img.dataobj, dtype=np.float32).reshape(shape + (1,) * (3 - len(shape))),
            img.affine))
        volume = np.asarray(img.dataobj, dtype=np.float32)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
        raise DataError(f"not a readable NIfTI volume: {str(exc)[:200]}", path=p,
                        kind="bad_image") from None
    finite = volume[np.isfinite(volume)]
    if finite.size == 0:
        lo = hi = 0.0
    else:
        lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    out = []
    for k in _slice_indices(slices, volume.shape[axis], p, axis):
        plane = np.take(volume, k, axis=axis)  # (first remaining axis, second remaining axis)
        # radiological view: second canonical axis (A or S) up, first (R) towards the left
        view = np.ascontiguousarray(plane[::-1, ::-1].T)
        out.append((f"#axis{axis}:slice{k:03d}", _scale(view, lo, hi)))
    return out


# --------------------------------------------------------------------------- dispatch


def read_medical(path: str | Path, *, axis: int = 2,
                 slices: SliceChoice = "all") -> list[tuple[str, np.ndarray]]:
    """The images of a DICOM or NIfTI file as ``(name suffix, H x W uint8)``.

    A single-frame DICOM gives one image with suffix ``""``; a multi-frame one
    ``#frame000``...; a NIfTI volume its chosen slices (:func:`read_nifti`).
    """
    if is_nifti_name(path):
        return read_nifti(path, axis=axis, slices=slices)
    frames = read_dicom(path)
    if len(frames) == 1:
        return [("", frames[0])]
    return [(f"#frame{i:03d}", f) for i, f in enumerate(frames)]


def expand_inputs(files: Iterable[tuple[str, str]], *, axis: int = 2,
                  slices: SliceChoice = "all") -> Iterator[tuple[Any, str]]:
    """``(path, name)`` pairs -> ``(item, name)`` pairs to predict, one per image.

    Ordinary image files pass through as paths (decoded by the predictor); DICOM and NIfTI
    files give one ``(H x W uint8 array, name + suffix)`` per frame or slice, and a
    ``(DataError, name)`` pair when the file cannot be read.
    """
    for path, name in files:
        if not is_medical_file(path):
            yield path, name
            continue
        try:
            images = read_medical(path, axis=axis, slices=slices)
        except DataError as exc:
            yield exc, name
            continue
        for suffix, image in images:
            yield image, name + suffix
