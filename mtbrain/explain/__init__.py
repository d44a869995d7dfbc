"""Explanations of the classification head: Grad-CAM maps and how well they hit the boxes."""

from mtbrain.explain.gradcam import energy_inside, grad_cam, overlay, pointing_game

__all__ = ["energy_inside", "grad_cam", "overlay", "pointing_game"]
