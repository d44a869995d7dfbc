"""``load_dataset``: one entry point for every layout and for split files."""

from __future__ import annotations

from pathlib import Path

from mtbrain.data.policy import LabelPolicy
from mtbrain.data.readers.registry import detect_layout, get_reader, list_layouts
from mtbrain.data.records import RecordSet
from mtbrain.data.splitfile import SplitFile, is_split_file, parse_data_arg
from mtbrain.errors import ConfigError, DataError


def load_dataset(
    path: str | Path,
    *,
    layout: str | None = None,
    policy: LabelPolicy | None = None,
    name: str | None = None,
    images: str | Path | None = None,
) -> RecordSet:
    """Read a data set in any known layout, or one part of a split file.

    Args:
        path: A data folder (or COCO json), or ``split.json:part`` to select one part of a
            split written by ``mtbrain split``.
        layout: A layout name (see :func:`list_layouts`); autodetected when ``None``.
        policy: The label policy; default :class:`LabelPolicy` (for a split: the split's).
        name: Name of the set (``Sample.source``); default the folder name.
        images: Image root for the ``coco`` layout (default: next to the json).

    Raises:
        DataError: for a missing path, an unknown layout on disk, bad data (naming the file,
            line and problem) or a split path without its part.
        ConfigError: for an unknown layout name or an option the layout does not take.
    """
    file, part = parse_data_arg(path)
    if part is not None or is_split_file(file):
        return _load_split(file, part, layout=layout, policy=policy, name=name, images=images)
    if not file.exists():
        raise DataError("data path not found", path=file, kind="layout")
    reader = get_reader(layout) if layout is not None else get_reader(detect_layout(file))
    options: dict[str, object] = {}
    if images is not None:
        if "images" not in reader.options:
            takers = [n for n in list_layouts() if "images" in get_reader(n).options]
            raise ConfigError(f"the {reader.name} layout takes no images root (only {takers})")
        options["images"] = Path(images)
    return reader.read(file, policy or LabelPolicy(), name, **options)


def _load_split(
    file: Path,
    part: str | None,
    *,
    layout: str | None,
    policy: LabelPolicy | None,
    name: str | None,
    images: str | Path | None,
) -> RecordSet:
    split = SplitFile.read(file)
    if part is None:
        raise DataError(
            f"this is a split file: choose a part as {file}:<part>; parts: {sorted(split.parts)}",
            path=file,
            kind="layout",
        )
    rels = split.part(part, path=file)
    if layout is not None and layout != split.layout:
        raise ConfigError(
            f"layout {layout!r} differs from the split's layout {split.layout!r} ({file})"
        )
    policy = policy or LabelPolicy.from_dict(split.policy)
    records = load_dataset(split.data, layout=split.layout, policy=policy, name=name, images=images)
    present = {s.rel for s in records.samples}
    missing = [r for r in rels if r not in present]
    if missing and policy.on_error == "raise":
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(
            f"part {part!r} names {missing[0]!r}, which is not a sample of "
            f"{split.data}{more}; did the data change since the split?",
            path=file,
            kind="missing_sample",
        )
    for rel in missing:
        records.problems.report(
            file,
            f"part {part!r} names {rel!r}, which is not a sample of {split.data}",
            kind="missing_sample",
        )
    return records.subset(rels, strict=False)
