"""Classification errors per image source, from a predictions file of ``mtbrain evaluate``.

Public brain-MRI sets are merged from several sources whose file names differ (in the Kaggle
box set: ``Tr-gl_0116.jpg``-style names from one source, ``gg (12).jpg``, ``m1(3).jpg``,
``p (5).jpg`` and ``image(12).jpg`` from another). Where the errors sit tells label noise of
one source apart from a weak model. The true class is the first folder of each image path
(``Glioma/images/x.jpg``); sources are told apart by regular expressions on the file name,
tried in order (the first that matches wins; names matching none are ``other``)::

    python benchmarks/errors_by_source.py runs/e1/test/predictions.json \\
        --source "Tr/Te-xx=^T[re]-" --source "numbered=\\(\\d+\\)"
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

from mtbrain.classes import canonical_class
from mtbrain.errors import DataError
from mtbrain.eval.predictions import read_predictions


def parse_sources(items: list[str]) -> list[tuple[str, re.Pattern[str]]]:
    sources = []
    for item in items:
        name, sep, pattern = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--source {item!r}: expected NAME=REGEX")
        try:
            sources.append((name, re.compile(pattern)))
        except re.error as e:
            raise SystemExit(f"--source {item!r}: bad regular expression: {e}") from None
    return sources


def tally(records: list[dict], sources: list[tuple[str, re.Pattern[str]]],
          ) -> dict[tuple[str, str], list[int]]:
    """``(true class, source) -> [images, errors]`` over records that have a true class."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if r.get("error"):
            continue
        parts = Path(r["image"]).parts
        truth = canonical_class(parts[0]) if len(parts) > 1 else None
        if truth is None:
            continue
        name = parts[-1]
        source = next((n for n, rx in sources if rx.search(name)), "other")
        cell = counts[(truth, source)]
        cell[0] += 1
        cell[1] += int(r["label"] != truth)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", help="predictions.json written by mtbrain evaluate")
    parser.add_argument("--source", action="append", default=[], metavar="NAME=REGEX",
                        help="a source and the regular expression its file names match")
    args = parser.parse_args()
    path = Path(args.predictions)
    try:
        records = read_predictions(path)
    except DataError as e:
        raise SystemExit(str(e)) from None
    counts = tally(records, parse_sources(args.source or ["Tr/Te-xx=^T[re]-"]))
    if not counts:
        raise SystemExit(f"{path}: no image has a class folder as its first path part")
    print("| class | source | images | errors | accuracy |\n|---|---|---|---|---|")
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (truth, source), (n, wrong) in sorted(counts.items()):
        print(f"| {truth} | {source} | {n} | {wrong} | {1 - wrong / n:.3f} |")
        totals[source][0] += n
        totals[source][1] += wrong
    for source, (n, wrong) in sorted(totals.items()):
        print(f"| all | {source} | {n} | {wrong} | {1 - wrong / n:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
