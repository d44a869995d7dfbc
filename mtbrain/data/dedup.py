"""Exact and near-duplicate images: hashing, candidate search, confirmation, grouping.

Real MRI sets hold the same slice many times: byte-identical copies under other names,
re-encoded or resized copies, and copies with changed contrast or sharpening. A split
that puts two copies on both sides leaks. This module finds them and groups them; the
split (:mod:`mtbrain.data.split`) then keeps every group in one part.

How (thresholds chosen on the two real sets, 10,843 images, checked by eye):

1. **Features per image** (:func:`hash_files`, parallel, cached on disk): the SHA-1 of
   the file bytes, the header (size, mode, format), and from the decoded grayscale image
   (:func:`mtbrain.data.image_io.read_gray`, which also finds truncated or corrupt files)
   a 64-bit pHash and dHash (``imagehash``) and a 64 x 64 thumbnail. Identical bytes are
   decoded once.
2. **Exact duplicates**: equal SHA-1.
3. **Near-duplicate candidates**: pairs of distinct contents whose pHash differs in at
   most ``phash_max`` bits *or* whose dHash differs in at most ``dhash_max`` bits
   (vectorised Hamming distances over packed ``uint64``, in row chunks).
4. **Confirmation** at pixel level: the correlation of the high-passed 64 x 64 thumbnails
   (thumbnail minus its Gaussian blur, sigma 2 px) must reach ``min_corr``. The hashes
   alone cannot tell a copy from a neighbouring slice of the same scan: brain slices look
   alike, and most pairs at pHash distance 8-12 are different images. The high-pass
   correlation keeps the edges' positions and ignores global contrast, so re-encoded,
   resized and contrast-changed copies score 0.92-1.0 (plain resizes >= 0.968), while
   neighbouring slices of one scan score about 0.65-0.92 and different patients less.
   Images with a short side below 192 px are compared at 32 px (below 96 px: 16 px;
   :func:`compare_side`): finer detail of a small image is noise and JPEG artefacts.
5. **Groups**: union-find over exact and confirmed near pairs.

Default thresholds (:class:`NearParams`): ``phash_max=12``, ``dhash_max=8``,
``min_corr=0.92``. On the real sets, an exhaustive search over all 58.8 million pairs found
no pair with high-pass correlation >= 0.92 that these hash limits miss; the 0.88-0.92 band
mixes copies with neighbouring slices, and every pair checked by eye above 0.92 was the
same slice. Adjacent slices of one patient are therefore *not* grouped: they are a
patient-level leak that file contents alone cannot settle.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import ConfigError, DataError, DataProblem, MtbrainWarning

THUMB = 64
"""Side of the thumbnails used to confirm near pairs."""

HASH_VERSION = 1
"""Version of the features; part of the cache file name, bumped when they change."""

_PARALLEL_MIN = 48  # fewer images than this are hashed in-process (no pool start-up)
_FLUSH_EVERY = 500  # decoded files between two writes to the cache


@dataclass(frozen=True)
class NearParams:
    """Thresholds of the near-duplicate search.

    Attributes:
        phash_max: A pair is a candidate when its pHash Hamming distance is at most this...
        dhash_max: ...or its dHash Hamming distance is at most this.
        min_corr: A candidate is confirmed when the correlation of its high-passed
            64 x 64 thumbnails is at least this.
    """

    phash_max: int = 12
    dhash_max: int = 8
    min_corr: float = 0.92

    def __post_init__(self) -> None:
        for name in ("phash_max", "dhash_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 64:
                raise ConfigError(f"near-duplicate {name}={value!r}: must be an integer in 0..64")
        if not -1.0 <= self.min_corr <= 1.0:
            raise ConfigError(f"near-duplicate min_corr={self.min_corr}: must be in [-1, 1]")


# --------------------------------------------------------------------------- features


@dataclass
class HashTable:
    """Per-file features, one row per input path (in input order).

    Attributes:
        paths: The files.
        sha1: SHA-1 hex digest of each file's bytes (``None`` when unreadable).
        content: Index of each file's distinct content (equal bytes, equal index); -1 when
            the file could not be read at all.
        width, height: Header size (0 when unknown).
        mode, format: PIL mode and format from the header (``None`` when unknown).
        phash, dhash: 64-bit perceptual hashes, ``uint64`` (0 for undecodable files).
        thumbs: (N, 64, 64) uint8 stretched grayscale thumbnails.
        decoded: True where the image decoded (hashes and thumbnail are valid).
        problems: Unreadable, truncated or corrupt files, each naming the file.
        cache_hits: Files whose features came from the cache.
        seconds: Wall time of :func:`hash_files`.
    """

    paths: list[Path]
    sha1: list[str | None]
    content: np.ndarray
    width: np.ndarray
    height: np.ndarray
    mode: list[str | None]
    format: list[str | None]
    phash: np.ndarray
    dhash: np.ndarray
    thumbs: np.ndarray
    decoded: np.ndarray
    problems: list[DataProblem] = field(default_factory=list)
    cache_hits: int = 0
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class _Features:
    """What is stored per distinct content (cache row)."""

    width: int = 0
    height: int = 0
    mode: str | None = None
    format: str | None = None
    phash: int = 0
    dhash: int = 0
    thumb: bytes = b""
    error: str | None = None
    error_kind: str | None = None


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes(), "big")


def image_features(path: str | Path) -> _Features:
    """Header, perceptual hashes and thumbnail of one image file.

    Never raises for a bad image: the problem is returned in ``error`` (the file's name is
    added by the caller).
    """
    import imagehash
    from PIL import Image

    from mtbrain.data.image_io import read_gray

    p = Path(path)
    feats = _Features()
    try:
        with Image.open(p) as im:
            feats.width, feats.height = im.size
            feats.mode, feats.format = im.mode, im.format
    except Exception:  # noqa: BLE001 - read_gray below names the problem precisely
        pass
    try:
        gray = read_gray(p)
    except DataError as exc:
        feats.error, feats.error_kind = exc.problem.problem, exc.problem.kind
        return feats
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a problem of this file
        feats.error, feats.error_kind = f"cannot decode image: {exc}", "bad_image"
        return feats
    im = Image.fromarray(gray, "L")
    feats.phash = _bits_to_int(imagehash.phash(im).hash)
    feats.dhash = _bits_to_int(imagehash.dhash(im).hash)
    thumb = im.resize((THUMB, THUMB), Image.Resampling.BOX)
    feats.thumb = np.asarray(thumb, dtype=np.uint8).tobytes()
    return feats


def _features_job(path: str) -> _Features:
    return image_features(path)


def _file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"


class _HashCache:
    """SQLite cache: file stat key -> SHA-1, and SHA-1 -> features.

    Any failure to open or use the cache (read-only folder, corrupt file) only costs the
    cache: a warning, and the features are computed again.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"dedup-v{HASH_VERSION}-t{THUMB}.sqlite"
        self.db: sqlite3.Connection | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.db = self._connect()
        except sqlite3.DatabaseError:
            # a corrupt cache file: start a new one
            try:
                self.path.unlink(missing_ok=True)
                self.db = self._connect()
            except (OSError, sqlite3.Error) as exc:
                self._fail(exc)
        except (OSError, sqlite3.Error) as exc:
            self._fail(exc)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        with contextlib.suppress(sqlite3.OperationalError):
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS files (key TEXT PRIMARY KEY, sha1 TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS content (sha1 TEXT PRIMARY KEY, width INTEGER, "
            "height INTEGER, mode TEXT, format TEXT, phash BLOB, dhash BLOB, thumb BLOB, "
            "error TEXT, error_kind TEXT)"
        )
        db.commit()
        return db

    def _fail(self, exc: BaseException) -> None:
        warnings.warn(
            f"duplicate-hash cache {self.path} not usable ({exc}); working without it",
            MtbrainWarning,
            stacklevel=3,
        )
        self.db = None

    def sha1s(self, keys: Sequence[str]) -> dict[str, str]:
        return self._lookup("SELECT key, sha1 FROM files WHERE key IN ({})", keys)

    def features(self, sha1s: Sequence[str]) -> dict[str, _Features]:
        rows = self._lookup(
            "SELECT sha1, width, height, mode, format, phash, dhash, thumb, error, error_kind "
            "FROM content WHERE sha1 IN ({})",
            sha1s,
            whole=True,
        )
        out = {}
        for sha, row in rows.items():
            w, h, mode, fmt, ph, dh, thumb, err, kind = row
            out[sha] = _Features(
                w,
                h,
                mode,
                fmt,
                int.from_bytes(ph, "big"),
                int.from_bytes(dh, "big"),
                bytes(thumb),
                err,
                kind,
            )
        return out

    def _lookup(self, sql: str, keys: Sequence[str], *, whole: bool = False) -> dict:
        if self.db is None or not keys:
            return {}
        out: dict = {}
        try:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                query = sql.format(",".join("?" * len(chunk)))
                for row in self.db.execute(query, chunk):
                    out[row[0]] = tuple(row[1:]) if whole else row[1]
        except sqlite3.Error as exc:
            self._fail(exc)
            return {}
        return out

    def put(
        self, files: Iterable[tuple[str, str]], content: Iterable[tuple[str, _Features]]
    ) -> None:
        if self.db is None:
            return
        rows = [
            (
                sha,
                f.width,
                f.height,
                f.mode,
                f.format,
                f.phash.to_bytes(8, "big"),
                f.dhash.to_bytes(8, "big"),
                f.thumb,
                f.error,
                f.error_kind,
            )
            for sha, f in content
        ]
        try:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?)", list(files))
                self.db.executemany(
                    "INSERT OR REPLACE INTO content VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
        except sqlite3.Error as exc:
            self._fail(exc)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def default_workers() -> int:
    """Worker processes for hashing: every CPU this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def hash_files(
    paths: Sequence[str | Path],
    *,
    workers: int | None = None,
    cache: bool | str | Path = True,
    progress: bool = False,
) -> HashTable:
    """Compute the duplicate-search features of image files.

    Args:
        paths: Image files (repeats allowed; each keeps its row).
        workers: Processes that decode images (default :func:`default_workers`); small
            inputs are done in-process.
        cache: ``True``: cache features under ``cache_root()/dedup``; a folder: cache
            there; ``False``: no cache. Files are looked up by path, size, mtime and inode,
            contents by SHA-1, so renamed or copied files are not decoded again.
        progress: Show a progress bar on stderr while decoding.

    Returns:
        The :class:`HashTable`; unreadable or undecodable files are rows with
        ``decoded=False`` and a problem naming the file.
    """
    start = time.perf_counter()
    paths = [Path(p) for p in paths]
    n = len(paths)
    store = None
    if cache:
        from mtbrain._env import cache_root

        folder = cache_root() / "dedup" if cache is True else Path(cache)
        store = _HashCache(folder)
    try:
        keys = [_stat_key(p) for p in paths]
        known = store.sha1s([k for k in keys if k]) if store else {}
        sha1: list[str | None] = []
        problems: list[DataProblem] = []
        new_files: list[tuple[str, str]] = []
        for p, key in zip(paths, keys, strict=True):
            sha = known.get(key) if key else None
            if sha is None:
                try:
                    sha = _file_sha1(p)
                except OSError as exc:
                    problems.append(
                        DataProblem(
                            str(p), f"cannot read file: {exc.strerror or exc}", kind="bad_image"
                        )
                    )
                    sha1.append(None)
                    continue
                if key:
                    new_files.append((key, sha))
            sha1.append(sha)
        distinct = list(dict.fromkeys(s for s in sha1 if s is not None))
        feats = store.features(distinct) if store else {}
        hits = sum(1 for s in sha1 if s is not None and s in feats)
        first_path = {}
        for p, s in zip(paths, sha1, strict=True):
            if s is not None and s not in feats:
                first_path.setdefault(s, p)
        todo = list(first_path.items())
        feats.update(
            _compute(todo, workers=workers, progress=progress, store=store, new_files=new_files)
        )
    finally:
        if store:
            store.close()
    index = {s: i for i, s in enumerate(distinct)}
    table = HashTable(
        paths=paths,
        sha1=sha1,
        content=np.array([index[s] if s is not None else -1 for s in sha1], dtype=np.int64),
        width=np.zeros(n, np.int64),
        height=np.zeros(n, np.int64),
        mode=[None] * n,
        format=[None] * n,
        phash=np.zeros(n, np.uint64),
        dhash=np.zeros(n, np.uint64),
        thumbs=np.zeros((n, THUMB, THUMB), np.uint8),
        decoded=np.zeros(n, bool),
        problems=problems,
        cache_hits=hits,
    )
    for i, s in enumerate(sha1):
        if s is None:
            continue
        f = feats[s]
        table.width[i], table.height[i] = f.width, f.height
        table.mode[i], table.format[i] = f.mode, f.format
        if f.error is not None:
            table.problems.append(
                DataProblem(str(paths[i]), f.error, kind=f.error_kind or "bad_image")
            )
            continue
        table.phash[i], table.dhash[i] = np.uint64(f.phash), np.uint64(f.dhash)
        table.thumbs[i] = np.frombuffer(f.thumb, np.uint8).reshape(THUMB, THUMB)
        table.decoded[i] = True
    table.seconds = time.perf_counter() - start
    return table


def _compute(
    todo: list[tuple[str, Path]],
    *,
    workers: int | None,
    progress: bool,
    store: _HashCache | None = None,
    new_files: Sequence[tuple[str, str]] = (),
) -> dict[str, _Features]:
    """Decode ``(sha1, path)`` jobs; results reach the cache every few hundred files, so an
    interrupted run keeps its progress."""
    workers = default_workers() if workers is None else max(1, int(workers))
    names = [str(p) for _, p in todo]
    bar = None
    if progress and names:
        from tqdm import tqdm

        bar = tqdm(total=len(names), desc="hashing images", unit="img", leave=False)
    out: dict[str, _Features] = {}
    pending: list[tuple[str, _Features]] = []

    def flush() -> None:
        if store is not None:
            store.put([], pending)
        pending.clear()

    def take(sha: str, f: _Features) -> None:
        out[sha] = f
        pending.append((sha, f))
        if len(pending) >= _FLUSH_EVERY:
            flush()
        if bar:
            bar.update()

    try:
        if workers == 1 or len(names) < _PARALLEL_MIN:
            for (sha, _), name in zip(todo, names, strict=True):
                take(sha, _features_job(name))
        else:
            chunk = max(1, min(32, len(names) // (workers * 8)))
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = pool.map(_features_job, names, chunksize=chunk)
                for (sha, _), f in zip(todo, results, strict=True):
                    take(sha, f)
    finally:
        if bar:
            bar.close()
        flush()
        if store is not None:
            store.put(new_files, [])
    return out


# --------------------------------------------------------------------------- pair search


def hamming_pairs(
    a: np.ndarray, b: np.ndarray | None = None, *, max_distance: int, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of 64-bit hashes within ``max_distance`` bits.

    Args:
        a: (N,) uint64 hashes.
        b: (M,) uint64 hashes, or ``None`` for the pairs within ``a`` (``i < j`` only).
        max_distance: Largest Hamming distance kept.
        chunk: Rows of ``a`` compared at once (memory ~ ``chunk * M`` bytes x 9).

    Returns:
        ``(i, j, distance)``: indices into ``a`` and ``b`` (or ``a``) and the distances.
    """
    a = np.ascontiguousarray(a, dtype=np.uint64)
    within = b is None
    b = a if within else np.ascontiguousarray(b, dtype=np.uint64)
    out_i, out_j, out_d = [], [], []
    for s in range(0, len(a), chunk):
        e = min(len(a), s + chunk)
        cols = b[s + 1 :] if within else b
        if len(cols) == 0:
            break
        dist = np.bitwise_count(a[s:e, None] ^ cols[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        if within:
            jj = jj + s + 1
            keep = jj > ii + s
            ii, jj = ii[keep], jj[keep]
            d = dist[ii, jj - s - 1]
        else:
            d = dist[ii, jj]
        out_i.append(ii + s)
        out_j.append(jj)
        out_d.append(d)
    if not out_i:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.uint8)
    return (
        np.concatenate(out_i).astype(np.int64),
        np.concatenate(out_j).astype(np.int64),
        np.concatenate(out_d).astype(np.uint8),
    )


def compare_side(min_side: int) -> int:
    """Thumbnail side at which two images are compared, from the smaller image's short side.

    High-passed detail finer than the smaller image holds is only noise and JPEG
    artefacts, so small images are compared coarser: 64 px from a short side of 192 px,
    32 px from 96 px, else 16 px.
    """
    for side in (THUMB, THUMB // 2):
        if min_side >= 3 * side:
            return side
    return THUMB // 4


def highpass_features(thumbs: np.ndarray, *, side: int = THUMB) -> np.ndarray:
    """Unit-norm, zero-mean high-passed thumbnails, (N, side*side) float32.

    The (N, 64, 64) thumbnails are first averaged down to ``side`` (64, 32 or 16). The high
    pass (minus a Gaussian blur of sigma ``2 * side / 64`` px) keeps edges and fine anatomy;
    the normalisation removes global brightness and contrast.
    """
    from scipy.ndimage import gaussian_filter1d

    t = np.asarray(thumbs, dtype=np.float32)
    if t.size == 0:
        return np.zeros((0, side * side), np.float32)
    n, full = len(t), t.shape[-1]
    if full % side:
        raise ValueError(f"thumbnail side {full} is not a multiple of {side}")
    pool = full // side
    if pool > 1:
        t = t.reshape(n, side, pool, side, pool).mean(axis=(2, 4))
    # the separable blur as a matrix (exactly scipy's gaussian_filter, mode "nearest"):
    # blur(T) = K @ T @ K.T as two large matrix products, far faster than 10k small filters
    k = gaussian_filter1d(
        np.eye(side, dtype=np.float64), 2.0 * side / THUMB, axis=0, mode="nearest"
    )
    kt = np.ascontiguousarray(k.T, dtype=np.float32)
    blur = (t.reshape(n * side, side) @ kt).reshape(n, side, side)  # along x
    blur = blur.transpose(0, 2, 1).reshape(n * side, side) @ kt  # along y
    hp = t - blur.reshape(n, side, side).transpose(0, 2, 1)
    hp = hp.reshape(n, -1)
    hp -= hp.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(hp, axis=1, keepdims=True)
    return hp / np.maximum(norm, 1e-6)


def pair_correlation(
    features: np.ndarray, i: np.ndarray, j: np.ndarray, *, batch: int = 4096
) -> np.ndarray:
    """Row-wise dot products ``features[i] . features[j]`` (correlations of unit rows)."""
    out = np.empty(len(i), np.float32)
    for s in range(0, len(i), batch):
        out[s : s + batch] = np.einsum(
            "ij,ij->i", features[i[s : s + batch]], features[j[s : s + batch]]
        )
    return out


def near_pairs(
    phash: np.ndarray,
    dhash: np.ndarray,
    thumbs: np.ndarray,
    *,
    min_side: np.ndarray | None = None,
    params: NearParams | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confirmed near-duplicate pairs among distinct images.

    Args:
        phash, dhash: (N,) uint64 hashes.
        thumbs: (N, 64, 64) uint8 thumbnails.
        min_side: (N,) short side of each image in pixels; a pair is compared at
            :func:`compare_side` of the smaller one (default: all at 64 px).
        params: Thresholds.

    Returns:
        ``(i, j, corr)`` with ``i < j`` (indices into the inputs) and the high-pass
        correlation of each confirmed pair, sorted by ``(i, j)``.
    """
    params = params or NearParams()
    pi, pj, _ = hamming_pairs(phash, max_distance=params.phash_max)
    di, dj, _ = hamming_pairs(dhash, max_distance=params.dhash_max)
    n = len(phash)
    codes = np.union1d(pi * n + pj, di * n + dj)
    i, j = codes // n, codes % n
    corr = np.zeros(len(i), np.float32)
    if len(i) == 0:
        return i, j, corr
    if min_side is None:
        sides = np.full(len(i), THUMB)
    else:
        small = np.minimum(np.asarray(min_side)[i], np.asarray(min_side)[j])
        sides = np.array([compare_side(int(m)) for m in small.tolist()])
    for side in np.unique(sides).tolist():
        at = np.nonzero(sides == side)[0]
        feats = highpass_features(thumbs, side=side)
        corr[at] = pair_correlation(feats, i[at], j[at])
    keep = corr >= params.min_corr
    return i[keep], j[keep], corr[keep]


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return int(x)

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return ra

    def labels(self) -> np.ndarray:
        """Component id of every element: the smallest element of its component."""
        roots = np.array([self.find(x) for x in range(len(self.parent))], dtype=np.int64)
        smallest: dict[int, int] = {}
        for x, r in enumerate(roots.tolist()):
            smallest.setdefault(r, x)
        return np.array([smallest[r] for r in roots.tolist()], dtype=np.int64)


# --------------------------------------------------------------------------- grouping


@dataclass
class Duplicates:
    """Duplicate groups over the samples of one or more record sets.

    Attributes:
        samples: Every sample, the sets one after the other.
        set_index: (N,) index of each sample's record set.
        set_names: Name of each record set.
        table: The per-file features (row ``k`` is ``samples[k]``).
        near: Confirmed near pairs ``(content_i, content_j, corr)`` between distinct
            contents (``table.content`` indices).
        group: (N,) group id of each sample (the index of the group's first sample);
            exact and near duplicates share a group, transitively.
        params: The thresholds used (``None`` when the near search was off).
        seconds: Wall time per stage (``hash``, ``near``, ``group``).
    """

    samples: list[Sample]
    set_index: np.ndarray
    set_names: list[str]
    table: HashTable
    near: tuple[np.ndarray, np.ndarray, np.ndarray]
    group: np.ndarray
    params: NearParams | None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def problems(self) -> list[DataProblem]:
        return self.table.problems

    def groups(self, *, set_index: int | None = None, min_size: int = 2) -> list[list[int]]:
        """Groups as lists of sample indices (sorted, groups by their first member).

        With ``set_index``, only the members from that set are kept (a group linked
        through another set's image stays one group) and ``min_size`` counts those.
        """
        members: dict[int, list[int]] = {}
        for k, g in enumerate(self.group.tolist()):
            if set_index is None or self.set_index[k] == set_index:
                members.setdefault(g, []).append(k)
        return [m for m in members.values() if len(m) >= min_size]

    def exact_groups(self, *, set_index: int | None = None, min_size: int = 2) -> list[list[int]]:
        """Groups of byte-identical files (sample indices)."""
        members: dict[int, list[int]] = {}
        for k, c in enumerate(self.table.content.tolist()):
            if c >= 0 and (set_index is None or self.set_index[k] == set_index):
                members.setdefault(c, []).append(k)
        return [m for m in members.values() if len(m) >= min_size]

    def rel_groups(self, set_index: int = 0) -> list[list[str]]:
        """The groups of one set as lists of ``rel`` names (sizes >= 2), sorted."""
        out = [sorted(self.samples[k].rel for k in g) for g in self.groups(set_index=set_index)]
        return sorted(out)

    def summary(self) -> dict[str, object]:
        """Counts over all samples (JSON-able)."""
        exact = self.exact_groups()
        groups = self.groups()
        n_groups_all = len(set(self.group.tolist()))
        multi_content = [g for g in groups if len({int(self.table.content[k]) for k in g}) > 1]
        return {
            "n_images": len(self.samples),
            "exact_groups": len(exact),
            "exact_extra_copies": sum(len(g) - 1 for g in exact),
            "near_pairs": len(self.near[0]),
            "near_groups": len(multi_content),
            "groups": len(groups),
            "images_in_groups": sum(len(g) for g in groups),
            "removable_images": len(self.samples) - n_groups_all,
            "params": asdict(self.params) if self.params else None,
        }


def find_duplicates(
    recordsets: RecordSet | Sequence[RecordSet],
    *,
    near: bool = True,
    params: NearParams | None = None,
    workers: int | None = None,
    cache: bool | str | Path = True,
    progress: bool = False,
) -> Duplicates:
    """Find exact and near-duplicate groups within and across record sets.

    Args:
        recordsets: One set or several (duplicates across sets are found too).
        near: Also search near duplicates (else exact copies only).
        params: Near-duplicate thresholds (default :class:`NearParams`).
        workers, cache, progress: See :func:`hash_files`.

    Returns:
        The :class:`Duplicates`; unreadable images are singletons listed in ``problems``.
    """
    sets = [recordsets] if isinstance(recordsets, RecordSet) else list(recordsets)
    samples = [s for rs in sets for s in rs.samples]
    set_index = np.array([k for k, rs in enumerate(sets) for _ in rs.samples], dtype=np.int64)
    table = hash_files([s.path for s in samples], workers=workers, cache=cache, progress=progress)
    seconds = {"hash": table.seconds}
    start = time.perf_counter()
    n_content = int(table.content.max()) + 1 if len(table) else 0
    # one representative row per distinct decodable content
    rep = np.full(n_content, -1, dtype=np.int64)
    for k in range(len(table)):
        c = table.content[k]
        if c >= 0 and table.decoded[k] and rep[c] < 0:
            rep[c] = k
    contents = np.nonzero(rep >= 0)[0]
    rows = rep[contents]
    if near and len(rows) > 1:
        params = params or NearParams()
        short = np.minimum(table.width[rows], table.height[rows])
        ci, cj, corr = near_pairs(
            table.phash[rows], table.dhash[rows], table.thumbs[rows], min_side=short, params=params
        )
        near_found = (contents[ci], contents[cj], corr)
    else:
        empty = np.zeros(0, np.int64)
        near_found = (empty, empty, np.zeros(0, np.float32))
        params = params if near else None
    seconds["near"] = time.perf_counter() - start
    start = time.perf_counter()
    uf = UnionFind(n_content)
    for a, b in zip(near_found[0].tolist(), near_found[1].tolist(), strict=True):
        uf.union(a, b)
    content_group = uf.labels() if n_content else np.zeros(0, np.int64)
    # sample group: first sample of its content group; unreadable files stay alone
    group = np.empty(len(samples), dtype=np.int64)
    first: dict[int, int] = {}
    for k, c in enumerate(table.content.tolist()):
        if c < 0:
            group[k] = k
        else:
            group[k] = first.setdefault(int(content_group[c]), k)
    seconds["group"] = time.perf_counter() - start
    names = [rs.name for rs in sets]
    return Duplicates(samples, set_index, names, table, near_found, group, params, seconds)


def duplicate_groups(recordset: RecordSet, **options: object) -> list[list[str]]:
    """The duplicate groups (size >= 2) of one set as ``rel`` names: the unit of a split.

    ``options`` go to :func:`find_duplicates`.
    """
    return find_duplicates([recordset], **options).rel_groups(0)  # type: ignore[arg-type]


def leak_free(
    candidate: RecordSet, held_out: Sequence[RecordSet], **options: object
) -> tuple[RecordSet, list[str]]:
    """``candidate`` without every image that duplicates (exactly or nearly) a held-out image.

    Used before mixing another data set into training: an image of it that is a copy of a
    validation or test image would leak that image's answer into training.

    Args:
        candidate: The set to clean.
        held_out: The sets it must not overlap (e.g. the validation and test parts).
        options: Passed to :func:`find_duplicates`.

    Returns:
        The kept samples (same set otherwise) and the ``rel`` names removed, sorted.
    """
    held = [rs for rs in held_out if len(rs)]
    if not held or not len(candidate):
        return candidate, []
    dups = find_duplicates([candidate, *held], **options)  # type: ignore[arg-type]
    n = len(candidate)
    held_groups = {int(g) for g in dups.group[n:].tolist()}
    removed = sorted(candidate.samples[k].rel for k in range(n)
                     if int(dups.group[k]) in held_groups)
    gone = set(removed)
    return candidate.subset([s.rel for s in candidate if s.rel not in gone]), removed


__all__ = [
    "Duplicates",
    "HashTable",
    "NearParams",
    "UnionFind",
    "compare_side",
    "default_workers",
    "duplicate_groups",
    "find_duplicates",
    "hamming_pairs",
    "hash_files",
    "highpass_features",
    "image_features",
    "leak_free",
    "near_pairs",
    "pair_correlation",
]
