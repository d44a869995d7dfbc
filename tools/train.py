#!/usr/bin/env python
"""Train a multitask model: the same as ``mtbrain train`` (see ``--help``).

Single process::

    python tools/train.py --config configs/demo_synthetic.yaml --out runs/demo

Several processes (CPU: gloo; GPUs: nccl), each runs this same script::

    torchrun --nproc_per_node 2 tools/train.py --config configs/mri_bbox_effnet_lite0.yaml --out runs/x
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtbrain.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
