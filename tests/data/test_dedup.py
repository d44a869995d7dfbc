"""Tests of exact and near-duplicate search (mtbrain.data.dedup)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtbrain.data import load_dataset
from mtbrain.data.dedup import (
    THUMB,
    NearParams,
    UnionFind,
    compare_side,
    find_duplicates,
    hamming_pairs,
    hash_files,
    highpass_features,
    image_features,
    near_pairs,
    pair_correlation,
)
from mtbrain.data.synthetic import generate, plant_duplicates, render_slice, sample_rng
from mtbrain.errors import ConfigError


def _slice(label: str, index: int, size: int = 160) -> np.ndarray:
    return render_slice(label, sample_rng(0, label, index), size=size).image


def _save(gray: np.ndarray, path: Path, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gray, "L").save(path, **kw)
    return path


def _hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


@pytest.fixture
def copies(tmp_path: Path) -> dict[str, Path]:
    """One slice as original, re-encoded, resized, RGB-PNG and brighter copies; plus two
    different slices of the same class."""
    base = _slice("glioma", 0)
    small = np.asarray(Image.fromarray(base).resize((120, 120), Image.Resampling.BILINEAR))
    brighter = np.clip(base.astype(np.int16) * 1.15 + 10, 0, 255).astype(np.uint8)
    out = {
        "orig": _save(base, tmp_path / "orig.jpg", quality=95),
        "reencoded": _save(base, tmp_path / "reencoded.jpg", quality=60),
        "resized": _save(small, tmp_path / "resized.jpg", quality=80),
        "brighter": _save(brighter, tmp_path / "brighter.jpg", quality=90),
        "other1": _save(_slice("glioma", 1), tmp_path / "other1.jpg", quality=95),
        "other2": _save(_slice("glioma", 2), tmp_path / "other2.jpg", quality=95),
    }
    rgb = Image.fromarray(base).convert("RGB")
    rgb.save(tmp_path / "rgb.png")
    out["rgb_png"] = tmp_path / "rgb.png"
    return out


def test_image_features_header_and_shapes(copies: dict[str, Path]) -> None:
    f = image_features(copies["orig"])
    assert (f.width, f.height, f.mode, f.format) == (160, 160, "L", "JPEG")
    assert f.error is None
    assert len(f.thumb) == THUMB * THUMB
    g = image_features(copies["rgb_png"])
    assert (g.mode, g.format) == ("RGB", "PNG")
    # lossless RGB copy of the same grey pixels: identical hashes
    assert _hamming(f.phash, g.phash) <= 2


def test_hashes_close_for_copies_and_far_for_other_slices(copies: dict[str, Path]) -> None:
    feats = {k: image_features(p) for k, p in copies.items()}
    orig = feats["orig"]
    for name in ("reencoded", "resized", "brighter", "rgb_png"):
        assert _hamming(orig.phash, feats[name].phash) <= 6, name
        assert _hamming(orig.dhash, feats[name].dhash) <= 6, name
    thumbs = np.stack(
        [np.frombuffer(feats[k].thumb, np.uint8).reshape(THUMB, THUMB) for k in copies]
    )
    hp = highpass_features(thumbs)
    names = list(copies)
    corr = hp @ hp.T
    o = names.index("orig")
    for name in ("reencoded", "resized", "brighter", "rgb_png"):
        assert corr[o, names.index(name)] >= 0.95, name
    for name in ("other1", "other2"):
        assert corr[o, names.index(name)] < 0.6, name
    assert corr[names.index("other1"), names.index("other2")] < 0.6


def test_near_pairs_confirms_copies_only(copies: dict[str, Path]) -> None:
    table = hash_files(list(copies.values()), cache=False)
    assert table.decoded.all()
    i, j, corr = near_pairs(
        table.phash, table.dhash, table.thumbs, min_side=np.minimum(table.width, table.height)
    )
    names = list(copies)
    found = {frozenset((names[a], names[b])) for a, b in zip(i.tolist(), j.tolist(), strict=True)}
    copy_names = {"orig", "reencoded", "resized", "brighter", "rgb_png"}
    assert all(pair <= copy_names for pair in found)
    assert len(found) == 10  # every pair among the 5 copies
    assert (corr >= NearParams().min_corr).all()


def test_hamming_pairs_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, size=300, dtype=np.uint64)
    a[10] = a[3] ^ np.uint64(0b1011)  # distance 3
    a[200] = a[3]
    i, j, d = hamming_pairs(a, max_distance=20, chunk=64)
    brute = {
        (x, y)
        for x in range(300)
        for y in range(x + 1, 300)
        if bin(int(a[x]) ^ int(a[y])).count("1") <= 20
    }
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == brute
    assert {(3, 10), (3, 200), (10, 200)} <= brute
    assert d[(i == 3) & (j == 10)].tolist() == [3]
    b = a[:5].copy()
    i2, j2, d2 = hamming_pairs(a, b, max_distance=0, chunk=7)
    assert set(zip(i2.tolist(), j2.tolist(), strict=True)) == {(k, k) for k in range(5)} | {
        (200, 3)
    }
    assert (d2 == 0).all()


def test_pair_correlation_and_highpass_scales() -> None:
    rng = np.random.default_rng(1)
    thumbs = rng.integers(0, 256, size=(6, THUMB, THUMB), dtype=np.uint8)
    for side in (64, 32, 16):
        f = highpass_features(thumbs, side=side)
        assert f.shape == (6, side * side)
        np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-5)
        c = pair_correlation(f, np.array([0, 1]), np.array([0, 2]), batch=1)
        assert c[0] == pytest.approx(1.0, abs=1e-5)
        assert abs(c[1]) < 0.2
    assert [compare_side(s) for s in (512, 192, 191, 96, 95, 10)] == [64, 64, 32, 32, 16, 16]


def test_union_find_labels() -> None:
    uf = UnionFind(6)
    uf.union(4, 1)
    uf.union(1, 5)
    uf.union(2, 3)
    assert uf.labels().tolist() == [0, 1, 2, 2, 1, 1]


def test_near_params_validation() -> None:
    with pytest.raises(ConfigError, match="phash_max"):
        NearParams(phash_max=70)
    with pytest.raises(ConfigError, match="min_corr"):
        NearParams(min_corr=1.5)


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    root = generate(tmp_path / "syn", n_per_class=5, size=128, seed=3)
    pairs = plant_duplicates(root, n_exact=3, n_near=4, seed=3)
    return root, pairs


def test_find_duplicates_groups_planted_copies(
    planted: tuple[Path, list[tuple[str, str]]], tmp_path: Path
) -> None:
    root, pairs = planted
    rs = load_dataset(root)
    dup = find_duplicates([rs], cache=tmp_path / "cache", workers=1)
    groups = dup.rel_groups(0)
    assert sorted(groups) == sorted(sorted(p) for p in pairs)
    s = dup.summary()
    assert s["exact_groups"] == 3 and s["exact_extra_copies"] == 3
    assert s["near_pairs"] == 4 and s["near_groups"] == 4
    assert s["removable_images"] == 7
    assert dup.problems == []
    # the exact copies are byte-identical: same content index
    content = {x.rel: int(c) for x, c in zip(dup.samples, dup.table.content, strict=True)}
    for a, b in pairs[:3]:
        assert content[a] == content[b]
    for a, b in pairs[3:]:
        assert content[a] != content[b]


def test_cache_makes_second_run_read_no_image(
    planted: tuple[Path, list[tuple[str, str]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = planted
    paths = sorted(p for p in root.rglob("*.jpg"))
    first = hash_files(paths, cache=tmp_path / "c", workers=1)
    assert first.cache_hits == 0
    from mtbrain.data import dedup

    def fail(path: str) -> None:
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(dedup, "_features_job", fail)
    second = hash_files(paths, cache=tmp_path / "c", workers=1)
    assert second.cache_hits == len(paths)
    assert second.sha1 == first.sha1
    np.testing.assert_array_equal(second.phash, first.phash)
    np.testing.assert_array_equal(second.thumbs, first.thumbs)
    assert second.mode == first.mode


def test_cache_follows_changed_file(tmp_path: Path) -> None:
    p = _save(_slice("pituitary", 0, 96), tmp_path / "a.jpg")
    before = hash_files([p], cache=tmp_path / "c")
    _save(_slice("pituitary", 1, 96), p)
    after = hash_files([p], cache=tmp_path / "c")
    assert after.sha1[0] == hashlib.sha1(p.read_bytes()).hexdigest() != before.sha1[0]


def test_corrupt_cache_file_is_replaced(tmp_path: Path) -> None:
    p = _save(_slice("pituitary", 0, 96), tmp_path / "a.jpg")
    folder = tmp_path / "c"
    hash_files([p], cache=folder)
    for db in folder.glob("*.sqlite"):
        db.write_bytes(b"not a database" * 100)
    table = hash_files([p], cache=folder)
    assert table.decoded.all()


def test_truncated_and_missing_files_are_problems(tmp_path: Path) -> None:
    good = _save(_slice("meningioma", 0, 128), tmp_path / "good.jpg")
    data = good.read_bytes()
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(data[: len(data) // 3])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    gone = tmp_path / "gone.jpg"
    table = hash_files([good, bad, empty, gone], cache=False)
    assert table.decoded.tolist() == [True, False, False, False]
    by_path = {Path(p.path).name: p for p in table.problems}
    assert set(by_path) == {"truncated.jpg", "empty.png", "gone.jpg"}
    assert "truncated" in by_path["truncated.jpg"].problem
    assert by_path["truncated.jpg"].kind == "bad_image"
    assert table.sha1[3] is None and table.content[3] == -1


def test_unreadable_sample_stays_alone(
    planted: tuple[Path, list[tuple[str, str]]], tmp_path: Path
) -> None:
    root, pairs = planted
    rs = load_dataset(root)
    victim = next(s for s in rs.samples if s.rel not in {r for p in pairs for r in p})
    victim.path.write_bytes(victim.path.read_bytes()[:200])
    dup = find_duplicates(rs, cache=False)
    assert [Path(p.path).name for p in dup.problems] == [victim.path.name]
    assert sorted(dup.rel_groups(0)) == sorted(sorted(p) for p in pairs)


def test_groups_across_sets(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", n_per_class=2, size=128, seed=5)
    b = generate(tmp_path / "b", n_per_class=2, size=128, seed=6)
    # a resized copy of one image of set a in set b, under another name
    src = a / "Train" / "Glioma" / "images" / "syn-gl_0001.jpg"
    dst = b / "Train" / "Glioma" / "images" / "other.jpg"
    Image.open(src).resize((200, 200)).save(dst, quality=85)
    (dst.parent.parent / "labels" / "other.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    ra, rb = load_dataset(a, name="a"), load_dataset(b, name="b")
    dup = find_duplicates([ra, rb], cache=False)
    groups = dup.groups()
    assert len(groups) == 1
    assert {(dup.set_names[dup.set_index[k]], dup.samples[k].rel) for k in groups[0]} == {
        ("a", "Train/Glioma/images/syn-gl_0001.jpg"),
        ("b", "Train/Glioma/images/other.jpg"),
    }
    # per set, the shared group holds one image only: no group of size 2 within a set
    assert dup.rel_groups(0) == [] and dup.rel_groups(1) == []
    assert dup.groups(set_index=1, min_size=1)


def test_exact_only_mode(planted: tuple[Path, list[tuple[str, str]]]) -> None:
    root, pairs = planted
    dup = find_duplicates(load_dataset(root), near=False, cache=False)
    assert sorted(dup.rel_groups(0)) == sorted(sorted(p) for p in pairs[:3])
    assert dup.params is None and dup.summary()["near_pairs"] == 0


@pytest.mark.realdata
def test_real_copies_and_neighbouring_slices(real_data: Path) -> None:
    """Known pairs of the real sets, checked by eye: copies join, neighbouring slices don't."""
    bbox, nick = real_data / "mri-bbox" / "Train", real_data / "nickparvar-224"
    files = {
        # the same slice: resized to 224 px in the other set
        "bbox_copy": bbox / "Glioma" / "images" / "Te-glTr_0000.jpg",
        "nick_copy": nick / "Testing" / "glioma" / "Te-glTr_0000.jpg",
        # the same slice with changed contrast, under other names
        "contrast_a": bbox / "No Tumor" / "images" / "Tr-no_0975.jpg",
        "contrast_b": nick / "Training" / "no_tumor" / "Tr-no_1237.jpg",
        # neighbouring slices of one scan (hash distance small, different images)
        "slice_a": bbox / "Pituitary" / "images" / "Tr-pi_0357.jpg",
        "slice_b": bbox / "Pituitary" / "images" / "Tr-pi_0358.jpg",
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        pytest.skip(f"real data lacks {missing}")
    table = hash_files(list(files.values()), cache=False)
    i, j, _ = near_pairs(
        table.phash, table.dhash, table.thumbs, min_side=np.minimum(table.width, table.height)
    )
    names = list(files)
    found = {frozenset((names[a], names[b])) for a, b in zip(i.tolist(), j.tolist(), strict=True)}
    assert found == {frozenset(("bbox_copy", "nick_copy")), frozenset(("contrast_a", "contrast_b"))}
