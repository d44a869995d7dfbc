"""The registry of data-set layouts: each reader registers under a name.

Like timm's ``register_model`` / ``create_model``: a reader class is registered with
:func:`register_reader` and looked up by name with :func:`get_reader`. Autodetection
(:func:`detect_layout`) asks the readers in registration order (most specific first) and
takes the first whose ``detect`` says yes; ``priority`` orders them (lower first), so the
order does not depend on import order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

from mtbrain.data.policy import LabelPolicy
from mtbrain.data.records import RecordSet
from mtbrain.errors import ConfigError, DataError


class Reader:
    """A data-set layout: recognises it on disk and reads it into a :class:`RecordSet`.

    Subclasses set ``pattern`` (the layout in one line, shown in error messages) and
    ``options`` (extra keyword arguments their ``read`` accepts), ``has_boxes`` (False for
    classification-only layouts), and implement
    :meth:`detect` and :meth:`read`.
    """

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 100
    pattern: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()
    #: The layout annotates tumour boxes (so an image without one truly has none).
    has_boxes: ClassVar[bool] = True

    def detect(self, path: Path) -> bool:
        """True when ``path`` looks like this layout (cheap: a few directory listings)."""
        raise NotImplementedError

    def read(
        self, path: Path, policy: LabelPolicy, name: str | None = None, **options: object
    ) -> RecordSet:
        """Read the data set at ``path`` under ``policy``.

        Raises:
            DataError: naming the file (and line) and the problem, at the first problem
                when ``policy.on_error == "raise"``, or when no usable sample is left.
        """
        raise NotImplementedError


R = TypeVar("R", bound=type[Reader])

_READERS: dict[str, Reader] = {}


def register_reader(name: str, *, priority: int = 100) -> Callable[[R], R]:
    """Class decorator: register a :class:`Reader` subclass under ``name``.

    Args:
        name: The layout name (``layout=...``, ``--layout``).
        priority: Autodetection order, lower first: specific layouts before general ones.
    """

    def decorate(cls: R) -> R:
        if name in _READERS:
            raise ValueError(f"a reader named {name!r} is already registered")
        cls.name = name
        cls.priority = priority
        _READERS[name] = cls()
        ordered = sorted(_READERS.items(), key=lambda kv: kv[1].priority)
        _READERS.clear()
        _READERS.update(ordered)
        return cls

    return decorate


def list_layouts() -> list[str]:
    """Names of the known layouts, in autodetection order."""
    return list(_READERS)


def describe_layouts() -> str:
    """The known layouts with their on-disk pattern, one per line (for error messages)."""
    return "\n".join(f"  {n}: {r.pattern}" for n, r in _READERS.items())


def get_reader(name: str) -> Reader:
    """The reader registered under ``name``; an unknown name lists the known ones."""
    try:
        return _READERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown data layout {name!r}; known layouts: {list_layouts()}"
        ) from None


def detect_layout(path: str | Path) -> str:
    """Name of the first layout whose reader recognises ``path``.

    Raises:
        DataError: when ``path`` does not exist or no layout fits; the message lists the
            known layouts and what each looks for.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("data path not found", path=p, kind="layout")
    for name, reader in _READERS.items():
        if reader.detect(p):
            return name
    raise DataError(
        "no known data layout found here. Known layouts (looked for in this order):\n"
        f"{describe_layouts()}\nName one with layout=... (--layout) if the folder is in one "
        "of them.",
        path=p,
        kind="layout",
    )
