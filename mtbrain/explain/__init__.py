"""Explanations of the classification head and how well they hit the tumour boxes.

- :func:`explain` (one image, heat map in its own pixels) and :func:`heatmaps` (a batch
  of network inputs) run Grad-CAM (:func:`grad_cam`) or Gradient SHAP
  (:func:`gradient_shap`, captum: the optional extra ``explain``) by name;
- :func:`pointing_game`, :func:`energy_inside` score a map against boxes, and
  :func:`~mtbrain.explain.agreement.explain_records` scores a whole data set;
- :func:`overlay` draws a map over a grey image.
"""

from mtbrain.explain.api import METHODS, Explanation, explain, heatmaps, to_original
from mtbrain.explain.gradcam import energy_inside, grad_cam, overlay, pointing_game
from mtbrain.explain.shap import gradient_shap

__all__ = [
    "METHODS",
    "Explanation",
    "energy_inside",
    "explain",
    "grad_cam",
    "gradient_shap",
    "heatmaps",
    "overlay",
    "pointing_game",
    "to_original",
]
