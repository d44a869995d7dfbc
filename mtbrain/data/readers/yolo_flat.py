"""The ultralytics layout: ``<root>/images/**`` + ``<root>/labels/**`` (mirrored sub-paths).

``images/train/x.jpg`` pairs with ``labels/train/x.txt``; the first sub-folder under
``images`` is ``Sample.split``. Class names come from the ``names`` of a ``data.yaml`` (or
``classes.txt``) at the root, else they are the ids seen (``"0"``, ``"1"``, ...). There is
no class folder: the image's class is the class of its boxes
(:func:`~mtbrain.data.readers.assign.class_from_boxes`); an empty label file means
``no_tumor`` when that class exists, else no label. An image without a label file kept
under ``missing_label_file="class_only"`` has neither class nor box (``label=None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtbrain.classes import NO_TUMOR
from mtbrain.data.image_io import image_size
from mtbrain.data.policy import LabelPolicy
from mtbrain.data.readers.assign import assign_boxes, class_from_boxes
from mtbrain.data.readers.common import class_set, finish, rel_name, report
from mtbrain.data.readers.kaggle_bbox import missing_label
from mtbrain.data.readers.registry import Reader, register_reader
from mtbrain.data.readers.scan import Pair, list_files, pair_images_labels
from mtbrain.data.readers.yolo_labels import YoloBoxes, read_names_file, read_yolo_file
from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import DataError, ProblemLog


@dataclass
class _Read:
    pair: Pair
    width: int
    height: int
    parsed: YoloBoxes | None


@register_reader("yolo_flat", priority=20)
class YoloFlatReader(Reader):
    """Reads an ultralytics-style YOLO data set (box classes only, no class folders)."""

    pattern = (
        "<root>/images/** with <root>/labels/** (mirrored sub-paths, <stem>.txt YOLO "
        "'cls cx cy w h'), optional data.yaml with names"
    )

    def detect(self, path: Path) -> bool:
        return (path / "images").is_dir() and (path / "labels").is_dir()

    def read(
        self, path: Path, policy: LabelPolicy, name: str | None = None, **options: object
    ) -> RecordSet:
        root = Path(path).resolve()
        if not (root / "images").is_dir():
            raise DataError(
                f"no images/ folder (yolo_flat layout: {self.pattern})", path=root, kind="layout"
            )
        names_file = read_names_file(root)
        names = names_file[0] if names_file else None
        log = ProblemLog(policy.on_error)
        pairs = pair_images_labels(root / "images", root / "labels", log)
        if not pairs and not list_files(root / "images"):
            log.report(root / "images", "empty folder: no images found", kind="empty_folder")

        reads: list[_Read] = []
        for pair in pairs:
            try:
                reads.append(self._read_one(pair, policy, names))
            except DataError as exc:
                report(log, exc)

        if names is not None:
            classes, name_class = class_set(names)
            id_names = [name_class[n] for n in names]
        else:
            top = max(
                (int(r.parsed.ids.max()) for r in reads if r.parsed and len(r.parsed.ids)),
                default=-1,
            )
            classes = id_names = [str(i) for i in range(top + 1)]

        source = name or root.name
        samples: list[Sample] = []
        for r in reads:
            try:
                samples.append(self._sample(r, root, classes, id_names, policy, source))
            except DataError as exc:
                report(log, exc)
        return finish(root, self.name, classes, samples, log)

    @staticmethod
    def _read_one(pair: Pair, policy: LabelPolicy, names: list[str] | None) -> _Read:
        width, height = image_size(pair.image)
        if pair.label is None:
            missing_label(pair, policy)
            return _Read(pair, width, height, None)
        parsed = read_yolo_file(
            pair.label,
            width=width,
            height=height,
            tolerance=policy.box_tolerance,
            num_classes=len(names) if names is not None else None,
            names=names,
        )
        return _Read(pair, width, height, parsed)

    @staticmethod
    def _sample(
        r: _Read,
        root: Path,
        classes: list[str],
        id_names: list[str],
        policy: LabelPolicy,
        source: str,
    ) -> Sample:
        rel = rel_name(r.pair.image, root)
        parts = rel.split("/")
        split = parts[1] if len(parts) > 2 else None
        sample = Sample(
            path=r.pair.image,
            rel=rel,
            label=None,
            width=r.width,
            height=r.height,
            source=source,
            split=split,
        )
        if r.parsed is None:  # no label file, kept class-only: nothing is known
            return sample
        box_names = [id_names[i] for i in r.parsed.ids]
        label = class_from_boxes(box_names, r.parsed.boxes)
        if label is None and NO_TUMOR in classes:
            label = NO_TUMOR
        sample.label = label
        sample.boxes, sample.other_boxes = assign_boxes(
            label,
            box_names,
            r.parsed.boxes,
            policy=policy,
            path=r.pair.label or r.pair.image,
            lines=r.parsed.lines,
        )
        return sample
