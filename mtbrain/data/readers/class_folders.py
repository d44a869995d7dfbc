"""Class folders: ``<root>/<class>/*.jpg`` or ``<root>/<split>/<class>/*.jpg``.

Classification only (no boxes). Folders naming the canonical 4 classes map to them
(``notumor`` -> ``no_tumor``); other sets keep their folder names, and names like
``Astrocitoma T1C+`` also set ``Sample.tumour_type`` and ``Sample.sequence``. Images in
sub-folders of a class folder belong to that class.
"""

from __future__ import annotations

from pathlib import Path

from mtbrain.classes import class_names_for, parse_tumour_sequence
from mtbrain.data.image_io import image_size
from mtbrain.data.policy import LabelPolicy
from mtbrain.data.readers.common import finish, rel_name, report
from mtbrain.data.readers.registry import Reader, register_reader
from mtbrain.data.readers.scan import has_image_file, list_files, visible_dirs
from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import DataError, ProblemLog


def find_class_dirs(root: Path) -> dict[str | None, list[Path]]:
    """Class folders by split: ``{None: [...]}`` for ``<root>/<class>``, else by split name.

    ``<root>/<class>`` is recognised when a sub-folder of ``root`` holds images directly;
    ``<root>/<split>/<class>`` when a sub-sub-folder does.
    """
    top = visible_dirs(root)
    if any(has_image_file(d) for d in top):
        return {None: top}
    splits: dict[str | None, list[Path]] = {}
    for split in top:
        class_dirs = visible_dirs(split)
        if any(has_image_file(d) for d in class_dirs):
            splits[split.name] = class_dirs
    return splits


@register_reader("class_folders", priority=30)
class ClassFoldersReader(Reader):
    """Reads one folder per class (optionally under split folders); no boxes."""

    has_boxes = False

    pattern = "<root>/<class>/*.jpg or <root>/<split>/<class>/*.jpg (classification only)"

    def detect(self, path: Path) -> bool:
        return path.is_dir() and bool(find_class_dirs(path))

    def read(
        self, path: Path, policy: LabelPolicy, name: str | None = None, **options: object
    ) -> RecordSet:
        root = Path(path).resolve()
        splits = find_class_dirs(root)
        if not splits:
            raise DataError(
                f"no class folders with images found (class_folders layout: {self.pattern})",
                path=root,
                kind="layout",
            )
        folders = [d.name for dirs in splits.values() for d in dirs]
        classes, folder_class = class_names_for(folders)
        source = name or root.name
        log = ProblemLog(policy.on_error)
        samples: list[Sample] = []
        outside = [root] if None in splits else [root, *(root / s for s in splits if s)]
        for folder in outside:
            for stray in list_files(folder, recursive=False):
                log.report(stray, "image outside any class folder, not read", kind="stray_image")
        for split, class_dirs in splits.items():
            for class_dir in class_dirs:
                images = list_files(class_dir)
                if not images:
                    log.report(class_dir, "empty folder: no images found", kind="empty_folder")
                parsed = parse_tumour_sequence(class_dir.name)
                label = folder_class[class_dir.name]
                tumour, sequence = parsed if parsed and label == class_dir.name else (None, None)
                for image in images:
                    try:
                        width, height = image_size(image)
                    except DataError as exc:
                        report(log, exc)
                        continue
                    samples.append(
                        Sample(
                            path=image,
                            rel=rel_name(image, root),
                            label=label,
                            width=width,
                            height=height,
                            source=source,
                            split=split,
                            tumour_type=tumour,
                            sequence=sequence,
                        )
                    )
        return finish(root, self.name, classes, samples, log)
