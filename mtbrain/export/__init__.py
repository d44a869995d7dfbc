"""Deployment exports of a trained :class:`mtbrain.models.Model` (ONNX, TorchScript).

Needs the ``export`` extra (``onnx``, ``onnxruntime``) for ONNX; TorchScript needs only torch.
"""

from mtbrain.export.onnx import (
    CONFIG_KEY,
    INPUT_NAME,
    OUTPUT_NAMES,
    ExportWrapper,
    OnnxPredictor,
    export_onnx,
    export_torchscript,
    load_torchscript,
    predict_with,
)

__all__ = [
    "CONFIG_KEY",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "ExportWrapper",
    "OnnxPredictor",
    "export_onnx",
    "export_torchscript",
    "load_torchscript",
    "predict_with",
]
