"""DICOM and NIfTI input: intensity rules, orientation, slice choice, errors, ``predict``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")

from mtbrain.data.medical import (  # noqa: E402
    expand_inputs,
    is_dicom_file,
    is_medical_file,
    is_nifti_name,
    parse_slices,
    read_dicom,
    read_medical,
    read_nifti,
)
from mtbrain.errors import ConfigError, DataError  # noqa: E402


def write_dicom(path: Path, pixels: np.ndarray, **attrs: object) -> Path:
    """A minimal MR image file (explicit VR little endian, with file meta)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    colour = pixels.ndim == (4 if "NumberOfFrames" in attrs else 3)
    rows, cols = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


RAMP = np.arange(0, 1000, 10, dtype=np.uint16).reshape(10, 10)


def test_dicom_min_max_without_window(tmp_path: Path) -> None:
    (img,) = read_dicom(write_dicom(tmp_path / "a.dcm", RAMP))
    assert img.dtype == np.uint8 and img.shape == (10, 10)
    np.testing.assert_array_equal(img, np.round(RAMP / 990 * 255).astype(np.uint8))


def test_dicom_rescale_then_window(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "w.dcm", RAMP, RescaleSlope=2, RescaleIntercept=-100,
                       WindowCenter=900, WindowWidth=1001)
    (img,) = read_dicom(path)
    value = RAMP * 2.0 - 100  # the modality LUT
    # DICOM LINEAR window: (v - (c - 0.5)) / (w - 1) + 0.5, clipped to [0, 1]
    frac = np.clip((value - 899.5) / 1000 + 0.5, 0, 1)
    assert np.abs(img.astype(int) - np.round(frac * 255)).max() <= 1
    assert img[0, 0] == 0 and img[-1, -1] == 255  # below and above the window
    mono1 = write_dicom(tmp_path / "m1.dcm", RAMP, RescaleSlope=2, RescaleIntercept=-100,
                        WindowCenter=900, WindowWidth=1001,
                        PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_array_equal(read_dicom(mono1)[0], 255 - img)


def test_dicom_voi_lut(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]  # 256 entries from stored value 0, 8-bit output
    item.LUTData = np.minimum(255, 2 * np.arange(256)).astype("<u2").tobytes()
    (img,) = read_dicom(write_dicom(tmp_path / "lut.dcm", RAMP, VOILUTSequence=[item],
                                    WindowCenter=10, WindowWidth=10))  # the LUT wins
    want = np.minimum(255, 2 * np.minimum(RAMP, 255))  # inputs past the LUT: its last entry
    np.testing.assert_array_equal(img, want)


def test_dicom_signed_frames_and_colour(tmp_path: Path) -> None:
    signed = (RAMP.astype(np.int16) - 500)
    (img,) = read_dicom(write_dicom(tmp_path / "s.dcm", signed))
    np.testing.assert_array_equal(img, np.round((signed + 500) / 990 * 255).astype(np.uint8))
    frames = np.stack([RAMP, RAMP[::-1], np.full_like(RAMP, 7)])
    path = write_dicom(tmp_path / "multi.dcm", frames, NumberOfFrames=3)
    out = read_dicom(path)
    assert len(out) == 3
    np.testing.assert_array_equal(out[1], out[0][::-1])
    assert not out[2].any()  # a flat frame: zeros, no division by zero
    names = [n for _, n in expand_inputs([(str(path), "multi.dcm")])]
    assert names == ["multi.dcm#frame000", "multi.dcm#frame001", "multi.dcm#frame002"]
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red: ITU-R 601 luma 76
    (grey,) = read_dicom(write_dicom(tmp_path / "rgb.dcm", rgb))
    assert grey.shape == (4, 5) and set(np.unique(grey)) == {76}


def test_dicom_detection_and_errors(tmp_path: Path) -> None:
    plain = write_dicom(tmp_path / "IM0001", RAMP)  # PACS exports often have no suffix
    assert is_dicom_file(plain) and is_medical_file(plain)
    other = tmp_path / "README"
    other.write_text("not dicom")
    assert not is_dicom_file(other) and not is_medical_file(other)
    assert is_dicom_file(tmp_path / "x.DCM") and not is_dicom_file(tmp_path / ".x.dcm")
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match="bad.dcm.*not a readable DICOM"):
        read_dicom(bad)
    with pytest.raises(DataError, match="missing.dcm.*not found"):
        read_dicom(tmp_path / "missing.dcm")
    nopix = write_dicom(tmp_path / "nopix.dcm", RAMP)
    ds = pydicom.dcmread(nopix)
    del ds.PixelData
    ds.save_as(nopix)
    with pytest.raises(DataError, match="nopix.dcm.*no image"):
        read_dicom(nopix)
    items = list(expand_inputs([(str(bad), "bad.dcm"), (str(plain), "IM0001")]))
    assert isinstance(items[0][0], DataError) and items[0][1] == "bad.dcm"
    assert items[1][1] == "IM0001" and items[1][0].shape == (10, 10)


def test_nibabel_bundled_dicom() -> None:
    from nibabel.testing import data_path

    path = Path(data_path) / "0.dcm"
    if not path.is_file():
        pytest.skip("nibabel's example DICOM is not installed")
    (img,) = read_dicom(path)  # a 12-bit test pattern with window 468 / 1016
    assert img.shape == (256, 256) and img.dtype == np.uint8
    stored = pydicom.dcmread(path).pixel_array.astype(float)
    frac = np.clip((stored - 467.5) / 1015 + 0.5, 0, 1)
    assert np.abs(img - np.round(frac * 255)).max() <= 1
    assert img.max() == 255 and len(np.unique(img)) > 200


# --------------------------------------------------------------------------- NIfTI

SHAPE = (20, 24, 10)  # x (R), y (A), z (S)


def _volume() -> np.ndarray:
    vol = np.zeros(SHAPE, dtype=np.int16)
    vol[2, 20, 5] = 1000  # near the right edge (x = 2 of 20), anterior (y = 20 of 24)
    vol[..., 7] = 300
    return vol


def write_nifti(path: Path, vol: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(vol, np.eye(4) if affine is None else affine), str(path))
    return path


def test_nifti_slices_orientation_and_names(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "ras.nii.gz", _volume())
    slices = read_nifti(path, percentiles=(0, 100))
    assert [s for s, _ in slices] == [f"#axis2:slice{k:03d}" for k in range(10)]
    img = dict(slices)["#axis2:slice005"]
    assert img.shape == (24, 20) and img.dtype == np.uint8
    # radiological view: anterior up, the patient's right (high x) on the image's left
    assert np.argwhere(img == 255).tolist() == [[24 - 1 - 20, 20 - 1 - 2]]
    assert set(np.unique(dict(slices)["#axis2:slice007"])) == {round(300 / 1000 * 255)}
    # the same head stored left-to-right (LAS) gives the same pictures
    las = write_nifti(tmp_path / "las.nii", _volume()[::-1], np.diag([-1.0, 1, 1, 1]))
    for (a, x), (b, y) in zip(slices, read_nifti(las, percentiles=(0, 100)), strict=True):
        assert a == b
        np.testing.assert_array_equal(x, y)
    sag = read_nifti(path, axis=0, slices=[2])
    assert [s for s, _ in sag] == ["#axis0:slice002"] and sag[0][1].shape == (10, 24)
    assert read_nifti(path, axis=1, slices="middle")[0][0] == "#axis1:slice012"


def test_nifti_slice_choice_and_percentiles(tmp_path: Path) -> None:
    vol = np.tile(np.arange(100, dtype=np.float32).reshape(10, 10, 1), (1, 1, 3))
    vol[0, 0, 0] = 1e6  # one outlier voxel
    path = write_nifti(tmp_path / "p.nii", vol)
    (name, img), = read_nifti(path, slices="1")
    assert name == "#axis2:slice001"
    assert img.max() == 255 and img.min() == 0 and len(np.unique(img)) > 90  # outlier clipped
    minmax = read_nifti(path, slices=[1], percentiles=(0, 100))[0][1]
    assert minmax.max() == 0  # min-max: the outlier takes the whole range
    assert [n for n, _ in read_nifti(path, slices=[0, 2])] == ["#axis2:slice000",
                                                               "#axis2:slice002"]
    with pytest.raises(DataError, match="p.nii.*slice 3 is outside.*0..2"):
        read_nifti(path, slices=[3])
    with pytest.raises(ConfigError):
        read_nifti(path, axis=3)
    assert parse_slices("30-32, 40") == [30, 31, 32, 40]
    assert parse_slices(" All ") == "all" and parse_slices("middle") == "middle"
    for bad in ("", "a", "5-2", "-1"):
        with pytest.raises(ConfigError, match="slices"):
            parse_slices(bad)


def test_nifti_shapes_and_errors(tmp_path: Path) -> None:
    four = write_nifti(tmp_path / "four.nii.gz", np.zeros((4, 5, 6, 2), dtype=np.int16))
    with pytest.raises(DataError, match="four.nii.gz.*4-D"):
        read_nifti(four)
    single = write_nifti(tmp_path / "one.nii", np.ones((4, 5, 6, 1), dtype=np.uint8))
    assert len(read_nifti(single)) == 6
    flat = write_nifti(tmp_path / "flat.nii", np.ones((4, 5), dtype=np.float32))
    ((name, img),) = read_nifti(flat)
    assert name == "#axis2:slice000" and img.shape == (5, 4) and not img.any()
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a volume")
    with pytest.raises(DataError, match="bad.nii.gz.*not a readable NIfTI"):
        read_nifti(bad)
    assert is_nifti_name(bad) and is_nifti_name("X.NII") and not is_nifti_name("x.nii.bak")
    items = list(expand_inputs([(str(bad), "bad.nii.gz"), ("a.png", "a.png")]))
    assert isinstance(items[0][0], DataError) and items[1] == ("a.png", "a.png")


def test_nibabel_bundled_nifti() -> None:
    from nibabel.testing import data_path

    path = Path(data_path) / "anatomical.nii"
    if not path.is_file():
        pytest.skip("nibabel's example volume is not installed")
    slices = read_medical(path, slices="all")
    assert len(slices) == 25 and slices[12][1].shape == (41, 33)
    assert slices[12][1].max() == 255 and slices[12][1].std() > 10


# --------------------------------------------------------------------------- predict


def test_predict_reads_dicom_and_nifti(tmp_path: Path, make_image) -> None:
    import torch

    from mtbrain.cli import main
    from mtbrain.models import Model

    torch.manual_seed(0)
    model = Model(backbone="mobilenetv3_small_050", img_size=64)
    ckpt = model.save(tmp_path / "m.pt")
    folder = tmp_path / "in"
    make_image(folder / "a.png", (40, 30))
    write_dicom(folder / "series" / "IM0001", RAMP)
    write_dicom(folder / "b.dcm", RAMP, WindowCenter=500, WindowWidth=400)
    write_nifti(folder / "vol.nii.gz", _volume())
    (folder / "broken.nii.gz").write_bytes(b"nope")
    (folder / "notes.txt").write_text("skipped")
    out = tmp_path / "preds.json"
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(folder), "--slices",
                 "4-5", "--out", str(out), "--batch-size", "2"]) == 0
    records = json.loads(out.read_text())
    names = [r["image"] for r in records]
    assert names == ["a.png", "b.dcm", "broken.nii.gz", "series/IM0001",
                     "vol.nii.gz#axis2:slice004", "vol.nii.gz#axis2:slice005"]
    by = {r["image"]: r for r in records}
    assert set(by["broken.nii.gz"]) == {"image", "error"}
    assert "broken.nii.gz" in by["broken.nii.gz"]["error"]
    assert all("label" in r for n, r in by.items() if n != "broken.nii.gz")
    # a slice predicted from the file is the slice predicted as an array
    want = model.predict(dict(read_nifti(folder / "vol.nii.gz", slices=[5]))
                         ["#axis2:slice005"])[0]
    assert by["vol.nii.gz#axis2:slice005"]["probs"] == pytest.approx(want.probs, abs=1e-5)
    # Model.predict takes a single-frame DICOM path, and refuses a volume clearly
    (dcm,) = model.predict(folder / "b.dcm")
    assert dcm.label == by["b.dcm"]["label"] and dcm.image == str(folder / "b.dcm")
    with pytest.raises(DataError, match="vol.nii.gz.*NIfTI volume"):
        model.predict(folder / "vol.nii.gz")
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(folder),
                 "--slices", "x"]) == 2
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(folder / "vol.nii.gz"),
                 "--axis", "0", "--slices", "middle", "--precision", "bf16",
                 "--out", str(out)]) == 0
    assert [r["image"] for r in json.loads(out.read_text())] == [
        f"{folder / 'vol.nii.gz'}#axis0:slice010"]
