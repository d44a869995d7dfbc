"""The ``mtbrain`` command line.

One sub-command per task. Each is a pair of small functions registered in
:data:`COMMANDS`:

- ``add_<name>_parser(subparsers)`` adds the sub-parser and its options and returns it;
- ``run_<name>(args) -> int`` does the work and returns the exit code.

Heavy imports (numpy, torch, PIL...) happen inside ``run_<name>``, so ``mtbrain --help``
stays fast. Bad input (:class:`~mtbrain.errors.DataError`) and bad options
(:class:`~mtbrain.errors.ConfigError`) end the command with one line ``error: <message>``
on stderr and exit code 2, without a traceback.

To add a command: write its two functions (here, or in a module whose functions are
imported here lazily) and append ``Command("name", add_name_parser, run_name)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mtbrain
from mtbrain.errors import ConfigError, DataError, MtbrainWarning

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

Subparsers = Any  # argparse's _SubParsersAction (private type)


@dataclass(frozen=True)
class Command:
    """A sub-command: its name, the function that adds its parser, the one that runs it."""

    name: str
    add_parser: Callable[[Subparsers], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- shared options


def _add_data_options(parser: argparse.ArgumentParser, *, on_error_default: str) -> None:
    parser.add_argument(
        "--layout",
        metavar="L",
        default=None,
        help="data layout (default: detected); see the readers for the names",
    )
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default=on_error_default,
        help="bad samples: stop at the first ('raise') or skip and report "
        f"them ('skip'); default {on_error_default}",
    )


def _add_dedup_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("duplicate search")
    group.add_argument(
        "--no-near",
        action="store_true",
        help="exact (byte-identical) duplicates only, no near-duplicate search",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes that decode images (default: all CPUs, at most 8)",
    )
    group.add_argument(
        "--no-cache", action="store_true", help="do not read or write the image-hash cache"
    )


def _positive_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _load(data: str, args: argparse.Namespace):  # noqa: ANN202 - RecordSet, imported lazily
    from mtbrain.data import LabelPolicy, load_dataset

    return load_dataset(data, layout=args.layout, policy=LabelPolicy(on_error=args.on_error))


def _progress() -> bool:
    return sys.stderr.isatty()


# --------------------------------------------------------------------------- audit


def add_audit_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "audit",
        help="counts, sizes, boxes, exact and near duplicates, label problems",
        description="Audit one or more data sets: counts per class and split, image sizes and "
        "modes (and whether size alone predicts the class), box statistics, label "
        "problems, exact and near duplicates within and across sets.",
    )
    parser.add_argument(
        "data",
        nargs="+",
        metavar="DATA",
        help="data folder (any supported layout) or SPLIT.json:PART",
    )
    parser.add_argument(
        "--json", metavar="OUT", default=None, help="also write the full report as JSON to OUT"
    )
    _add_data_options(parser, on_error_default="skip")
    _add_dedup_options(parser)
    parser.add_argument("--quiet", action="store_true", help="do not print the text report")
    return parser


def run_audit(args: argparse.Namespace) -> int:
    from mtbrain.data.audit import audit, render_text
    from mtbrain.io import write_json

    sets = [_load(d, args) for d in args.data]
    report = audit(
        sets,
        near=not args.no_near,
        workers=args.workers,
        cache=not args.no_cache,
        progress=_progress(),
    )
    if not args.quiet:
        sys.stdout.write(render_text(report))
    if args.json:
        path = write_json(args.json, report)
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- split


def add_split_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "split",
        help="leak-free stratified split by duplicate groups",
        description="Split a data set into train/val/test, stratified by class, with every "
        "group of exact or near duplicates inside one part.",
    )
    parser.add_argument(
        "data", metavar="DATA", help="data folder (any supported layout) or SPLIT.json:PART"
    )
    parser.add_argument(
        "--out", required=True, metavar="SPLIT.json", help="split file to write (atomically)"
    )
    parser.add_argument(
        "--val",
        type=_positive_fraction,
        default=0.15,
        metavar="F",
        help="validation fraction (default 0.15)",
    )
    parser.add_argument(
        "--test",
        type=_positive_fraction,
        default=0.15,
        metavar="F",
        help="test fraction (default 0.15)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed (default 0)")
    _add_data_options(parser, on_error_default="raise")
    _add_dedup_options(parser)
    return parser


def run_split(args: argparse.Namespace) -> int:
    from mtbrain.data import LabelPolicy
    from mtbrain.data.dedup import find_duplicates
    from mtbrain.data.split import make_split, split_summary

    if args.val + args.test >= 1.0:
        raise ConfigError(f"--val + --test must be below 1, got {args.val} + {args.test}")
    records = _load(args.data, args)
    dup = find_duplicates(
        [records],
        near=not args.no_near,
        workers=args.workers,
        cache=not args.no_cache,
        progress=_progress(),
    )
    for problem in dup.problems:
        print(f"warning: {problem} (kept, as a group of its own)", file=sys.stderr)
    split = make_split(
        records,
        dup.rel_groups(0),
        val=args.val,
        test=args.test,
        seed=args.seed,
        policy=LabelPolicy(on_error=args.on_error).to_dict(),
    )
    path = split.write(args.out)
    summary = split_summary(split, records)
    grouped = sum(len(g) for g in split.groups)
    print(
        f"{len(records)} images, {len(split.groups)} duplicate groups ({grouped} images) "
        f"kept whole; seed {args.seed}"
    )
    classes = sorted({c for counts in summary.values() for c in counts})
    width = max(len(c) for c in [*classes, "part"])
    print("  " + "part".ljust(8) + "".join(c.rjust(width + 2) for c in classes) + "total".rjust(8))
    for part, counts in summary.items():
        print(
            "  "
            + part.ljust(8)
            + "".join(str(counts.get(c, 0)).rjust(width + 2) for c in classes)
            + str(sum(counts.values())).rjust(8)
        )
    print(f"wrote {path}")
    return EXIT_OK


# --------------------------------------------------------------------------- train


def add_train_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a multitask model from a YAML config",
        description="Train the multitask model. Writes OUT/best.pt, OUT/last.pt, OUT/log.csv, "
        "OUT/curves.png, OUT/split.json and OUT/summary.json. Under torchrun every process "
        "runs this same command.",
    )
    parser.add_argument("--config", metavar="CFG.yaml", default=None,
                        help="training config (default: the built-in defaults)")
    parser.add_argument("--data", action="append", metavar="PATH", default=None,
                        help="data set replacing the config's (repeatable): the first is the "
                        "box-annotated set, further ones are mixed into training")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. train.lr=3e-4")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: runs/<config name>)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in OUT/last.pt")
    mode.add_argument("--overwrite", action="store_true",
                      help="start over in an OUT that already holds a run")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from mtbrain.engine.config import load_config
    from mtbrain.engine.trainer import Trainer

    cfg = load_config(args.config, overrides=args.overrides, data=args.data)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return EXIT_OK
    name = Path(args.config).stem if args.config else "default"
    out = Path(args.out) if args.out else Path("runs") / name
    if args.resume and not (out / "last.pt").exists():
        raise ConfigError(f"{out / 'last.pt'}: nothing to resume (no such file)")
    if not args.resume and (out / "last.pt").exists():
        if not args.overwrite:
            raise ConfigError(f"{out} already holds a run (last.pt): pass --resume to continue "
                              "it or --overwrite to start over")
        for stale in ("last.pt", "best.pt", "log.csv", "summary.json", "split.json",
                      "curves.png"):
            (out / stale).unlink(missing_ok=True)
    from mtbrain.engine import distributed as dist

    try:
        summary = Trainer(cfg, out, resume=args.resume, log=not args.quiet).train()
        main_rank = dist.is_main()
    finally:
        dist.cleanup()
    if not args.quiet and main_rank:
        print(f"done: {summary['epochs_done']} epochs in {summary['elapsed_s']:.0f} s "
              f"({summary['stop_reason'] or 'all epochs'}); best {summary['monitor']}="
              f"{_num(summary['best_value'])} at epoch {summary['best_epoch']}; "
              f"checkpoints in {out}")
    return EXIT_OK


def _num(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- evaluate


def _load_model(path: str):  # noqa: ANN202 - Model, imported lazily
    from pathlib import Path

    from mtbrain.models import Model

    if Path(path).suffix.lower() == ".onnx":
        raise ConfigError(f"{path}: an exported ONNX model can predict (mtbrain predict) but "
                          "not be evaluated here; give the .pt checkpoint")
    return Model.load(path)


def _load_predictor(path: str):  # noqa: ANN202 - Model or OnnxPredictor, imported lazily
    """A ``.pt`` checkpoint as a Model, an exported ``.onnx`` file as an OnnxPredictor."""
    from pathlib import Path

    if Path(path).suffix.lower() == ".onnx":
        from mtbrain.export import OnnxPredictor

        return OnnxPredictor(path)
    return _load_model(path)


def add_evaluate_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint on a data set: metrics.json and a report",
        description="Predict every image of DATA with the checkpoint and score it with the "
        "one evaluator (classification, box IoU, COCO mAP). Writes metrics.json, "
        "predictions.json, report.md, report.html and the pictures (confusion matrix, ROC, "
        "reliability, most confident mistakes; explanations with --explain) into OUT.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="model file (.pt)")
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="data folder (any layout) or SPLIT.json:PART")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: eval next to the checkpoint)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="data-loading processes (default 2)")
    parser.add_argument("--tta-flip", action="store_true",
                        help="average with the prediction of the mirrored image")
    parser.add_argument("--explain", choices=("gradcam", "shap"), default=None,
                        help="also explain the class head (Grad-CAM, or Gradient SHAP: needs "
                        "the extra 'explain') on images with a tumour box and report how "
                        "well the heat maps hit the boxes (pointing game, energy inside)")
    parser.add_argument("--explain-max", type=int, default=100, metavar="N",
                        help="most images explained (default 100)")
    _add_data_options(parser, on_error_default="skip")
    return parser


def run_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mtbrain.eval.evaluate import evaluate

    if args.explain_max < 1:
        raise ConfigError(f"--explain-max must be at least 1, got {args.explain_max}")
    if args.explain == "shap":
        from mtbrain.explain.shap import require_captum

        try:
            require_captum()
        except ImportError as exc:
            raise ConfigError(str(exc)) from None
    model = _load_model(args.checkpoint)
    records = _load(args.data, args)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    metrics = evaluate(model, records, out, batch_size=args.batch_size,
                       num_workers=args.workers, progress=_progress(), tta_flip=args.tta_flip,
                       explain=args.explain, explain_max=args.explain_max)
    print(f"{metrics['n_images']} images: accuracy {_num(metrics['accuracy'])}, macro-F1 "
          f"{_num(metrics['macro_f1'])}, mean IoU {_num(metrics['mean_iou'])}, IoU>=0.5 "
          f"{_num(metrics['iou50_rate'])}, mAP50 {_num(metrics['map50'])}, mAP50-95 "
          f"{_num(metrics['map50_95'])}")
    if model.config.box_head == "none":
        print("the model has no box head (classification only): the box figures count every "
              "tumour box as missed")
    ex = metrics.get("explain")
    if ex:
        print(f"{ex['method_name']} on {ex['n_images']} images with a tumour box: pointing game "
              f"{_num(ex['pointing_game'])}, energy inside the box {_num(ex['energy_inside'])} "
              f"(chance: box area share {_num(ex['box_area_share'])})")
    print(f"wrote {out / 'metrics.json'}, {out / 'report.md'} and {out / 'report.html'}")
    return EXIT_OK


# --------------------------------------------------------------------------- export


def add_export_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript",
        description="Export the whole two-head model: input 'image' (B, 1, S, S) grey in [0, 1] "
        "(letterboxed), outputs 'logits', 'boxes' (input pixels) and 'box_score', dynamic "
        "batch; the preprocessing and class names are stored in the file's metadata. "
        "`mtbrain predict --checkpoint FILE.onnx` runs it with onnxruntime.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="model file (.pt)")
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    parser.add_argument("--quantize", choices=("dynamic", "static"), default=None,
                        help="int8 ONNX (onnxruntime): 'dynamic' quantizes the fully connected "
                        "layers, 'static' the whole network with activation ranges calibrated "
                        "on --calibration images (needs --format onnx)")
    parser.add_argument("--calibration", metavar="DATA", default=None,
                        help="static int8: images to calibrate on, e.g. SPLIT.json:train "
                        "(training images, never test ones)")
    parser.add_argument("--calibration-n", type=int, default=32, metavar="N",
                        help="number of calibration images, classes in turn (default 32)")
    parser.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                        help="int8: leave float32 the ONNX nodes whose names contain PATTERN "
                        "(repeatable), e.g. 'backbone/blocks.2/' (see docs/benchmarks.md)")
    parser.add_argument("--out", required=True, metavar="FILE")
    return parser


def run_export(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from mtbrain.export import export_onnx, export_torchscript

    if args.quantize and args.format != "onnx":
        raise ConfigError("--quantize needs --format onnx")
    if args.quantize == "static" and not args.calibration:
        raise ConfigError("--quantize static needs --calibration DATA (e.g. SPLIT.json:train)")
    if args.calibration and args.quantize != "static":
        raise ConfigError("--calibration is for --quantize static")
    if args.keep_float and not args.quantize:
        raise ConfigError("--keep-float is for --quantize")
    model = _load_model(args.checkpoint)
    export = export_onnx if args.format == "onnx" else export_torchscript
    try:
        if not args.quantize:
            path = export(model, args.out)
        else:
            from mtbrain.export.quantize import calibration_images, quantize_onnx

            images = (calibration_images(args.calibration, n=args.calibration_n)
                      if args.calibration else None)
            with tempfile.TemporaryDirectory() as tmp:
                fp32 = export_onnx(model, Path(tmp) / "fp32.onnx")
                path = quantize_onnx(fp32, args.out, mode=args.quantize, calibration=images,
                                     keep_float=args.keep_float)
    except ImportError as exc:
        raise ConfigError(f"{exc}: ONNX export needs the export extra: "
                          "pip install 'mtbrain[export]'") from None
    print(f"wrote {path}" + (f" (int8, {args.quantize})" if args.quantize else ""))
    return EXIT_OK


# --------------------------------------------------------------------------- compare


def add_compare_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="train and score several models on one split under one time budget",
        description="Train each config (and the YOLO baseline) on SPLIT's train part for at "
        "most --budget-s seconds, score every model on its test part with the same evaluator, "
        "and write OUT/compare.md and OUT/compare.json. Finished entries are reused, so an "
        "interrupted comparison resumes.",
    )
    parser.add_argument("--split", required=True, metavar="SPLIT.json",
                        help="split file with train, val and test parts")
    parser.add_argument("--config", action="append", default=[], metavar="CFG.yaml",
                        help="mtbrain training config (repeatable)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="CKPT",
                        help="an already trained checkpoint to include (repeatable)")
    parser.add_argument("--yolo-config", default=None, metavar="YAML",
                        help="also train the YOLO baseline (configs/yolo_baseline.yaml)")
    parser.add_argument("--budget-s", type=float, default=600.0, metavar="S",
                        help="training time budget per model in seconds (default 600)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override for every mtbrain config")
    parser.add_argument("--out", default="runs/compare", metavar="DIR")
    return parser


def run_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mtbrain.eval.compare import compare

    compare(args.split, args.out, configs=args.config, checkpoints=args.checkpoint,
            yolo_config=args.yolo_config, budget_s=args.budget_s, overrides=args.overrides)
    sys.stdout.write((Path(args.out) / "compare.md").read_text())
    return EXIT_OK


# --------------------------------------------------------------------------- predict


def add_predict_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="class, probabilities and tumour box for an image or a folder",
        description="Predict every image under INPUT (a file or a folder, searched "
        "recursively; hidden files skipped). Unreadable files get an error record and the "
        "run goes on. Boxes are in pixels of the original image.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="model file (.pt) or an exported .onnx file")
    parser.add_argument("--input", required=True, metavar="PATH", help="image file or folder")
    parser.add_argument("--out", metavar="PREDS.json", default=None,
                        help="predictions file to write (default: print to stdout)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="inference precision of a .pt checkpoint (bf16: autocast; "
                        "default fp32)")
    medical = parser.add_argument_group(
        "DICOM and NIfTI input (extra 'medical')",
        "A DICOM file (.dcm, .dicom, or no suffix with the DICM marker) gives one record per "
        "frame; a NIfTI volume (.nii, .nii.gz) one per chosen slice, named like "
        "'scan.nii.gz#axis2:slice040'.")
    medical.add_argument("--axis", type=int, choices=(0, 1, 2), default=2,
                         help="NIfTI slice axis in RAS+ orientation: 0 sagittal, 1 coronal, "
                         "2 axial (default)")
    medical.add_argument("--slices", default="all", metavar="SPEC",
                         help="NIfTI slices: 'all' (default), 'middle', or indices and ranges "
                         "like '40' or '30-60,75'")
    return parser


def _inputs(root: str) -> list[tuple[str, str]]:
    """``(path, name)`` of every image, DICOM or NIfTI file under ``root`` (names relative
    to a folder)."""
    from pathlib import Path

    from mtbrain.data.image_io import is_image_name
    from mtbrain.data.medical import is_medical_file

    base = Path(root)
    if base.is_file():
        return [(str(base), root)]
    if not base.is_dir():
        raise DataError("input not found", path=base)
    found = sorted(p for p in base.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(base).parts)
                   and (is_image_name(p) or is_medical_file(p)))
    if not found:
        raise DataError("no image, DICOM or NIfTI files in this folder", path=base)
    return [(str(p), p.relative_to(base).as_posix()) for p in found]


def run_predict(args: argparse.Namespace) -> int:
    import itertools
    import json

    from tqdm import tqdm

    from mtbrain.data.medical import expand_inputs, parse_slices
    from mtbrain.io import write_json

    model = _load_predictor(args.checkpoint)
    options: dict[str, Any] = {}
    if args.precision != "fp32":
        from mtbrain.models import Model

        if not isinstance(model, Model):  # an OnnxPredictor runs the graph as exported
            raise ConfigError(f"--precision {args.precision} is for .pt checkpoints; "
                              f"{args.checkpoint} runs as exported")
        options["precision"] = args.precision
    items = expand_inputs(_inputs(args.input), axis=args.axis, slices=parse_slices(args.slices))
    records: list[dict[str, Any]] = []
    with tqdm(unit="img", desc="predict", disable=not _progress()) as bar:
        while chunk := list(itertools.islice(items, args.batch_size)):
            good = [item for item, _ in chunk if not isinstance(item, DataError)]
            preds = iter(model.predict(good, batch_size=args.batch_size, on_error="skip",
                                       **options) if good else [])
            for item, name in chunk:  # an unreadable DICOM/NIfTI file: its error record
                records.append({"image": name, "error": str(item)}
                               if isinstance(item, DataError)
                               else {**next(preds).to_dict(), "image": name})
            bar.update(len(chunk))
    errors = sum(1 for r in records if "error" in r)
    if args.out:
        write_json(args.out, records)
        print(f"wrote {len(records)} predictions ({errors} unreadable) to {args.out}",
              file=sys.stderr)
    else:
        sys.stdout.write(json.dumps(records, indent=1) + "\n")
    return EXIT_OK


# --------------------------------------------------------------------------- visualize


def add_visualize_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "visualize",
        help="draw true and predicted boxes on a grid of images (PNG)",
        description="Pick N images of DATA (classes taking turns, seeded) and draw on each "
        "its true tumour boxes, its other annotated boxes (dashed) and, with --predictions or "
        "--checkpoint, the predicted box, class and scores; write the grid as a PNG. "
        "Unreadable images get a tile saying why. Same as tools/visualize_boxes.py.",
    )
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="data folder (any supported layout) or SPLIT.json:PART")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--predictions", metavar="PREDS.json", default=None,
                        help="predictions file (as written by `mtbrain predict`; image names "
                        "relative to the data root)")
    source.add_argument("--checkpoint", metavar="CKPT", default=None,
                        help="model file (.pt): predict the chosen images with it")
    parser.add_argument("--out", required=True, metavar="PNG", help="picture to write (.png)")
    parser.add_argument("--n", type=int, default=16, metavar="N",
                        help="number of images (default 16)")
    parser.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                        help="show only these classes (default: all)")
    parser.add_argument("--only-errors", action="store_true",
                        help="show only wrong predictions: wrong class, or box IoU below 0.5 "
                        "(needs --predictions or --checkpoint)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the choice (default 0)")
    parser.add_argument("--tile", type=int, default=256, metavar="PX",
                        help="side of each image tile in pixels (default 256)")
    _add_data_options(parser, on_error_default="skip")
    return parser


def _visualize_classes(names: Sequence[str] | None, records: Any, data: str) -> list[str] | None:
    from mtbrain.classes import canonical_class

    if names is None:
        return None
    chosen = []
    for name in names:
        known = name if name in records.classes else canonical_class(name)
        if known not in records.classes:
            raise ConfigError(f"--classes: {name!r} is not a class of {data}; its classes are "
                              f"{', '.join(records.classes)}")
        chosen.append(known)
    return chosen


def _predict_for_grid(args: argparse.Namespace, records: Any,
                      classes: list[str] | None) -> list[dict[str, Any]]:
    """Predictions of the checkpoint on the images to show (only those are predicted)."""
    from mtbrain.eval.evaluate import predict_records
    from mtbrain.viz.draw import candidate_order, prediction_error

    model = _load_model(args.checkpoint)
    order = candidate_order(records, classes=classes, seed=args.seed)
    if not args.only_errors:
        return predict_records(model, records.subset([s.rel for s in order[: args.n]]))
    chunk = max(32, args.n)
    wrong: list[dict[str, Any]] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        rows = {r["image"]: r for r in predict_records(model, records.subset(
            [s.rel for s in part]))}
        wrong.extend(rows[s.rel] for s in part if prediction_error(s, rows[s.rel]))
        if _progress():
            print(f"\rpredicted {start + len(part)} images, {len(wrong)} wrong", end="",
                  file=sys.stderr)
        if len(wrong) >= args.n:
            break
    if _progress():
        print(file=sys.stderr)
    return wrong


def run_visualize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mtbrain.eval.predictions import match_predictions, read_predictions
    from mtbrain.io import atomic_write
    from mtbrain.viz.draw import grid, select_samples

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    if args.tile < 64:
        raise ConfigError(f"--tile must be at least 64 pixels, got {args.tile}")
    if Path(args.out).suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out}: the picture is a PNG; give a name ending in .png")
    if args.only_errors and not (args.predictions or args.checkpoint):
        raise ConfigError("--only-errors needs predictions: give --predictions PREDS.json or "
                          "--checkpoint CKPT")
    predictions = read_predictions(args.predictions) if args.predictions else None
    records = _load(args.data, args)
    if len(records.problems):
        print(f"warning: {args.data}: {records.problems.summary()}", file=sys.stderr)
    classes = _visualize_classes(args.classes, records, args.data)
    if predictions is not None:
        predictions = match_predictions(predictions, records, args.predictions, args.data)
    elif args.checkpoint:
        predictions = _predict_for_grid(args, records, classes)
    chosen = select_samples(records, predictions=predictions, n=args.n, classes=classes,
                            only_errors=args.only_errors, seed=args.seed)
    if not chosen:
        why = [f"classes {', '.join(classes)}"] if classes else []
        why += ["with a prediction"] if predictions is not None else []
        why += ["wrongly predicted"] if args.only_errors else []
        raise DataError(f"no samples left to show ({len(records)} images; kept: "
                        f"{'; '.join(why) or 'all'})", path=args.data)
    pool = len([s for s in records if classes is None or s.label in classes])
    title = (f"{args.data}: {len(chosen)} of {pool} images (seed {args.seed}"
             f"{', only errors' if args.only_errors else ''})")
    image = grid(chosen, predictions=predictions, n=len(chosen), only_errors=args.only_errors,
                 seed=args.seed, tile=args.tile, title=title)
    path = atomic_write(args.out, lambda tmp: image.save(tmp, format="PNG"))
    print(f"wrote {path} ({len(chosen)} images, {image.width}x{image.height} px)",
          file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- study


def add_study_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "study",
        help="compare models over grouped K folds with statistical tests",
        description="Split DATA into K folds stratified by class with every group of exact "
        "or near duplicates inside one fold; train every config (and the YOLO baseline) on "
        "each fold under the same budget and score it on the fold with the one evaluator; "
        "then test the differences (Friedman, Kendall's W, Holm-adjusted pairwise Wilcoxon, "
        "bootstrap CIs) and write OUT/report.md, OUT/results.json and critical-difference "
        "diagrams. Finished (model, fold) units are reused: an interrupted study resumes.",
    )
    parser.add_argument("--configs", nargs="+", default=[], metavar="CFG.yaml",
                        help="mtbrain training configs, one per model (e.g. configs/baselines/"
                        "*.yaml); each model is named by its file's stem")
    parser.add_argument("--yolo-config", default=None, metavar="YAML",
                        help="also train the YOLO baseline (configs/yolo_baseline.yaml)")
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="data folder (any supported layout) or SPLIT.json:PART")
    parser.add_argument("--folds", type=int, default=5, metavar="K",
                        help="number of folds (default 5)")
    parser.add_argument("--budget-s", type=float, default=0.0, metavar="S",
                        help="training time budget per model and fold in seconds (give this "
                        "or --set train.epochs=E, or both)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override for every mtbrain config, e.g. "
                        "train.epochs=3 (the YOLO baseline gets the same epochs)")
    parser.add_argument("--eval-data", default=None, metavar="OTHER",
                        help="also score every trained model on this data set, without its "
                        "images that duplicate images of DATA, and report the drop")
    parser.add_argument("--out", required=True, metavar="DIR", help="study folder")
    parser.add_argument("--val", type=_positive_fraction, default=0.15, metavar="F",
                        help="share of the training folds used for validation (default 0.15)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the folds (default 0)")
    parser.add_argument("--metrics", nargs="+", default=None, metavar="M",
                        help="metrics to report and test (default: accuracy balanced_accuracy "
                        "macro_f1 mcc mean_iou map50)")
    parser.add_argument("--alpha", type=float, default=0.05, metavar="A",
                        help="significance level (default 0.05)")
    _add_data_options(parser, on_error_default="raise")
    _add_dedup_options(parser)
    return parser


def run_study(args: argparse.Namespace) -> int:
    from mtbrain.eval.study import DEFAULT_METRICS, results_table
    from mtbrain.eval.study import run_study as study

    results = study(args.data, args.out, configs=args.configs, yolo_config=args.yolo_config,
                    folds=args.folds, budget_s=args.budget_s, overrides=args.overrides,
                    eval_data=args.eval_data, val=args.val, seed=args.seed,
                    metrics=args.metrics or DEFAULT_METRICS, alpha=args.alpha,
                    layout=args.layout, on_error=args.on_error, near=not args.no_near,
                    workers=args.workers, cache=not args.no_cache,
                    log=lambda s: print(s, file=sys.stderr))
    sys.stdout.write(results_table(results))
    print(f"wrote {args.out}/report.md, {args.out}/results.json and "
          f"{len(results['plots'])} critical-difference diagram(s)")
    return EXIT_OK


# --------------------------------------------------------------------------- profile


def add_profile_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "profile",
        help="parameters, FLOPs, size, latency, throughput and memory per runtime",
        description="Measure a checkpoint in eager PyTorch (fp32, bf16) and onnxruntime (fp32, "
        "dynamic and static int8, exported on the fly): parameters, FLOPs, file size, latency "
        "p50/p95 at batch 1, throughput and peak working memory at batch 32, on the network "
        "alone (letterboxed input). Prints a table; --json also writes every figure.",
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="model file (.pt)")
    parser.add_argument("--size", type=int, default=None, metavar="N",
                        help="input size (default: the model's img_size)")
    parser.add_argument("--runtimes", nargs="+", default=None, metavar="R",
                        help="runtimes to measure (default all: eager-fp32 eager-bf16 "
                        "onnx-fp32 onnx-int8-dynamic onnx-int8-static)")
    parser.add_argument("--iters", type=int, default=20, metavar="N",
                        help="timed calls at batch 1 (default 20)")
    parser.add_argument("--warmup", type=int, default=3, metavar="N",
                        help="untimed calls before timing (default 3)")
    parser.add_argument("--batch", type=int, default=32, metavar="N",
                        help="batch size of the throughput and memory figures (default 32)")
    parser.add_argument("--batch-iters", type=int, default=2, metavar="N",
                        help="timed calls at --batch (default 2)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="threads of every runtime (default: torch's)")
    parser.add_argument("--calibration", metavar="DATA", default=None,
                        help="static int8 calibration images (default: 8 synthetic slices; "
                        "fine for speed, not for accuracy)")
    parser.add_argument("--calibration-n", type=int, default=32, metavar="N")
    parser.add_argument("--json", metavar="OUT", default=None,
                        help="also write the figures as JSON (atomically)")
    return parser


def run_profile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mtbrain.export.profile import RUNTIMES, profile, render_table
    from mtbrain.io import write_json

    if Path(args.checkpoint).suffix.lower() == ".onnx":
        raise ConfigError(f"{args.checkpoint}: profile takes the .pt checkpoint (it exports "
                          "the ONNX versions itself)")
    model = _load_model(args.checkpoint)
    images = None
    if args.calibration:
        from mtbrain.export.quantize import calibration_images

        images = calibration_images(args.calibration, n=args.calibration_n)
    report = profile(model, checkpoint=args.checkpoint, size=args.size,
                     runtimes=args.runtimes or RUNTIMES, iters=args.iters, warmup=args.warmup,
                     batch=args.batch, batch_iters=args.batch_iters, threads=args.threads,
                     calibration=images,
                     log=(lambda line: print(line, file=sys.stderr)) if _progress() else None)
    report["checkpoint"] = str(args.checkpoint)
    sys.stdout.write(render_table(report))
    if args.json:
        print(f"wrote {write_json(args.json, report)}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- main

COMMANDS: list[Command] = [
    Command("audit", add_audit_parser, run_audit),
    Command("split", add_split_parser, run_split),
    Command("train", add_train_parser, run_train),
    Command("evaluate", add_evaluate_parser, run_evaluate),
    Command("predict", add_predict_parser, run_predict),
    Command("compare", add_compare_parser, run_compare),
    Command("export", add_export_parser, run_export),
    Command("visualize", add_visualize_parser, run_visualize),
    Command("study", add_study_parser, run_study),
    Command("profile", add_profile_parser, run_profile),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``mtbrain`` parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="mtbrain", description="Find and name brain tumours on MRI with one multitask model."
    )
    parser.add_argument("--version", action="version", version=f"mtbrain {mtbrain.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = command.add_parser(subparsers)
        sub.set_defaults(_run=command.run)
    return parser


@contextmanager
def _plain_warnings() -> Iterator[None]:
    """Show mtbrain's own warnings (:class:`~mtbrain.errors.MtbrainWarning`) as
    ``warning: <message>`` lines on stderr (a user of the command line needs the message,
    not the library's source line); others as usual."""
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
            if issubclass(category, MtbrainWarning):
                print(f"warning: {message}", file=sys.stderr)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input or usage)."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        with _plain_warnings():
            return int(run(args) or EXIT_OK)
    except (DataError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mtbrain audit ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
