"""COCO json: a reader and a writer (:func:`write_coco`) that round-trip exactly.

Read: ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations``
(``image_id``, ``category_id``, ``bbox`` = ``[x, y, w, h]`` pixels) and ``categories``
(``id``, ``name``). Image files are found under the ``images=`` root when given, else
under the root the writer recorded (``info.mtbrain.images_root``), else next to the json.
The image's class is its ``label`` (or ``class``) key when present, a class name or a
category id; otherwise the majority category of its boxes; with no box, ``no_tumor``
when that class exists, else no label.

Written files are plain COCO plus a few extra keys that other tools ignore: per image
``label``, ``split``, ``tumour_type``, ``sequence`` (and ``source`` when it differs from
the set's name); per annotation ``mtbrain_other_box: true`` for boxes kept in
``other_boxes``; ``info.mtbrain`` with the set's name, layout and image root.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mtbrain.classes import CANONICAL_CLASSES, NO_TUMOR, canonical_class, parse_tumour_sequence
from mtbrain.data.boxes import clip, convert
from mtbrain.data.image_io import image_size
from mtbrain.data.policy import LabelPolicy
from mtbrain.data.readers.assign import assign_boxes, class_from_boxes
from mtbrain.data.readers.common import class_set, finish, report
from mtbrain.data.readers.registry import Reader, register_reader
from mtbrain.data.records import RecordSet, Sample
from mtbrain.data.splitfile import is_split_file
from mtbrain.errors import DataError, ProblemLog
from mtbrain.io import write_json

OTHER_KEY = "mtbrain_other_box"


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"not valid JSON: {exc}", path=path, line=getattr(exc, "lineno", None), kind="layout"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", path=path, kind="layout") from None


def _is_coco_file(path: Path) -> bool:
    if path.suffix.lower() != ".json" or path.name.startswith(".") or is_split_file(path):
        return False
    try:
        obj = _load_json(path)
    except DataError:
        return False
    return isinstance(obj, dict) and "images" in obj and "annotations" in obj


def find_coco_json(path: Path) -> Path | None:
    """The COCO file for ``path``: itself, or the one COCO json directly in a folder."""
    if path.is_file():
        return path if path.suffix.lower() == ".json" and not is_split_file(path) else None
    if not path.is_dir():
        return None
    found = [p for p in sorted(path.glob("*.json")) if p.is_file() and _is_coco_file(p)]
    return found[0] if len(found) == 1 else None


def _list(obj: Mapping[str, Any], key: str, path: Path, *, required: bool) -> list[Any]:
    if key not in obj:
        if required:
            raise DataError(f"COCO file lacks the key {key!r}", path=path, kind="layout")
        return []
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DataError(f"COCO {key!r} must be a list of objects", path=path, kind="layout")
    return value


def _categories(cats: list[dict[str, Any]], path: Path) -> dict[Any, str]:
    by_id: dict[Any, str] = {}
    for i, cat in enumerate(cats):
        if "id" not in cat or not isinstance(cat.get("name"), str):
            raise DataError(f"categories[{i}] needs an 'id' and a 'name'", path=path, kind="layout")
        if cat["id"] in by_id:
            raise DataError(
                f"categories[{i}]: duplicate category id {cat['id']!r}", path=path, kind="layout"
            )
        by_id[cat["id"]] = cat["name"]
    try:
        return dict(sorted(by_id.items()))
    except TypeError:  # mixed id types: keep the file's order
        return by_id


@register_reader("coco", priority=40)
class CocoReader(Reader):
    """Reads a COCO json file (boxes in pixels, optional per-image class)."""

    pattern = (
        "a COCO json file (or a folder with exactly one): images, annotations, "
        "categories; bbox [x, y, w, h] pixels; image paths relative to its folder"
    )
    options = ("images",)

    def detect(self, path: Path) -> bool:
        return find_coco_json(path) is not None

    def read(
        self, path: Path, policy: LabelPolicy, name: str | None = None, **options: object
    ) -> RecordSet:
        json_path = find_coco_json(Path(path))
        if json_path is None:
            raise DataError(
                f"no COCO json file here (coco layout: {self.pattern})", path=path, kind="layout"
            )
        json_path = json_path.resolve()
        obj = _load_json(json_path)
        if not isinstance(obj, dict):
            raise DataError("a COCO file must hold a JSON object", path=json_path, kind="layout")
        images = _list(obj, "images", json_path, required=True)
        anns = _list(obj, "annotations", json_path, required=False)
        cat_names = _categories(_list(obj, "categories", json_path, required=bool(anns)), json_path)
        info = obj.get("info") if isinstance(obj.get("info"), dict) else {}
        hint = info.get("mtbrain") if isinstance(info.get("mtbrain"), dict) else {}

        image_root = self._image_root(json_path, options.get("images"), hint)
        classes, name_class = self._classes(list(cat_names.values()), images)
        category = {cid: name_class[n] for cid, n in cat_names.items()}

        log = ProblemLog(policy.on_error)
        known_ids = {img.get("id") for img in images}
        by_image: dict[Any, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for i, ann in enumerate(anns):
            if ann.get("image_id") not in known_ids:
                log.report(
                    json_path,
                    f"annotations[{i}] (id {ann.get('id')!r}) refers to "
                    f"unknown image_id {ann.get('image_id')!r}",
                    kind="bad_annotation",
                )
                continue
            by_image[ann["image_id"]].append((i, ann))

        ctx = _Context(
            json_path,
            image_root,
            classes,
            name_class,
            category,
            policy,
            name or hint.get("name") or json_path.stem,
            name is not None,
        )
        samples: list[Sample] = []
        seen_ids: set[Any] = set()
        seen_files: set[str] = set()
        for i, img in enumerate(images):
            try:
                key = (img.get("id"), img.get("file_name"))
                if key[0] in seen_ids or key[1] in seen_files:
                    raise DataError(
                        f"images[{i}]: duplicate image id {key[0]!r} or file_name {key[1]!r}",
                        path=json_path,
                        kind="bad_annotation",
                    )
                seen_ids.add(key[0])
                seen_files.add(key[1])
                samples.append(ctx.sample(i, img, by_image.get(img.get("id"), [])))
            except DataError as exc:
                report(log, exc)
        return finish(json_path, self.name, classes, samples, log)

    @staticmethod
    def _classes(categories: list[str], images: list[dict[str, Any]]) -> tuple[list[str], dict]:
        """The set's classes from the category names and the images' stated class names.

        Stated names that are not categories extend the classes (``no_tumor`` next to
        tumour-only categories), except that a set whose categories are all canonical stays
        canonical: there a non-canonical stated name is an unknown class.
        """
        stated = sorted(
            {v for img in images for k in ("label", "class") if isinstance(v := img.get(k), str)}
        )
        extra = [n for n in stated if n not in categories]
        if categories and all(canonical_class(n) for n in categories):
            extra = [n for n in extra if canonical_class(n)]
        return class_set([*categories, *extra])

    @staticmethod
    def _image_root(json_path: Path, images: object, hint: Mapping[str, Any]) -> Path:
        if images is not None:
            return Path(str(images)).resolve()
        if isinstance(hint.get("images_root"), str):
            return (json_path.parent / hint["images_root"]).resolve()
        return json_path.parent


class _Context:
    """What every image of one COCO file needs to become a sample."""

    def __init__(
        self,
        json_path: Path,
        image_root: Path,
        classes: list[str],
        name_class: dict[str, str],
        category: dict[Any, str],
        policy: LabelPolicy,
        source: str,
        force_source: bool,
    ) -> None:
        self.json_path = json_path
        self.image_root = image_root
        self.classes = classes
        self.name_class = name_class
        self.category = category
        self.policy = policy
        self.source = source
        self.force_source = force_source

    def _label(self, img: dict[str, Any], where: str) -> tuple[bool, str | None]:
        """(image states its class, that class)."""
        for key in ("label", "class"):
            if key not in img:
                continue
            value = img[key]
            if value is None:
                return True, None
            if isinstance(value, str) and value in self.name_class:
                return True, self.name_class[value]
            if not isinstance(value, str) and value in self.category:
                return True, self.category[value]
            raise DataError(
                f"{where}: unknown class {key}={value!r}; classes: {self.classes}",
                path=self.json_path,
                kind="bad_annotation",
            )
        return False, None

    def _box(self, ann: dict[str, Any], where: str, width: int, height: int) -> np.ndarray:
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise DataError(
                f"{where}: 'bbox' must be [x, y, w, h], got {bbox!r}",
                path=self.json_path,
                kind="bad_annotation",
            )
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in bbox
        ):
            raise DataError(
                f"{where}: bbox values must be finite numbers, got {bbox!r}",
                path=self.json_path,
                kind="bad_annotation",
            )
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise DataError(
                f"{where}: box width and height must be positive, got w={w:g} h={h:g}",
                path=self.json_path,
                kind="bad_annotation",
            )
        tol = self.policy.box_tolerance
        if (
            x < -tol * width
            or y < -tol * height
            or x + w > (1 + tol) * width
            or y + h > (1 + tol) * height
        ):
            raise DataError(
                f"{where}: box {bbox} leaves the {width}x{height} image by more "
                f"than box_tolerance={tol:g}",
                path=self.json_path,
                kind="bad_annotation",
            )
        return clip(convert([x, y, w, h], "xywh", "xyxy"), width, height)[0]

    def sample(
        self, index: int, img: dict[str, Any], anns: list[tuple[int, dict[str, Any]]]
    ) -> Sample:
        where = f"images[{index}]"
        file_name = img.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DataError(
                f"{where} has no 'file_name'", path=self.json_path, kind="bad_annotation"
            )
        path = self.image_root / file_name
        width, height = image_size(path)
        stated = (img.get("width"), img.get("height"))
        if None not in stated and stated != (width, height):
            raise DataError(
                f"{where}: the json says {stated[0]}x{stated[1]} but the image "
                f"file is {width}x{height}",
                path=path,
                kind="bad_image",
            )
        has_label, label = self._label(img, where)

        boxes, names, refs, other = [], [], [], []
        for i, ann in anns:
            ref = f"annotations[{i}] (id {ann.get('id')!r})"
            box = self._box(ann, ref, width, height)
            if ann.get(OTHER_KEY):
                other.append(box)
                continue
            if ann.get("category_id") not in self.category:
                raise DataError(
                    f"{ref}: unknown category_id {ann.get('category_id')!r}",
                    path=self.json_path,
                    kind="bad_annotation",
                )
            boxes.append(box)
            names.append(self.category[ann["category_id"]])
            refs.append(ref)
        box_arr = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        if not has_label:
            label = class_from_boxes(names, box_arr)
            if label is None and NO_TUMOR in self.classes:
                label = NO_TUMOR
        tumour_boxes, other_boxes = assign_boxes(
            label, names, box_arr, policy=self.policy, path=self.json_path, refs=refs
        )
        if other:
            other_boxes = np.concatenate([other_boxes, np.array(other, dtype=np.float32)])

        p = Path(file_name)
        rel = (
            p.relative_to(self.image_root).as_posix()
            if p.is_absolute() and p.is_relative_to(self.image_root)
            else p.as_posix()
        )
        canonical = self.classes == list(CANONICAL_CLASSES)
        parsed = parse_tumour_sequence(label) if label and not canonical else None
        tumour, sequence = parsed if parsed else (None, None)
        return Sample(
            path=path,
            rel=rel,
            label=label,
            width=width,
            height=height,
            source=self.source if self.force_source else str(img.get("source", self.source)),
            boxes=tumour_boxes,
            other_boxes=other_boxes,
            split=img.get("split") if isinstance(img.get("split"), str) else None,
            tumour_type=img.get("tumour_type", tumour),
            sequence=img.get("sequence", sequence),
        )


def _image_root(records: RecordSet) -> Path:
    roots = set()
    for s in records.samples:
        full = Path(s.path).as_posix()
        if not full.endswith("/" + s.rel):
            raise DataError(
                f"sample {s.rel!r}: its path {s.path} does not end with its name",
                path=s.path,
                kind="bad_annotation",
            )
        roots.add(full[: -len(s.rel) - 1] or "/")
    if len(roots) > 1:
        raise DataError(
            f"the samples lie under different image roots {sorted(roots)}; write "
            "one COCO file per root",
            path=records.root,
            kind="bad_annotation",
        )
    return Path(roots.pop()) if roots else Path(records.root)


def _root_text(image_root: Path, json_dir: Path) -> str:
    """The image root as stored: relative when it lies under the json's folder."""
    if image_root.is_relative_to(json_dir):
        return Path(os.path.relpath(image_root, json_dir)).as_posix()
    return image_root.as_posix()


def write_coco(records: RecordSet, path: str | Path, *, include_other_boxes: bool = False) -> Path:
    """Write a record set as a COCO json file (atomically); reading it back gives it again.

    Categories are the set's classes (ids 1, 2, ... in class order); each tumour box is an
    annotation of its image's class. ``file_name`` is the sample's ``rel`` under the image
    root recorded in ``info.mtbrain.images_root`` (relative to the json's folder when the
    images lie under it, else absolute).

    Args:
        records: The samples to write.
        path: The json file to write.
        include_other_boxes: Also write ``other_boxes`` (marked ``mtbrain_other_box``).

    Raises:
        DataError: when a sample has boxes but no class (COCO needs a category).
    """
    out = Path(path).resolve()
    image_root = _image_root(records)
    cat_id = {c: i + 1 for i, c in enumerate(records.classes)}
    name = records.name
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for k, s in enumerate(records.samples, start=1):
        entry: dict[str, Any] = {
            "id": k,
            "file_name": s.rel,
            "width": s.width,
            "height": s.height,
            "label": s.label,
            "split": s.split,
            "tumour_type": s.tumour_type,
            "sequence": s.sequence,
        }
        if s.source != name:
            entry["source"] = s.source
        images.append(entry)
        groups = [(s.boxes, False)] + ([(s.other_boxes, True)] if include_other_boxes else [])
        for boxes, is_other in groups:
            if len(boxes) and s.label is None:
                raise DataError(
                    "sample has boxes but no class; COCO needs a category",
                    path=s.path,
                    kind="bad_annotation",
                )
            for x, y, w, h in convert(np.asarray(boxes, dtype=np.float64), "xyxy", "xywh"):
                ann: dict[str, Any] = {
                    "id": len(annotations) + 1,
                    "image_id": k,
                    "category_id": cat_id[s.label],
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
                if is_other:
                    ann[OTHER_KEY] = True
                annotations.append(ann)
    obj = {
        "info": {
            "description": f"written by mtbrain from {records.root}",
            "mtbrain": {
                "name": name,
                "layout": records.layout,
                "images_root": _root_text(image_root, out.parent),
            },
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i, "name": c, "supercategory": "none" if c == NO_TUMOR else "tumor"}
            for c, i in cat_id.items()
        ],
    }
    return write_json(out, obj, indent=None)
