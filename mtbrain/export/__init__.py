"""Deployment exports of a trained :class:`mtbrain.models.Model` (ONNX, TorchScript), int8
quantization of the ONNX file (:mod:`mtbrain.export.quantize`) and the efficiency profile
(:mod:`mtbrain.export.profile`).

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
from mtbrain.export.quantize import (
    QUANT_KEY,
    ImageCalibrationReader,
    calibration_images,
    quantize_onnx,
)

__all__ = [
    "CONFIG_KEY",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "QUANT_KEY",
    "ExportWrapper",
    "ImageCalibrationReader",
    "OnnxPredictor",
    "calibration_images",
    "export_onnx",
    "export_torchscript",
    "load_torchscript",
    "predict_with",
    "quantize_onnx",
]
