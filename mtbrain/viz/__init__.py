"""Pictures of data and predictions: boxes drawn on images, grids of annotated samples.

See :mod:`mtbrain.viz.draw`. ``mtbrain visualize`` (= ``tools/visualize_boxes.py``) is the
command line.
"""

from __future__ import annotations

from mtbrain.viz.draw import (
    GT_COLOR,
    OTHER_COLOR,
    PRED_COLOR,
    WRONG_COLOR,
    draw_boxes,
    grid,
    prediction_error,
    render_tile,
    select_samples,
)

__all__ = [
    "GT_COLOR",
    "OTHER_COLOR",
    "PRED_COLOR",
    "WRONG_COLOR",
    "draw_boxes",
    "grid",
    "prediction_error",
    "render_tile",
    "select_samples",
]
