#!/usr/bin/env python
"""Make the README picture: predicted boxes and Grad-CAM heatmaps on synthetic slices.

For one new synthetic slice of each tumour class (never seen in training: another seed),
the top row shows the true box (green) and the predicted box with its class and
probability (orange); the bottom row the Grad-CAM heatmap of the predicted class with the
true box. Only synthetic images are used: no real data ends up in the repository.

::

    python tools/make_readme_figure.py --checkpoint runs/demo/model/best.pt
    python tools/make_readme_figure.py      # trains the demo config first (about 2 min)

Writes ``docs/_static/readme.png`` (``--out``), a palette PNG well under 300 KB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from mtbrain.data.boxes import iou_matrix  # noqa: E402
from mtbrain.data.synthetic import render_slice, sample_rng  # noqa: E402
from mtbrain.explain import grad_cam, overlay  # noqa: E402
from mtbrain.io import atomic_write  # noqa: E402
from mtbrain.viz.draw import GT_COLOR, PRED_COLOR, draw_boxes  # noqa: E402

CLASSES = ("glioma", "meningioma", "pituitary")
SEED = 2024  # not the training seed: these slices are new to the model
SIZE = 256   # square slices: the model's letterbox is then a plain resize
GAP = 6


def train_demo_model(out: Path, budget_s: float) -> Path:
    """Train the demo config (synthetic data) for at most ``budget_s`` seconds."""
    from mtbrain.cli import main

    code = main(["train", "--config", str(ROOT / "configs" / "demo_synthetic.yaml"),
                 "--out", str(out), "--set", f"train.max_time_s={budget_s}", "--quiet"])
    if code:
        raise SystemExit(code)
    return out / "best.pt"


def panel(model, label: str, level: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The boxes tile and the heatmap tile of one new slice of class ``label``."""
    import torch

    sl = render_slice(label, sample_rng(SEED, label, 0), size=SIZE)
    pred = model.predict(sl.image)[0]
    truth = sl.tumour_box[None].astype(np.float32)
    boxes, colors, labels = [truth[0]], [GT_COLOR], [None]
    text = f"{pred.label} {pred.probs[pred.label]:.2f}"
    if pred.box is not None:
        iou = float(iou_matrix(np.array([pred.box], np.float32), truth)[0, 0])
        boxes, colors, labels = [*boxes, pred.box], [*colors, PRED_COLOR], [None, f"{text}, IoU {iou:.2f}"]
    else:
        labels = [f"{text}, no box"]
    boxes_tile = draw_boxes(sl.image, np.array(boxes, np.float32), color=colors, labels=labels)
    x, _ = model.prepare(sl.image)
    with torch.enable_grad():
        cam = grad_cam(model, x[None], level=level)[0].numpy()
    cam = np.asarray(Image.fromarray(cam).resize((sl.width, sl.height), Image.BILINEAR))
    heat_tile = draw_boxes(overlay(sl.image, cam), truth, color=GT_COLOR)
    return boxes_tile, heat_tile


def compose(tiles: list[tuple[np.ndarray, np.ndarray]]) -> Image.Image:
    """Boxes on the top row, heatmaps below, with two row titles."""
    title_h = 22
    width = len(tiles) * SIZE + (len(tiles) + 1) * GAP
    height = 2 * (SIZE + title_h) + 3 * GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)
    rows = ("new synthetic slices; boxes: true (green), predicted (orange)",
            "Grad-CAM of the predicted class, true box")
    for r, title in enumerate(rows):
        top = GAP + r * (SIZE + title_h + GAP)
        draw.text((GAP, top + 3), title, fill="black", font=font)
        for c, pair in enumerate(tiles):
            canvas.paste(Image.fromarray(pair[r]), (GAP + c * (SIZE + GAP), top + title_h))
    return canvas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="a model trained on synthetic data (default: train one)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "_static" / "readme.png"))
    parser.add_argument("--level", type=int, default=-2,
                        help="backbone feature level explained (default -2: stride 16)")
    parser.add_argument("--budget-s", type=float, default=120.0,
                        help="training time when no checkpoint is given (default 120)")
    args = parser.parse_args()

    from mtbrain.models import Model

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or train_demo_model(Path(tmp) / "model", args.budget_s)
        model = Model.load(ckpt).eval()
        tiles = [panel(model, label, args.level) for label in CLASSES]
    image = compose(tiles).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    path = atomic_write(args.out, lambda tmp: image.save(tmp, format="PNG", optimize=True))
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB, {image.width}x{image.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
