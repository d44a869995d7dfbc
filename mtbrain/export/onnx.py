"""ONNX and TorchScript export of a :class:`~mtbrain.models.Model`, and an ONNX predictor.

The exported graph takes ``image`` (B, 1, S, S) float32 grey in [0, 1] (the letterboxed
network input, batch axis dynamic) and returns three named outputs: ``logits`` (B, C),
``boxes`` (B, 4) xyxy in input pixels and ``box_score`` (B,). The mean/std normalisation
is inside the graph (``Model.forward`` applies it). Everything else a deployment needs to
feed the graph and read its answer (``img_size``, ``keep_ratio``, the letterbox, the class
names, ``box_threshold``, ``no_box_classes``) is the model config, stored as JSON
(``ModelConfig.to_json()``) under the key :data:`CONFIG_KEY`: in the ONNX ``metadata_props``
and in the TorchScript file's extra files.

:class:`OnnxPredictor` runs an exported file with onnxruntime and gives the same
:class:`~mtbrain.models.model.Prediction` records as ``Model.predict`` (boxes in original
image pixels, through the same letterbox geometry).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtbrain.errors import ConfigError, DataError
from mtbrain.io import atomic_write
from mtbrain.models.model import Model, ModelConfig, Prediction, predict_with

CONFIG_KEY = "mtbrain_config"
INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "boxes", "box_score")
TORCHSCRIPT_CONFIG_FILE = f"{CONFIG_KEY}.json"


class ExportWrapper(nn.Module):
    """``image`` (B, 1, S, S) in [0, 1] -> ``(logits, boxes, box_score)``: fixed outputs."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model(image)
        return out["logits"], out["boxes"].float(), out["box_score"].float()


def _example_input(model: Model, batch: int = 2) -> Tensor:
    size = model.config.img_size
    device = next(model.parameters()).device
    # batch 2, so that no size is specialised to 1 while tracing
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(0)).to(device)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside, its former mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def _quiet_tracer() -> Iterator[None]:
    """Silence TracerWarnings: the shape-derived constants they flag (grid size, strides)
    are fixed by the fixed S x S input, and only the batch axis is dynamic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def _metadata(model: Model) -> dict[str, str]:
    import mtbrain

    return {
        CONFIG_KEY: model.config.to_json(),
        "mtbrain_version": str(getattr(mtbrain, "__version__", "unknown")),
        "mtbrain_input": json.dumps(
            {"name": INPUT_NAME, "shape": ["batch", 1, model.config.img_size,
                                           model.config.img_size],
             "dtype": "float32", "range": [0.0, 1.0], "grey": True,
             "letterbox": {"keep_ratio": model.config.keep_ratio, "pad_value": 0}}
        ),
        "mtbrain_outputs": json.dumps(list(OUTPUT_NAMES)),
    }


def export_onnx(model: Model, path: str | Path, *, opset: int = 17) -> Path:
    """Write ``model`` as an ONNX file (atomically) with its config in ``metadata_props``.

    Uses the TorchScript-based exporter (``dynamo=False``: no ``onnxscript`` needed). The
    model's train/eval mode is restored afterwards.

    Returns:
        The written path.
    """
    import onnx

    wrapper = ExportWrapper(model)
    example = _example_input(model)

    def write(tmp: Path) -> None:
        with torch.no_grad(), _quiet_tracer():
            torch.onnx.export(
                wrapper,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        for key, value in _metadata(model).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "mtbrain"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))

    with _eval_mode(model):
        return atomic_write(path, write)


def export_torchscript(model: Model, path: str | Path) -> Path:
    """Write ``model`` traced (``torch.jit.trace`` of :class:`ExportWrapper`), atomically.

    The config JSON is stored as the extra file ``mtbrain_config.json``; read both back with
    :func:`load_torchscript`.
    """
    wrapper = ExportWrapper(model)
    example = _example_input(model)

    def write(tmp: Path) -> None:
        with torch.no_grad(), _quiet_tracer():
            traced = torch.jit.trace(wrapper, (example,))
        torch.jit.save(traced, str(tmp),
                       _extra_files={TORCHSCRIPT_CONFIG_FILE: model.config.to_json()})

    with _eval_mode(model):
        return atomic_write(path, write)


def load_torchscript(path: str | Path,
                     map_location: str | torch.device | None = "cpu") -> tuple[Any, ModelConfig]:
    """Load a file written by :func:`export_torchscript`: ``(module, config)``.

    Note that TorchScript files hold code: load only files you trust.

    Raises:
        DataError: naming the file when it is missing or not an mtbrain TorchScript export.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("TorchScript file not found", path=path)
    extra = {TORCHSCRIPT_CONFIG_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    except (RuntimeError, ValueError) as exc:
        raise DataError(f"not a readable TorchScript file: {str(exc)[:200]}", path=path) from None
    if not extra[TORCHSCRIPT_CONFIG_FILE]:
        raise DataError(f"not an mtbrain export: no {TORCHSCRIPT_CONFIG_FILE}", path=path)
    return module.eval(), _parse_config(extra[TORCHSCRIPT_CONFIG_FILE], path)


def _parse_config(text: str | bytes, path: Path) -> ModelConfig:
    try:
        return ModelConfig.from_json(text.decode() if isinstance(text, bytes) else text)
    except (ConfigError, TypeError, ValueError) as exc:
        raise DataError(f"the stored model config is invalid: {exc}", path=path) from None


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


class OnnxPredictor:
    """Predict with an ONNX file written by :func:`export_onnx` (onnxruntime, CPU).

    Args:
        path: The ``.onnx`` file.
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).
        threads: onnxruntime intra-op threads (``None``: onnxruntime's default).

    Raises:
        DataError: naming the file when it is missing, not ONNX, or not an mtbrain export.
    """

    def __init__(self, path: str | Path, *, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError("ONNX file not found", path=self.path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options,
                providers=providers or ["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise DataError(
                f"not a readable ONNX model: {str(exc).strip()[:200]}", path=self.path
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if CONFIG_KEY not in meta:
            raise DataError(f"not an mtbrain export: no {CONFIG_KEY!r} metadata", path=self.path)
        self.config = _parse_config(meta[CONFIG_KEY], self.path)
        names = [o.name for o in self.session.get_outputs()]
        if [i.name for i in self.session.get_inputs()] != [INPUT_NAME] or names != list(
            OUTPUT_NAMES
        ):
            raise DataError(
                f"unexpected graph signature: outputs {names}, expected {list(OUTPUT_NAMES)}",
                path=self.path,
            )

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    @property
    def img_size(self) -> int:
        return self.config.img_size

    @property
    def quantization(self) -> dict[str, Any] | None:
        """The int8 settings of a quantized file (:mod:`mtbrain.export.quantize`), else None."""
        from mtbrain.export.quantize import QUANT_KEY

        text = self.session.get_modelmeta().custom_metadata_map.get(QUANT_KEY)
        return json.loads(text) if text else None

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, 1, S, S) float32 in [0, 1] -> (probs, boxes in input pixels, box_score)."""
        logits, boxes, score = self.session.run(
            list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        )
        return _softmax(logits), boxes, score

    def predict(
        self,
        inputs: Any,
        *,
        batch_size: int = 32,
        box_threshold: float | None = None,
        on_error: str = "raise",
    ) -> list[Prediction]:
        """Same inputs and records as ``Model.predict`` (no ``tta_flip``)."""
        return predict_with(self.config, self.run, inputs, batch_size=batch_size,
                            box_threshold=box_threshold, on_error=on_error)

    def __repr__(self) -> str:
        return f"OnnxPredictor({str(self.path)!r}, classes={self.classes})"
