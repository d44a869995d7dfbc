"""Which images several runs get wrong, and what averaging their probabilities buys.

Tells run-to-run variance (each run wrong on other images: an ensemble or weight averaging
could help) apart from images every run gets wrong (hard or mislabelled cases no averaging
fixes). Give the predictions files of ``mtbrain evaluate`` of several runs on the same
images; the true class is the first folder of each image path (``No Tumor/images/x.jpg``)::

    python benchmarks/error_overlap.py runs/a/test/predictions.json runs/b/test/predictions.json

Prints each run's errors, how many images are wrong in k of the n runs, the images wrong in
every run, and the accuracy of the ensemble (probabilities averaged) of every subset of two
or more runs.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from mtbrain.classes import canonical_class
from mtbrain.errors import DataError
from mtbrain.eval.predictions import read_predictions


def load_run(path: Path) -> dict[str, tuple[str, str, dict[str, float]]]:
    """``image -> (true class, predicted class, probabilities)`` of one predictions file.

    Raises:
        DataError: naming the file for a record without probabilities, or when no image
            has a class folder as its first path part.
    """
    out = {}
    for i, rec in enumerate(read_predictions(path)):
        if rec.get("error"):
            continue
        parts = Path(rec["image"]).parts
        truth = canonical_class(parts[0]) if len(parts) > 1 else None
        if truth is None:
            continue
        if not isinstance(rec.get("probs"), dict):
            raise DataError(f"record {i} ({rec['image']}) has no class probabilities", path=path)
        out[rec["image"]] = (truth, rec["label"], rec["probs"])
    if not out:
        raise DataError("no image has a class folder as its first path part", path=path)
    return out


def overlap(runs: list[dict[str, tuple[str, str, dict[str, float]]]]) -> Counter[int]:
    """``k -> number of images wrong in exactly k runs`` (k >= 1)."""
    wrong = Counter()
    for image in runs[0]:
        k = sum(run[image][0] != run[image][1] for run in runs)
        if k:
            wrong[k] += 1
    return wrong


def ensemble_errors(runs: list[dict[str, tuple[str, str, dict[str, float]]]]) -> int:
    """Errors of the ensemble that averages the runs' class probabilities."""
    classes = sorted(next(iter(runs[0].values()))[2])
    errors = 0
    for image, (truth, _, _) in runs[0].items():
        mean = np.mean([[run[image][2].get(c, 0.0) for c in classes] for run in runs], axis=0)
        errors += int(classes[int(np.argmax(mean))] != truth)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", nargs="+", help="predictions.json files of mtbrain evaluate")
    args = parser.parse_args()
    paths = [Path(p) for p in args.predictions]
    if len(paths) < 2:
        raise SystemExit("give the predictions files of two or more runs")
    try:
        runs = [load_run(p) for p in paths]
    except DataError as e:
        raise SystemExit(str(e)) from None
    for path, run in zip(paths[1:], runs[1:], strict=True):
        if set(run) != set(runs[0]):
            raise SystemExit(f"{path}: holds other images than {paths[0]} "
                             f"({len(set(run) ^ set(runs[0]))} differ); compare runs on the same images")
    n_images = len(runs[0])
    print("| run | images | errors | accuracy |\n|---|---|---|---|")
    for path, run in zip(paths, runs, strict=True):
        wrong = sum(t != p for t, p, _ in run.values())
        print(f"| {path} | {n_images} | {wrong} | {1 - wrong / n_images:.3f} |")
    counts = overlap(runs)
    print(f"\n| wrong in k of {len(runs)} runs | images |\n|---|---|")
    for k in range(1, len(runs) + 1):
        print(f"| {k} | {counts.get(k, 0)} |")
    always = sorted(i for i in runs[0] if all(run[i][0] != run[i][1] for run in runs))
    print(f"\nwrong in every run ({len(always)}):")
    for image in always:
        print(f"  {image}: {runs[0][image][0]} -> {', '.join(run[image][1] for run in runs)}")
    print("\n| ensemble (probabilities averaged) | errors | accuracy |\n|---|---|---|")
    for size in range(2, len(runs) + 1):
        for members in itertools.combinations(range(len(runs)), size):
            wrong = ensemble_errors([runs[m] for m in members])
            names = " + ".join(str(m + 1) for m in members)
            print(f"| runs {names} | {wrong} | {1 - wrong / n_images:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
