"""The decoded-image cache: hits, keys, crash safety, worker processes, warm-up problems."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mtbrain.data import cache as cache_mod
from mtbrain.data.cache import DecodedCache, exclude_undecodable, file_key
from mtbrain.data.dataset import MRIDataset, collate
from mtbrain.data.records import RecordSet, Sample
from mtbrain.data.transforms import decode_letterboxed
from mtbrain.errors import DataError

SIZE = 32


def write_jpeg(path: Path, width: int, height: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "L").save(path, quality=90)
    return path


def make_records(root: Path, n: int = 6) -> RecordSet:
    samples = []
    for i in range(n):
        w, h = 40 + 7 * i, 30 + 5 * (i % 3)
        path = write_jpeg(root / f"img{i}.jpg", w, h, seed=i)
        samples.append(
            Sample(
                path=path,
                rel=path.name,
                label="glioma",
                width=w,
                height=h,
                source="tiny",
                boxes=np.array([[2, 3, 20, 25]], np.float32),
            )
        )
    return RecordSet(root=root, layout="test", classes=["glioma"], samples=samples)


@pytest.fixture
def records(tmp_path: Path) -> RecordSet:
    return make_records(tmp_path / "data")


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_hit_returns_identical_arrays(
    records: RecordSet, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = DecodedCache(records, size=SIZE, backend=backend, folder=tmp_path / "cache")
    s = records[2]
    first, geo = cache.get(s.path)
    direct, direct_geo = decode_letterboxed(s.path, SIZE)
    assert np.array_equal(first, direct) and geo == direct_geo
    assert cache.filled.tolist() == [False, False, True, False, False, False]
    # a hit does not decode again and returns an equal copy
    monkeypatch.setattr(cache_mod, "decode_letterboxed", lambda *a, **k: pytest.fail("decoded"))
    second, geo2 = cache.get(s.path)
    assert np.array_equal(second, first) and geo2 == geo
    second[:] = 0
    assert np.array_equal(cache.get(s.path)[0], direct)  # callers get copies


def test_disk_cache_persists_and_is_keyed_by_size(records: RecordSet, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    problems = DecodedCache(records, size=SIZE, backend="disk", folder=folder).warm()
    assert problems == []
    again = DecodedCache(records, size=SIZE, backend="disk", folder=folder)
    assert again.filled.all()
    for s in records:
        assert np.array_equal(again.get(s.path)[0], decode_letterboxed(s.path, SIZE)[0])
    other = DecodedCache(records, size=SIZE + 32, backend="disk", folder=folder)
    stretch = DecodedCache(records, size=SIZE, keep_ratio=False, backend="disk", folder=folder)
    assert len({again.location, other.location, stretch.location}) == 3
    assert not other.filled.any() and not stretch.filled.any()
    assert all(p.name.startswith(".") is False for p in folder.iterdir())  # no temp leftovers


@pytest.mark.parametrize("mode", ["stat", "sha1"])
def test_key_changes_when_the_file_changes(records: RecordSet, tmp_path: Path, mode: str) -> None:
    s = records[0]
    before = file_key(s.path, mode)
    assert file_key(s.path, mode) == before
    write_jpeg(s.path, s.width, s.height, seed=99)  # same size, new pixels
    st = os.stat(s.path)
    os.utime(s.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert file_key(s.path, mode) != before
    assert file_key(tmp_path / "missing.jpg", mode) != file_key(tmp_path / "other.jpg", mode)


def test_changed_file_invalidates_its_row_only(records: RecordSet, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    DecodedCache(records, size=SIZE, backend="disk", folder=folder).warm()
    s = records[1]
    old = decode_letterboxed(s.path, SIZE)[0]
    write_jpeg(s.path, s.width, s.height, seed=1234)
    st = os.stat(s.path)
    os.utime(s.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    reopened = DecodedCache(records, size=SIZE, backend="disk", folder=folder)
    assert reopened.filled.tolist() == [True, False, True, True, True, True]
    fresh = reopened.get(s.path)[0]
    assert np.array_equal(fresh, decode_letterboxed(s.path, SIZE)[0])
    assert not np.array_equal(fresh, old)


def test_crash_mid_fill_never_leaves_a_valid_looking_row(
    records: RecordSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cache"
    cache = DecodedCache(records, size=SIZE, backend="disk", folder=folder)
    s = records[3]
    row = cache.row(s.path)

    def crash(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt("killed while the row is being written")

    # the image bytes reach the file, the process dies before the metadata and the flag
    monkeypatch.setattr(cache_mod, "_checksum", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.get(s.path)
    monkeypatch.undo()
    cache.flush()
    images = np.load(cache.location / "images.npy", mmap_mode="r")
    assert images[row].any()  # data was written ...
    reopened = DecodedCache(records, size=SIZE, backend="disk", folder=folder)
    assert not reopened.filled[row]  # ... but the row does not count as filled
    assert np.array_equal(reopened.get(s.path)[0], decode_letterboxed(s.path, SIZE)[0])
    assert DecodedCache(records, size=SIZE, backend="disk", folder=folder).filled[row]


def test_torn_row_with_flag_set_is_decoded_again(
    records: RecordSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages written back out of order before a power loss: flag on disk, image half old."""
    folder = tmp_path / "cache"
    DecodedCache(records, size=SIZE, backend="disk", folder=folder).warm()
    cache = DecodedCache(records, size=SIZE, backend="disk", folder=folder)
    s = records[2]
    row = cache.row(s.path)
    torn = np.load(cache.location / "images.npy", mmap_mode="r+")
    torn[row, : SIZE // 2] = 7
    torn.flush()
    del torn
    assert cache.filled[row]
    decoded: list[Path] = []
    real = cache_mod.decode_letterboxed

    def counting(path: Path, *args: object, **kwargs: object) -> object:
        decoded.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(cache_mod, "decode_letterboxed", counting)
    image = cache.get(s.path)[0]
    assert decoded == [s.path]
    assert np.array_equal(image, decode_letterboxed(s.path, SIZE)[0])
    assert np.array_equal(cache.get(s.path)[0], image) and decoded == [s.path]  # repaired
    # warm() checks flagged rows too: a torn row is refilled, intact ones are not decoded
    torn = np.load(cache.location / "images.npy", mmap_mode="r+")
    torn[0, 0, 0] ^= 1
    torn.flush()
    del torn
    assert cache.warm() == [] and decoded == [s.path, records[0].path]


def test_warm_crash_keeps_finished_rows_only(
    records: RecordSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = DecodedCache(records, size=SIZE, backend="disk", folder=tmp_path / "cache")
    calls = {"n": 0}
    real = cache_mod._checksum

    def crash_on_third(*args: object) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("crash while storing the third row")
        return real(*args)

    monkeypatch.setattr(cache_mod, "_checksum", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        cache.warm()
    monkeypatch.undo()
    cache.flush()
    reopened = DecodedCache(records, size=SIZE, backend="disk", folder=tmp_path / "cache")
    assert reopened.filled.tolist() == [True, True, False, False, False, False]
    for s in records:
        assert np.array_equal(reopened.get(s.path)[0], decode_letterboxed(s.path, SIZE)[0])


def test_disk_memmap_with_two_dataloader_workers(records: RecordSet, tmp_path: Path) -> None:
    cache = DecodedCache(records, size=SIZE, backend="disk", folder=tmp_path / "cache")
    dataset = MRIDataset(records, ["glioma"], size=SIZE, cache=cache)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate, timeout=60)
    images = torch.cat([batch[0] for batch in loader])
    assert images.shape == (len(records), 1, SIZE, SIZE)
    assert cache.filled.all()  # rows written by the workers are visible in this process
    for i, s in enumerate(records):
        expected = decode_letterboxed(s.path, SIZE)[0].astype(np.float32) / 255
        np.testing.assert_allclose(images[i, 0].numpy(), expected, atol=1e-6)
    # second pass: every worker reads the filled rows
    again = torch.cat([batch[0] for batch in loader])
    assert bool((again == images).all())


def test_memory_cache_warmed_before_workers(records: RecordSet, tmp_path: Path) -> None:
    cache = DecodedCache(records, size=SIZE, backend="memory")
    assert cache.warm(num_workers=2) == [] and cache.filled.all()
    dataset = MRIDataset(records, ["glioma"], size=SIZE, cache=cache)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate, timeout=60)
    images = torch.cat([batch[0] for batch in loader])
    expected = np.stack([decode_letterboxed(s.path, SIZE)[0] for s in records]) / 255
    np.testing.assert_allclose(images[:, 0].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_warm_reports_truncated_jpeg_by_name(
    records: RecordSet, tmp_path: Path, num_workers: int
) -> None:
    bad = records[4].path
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    notimage = records[1].path
    notimage.write_bytes(b"this is not a jpeg")
    cache = DecodedCache(records, size=SIZE, backend="disk", folder=tmp_path / "cache")
    problems = cache.warm(records, num_workers=num_workers)
    assert [p.path for p in problems] == sorted([str(bad), str(notimage)])
    assert all(p.kind == "bad_image" for p in problems)
    assert "truncated" in next(p.problem for p in problems if p.path == str(bad))
    assert cache.filled.tolist() == [True, False, True, True, False, True]
    with pytest.raises(DataError) as err:
        exclude_undecodable(records, problems, on_error="raise")
    assert str(bad) in str(err.value) and str(notimage) in str(err.value)
    kept = exclude_undecodable(records, problems, on_error="skip")
    assert [s.rel for s in kept] == ["img0.jpg", "img2.jpg", "img3.jpg", "img5.jpg"]
    assert {p.path for p in kept.problems.problems} == {str(bad), str(notimage)}
    with pytest.raises(DataError, match="img4.jpg"):
        cache.get(bad)


def test_unknown_file_and_bad_options(records: RecordSet, tmp_path: Path) -> None:
    cache = DecodedCache(records, size=SIZE)
    with pytest.raises(KeyError, match="nope.jpg"):
        cache.get(tmp_path / "nope.jpg")
    with pytest.raises(ValueError, match="backend"):
        DecodedCache(records, size=SIZE, backend="gpu")  # type: ignore[arg-type]


def test_default_folder_is_under_cache_root(
    records: RecordSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTBRAIN_CACHE", str(tmp_path / "root"))
    cache = DecodedCache(records, size=SIZE, backend="disk")
    assert cache.location is not None and cache.location.parent == tmp_path / "root" / "decoded"


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_pickled_cache_reopens_its_maps(records: RecordSet, tmp_path: Path, backend: str) -> None:
    """What a spawned worker receives: no open memory maps, the same rows after reopening."""
    import pickle

    cache = DecodedCache(records, size=SIZE, backend=backend, folder=tmp_path / "cache")
    cache.warm(records.samples[:3])
    state = cache.__getstate__()
    if backend == "disk":
        assert state["_images"] is None and state["_meta"] is None and state["_filled"] is None
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.filled.tolist() == [True, True, True, False, False, False]
    for s in records:
        assert np.array_equal(copy.get(s.path)[0], decode_letterboxed(s.path, SIZE)[0])
