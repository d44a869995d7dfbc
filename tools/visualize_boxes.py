#!/usr/bin/env python
"""Draw true and predicted boxes on a grid of images: the same as ``mtbrain visualize``.

::

    python tools/visualize_boxes.py --data ../shared/data/mri-bbox/Train --out /tmp/boxes.png
    python tools/visualize_boxes.py --data runs/x/split.json:val \
        --predictions runs/x/eval/predictions.json --only-errors --out /tmp/errors.png
    python tools/visualize_boxes.py --data DATA --checkpoint runs/x/best.pt --out /tmp/pred.png

Options: ``--n 16``, ``--classes glioma pituitary``, ``--seed 0``, ``--tile 256``,
``--layout L`` (see ``--help``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtbrain.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["visualize", *sys.argv[1:]]))
