"""YOLO baseline: an ultralytics detector on the same data, scored by the same evaluator.

The pipeline (or :func:`run_yolo_baseline` for all of it)::

    data_yaml = export_yolo_dataset(train, val, "work/yolo-data")
    weights = train_yolo(data_yaml, "work/yolo-run", epochs=30)
    preds = predict_yolo(weights, test)                   # CONTRACT predictions records
    metrics = mtbrain.eval.evaluate.score_predictions(test, preds)

ultralytics (AGPL-3.0) is the optional extra ``yolo``; this module imports it only inside
the functions that need it, offline (below).

Dataset export (:func:`export_yolo_dataset`)
    ::

        work_dir/data.yaml                  # path, train, val, names
        work_dir/images/{train,val}/NAME    # links to the source images
        work_dir/labels/{train,val}/STEM.txt
        work_dir/mtbrain-yolo.json          # manifest: NAME -> rel, link kind, skipped samples

    - Images are **symlinks** to the source files; where a symlink cannot be made, a hard
      link, and where that fails too, a copy (the export logs a warning saying so and the
      manifest counts each kind). GIF/PGM/PPM images, which ultralytics cannot read, are
      converted to PNG in the work folder. Nothing is ever written into the source folders
      (ultralytics replaces a "corrupt" JPEG by a new file next to the link, in the work
      folder); ``work_dir`` may neither be inside a source folder nor contain one.
    - Class ids are indices in ``names`` (default: the train set's classes, mtbrain's
      order), so ``no_tumor`` keeps its id even when no box carries it.
    - Each tumour box (``Sample.boxes``, xyxy original pixels) is clipped to the image and
      written as ``id cx cy w h`` (normalised, :data:`LABEL_DECIMALS` decimals: the round
      trip is exact to well under 1e-6 px).
    - **Background**: an image of the background class (``no_tumor``) without tumour boxes
      gets an empty label file, which YOLO learns as background. Its whole-brain box is not
      a tumour box under the default label policy (it is in ``other_boxes``) and is not
      written, unless ``include_other_boxes=True``: then every ``other_boxes`` entry is
      written too, with the image's class id, as the published YOLO numbers on the Kaggle
      set do (the detector then also learns "no_tumor boxes").
    - **Skipped** (listed in the manifest): unlabelled samples, and samples of a tumour class
      with no box to write (a tumour nobody drew: class-folder sets, ``missing_label_file:
      class_only``): as background they would teach that tumours are background.
    - File names are the ``rel`` names flattened (``/`` -> ``__``, characters other than
      letters, digits, ``. _ + -`` -> ``_``); a clash (case-insensitive, and on the stem,
      since ``a.jpg`` and ``a.png`` share ``a.txt``) gets ``-1``, ``-2``... before the
      suffix. Exporting again into the folder of an earlier export replaces it; any other
      non-empty folder is an error.

Predictions (:func:`yolo_to_predictions`)
    From the detections of one image (after ultralytics' NMS at ``conf``), with the top box
    the highest-scoring one (score ``s``, class ``c``):

    - ``s >= min_score`` (default :data:`DEFAULT_MIN_SCORE`): ``label`` = ``c``, ``box`` =
      the top box in original-image pixels (clipped, rounded to 0.01 px), ``box_score`` =
      ``s``.
    - no box, or every box below ``min_score``: ``label`` = the background class
      (``no_tumor``) when it is one of the classes, ``box`` null, ``box_score`` = ``s``
      (null when there was no box at all). Without a background class the top box is used
      whatever its score; with no box at all the label is the first class, ``box`` null.
    - ``probs`` is a **pseudo-distribution**, not a calibrated one:
      ``w * onehot(label) + (1 - w) * uniform`` with ``w = s`` when the label comes from a
      box, ``w = 1 - s`` for the background label (``s = 0`` without boxes), ``w = 0`` when
      there is nothing (uniform). It sums to 1 and its argmax is the label.
    - An image that could not be read gets ``{"image": rel, "error": reason}``.

    :func:`predict_yolo` asks ultralytics for boxes down to ``conf`` (default
    :data:`DEFAULT_CONF`, 0.001, as for mAP) and decides with ``min_score``. Only the top box
    of an image reaches the predictions file, so mAP here is the one-box-per-image mAP of
    every mtbrain model, not ultralytics' own.

Offline: what is blocked, and how
    - ``YOLO_OFFLINE=1`` (set by :mod:`mtbrain._env` before ultralytics is imported, unless
      the user set it): ultralytics' ``ONLINE`` is False, so no analytics events, no PyPI
      update check, no requirement auto-install, no DNS probe.
    - Fonts: ``Arial.ttf`` and ``Arial.Unicode.ttf`` (copies of matplotlib's DejaVu Sans) are
      put in ultralytics' config folder (a private ``$YOLO_CONFIG_DIR`` in mtbrain's cache),
      so its dataset check and plots never fetch them.
    - Weights: models are built from YAML (``yolov8n.yaml``); a ``.pt`` must be a local file
      (a missing one is an error here, never a download).
    - ``amp=False`` by default: on a GPU, ultralytics' AMP check downloads ``yolo26n.pt``
      (a CPU never checks). ``plots=False`` by default.
    - During each call, in memory only (the settings file is not touched): ``sync`` and the
      logging integrations (clearml, comet, dvc, mlflow, raytune, tensorboard, wandb) are
      off and ``ULTRALYTICS_API_KEY`` is hidden, so nothing is uploaded to the Platform.

Process state
    ultralytics changes process-wide state: torch threads (to cores - 1), OpenCV threads
    (to 0), deterministic algorithms, numpy's and torch's print options (at import), and the
    variables ``OMP_NUM_THREADS`` (at import), ``CUBLAS_WORKSPACE_CONFIG`` and
    ``PYTHONHASHSEED``. Every function here restores them
    when it returns, and training and prediction run with the caller's torch thread count.
    Training seeds the global random generators (``seed``); those are not restored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtbrain.classes import NO_TUMOR
from mtbrain.data.boxes import clip, convert
from mtbrain.data.records import RecordSet, Sample
from mtbrain.errors import ConfigError, DataError
from mtbrain.io import write_json, write_text

log = logging.getLogger(__name__)

MANIFEST_NAME = "mtbrain-yolo.json"
"""Name of the export manifest in the work folder (it marks the folder as an export)."""

MANIFEST_FORMAT = "mtbrain-yolo-export"

LABEL_DECIMALS = 10
"""Decimals of the normalised coordinates in the label files written by the export."""

DEFAULT_CONF = 0.001
"""Detection threshold passed to ultralytics by :func:`predict_yolo` (mAP-style recall)."""

DEFAULT_MIN_SCORE = 0.25
"""Top-box score from which an image gets a tumour label (ultralytics' own predict default)."""

YOLO_IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"}
)
"""Image suffixes ultralytics reads (its ``IMG_FORMATS``, the ones mtbrain also reads)."""

_QUIET_SETTINGS: dict[str, Any] = {
    "sync": False,
    "api_key": "",
    "clearml": False,
    "comet": False,
    "dvc": False,
    "mlflow": False,
    "raytune": False,
    "tensorboard": False,
    "wandb": False,
}
_STATE_ENV = ("OMP_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED", "ULTRALYTICS_API_KEY",
              "YOLO_VERBOSE")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+\-]+")


# --------------------------------------------------------------------------- label conversion


def boxes_to_yolo_lines(boxes: np.ndarray | Sequence[Sequence[float]],
                        class_ids: int | Sequence[int], width: float, height: float, *,
                        decimals: int = LABEL_DECIMALS) -> list[str]:
    """YOLO label lines (``id cx cy w h``, normalised) of xyxy boxes in original pixels.

    Args:
        boxes: (N, 4) xyxy boxes in pixels of an image ``width`` x ``height``.
        class_ids: One class id for every box, or one per box.
        width: Image width in pixels.
        height: Image height in pixels.
        decimals: Decimals of the normalised coordinates.

    Returns:
        One line per box, without newline.
    """
    norm = convert(boxes, "xyxy", "cxcywh_n", width=width, height=height)
    ids = np.broadcast_to(np.asarray(class_ids, dtype=np.int64), (len(norm),))
    return [f"{int(c)} " + " ".join(f"{float(v):.{decimals}f}" for v in row)
            for c, row in zip(ids, norm, strict=True)]


def yolo_lines_to_boxes(lines: Sequence[str] | str, width: float,
                        height: float) -> tuple[np.ndarray, np.ndarray]:
    """Parse YOLO label lines back into xyxy pixel boxes and class ids.

    Args:
        lines: Label lines (``id cx cy w h``), or the text of a label file. Blank lines are
            skipped.
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        ``(boxes, class_ids)``: (N, 4) float64 xyxy pixels and (N,) int64.

    Raises:
        ValueError: for a line that is not five numbers, naming the line (1-based).
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 5 or values[0] != int(values[0]):
            raise ValueError(f"line {number}: expected 'id cx cy w h', got {line!r}")
        rows.append(values)
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    boxes = convert(arr[:, 1:], "cxcywh_n", "xyxy", width=width, height=height)
    return boxes, arr[:, 0].astype(np.int64)


# --------------------------------------------------------------------------- dataset export


@dataclass
class _Placed:
    """How one sample went into the export."""

    file: str
    rel: str
    source: str
    how: str
    n_boxes: int


@dataclass
class _Names:
    """Unique flat file names within one export part (case-insensitive, by stem)."""

    taken: set[str] = field(default_factory=set)

    def make(self, rel: str) -> str:
        path = Path(rel)
        suffix = path.suffix.lower()
        if suffix not in YOLO_IMAGE_SUFFIXES:
            suffix = ".png"  # converted (see _place)
        stem = _SAFE_NAME.sub("_", rel[: len(rel) - len(path.suffix)].replace("/", "__"))
        stem = stem.lstrip(".") or "image"
        candidate, n = stem, 0
        while candidate.lower() in self.taken:
            n += 1
            candidate = f"{stem}-{n}"
        self.taken.add(candidate.lower())
        return candidate + suffix


def _place(source: Path, target: Path) -> str:
    """Link (or, failing that, copy or convert) ``source`` to ``target``; returns how."""
    if source.suffix.lower() not in YOLO_IMAGE_SUFFIXES:
        from PIL import Image

        with Image.open(source) as im:
            im.convert("RGB" if im.mode in ("RGB", "RGBA", "P") else "L").save(target, "PNG")
        return "converted"
    try:
        os.symlink(os.path.abspath(source), target)
        return "symlink"
    except OSError:
        pass
    try:
        os.link(source, target)
        return "hardlink"
    except OSError:
        pass
    shutil.copy2(source, target)
    return "copy"


def _source_folder(records: RecordSet) -> Path:
    root = Path(records.root).resolve()
    return root if root.is_dir() or not root.exists() else root.parent


def _prepare_work_dir(work: Path, sources: Sequence[Path]) -> None:
    for src in sources:
        if work == src or src in work.parents:
            raise ConfigError(f"the YOLO work folder {work} is inside the source data {src}; "
                              "choose a folder outside it (the source is never written)")
        if work in src.parents:
            raise ConfigError(f"the YOLO work folder {work} contains the source data {src}; "
                              "choose a folder that does not")
    if work.exists() and any(work.iterdir()):
        if not (work / MANIFEST_NAME).is_file():
            raise ConfigError(f"{work} is not empty and is not a YOLO export of mtbrain "
                              f"(no {MANIFEST_NAME}); choose an empty or new folder")
        for name in ("images", "labels"):
            if (work / name).is_dir():
                shutil.rmtree(work / name)
        for name in ("data.yaml", MANIFEST_NAME):
            (work / name).unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)


def _label_lines(sample: Sample, class_id: int, *, background: str | None,
                 include_other_boxes: bool) -> tuple[list[str] | None, str]:
    """The label lines of a sample, or ``(None, reason)`` when it is skipped."""
    boxes = np.asarray(sample.boxes, dtype=np.float64).reshape(-1, 4)
    if include_other_boxes and len(sample.other_boxes):
        boxes = np.concatenate([boxes, np.asarray(sample.other_boxes, np.float64).reshape(-1, 4)])
    if len(boxes) == 0 and sample.label != background:
        return None, "tumour class without a tumour box (a tumour nobody drew is not background)"
    boxes = clip(boxes, sample.width, sample.height)
    return boxes_to_yolo_lines(boxes, class_id, sample.width, sample.height), ""


def export_yolo_dataset(train: RecordSet, val: RecordSet, work_dir: str | Path, *,
                        names: Sequence[str] | None = None, include_other_boxes: bool = False,
                        background: str | None = NO_TUMOR) -> Path:
    """Write an ultralytics detection data set of links to the images of ``train`` and ``val``.

    See the module documentation for the folder layout and the rules (class ids,
    background images, skipped samples, file names, links).

    Args:
        train: The training samples.
        val: The validation samples (ultralytics validates and picks ``best.pt`` on them).
        work_dir: The export folder: new, empty, or an earlier export (replaced). It must not
            be inside a source folder, nor contain one.
        names: Class names in class-id order; default ``train.classes``.
        include_other_boxes: Also write each sample's ``other_boxes`` (e.g. whole-brain boxes
            of ``no_tumor`` images), labelled with the image's class.
        background: The class whose box-less images are background (empty label file);
            ``None``: no such class, every box-less image is skipped.

    Returns:
        The path of ``data.yaml``.

    Raises:
        ConfigError: for a work folder inside (or holding) the source data, a non-empty
            folder that is not an earlier export, or a sample class not in ``names``.
        DataError: when no train or no val sample is left to export (ultralytics needs both).
    """
    import yaml

    names = list(names if names is not None else train.classes)
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"YOLO class names must be unique and not empty, got {names}")
    ids = {c: i for i, c in enumerate(names)}
    work = Path(work_dir).resolve()
    _prepare_work_dir(work, [_source_folder(train), _source_folder(val)])
    placed: dict[str, list[_Placed]] = {}
    skipped: list[dict[str, str]] = []
    hows: dict[str, int] = {}
    for part, records in (("train", train), ("val", val)):
        (work / "images" / part).mkdir(parents=True)
        (work / "labels" / part).mkdir(parents=True)
        unique = _Names()
        rows: list[_Placed] = placed.setdefault(part, [])
        for sample in records:
            if sample.label is None:
                skipped.append({"part": part, "rel": sample.rel, "reason": "no class label"})
                continue
            if sample.label not in ids:
                raise ConfigError(f"{sample.rel}: class {sample.label!r} is not one of the YOLO "
                                  f"class names {names}")
            lines, reason = _label_lines(sample, ids[sample.label], background=background,
                                         include_other_boxes=include_other_boxes)
            if lines is None:
                skipped.append({"part": part, "rel": sample.rel, "reason": reason})
                continue
            name = unique.make(sample.rel)
            how = _place(Path(sample.path), work / "images" / part / name)
            hows[how] = hows.get(how, 0) + 1
            label = work / "labels" / part / (Path(name).stem + ".txt")
            label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            rows.append(_Placed(name, sample.rel, str(sample.path), how, len(lines)))
    for part, records in (("train", train), ("val", val)):
        if not placed[part]:
            raise DataError(f"no {part} sample to export to YOLO ({len(records)} given, "
                            f"{len(skipped)} skipped, e.g. {skipped[:2]})", path=records.root)
    data_yaml = work / "data.yaml"
    write_text(data_yaml, yaml.safe_dump({
        "path": str(work), "train": "images/train", "val": "images/val",
        "names": dict(enumerate(names))}, sort_keys=False, allow_unicode=True))
    write_json(work / MANIFEST_NAME, {
        "format": MANIFEST_FORMAT, "version": 1, "names": names, "background": background,
        "include_other_boxes": include_other_boxes, "label_decimals": LABEL_DECIMALS,
        "sources": {"train": str(train.root), "val": str(val.root)},
        "placed": hows, "skipped": skipped,
        "parts": {part: [asdict(p) for p in rows] for part, rows in placed.items()}})
    fallback = {k: v for k, v in hows.items() if k != "symlink"}
    if fallback:
        log.warning("YOLO export: could not symlink every image; %s (see %s)",
                    ", ".join(f"{v} by {k}" for k, v in sorted(fallback.items())),
                    work / MANIFEST_NAME)
    log.info("YOLO export: %d train + %d val images into %s (%d skipped)",
             len(placed["train"]), len(placed["val"]), work, len(skipped))
    return data_yaml


def read_export_manifest(data_yaml_or_dir: str | Path) -> dict[str, Any]:
    """The manifest of an export (``data.yaml`` path or its folder)."""
    p = Path(data_yaml_or_dir)
    folder = p if p.is_dir() else p.parent
    return json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- ultralytics, offline


def _place_fonts(folder: Path) -> None:
    """Put ``Arial.ttf`` and ``Arial.Unicode.ttf`` (DejaVu Sans) into ``folder``."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = folder / name
        if not target.exists():
            tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target)


def _torch_print_options() -> dict[str, Any]:
    """torch's print options (it has no public getter); empty if they cannot be read."""
    try:
        from torch._tensor_str import PRINT_OPTS

        return {k: getattr(PRINT_OPTS, k) for k in
                ("precision", "threshold", "edgeitems", "linewidth", "sci_mode")}
    except (ImportError, AttributeError):  # pragma: no cover - private torch API moved
        return {}


@contextlib.contextmanager
def ultralytics_session() -> Iterator[Any]:
    """Import ultralytics offline; restore the process state it changes when done.

    Yields the ``ultralytics`` module. See the module documentation ("Offline", "Process
    state").
    """
    import cv2
    import torch

    from mtbrain._env import ensure_ultralytics_font

    font = ensure_ultralytics_font()  # sets YOLO_OFFLINE and YOLO_CONFIG_DIR (unless set)
    _place_fonts(font.parent)
    threads = torch.get_num_threads()
    cv2_threads = cv2.getNumThreads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_deterministic = torch.backends.cudnn.deterministic
    fill = torch.utils.deterministic.fill_uninitialized_memory
    env = {key: os.environ.get(key) for key in _STATE_ENV}
    np_print = np.get_printoptions()
    torch_print = _torch_print_options()
    os.environ.pop("ULTRALYTICS_API_KEY", None)
    os.environ.setdefault("YOLO_VERBOSE", "False")  # no progress bars in our logs (at import)
    from PIL import Image

    pil_open = Image.open
    saved: dict[str, Any] = {}
    settings: Any = None
    try:
        try:
            import ultralytics
            from ultralytics.utils import SETTINGS, USER_CONFIG_DIR
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the YOLO baseline needs ultralytics: "
                              "pip install 'mtbrain[yolo]' (or 'ultralytics>=8.3')") from exc
        _place_fonts(Path(USER_CONFIG_DIR))  # also when ultralytics was imported earlier
        _unpatch_pil(pil_open)
        settings = SETTINGS
        saved = {k: settings.get(k) for k in _QUIET_SETTINGS}
        dict.update(settings, _QUIET_SETTINGS)  # in memory: the settings file is not rewritten
        yield ultralytics
    finally:
        _unpatch_pil(pil_open)
        if settings is not None:
            dict.update(settings, saved)
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic = cudnn_deterministic
        torch.utils.deterministic.fill_uninitialized_memory = fill
        np.set_printoptions(**np_print)
        if torch_print:
            torch.set_printoptions(**torch_print)
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _unpatch_pil(original: Any) -> None:
    """Undo ultralytics' global patch of ``PIL.Image.open``.

    On importing, ultralytics replaces ``PIL.Image.open`` by a wrapper that, on an
    unidentifiable file, pip-installs ``pi-heif`` at run time (offline: raises
    ``ModuleNotFoundError`` instead of PIL's error). mtbrain's readers need PIL's own
    behaviour to name bad files; HEIC input is not supported here.
    """
    from PIL import Image

    Image.open = original
    try:
        from ultralytics.utils import patches

        patches._pil_plugins_registered = True  # its wrapper, if called, never installs
    except (ImportError, AttributeError):  # pragma: no cover - ultralytics moved it
        pass


def _check_model_source(model: str | Path) -> str:
    """A model YAML name/path or a local weights file; never a name ultralytics would fetch."""
    text = str(model)
    suffix = Path(text).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return text
    if suffix == ".pt" and Path(text).is_file():
        return text
    if suffix == ".pt":
        raise FileNotFoundError(f"YOLO weights {text} not found; nothing is downloaded: pass a "
                                "local .pt file or build from a model YAML (e.g. yolov8n.yaml)")
    raise ConfigError(f"YOLO model {text!r}: expected a model YAML (e.g. yolov8n.yaml) or a "
                      "local .pt weights file")


def keep_threads(threads: int) -> Any:
    """An ultralytics callback that puts torch back to ``threads`` threads."""
    import torch

    def callback(_: Any) -> None:
        torch.set_num_threads(threads)

    return callback


def train_yolo(data_yaml: str | Path, out_dir: str | Path, *, model: str | Path = "yolov8n.yaml",
               imgsz: int = 256, epochs: int = 30, time_budget_s: float | None = None,
               batch: int = 16, seed: int = 0, workers: int = 0, device: str = "cpu",
               patience: int = 100, amp: bool = False, plots: bool = False,
               verbose: bool = False, **overrides: Any) -> Path:
    """Train an ultralytics detector offline; returns the best weights file.

    Args:
        data_yaml: The ``data.yaml`` of :func:`export_yolo_dataset`.
        out_dir: The run folder (ultralytics' ``project/name``): ``weights/best.pt``,
            ``weights/last.pt``, ``results.csv``, ``args.yaml``. Reused if it exists.
        model: A model YAML (built-in name such as ``yolov8n.yaml``: random weights) or a
            local ``.pt`` file (fine-tuned from). Nothing is downloaded.
        imgsz: Network input size (letterboxed square).
        epochs: Epochs (when ``time_budget_s`` is set, ultralytics recomputes them after
            the first epoch to fill the budget).
        time_budget_s: Training time budget in seconds (ultralytics' ``time``, in hours,
            which stops cleanly, keeping best and last weights).
        batch: Batch size.
        seed: Seed of ultralytics' random generators (``deterministic`` training).
        workers: Data-loader processes (ultralytics uses 0 on a CPU anyway).
        device: ``"cpu"``, or a GPU (``"0"``).
        patience: Epochs without improvement before early stopping.
        amp: Mixed precision on a GPU; its check downloads weights, so off by default.
        plots: Let ultralytics draw its training plots.
        verbose: ultralytics' verbose logging.
        **overrides: Further ultralytics training arguments (e.g. ``mosaic=0.0``).

    Returns:
        ``out_dir/weights/best.pt`` (``last.pt`` when no best was saved).

    Raises:
        FileNotFoundError: for a ``.pt`` that is not a local file, or when training saved no
            weights.
        ConfigError: for a model that is neither a YAML nor a ``.pt``.
    """
    source = _check_model_source(model)
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    args: dict[str, Any] = {
        "data": str(Path(data_yaml).resolve()), "imgsz": imgsz, "epochs": epochs, "batch": batch,
        "seed": seed, "workers": workers, "device": device, "patience": patience, "amp": amp,
        "plots": plots, "verbose": verbose, "project": str(out.parent), "name": out.name,
        "exist_ok": True, "pretrained": source.endswith(".pt"),
    }
    if time_budget_s is not None:
        if time_budget_s <= 0:
            raise ConfigError(f"time_budget_s must be positive, got {time_budget_s}")
        args["time"] = time_budget_s / 3600.0
    fixed = {"data", "project", "name"} & set(overrides)
    if fixed:
        raise ConfigError(f"train_yolo sets {sorted(fixed)} itself")
    args.update(overrides)
    import torch

    threads = torch.get_num_threads()
    with ultralytics_session():
        from ultralytics import YOLO

        yolo = YOLO(source)
        yolo.add_callback("on_pretrain_routine_start", keep_threads(threads))
        started = time.perf_counter()
        yolo.train(**args)
        trainer = yolo.trainer
        best, last = Path(trainer.best), Path(trainer.last)
    log.info("YOLO training took %.1f s (%s)", time.perf_counter() - started, out)
    if best.is_file():
        return best
    if last.is_file():
        return last
    raise FileNotFoundError(f"YOLO training saved no weights in {out / 'weights'}")


# --------------------------------------------------------------------------- predictions


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _detections(result: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xyxy (N, 4), scores (N,), class ids (N,))`` of an ultralytics-like result."""
    boxes = getattr(result, "boxes", None)
    if boxes is None:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    xyxy = _numpy(boxes.xyxy).reshape(-1, 4)
    scores = _numpy(boxes.conf).reshape(-1)
    ids = _numpy(boxes.cls).reshape(-1).round().astype(np.int64)
    if not len(xyxy) == len(scores) == len(ids):
        raise ValueError(f"inconsistent detections: {len(xyxy)} boxes, {len(scores)} scores, "
                         f"{len(ids)} classes")
    return xyxy, scores, ids


def _probs(classes: Sequence[str], label: str, weight: float) -> dict[str, float]:
    k = len(classes)
    rest = (1.0 - weight) / k
    return {c: float(rest + (weight if c == label else 0.0)) for c in classes}


def yolo_to_predictions(results: Sequence[Any], records: RecordSet | Sequence[Sample],
                        classes: Sequence[str] | Mapping[int, str], *,
                        min_score: float = DEFAULT_MIN_SCORE,
                        background: str | None = NO_TUMOR) -> list[dict[str, Any]]:
    """Turn ultralytics detections into predictions records (rules in the module doc).

    Args:
        results: One entry per sample, in the order of ``records``: an ultralytics
            ``Results`` (or any object with ``boxes.xyxy``, ``boxes.conf``, ``boxes.cls`` and
            optionally ``orig_shape`` = (height, width)), or a string saying why the image has
            no result (it becomes an error record), or ``None`` (error "no result").
        records: The samples predicted (``image`` is each one's ``rel``; boxes are clipped to
            its size, and rescaled when the result's ``orig_shape`` differs from it).
        classes: The detector's class names by class id (a list, or ultralytics' ``names``
            dict); ``probs`` has one entry per name.
        min_score: Top-box score from which the image gets the box's class.
        background: The class of images without a (good enough) box; ``None`` when there is
            no such class.

    Returns:
        One record per sample, in order, in the predictions-file format of CONTRACT.md.

    Raises:
        ValueError: when ``results`` and ``records`` differ in length or a class id is not a
            known class.
    """
    if isinstance(classes, Mapping):
        classes = [classes[i] for i in sorted(classes)]
    classes = list(classes)
    samples = list(records)
    if len(results) != len(samples):
        raise ValueError(f"{len(results)} results for {len(samples)} samples")
    bg = background if background in classes else None
    rows: list[dict[str, Any]] = []
    for result, sample in zip(results, samples, strict=True):
        if result is None or isinstance(result, str):
            rows.append({"image": sample.rel, "error": result or "no result"})
            continue
        xyxy, scores, ids = _detections(result)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(classes)):
            raise ValueError(f"{sample.rel}: class id {int(ids.max())} outside {classes}")
        top = int(np.argmax(scores)) if len(scores) else -1
        score = float(scores[top]) if top >= 0 else 0.0
        if top >= 0 and (score >= min_score or bg is None):
            box = xyxy[top:top + 1]
            shape = getattr(result, "orig_shape", None)
            if shape is not None and tuple(int(v) for v in shape[:2]) != (sample.height,
                                                                           sample.width):
                h, w = (float(v) for v in shape[:2])
                box = box * np.array([sample.width / w, sample.height / h] * 2)
            box = clip(box, sample.width, sample.height)[0]
            label = classes[int(ids[top])]
            rows.append({"image": sample.rel, "label": label,
                         "probs": _probs(classes, label, score),
                         "box": [round(float(v), 2) for v in box], "box_score": score})
        elif bg is not None:
            rows.append({"image": sample.rel, "label": bg, "probs": _probs(classes, bg, 1 - score),
                         "box": None, "box_score": score if top >= 0 else None})
        else:
            rows.append({"image": sample.rel, "label": classes[0],
                         "probs": _probs(classes, classes[0], 0.0), "box": None,
                         "box_score": None})
    return rows


def _read_bgr(path: Path) -> np.ndarray | str:
    """The image as ultralytics reads it (BGR uint8), or the reason it cannot be read."""
    from ultralytics.utils.patches import imread

    try:
        image = imread(str(path))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is an unreadable image
        image, why = None, f"{type(exc).__name__}: {exc}"
    else:
        why = "not a readable image"
    if image is None:
        try:  # formats OpenCV lacks (GIF): decode with PIL, as the export converts them
            from PIL import Image

            with Image.open(path) as im:
                return np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
        except Exception:  # noqa: BLE001
            return f"cannot read {path}: {why}" if path.exists() else f"file not found: {path}"
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image


def load_yolo(weights: str | Path) -> Any:
    """An ultralytics ``YOLO`` from a local weights file (call inside the offline session)."""
    from ultralytics import YOLO

    return YOLO(_check_model_source(weights))


def predict_yolo(weights: str | Path, records: RecordSet, *, imgsz: int | None = None,
                 conf: float = DEFAULT_CONF, iou: float = 0.7,
                 min_score: float = DEFAULT_MIN_SCORE, background: str | None = NO_TUMOR,
                 batch: int = 16, device: str = "cpu", max_det: int = 10) -> list[dict[str, Any]]:
    """Predict every sample of ``records`` with YOLO weights: one predictions record each.

    Images are decoded as ultralytics decodes them in training (``imread``, BGR), boxes
    come back in original-image pixels; the records follow :func:`yolo_to_predictions`.

    Args:
        weights: A local ``.pt`` file (e.g. what :func:`train_yolo` returned).
        records: The samples to predict.
        imgsz: Network input size; default the training size stored in the weights (else 640).
        conf: Detection threshold of ultralytics' NMS.
        iou: IoU threshold of ultralytics' NMS.
        min_score: Top-box score from which the image gets the box's class.
        background: The class of images without a good enough box.
        batch: Images per ultralytics call.
        device: ``"cpu"`` or a GPU (``"0"``).
        max_det: Boxes kept per image by the NMS (only the top one is used).

    Returns:
        The predictions records, in the order of ``records``.
    """
    import torch

    threads = torch.get_num_threads()
    samples = list(records)
    results: list[Any] = []
    with ultralytics_session():
        yolo = load_yolo(weights)
        yolo.add_callback("on_predict_start", keep_threads(threads))
        names = yolo.names
        if imgsz is None:
            train_args = (getattr(yolo, "ckpt", None) or {}).get("train_args", {}) or {}
            size = train_args.get("imgsz", 640)
            imgsz = int(size if isinstance(size, int | float) else max(size))
        for start in range(0, len(samples), max(1, batch)):
            chunk = samples[start:start + max(1, batch)]
            images = [_read_bgr(Path(s.path)) for s in chunk]
            arrays = [im for im in images if not isinstance(im, str)]
            out = iter(yolo.predict(arrays, imgsz=imgsz, conf=conf, iou=iou, device=device,
                                    max_det=max_det, batch=len(arrays), verbose=False,
                                    save=False)) if arrays else iter(())
            results += [im if isinstance(im, str) else next(out) for im in images]
    return yolo_to_predictions(results, samples, names, min_score=min_score,
                               background=background)


# --------------------------------------------------------------------------- whole baseline


@dataclass
class YoloBaselineConfig:
    """Settings of :func:`run_yolo_baseline` (``configs/yolo_baseline.yaml``).

    Attributes:
        model: Model YAML (random weights) or a local ``.pt``.
        imgsz: Network input size.
        epochs: Epochs (recomputed by ultralytics to fit ``time_budget_s`` when set).
        time_budget_s: Training time budget in seconds, or null.
        batch: Batch size.
        seed: Seed.
        device: ``cpu`` or a GPU id.
        include_other_boxes: Also train on ``other_boxes`` (whole-brain "no_tumor" boxes).
        conf: Detection threshold of the NMS at prediction.
        min_score: Top-box score from which an image gets a tumour label.
        overrides: Further ultralytics training arguments.
    """

    model: str = "yolov8n.yaml"
    imgsz: int = 256
    epochs: int = 30
    time_budget_s: float | None = None
    batch: int = 16
    seed: int = 0
    device: str = "cpu"
    include_other_boxes: bool = False
    conf: float = DEFAULT_CONF
    min_score: float = DEFAULT_MIN_SCORE
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | Path) -> YoloBaselineConfig:
        """Read from a YAML file (its ``yolo:`` section when it has one)."""
        from mtbrain.config import from_dict, read_yaml

        values = read_yaml(path)
        if isinstance(values, dict) and "yolo" in values:
            values = values["yolo"]
        return from_dict(cls, values, prefix="yolo")


def count_yolo_parameters(weights: str | Path) -> int:
    """Number of parameters of a trained YOLO model (``best.pt``)."""
    with ultralytics_session():
        return sum(p.numel() for p in load_yolo(weights).model.parameters())


def run_yolo_baseline(train: RecordSet, val: RecordSet, test: RecordSet, out_dir: str | Path,
                      config: YoloBaselineConfig | None = None) -> dict[str, Any]:
    """Export, train, predict ``test`` and score it with the one evaluator.

    Writes into ``out_dir``: ``data/`` (the export), ``run/`` (ultralytics' run),
    ``predictions.json``, ``metrics.json`` (with ``train_s`` and ``weights``) and
    ``report.md``.

    Returns:
        The metrics of :func:`mtbrain.eval.evaluate.score_predictions`, plus ``model``,
        ``weights``, ``train_s``, ``predict_s`` and ``params_m`` (millions of parameters).
    """
    from mtbrain.eval.evaluate import render_report, score_predictions

    cfg = config or YoloBaselineConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_yaml = export_yolo_dataset(train, val, out / "data", names=train.classes,
                                    include_other_boxes=cfg.include_other_boxes)
    started = time.perf_counter()
    weights = train_yolo(data_yaml, out / "run", model=cfg.model, imgsz=cfg.imgsz,
                         epochs=cfg.epochs, time_budget_s=cfg.time_budget_s, batch=cfg.batch,
                         seed=cfg.seed, device=cfg.device, **cfg.overrides)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    preds = predict_yolo(weights, test, imgsz=cfg.imgsz, conf=cfg.conf, min_score=cfg.min_score,
                         device=cfg.device)
    predict_s = time.perf_counter() - started
    metrics = score_predictions(test, preds, train.classes)
    metrics.update({"data": str(test.root), "model": f"yolo:{cfg.model}", "weights": str(weights),
                    "train_s": round(train_s, 2), "predict_s": round(predict_s, 2),
                    "params_m": count_yolo_parameters(weights) / 1e6, "config": asdict(cfg)})
    write_json(out / "predictions.json", preds)
    write_text(out / "report.md", render_report(metrics, title=f"YOLO baseline ({cfg.model}) "
                                                f"on {test.root}"))
    write_json(out / "metrics.json", metrics)
    return metrics
