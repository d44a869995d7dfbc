"""The Kaggle box layout: ``<root>/<split>/<Class>/images/*`` + ``labels/<stem>.txt``.

The folder is the image's class. Box class ids are YOLO ids: the index in the class list
(canonical 4 classes: glioma 0, meningioma 1, no_tumor 2, pituitary 3), or the names of
a ``data.yaml``/``classes.txt`` at the root when there is one. The root may also be a
split folder itself (``<root>/<Class>/images``); ``Sample.split`` is then ``None``.
"""

from __future__ import annotations

from pathlib import Path

from mtbrain.classes import class_names_for
from mtbrain.data.image_io import image_size
from mtbrain.data.policy import LabelPolicy
from mtbrain.data.readers.assign import assign_boxes
from mtbrain.data.readers.common import class_set, finish, match_class, rel_name, report
from mtbrain.data.readers.registry import Reader, register_reader
from mtbrain.data.readers.scan import Pair, list_files, pair_images_labels, visible_dirs
from mtbrain.data.readers.yolo_labels import read_names_file, read_yolo_file
from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import DataError, ProblemLog


def _class_dirs(folder: Path) -> list[Path]:
    return [d for d in visible_dirs(folder) if (d / "images").is_dir()]


def find_splits(root: Path) -> dict[str | None, list[Path]]:
    """Class folders by split (``None`` when ``root`` is a split folder itself)."""
    direct = _class_dirs(root)
    if direct:
        return {None: direct}
    splits: dict[str | None, list[Path]] = {}
    for split in visible_dirs(root):
        class_dirs = _class_dirs(split)
        if class_dirs:
            splits[split.name] = class_dirs
    return splits


def missing_label(pair: Pair, policy: LabelPolicy) -> None:
    """Raise the missing-label problem unless the policy keeps such images class-only."""
    if policy.missing_label_file == "error":
        raise DataError(
            f"image has no label file (looked for {pair.expected_label}); label policy "
            "missing_label_file='error' ('class_only' keeps such images without a box)",
            path=pair.image,
            kind="missing_label",
        )


@register_reader("kaggle_bbox", priority=10)
class KaggleBBoxReader(Reader):
    """Reads the Kaggle box layout (folder class + YOLO label files)."""

    pattern = (
        "<root>/<split>/<Class>/images/* with <root>/<split>/<Class>/labels/<stem>.txt "
        "(YOLO 'cls cx cy w h'), or <root>/<Class>/images + labels"
    )

    def detect(self, path: Path) -> bool:
        return path.is_dir() and bool(find_splits(path))

    def read(
        self, path: Path, policy: LabelPolicy, name: str | None = None, **options: object
    ) -> RecordSet:
        root = Path(path).resolve()
        splits = find_splits(root)
        if not splits:
            raise DataError(
                f"no <Class>/images folders found (kaggle_bbox layout: {self.pattern})",
                path=root,
                kind="layout",
            )
        folders = sorted({d.name for dirs in splits.values() for d in dirs})
        classes, folder_class, id_names = self._classes(root, folders)
        source = name or root.name
        log = ProblemLog(policy.on_error)
        samples: list[Sample] = []
        for split, class_dirs in splits.items():
            for class_dir in class_dirs:
                for stray in list_files(class_dir, recursive=False):
                    log.report(
                        stray,
                        "image outside the images/ folder of its class, not read",
                        kind="stray_image",
                    )
                pairs = pair_images_labels(class_dir / "images", class_dir / "labels", log)
                if not pairs and not list_files(class_dir / "images"):
                    log.report(
                        class_dir / "images", "empty folder: no images found", kind="empty_folder"
                    )
                for pair in pairs:
                    try:
                        samples.append(
                            self._sample(
                                pair,
                                root,
                                folder_class[class_dir.name],
                                id_names,
                                policy,
                                source,
                                split,
                            )
                        )
                    except DataError as exc:
                        report(log, exc)
        return finish(root, self.name, classes, samples, log)

    @staticmethod
    def _classes(root: Path, folders: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
        """(record-set classes, folder -> class, class name of each YOLO id)."""
        names_file = read_names_file(root)
        if names_file is None:
            classes, folder_class = class_names_for(folders)
            return classes, folder_class, classes
        names, file = names_file
        classes, name_class = class_set(names)
        folder_class: dict[str, str] = {}
        for folder in folders:
            cls = match_class(folder, classes)
            if cls is None:
                raise DataError(
                    f"class folder {folder!r} matches none of the class names "
                    f"{names} of {file.name}",
                    path=file,
                    kind="names",
                )
            folder_class[folder] = cls
        return classes, folder_class, [name_class[n] for n in names]

    @staticmethod
    def _sample(
        pair: Pair,
        root: Path,
        label: str,
        id_names: list[str],
        policy: LabelPolicy,
        source: str,
        split: str | None,
    ) -> Sample:
        width, height = image_size(pair.image)
        sample = Sample(
            path=pair.image,
            rel=rel_name(pair.image, root),
            label=label,
            width=width,
            height=height,
            source=source,
            split=split,
        )
        if pair.label is None:
            missing_label(pair, policy)
            return sample
        parsed = read_yolo_file(
            pair.label,
            width=width,
            height=height,
            tolerance=policy.box_tolerance,
            num_classes=len(id_names),
            names=id_names,
        )
        box_names = [id_names[i] for i in parsed.ids]
        sample.boxes, sample.other_boxes = assign_boxes(
            label, box_names, parsed.boxes, policy=policy, path=pair.label, lines=parsed.lines
        )
        return sample
