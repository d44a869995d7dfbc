"""The one checkpoint file format: weights + JSON config + optional trainer state, verified.

A checkpoint is a single file written by ``torch.save`` (atomically, through
:func:`mtbrain.io.atomic_write`) holding one dict::

    {"format": "mtbrain-checkpoint",       # marker: foreign files are refused
     "format_version": 1,
     "mtbrain_version": "0.1.0", "torch_version": "2.x",
     "config_json": "{...}",               # the model config, as a JSON *string*
     "state_dict": {name: tensor},          # model weights
     "extra": {...},                        # optional: optimizer, scheduler, scaler, epoch,
                                            # RNG states... (tensors and plain data only)
     "checksum": "sha256:<hex>"}            # over everything above, tensors byte by byte

It is read back with ``torch.load(..., weights_only=True)``, so loading never executes
code from the file (a model shared between hospitals or downloaded by a user cannot run
anything), and then verified: marker, version, config JSON, types and checksum. A
truncated, tampered or foreign file raises :class:`~mtbrain.errors.DataError` naming the
file and the problem.

The trainer stores its own state under ``extra`` (``write_checkpoint(..., extra={...})``);
:func:`to_plain` rejects, at write time, anything ``weights_only`` could not read back
(convert NumPy arrays to tensors or lists first; NumPy scalars are converted).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtbrain.errors import DataError
from mtbrain.io import atomic_write

FORMAT = "mtbrain-checkpoint"
FORMAT_VERSION = 1
_PLAIN: tuple[type, ...] = (str, int, float, bool, type(None))


@dataclass
class Checkpoint:
    """The verified content of a checkpoint file.

    Attributes:
        config: The model config (decoded JSON).
        state_dict: Model weights.
        extra: Whatever the writer stored beside the model (trainer state), or ``{}``.
        meta: ``format_version``, ``mtbrain_version``, ``torch_version``.
        path: The file it was read from (``None`` when built in memory).
    """

    config: dict[str, Any]
    state_dict: dict[str, Tensor]
    extra: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def to_plain(obj: Any, where: str = "extra") -> Any:
    """A copy of ``obj`` that ``torch.load(weights_only=True)`` can read back, or ``TypeError``.

    Allowed: tensors, ``torch.Size``, exact ``str``/``int``/``float``/``bool``/``None``, and
    dicts, lists and tuples of those (dict keys: ``str``/``int``/``float``/``bool``). NumPy
    scalars become Python numbers; anything else (NumPy arrays, custom objects,
    namedtuples) raises ``TypeError`` naming its key path: convert arrays to tensors.
    """
    if isinstance(obj, Tensor | torch.Size) or type(obj) in _PLAIN:
        return obj
    if isinstance(obj, np.generic) and isinstance(obj.item(), _PLAIN):
        return obj.item()
    if type(obj) in (dict, OrderedDict):
        out = {}
        for k, v in obj.items():
            key = k.item() if isinstance(k, np.generic) else k
            if type(key) not in (str, int, float, bool):
                raise TypeError(
                    f"{where}: dict key {k!r} of type {type(k).__name__} is not allowed"
                )
            out[key] = to_plain(v, f"{where}[{k!r}]")
        return out
    if type(obj) in (list, tuple):
        return type(obj)(to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(
        f"{where}: a {type(obj).__module__}.{type(obj).__name__} cannot be stored in a "
        f"checkpoint (tensors and plain data only; convert arrays to tensors)"
    )


def check_plain(obj: Any, where: str = "extra") -> None:
    """Raise ``TypeError`` (naming the key path) when ``obj`` is not plain (:func:`to_plain`)."""
    to_plain(obj, where)


def _digest(obj: Any, h: Any) -> None:
    """Feed a canonical byte form of ``obj`` (tensors byte by byte) into the hash ``h``."""
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}|".encode())
        for k in sorted(obj, key=lambda key: (type(key).__name__, repr(key))):
            h.update(f"K{type(k).__name__}:{k!r}|".encode())
            _digest(obj[k], h)
    elif isinstance(obj, list | tuple):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}|".encode())
        for v in obj:
            _digest(v, h)
    else:
        h.update(f"P{type(obj).__name__}:{obj!r}|".encode())


def checksum(payload: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` over every entry of ``payload`` except ``checksum`` itself."""
    h = hashlib.sha256()
    _digest({k: v for k, v in payload.items() if k != "checksum"}, h)
    return f"sha256:{h.hexdigest()}"


def build_payload(
    *,
    config: Mapping[str, Any],
    state_dict: Mapping[str, Tensor],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict that :func:`write_checkpoint` saves (with its checksum)."""
    from mtbrain import __version__

    extra = to_plain(dict(extra or {}))
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mtbrain_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "config_json": json.dumps(dict(config), sort_keys=True),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "extra": extra,
    }
    payload["checksum"] = checksum(payload)
    return payload


def write_checkpoint(
    path: str | Path,
    *,
    config: Mapping[str, Any],
    state_dict: Mapping[str, Tensor],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write one checkpoint file atomically (complete or absent, never half-written).

    Args:
        path: Destination file.
        config: JSON-serialisable model config.
        state_dict: Model weights.
        extra: Trainer state (optimizer, scheduler, scaler, epoch, RNG...): tensors and
            plain data only (checked before anything is written).
    """
    payload = build_payload(config=config, state_dict=state_dict, extra=extra)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` with every failure as a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint file not found", path=path)
    if path.stat().st_size == 0:
        raise DataError("empty file (0 bytes), not a checkpoint", path=path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about foreign pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "weights only" in msg.lower() or "weights_only" in msg.lower():
            problem = (
                "refused: the file holds Python objects other than tensors and plain "
                "data, and loading it could run code"
            )
        else:
            problem = f"not a PyTorch checkpoint file ({msg.splitlines()[0][:120]})"
        raise DataError(problem, path=path) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(f"truncated or corrupt checkpoint file ({first})", path=path) from None
    except Exception as exc:  # noqa: BLE001 - the unpickler fails in many ways on foreign bytes
        raise DataError(
            f"not a PyTorch checkpoint file ({type(exc).__name__}: {str(exc)[:120]})", path=path
        ) from None


def checkpoint_from_payload(payload: Any, path: str | Path | None = None) -> Checkpoint:
    """Verify a loaded payload (marker, version, types, checksum) and wrap it.

    Raises:
        DataError: naming ``path`` for a foreign, newer or tampered payload.
    """
    where = str(path) if path is not None else "<checkpoint>"
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(
            "not an mtbrain checkpoint (no 'mtbrain-checkpoint' format marker)", path=where
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise DataError(
            f"unsupported checkpoint format version {version!r} (this mtbrain "
            f"reads up to {FORMAT_VERSION}; upgrade mtbrain)",
            path=where,
        )
    for key, kind in (
        ("config_json", str),
        ("state_dict", dict),
        ("extra", dict),
        ("checksum", str),
    ):
        if not isinstance(payload.get(key), kind):
            raise DataError(
                f"checkpoint entry {key!r} is missing or not a {kind.__name__}", path=where
            )
    if not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in payload["state_dict"].items()
    ):
        raise DataError(
            "checkpoint state_dict holds something other than named tensors", path=where
        )
    if checksum(payload) != payload["checksum"]:
        raise DataError(
            "checksum mismatch: the file was modified or damaged after it was written", path=where
        )
    try:
        config = json.loads(payload["config_json"])
    except json.JSONDecodeError as exc:
        raise DataError(f"checkpoint config is not valid JSON: {exc}", path=where) from None
    if not isinstance(config, dict):
        raise DataError("checkpoint config is not a JSON object", path=where)
    meta = {k: payload.get(k) for k in ("format_version", "mtbrain_version", "torch_version")}
    return Checkpoint(
        config=config,
        state_dict=payload["state_dict"],
        extra=payload["extra"],
        meta=meta,
        path=Path(path) if path is not None else None,
    )


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint file; never executes code from it.

    Raises:
        DataError: naming the file when it is missing, truncated, tampered with, foreign or
            of a newer format.
    """
    return checkpoint_from_payload(safe_torch_load(path), path)
