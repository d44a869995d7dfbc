"""Decoded-image cache: letterboxed grayscale images, so later epochs decode no JPEG again.

A :class:`DecodedCache` serves a fixed list of image files (its *rows*), each stored as the
``size`` x ``size`` uint8 image that :func:`mtbrain.data.transforms.decode_letterboxed`
returns, with the original width and height (so the :class:`~mtbrain.data.boxes.Letterbox`
geometry is known without reading the file).

Backends:
    ``memory``: arrays in this process. Fill it with :meth:`DecodedCache.warm` before the
        DataLoader starts: forked worker processes then read the filled rows (shared
        copy-on-write). Rows a worker fills itself stay in that worker.
    ``disk``: memory-mapped ``.npy`` files (``np.lib.format.open_memmap``) under
        ``cache_root()/decoded``, shared by every process and kept between runs. Each
        process (DataLoader workers included) opens the maps lazily on first use.

Validity of a row: its ``filled`` flag is written only after the image and its metadata,
so a process that dies mid-fill leaves an unfilled row that is decoded again, never a
half-written image that looks valid. On disk the metadata also holds a CRC-32 of the image
and its size, checked on every read (about 40 us): pages that the OS wrote back out of
order before a power loss, or two processes filling the same row at once, can only cost
a new decode, never a wrong image (cheaper than an ``msync`` per row, which doubled the
fill time). Each row also stores a key of its file (``stat``: path + size + mtime + inode;
``sha1``: the file's bytes); a row whose file changed since it was filled is invalidated
when the cache is opened. The folder name holds the list of files, ``size`` and
``keep_ratio``, so a different input size never reads images of another size.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.lib.format import open_memmap

from mtbrain._env import cache_root
from mtbrain.data.boxes import Letterbox
from mtbrain.data.records import RecordSet, Sample
from mtbrain.data.transforms import decode_letterboxed
from mtbrain.errors import ConfigError, DataError, DataProblem, OnError, ProblemLog

Backend = Literal["memory", "disk"]
KeyMode = Literal["stat", "sha1"]

CACHE_VERSION = 1
_KEY_BYTES = 20  # sha1 digest
_FLUSH_EVERY = 256  # rows written by warm() between two flushes to disk (progress kept)
_META = 3  # per row: width, height, CRC-32 of (width, height, image)


def default_cache_folder() -> Path:
    """Where disk caches live: ``cache_root()/decoded`` (``$MTBRAIN_CACHE`` moves it)."""
    return cache_root() / "decoded"


def file_key(path: str | Path, mode: KeyMode = "stat") -> bytes:
    """A 20-byte key that changes when the file changes.

    ``stat`` hashes the resolved path, byte size, modification time (ns) and inode: cheap,
    and it changes on every rewrite or replacement. ``sha1`` hashes the bytes themselves.
    A missing file gets a key of its own (so its row is never valid).
    """
    p = Path(path)
    try:
        if mode == "sha1":
            digest = hashlib.sha1(b"sha1\0")
            with open(p, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            return digest.digest()
        st = p.stat()
        text = f"stat\0{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    except OSError:
        text = f"missing\0{p}"
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).digest()


def _checksum(image: np.ndarray, width: int, height: int) -> int:
    """CRC-32 of a row: its original size and its image bytes."""
    return zlib.crc32(np.ascontiguousarray(image), zlib.crc32(np.array([width, height], np.int64)))


def _sample_paths(items: RecordSet | Iterable[Sample | str | Path]) -> list[Path]:
    return [Path(s.path if isinstance(s, Sample) else s) for s in items]


def _decode_job(job: tuple[int, str, int, bool]) -> tuple[int, np.ndarray | None, int, int, Any]:
    """Worker of :meth:`DecodedCache.warm`: decode one file, or report why it failed."""
    row, path, size, keep_ratio = job
    try:
        image, geo = decode_letterboxed(path, size, keep_ratio=keep_ratio)
    except DataError as exc:
        return row, None, 0, 0, exc.problem
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a problem of that file
        return row, None, 0, 0, DataProblem(path, f"cannot decode image: {exc}", kind="bad_image")
    return row, image, geo.width, geo.height, None


class DecodedCache:
    """Decoded, letterboxed ``size`` x ``size`` uint8 images of a fixed list of files.

    Args:
        samples: The files it serves: a :class:`RecordSet`, samples or paths. Build it once
            over a whole data set and hand it to every :class:`~mtbrain.data.dataset.MRIDataset`
            made from a part of that set.
        size: Side of the letterboxed images.
        keep_ratio: Letterbox (pad) instead of stretching.
        backend: ``memory`` or ``disk`` (see the module notes).
        folder: Parent folder of disk caches; default :func:`default_cache_folder`.
        key: How a file's identity is checked on disk: ``stat`` or ``sha1``.
    """

    def __init__(self, samples: RecordSet | Iterable[Sample | str | Path], *, size: int,
                 keep_ratio: bool = True, backend: Backend = "memory",
                 folder: str | Path | None = None, key: KeyMode = "stat") -> None:
        if backend not in ("memory", "disk"):
            raise ConfigError(f"cache backend must be 'memory' or 'disk', got {backend!r}")
        if key not in ("stat", "sha1"):
            raise ConfigError(f"cache key must be 'stat' or 'sha1', got {key!r}")
        if size < 1:
            raise ConfigError(f"cache size must be positive, got {size}")
        self.paths = _sample_paths(samples)
        self.size, self.keep_ratio, self.backend, self.key = int(size), bool(keep_ratio), backend, key
        self._rows = {str(p): i for i, p in enumerate(self.paths)}
        if len(self._rows) != len(self.paths):
            raise ConfigError("the cache's file list names a file twice")
        self.location: Path | None = None
        self._pid: int | None = None
        self._images: np.ndarray | None = None
        self._meta: np.ndarray | None = None
        self._filled: np.ndarray | None = None
        n = len(self.paths)
        if backend == "memory":
            # np.zeros maps untouched pages lazily: memory grows with the rows filled
            self._images = np.zeros((n, self.size, self.size), dtype=np.uint8)
            self._meta = np.zeros((n, _META), dtype=np.int64)
            self._filled = np.zeros(n, dtype=np.uint8)
            self._pid = os.getpid()
        else:
            self.location = self._prepare_disk(Path(folder) if folder else default_cache_folder())

    # ----------------------------------------------------------------- disk layout
    def _identity(self) -> dict[str, Any]:
        return {"version": CACHE_VERSION, "size": self.size, "keep_ratio": self.keep_ratio,
                "key": self.key, "n": len(self.paths),
                "paths": [str(p.resolve()) for p in self.paths]}

    def _prepare_disk(self, folder: Path) -> Path:
        """Create (or reopen) the cache folder and invalidate the rows whose file changed."""
        ident = self._identity()
        digest = hashlib.sha1(json.dumps(ident).encode()).hexdigest()[:16]
        mode = "letterbox" if self.keep_ratio else "stretch"
        location = folder / f"{digest}-{self.size}-{mode}"
        if not self._disk_matches(location, ident):
            shutil.rmtree(location, ignore_errors=True)
            self._create_disk(location, ident)
        keys = open_memmap(location / "keys.npy", mode="r+")
        filled = open_memmap(location / "filled.npy", mode="r+")
        expected = np.frombuffer(b"".join(file_key(p, self.key) for p in self.paths),
                                 dtype=np.uint8).reshape(-1, _KEY_BYTES)
        stale = np.flatnonzero((keys != expected).any(axis=1))
        if len(stale):
            filled[stale] = 0  # first the flag, then the key: never a valid row of the old file
            filled.flush()
            keys[stale] = expected[stale]
            keys.flush()
        del keys, filled
        return location

    @staticmethod
    def _disk_matches(location: Path, ident: dict[str, Any]) -> bool:
        try:
            meta = json.loads((location / "identity.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if meta != ident:
            return False
        n, size = ident["n"], ident["size"]
        try:
            shapes = {name: open_memmap(location / f"{name}.npy", mode="r").shape
                      for name in ("images", "meta", "keys", "filled")}
        except (OSError, ValueError):
            return False
        return shapes == {"images": (n, size, size), "meta": (n, _META), "keys": (n, _KEY_BYTES),
                          "filled": (n,)}

    def _create_disk(self, location: Path, ident: dict[str, Any]) -> None:
        """Build the files in a temporary folder, then rename it into place (atomic)."""
        location.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{location.name}.", dir=location.parent))
        try:
            n = len(self.paths)
            for name, dtype, shape in (("images", np.uint8, (n, self.size, self.size)),
                                       ("meta", np.int64, (n, _META)),
                                       ("keys", np.uint8, (n, _KEY_BYTES)),
                                       ("filled", np.uint8, (n,))):
                arr = open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
                arr.flush()
                del arr
            (tmp / "identity.json").write_text(json.dumps(ident), encoding="utf-8")
            try:
                tmp.rename(location)
            except OSError:
                if not self._disk_matches(location, ident):  # lost a race to a broken folder
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _open(self) -> None:
        """Map the disk files in this process (again after a fork)."""
        if self._pid == os.getpid():
            return
        assert self.location is not None
        self._images = open_memmap(self.location / "images.npy", mode="r+")
        self._meta = open_memmap(self.location / "meta.npy", mode="r+")
        self._filled = open_memmap(self.location / "filled.npy", mode="r+")
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self.backend == "disk":  # maps are per process: reopened lazily after unpickling
            state.update(_images=None, _meta=None, _filled=None, _pid=None)
        return state

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, (str, Path)) and str(path) in self._rows

    def row(self, path: str | Path) -> int:
        """The row of a file; :class:`KeyError` naming it when the cache does not serve it."""
        try:
            return self._rows[str(path)]
        except KeyError:
            raise KeyError(f"{path} is not one of the {len(self)} files of this cache") from None

    @property
    def filled(self) -> np.ndarray:
        """A bool copy of the filled flags, one per row (on disk, reads also check the CRC)."""
        if self.backend == "disk":
            self._open()
        assert self._filled is not None
        return self._filled.astype(bool)

    def get(self, path: str | Path) -> tuple[np.ndarray, Letterbox]:
        """The letterboxed image of a file (a copy) and its letterbox geometry.

        A row not yet filled is decoded and stored first.

        Raises:
            KeyError: the cache does not serve ``path``.
            DataError: naming the file, when it cannot be decoded.
        """
        row = self.row(path)
        if self.backend == "disk":
            self._open()
        assert self._images is not None and self._meta is not None and self._filled is not None
        cached = self._read(row)
        if cached is not None:
            image, (width, height) = cached
            return image, Letterbox.fit(width, height, self.size, keep_ratio=self.keep_ratio)
        image, geo = decode_letterboxed(self.paths[row], self.size, keep_ratio=self.keep_ratio)
        self._store(row, image, geo.width, geo.height)
        return image, geo

    def _read(self, row: int) -> tuple[np.ndarray, tuple[int, int]] | None:
        """A filled row's image (a copy) and original size; ``None`` when it is not valid."""
        assert self._images is not None and self._meta is not None and self._filled is not None
        if not self._filled[row]:
            return None
        image = np.array(self._images[row])
        width, height, crc = (int(v) for v in self._meta[row])
        if self.backend == "disk" and _checksum(image, width, height) != crc:
            self._filled[row] = 0  # torn or half-overwritten row: it is decoded again
            return None
        return image, (width, height)

    def _store(self, row: int, image: np.ndarray, width: int, height: int) -> None:
        """Write a row: the image, then its size and checksum, then (last) its flag."""
        assert self._images is not None and self._meta is not None and self._filled is not None
        self._images[row] = image
        crc = _checksum(image, width, height) if self.backend == "disk" else 0
        self._meta[row] = (width, height, crc)
        self._filled[row] = 1

    def flush(self) -> None:
        """Write a disk cache's pages to disk now (the OS does it anyway, later)."""
        if self.backend == "disk" and self._pid == os.getpid():
            for arr in (self._images, self._meta, self._filled):
                assert isinstance(arr, np.memmap)
                arr.flush()

    # ----------------------------------------------------------------- bulk fill
    def warm(self, records: RecordSet | Iterable[Sample | str | Path] | None = None, *,
             num_workers: int = 0) -> list[DataProblem]:
        """Fill the rows of ``records`` (default: every row) in parallel.

        Args:
            records: Files to fill; every one must be served by this cache.
            num_workers: Decoding processes; 0 decodes in this process.

        Returns:
            The problems of the files that cannot be decoded (truncated, corrupt, not an
            image), one per file, sorted by path. Their rows stay unfilled; see
            :func:`exclude_undecodable` to skip them or stop, by the ``on_error`` policy.
        """
        paths = self.paths if records is None else _sample_paths(records)
        rows = sorted({self.row(p) for p in paths})
        if self.backend == "disk":
            self._open()
        todo = [(r, str(self.paths[r]), self.size, self.keep_ratio)
                for r in rows if self._read(r) is None]
        problems: list[DataProblem] = []
        done = 0

        def take(result: tuple[int, np.ndarray | None, int, int, Any]) -> None:
            nonlocal done
            row, image, width, height, problem = result
            if image is None:
                problems.append(problem)
                return
            self._store(row, image, width, height)
            done += 1
            if done % _FLUSH_EVERY == 0:
                self.flush()

        if num_workers > 0 and len(todo) > 1:
            ctx = multiprocessing.get_context()
            with ctx.Pool(min(num_workers, len(todo))) as pool:
                for result in pool.imap_unordered(_decode_job, todo, chunksize=8):
                    take(result)
        else:
            for job in todo:
                take(_decode_job(job))
        self.flush()
        return sorted(problems, key=lambda p: p.path)


def exclude_undecodable(records: RecordSet, problems: Sequence[DataProblem], *,
                        on_error: OnError = "raise") -> RecordSet:
    """Apply the ``on_error`` policy to the files :meth:`DecodedCache.warm` could not decode.

    Args:
        records: The set the problems were found in.
        problems: From :meth:`DecodedCache.warm`.
        on_error: ``raise``: a :class:`DataError` naming every file; ``skip``: the set
            without those files, the problems added to its problem log.
    """
    if not problems:
        return records
    if on_error == "raise":
        lines = "\n".join(f"  {p}" for p in problems)
        raise DataError(f"{len(problems)} image(s) cannot be decoded:\n{lines}",
                        path=records.root, kind="bad_image")
    bad = {p.path for p in problems}
    kept = records.subset([s.rel for s in records.samples if str(s.path) not in bad])
    log = ProblemLog("skip")
    log.extend(records.problems)
    log.problems.extend(problems)
    kept.problems = log
    return kept
