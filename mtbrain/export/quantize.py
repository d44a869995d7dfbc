"""int8 quantization of an exported ONNX model with ``onnxruntime.quantization``.

Two modes, both from an fp32 file written by :func:`~mtbrain.export.onnx.export_onnx`:

``dynamic``
    ``quantize_dynamic`` of the fully connected layers (``Gemm``/``MatMul``, as
    ``torch.ao.quantization.quantize_dynamic`` does for ``nn.Linear``): int8 weights,
    activations quantized on the fly. No calibration data. Convolutions stay float32:
    onnxruntime's ``ConvInteger`` (dynamic int8 convolution) has no fast CPU kernel and made
    EfficientNet-Lite0 about 9x *slower* than fp32 here. For a convolutional network this
    mode therefore changes little; static quantization is the one that matters.
``static``
    ``quantize_static``, QDQ format, post-training: weights int8 (per output channel by
    default, which keeps depthwise convolutions accurate), activations uint8 with ranges
    calibrated (min-max) on a handful of images fed through the model's own preprocessing
    (:class:`ImageCalibrationReader`: decode, grey, letterbox, [0, 1]).

In both modes only the network is quantized: the nodes downstream of its last weight layers
(the box decoding: argmax, gathers, cell-centre arithmetic, and the softmax-free outputs)
stay float32, so boxes keep sub-pixel precision. The graph keeps its input, its three named
outputs and the mtbrain metadata, so :class:`~mtbrain.export.onnx.OnnxPredictor` and
``mtbrain predict`` run a quantized file unchanged; the settings are stored as JSON under
:data:`QUANT_KEY` in the file's metadata.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mtbrain.errors import ConfigError, DataError
from mtbrain.io import atomic_write
from mtbrain.models.model import ModelConfig, prepare_gray, read_input

QUANT_KEY = "mtbrain_quantization"
QUANT_MODES = ("dynamic", "static")
QuantMode = Literal["dynamic", "static"]
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
DYNAMIC_OPS = ("Gemm", "MatMul")


def _read_proto(path: Path) -> Any:
    import onnx

    if not path.is_file():
        raise DataError("ONNX file not found", path=path)
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own types
        raise DataError(f"not a readable ONNX model: {str(exc)[:200]}", path=path) from None


def read_metadata(proto: Any) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX model as a dict."""
    return {p.key: p.value for p in proto.metadata_props}


def decode_nodes(proto: Any) -> list[str]:
    """Names of the nodes downstream of the network's last weight layers (kept float32).

    The last weight layers are the Conv/Gemm/MatMul nodes that no other weight layer
    depends on (the class head and the box head's output convolutions); everything computed
    from their outputs is the decoding.
    """
    consumers: dict[str, list[Any]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def downstream(node: Any) -> list[Any]:
        seen: dict[int, Any] = {}
        stack = [c for out in node.output for c in consumers.get(out, [])]
        while stack:
            n = stack.pop()
            if id(n) not in seen:
                seen[id(n)] = n
                stack.extend(c for out in n.output for c in consumers.get(out, []))
        return list(seen.values())

    weight_nodes = [n for n in proto.graph.node if n.op_type in WEIGHT_OPS]
    last = [n for n in weight_nodes
            if not any(d.op_type in WEIGHT_OPS for d in downstream(n))]
    names: dict[str, None] = {}
    for node in last:
        for d in downstream(node):
            names[d.name] = None
    return list(names)


class ImageCalibrationReader:
    """Feeds calibration images to ``quantize_static``, one at a time, as the model sees them.

    Each item (a path, a PIL image or an array, as ``Model.predict`` takes them) is decoded
    to 8-bit grey and letterboxed by :func:`~mtbrain.models.model.prepare_gray` with the
    model's own config. An unreadable item is an error naming it (calibration on fewer
    images than asked would go unnoticed).

    Implements onnxruntime's ``CalibrationDataReader`` protocol (``get_next``, iteration).
    """

    def __init__(self, config: ModelConfig, items: Sequence[Any], *,
                 input_name: str = "image") -> None:
        if not items:
            raise ConfigError("static quantization needs at least one calibration image")
        self.config = config
        self.items = list(items)
        self.input_name = input_name
        self._iter: Iterator[dict[str, np.ndarray]] = self._feeds()

    def _feeds(self) -> Iterator[dict[str, np.ndarray]]:
        for item in self.items:
            gray, _ = read_input(item)
            array, _ = prepare_gray(self.config, gray)
            yield {self.input_name: array[None]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = self._feeds()

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed

    def __len__(self) -> int:
        return len(self.items)


def calibration_images(data: str | Path, *, n: int = 32, seed: int = 0) -> list[Path]:
    """``n`` image paths of a data set (any layout, or ``SPLIT.json:PART``), classes in turn.

    Pass the training part (``runs/x/split.json:train``): calibration must not see test data.
    """
    from mtbrain.data import load_dataset
    from mtbrain.viz.draw import candidate_order

    if n < 1:
        raise ConfigError(f"the number of calibration images must be >= 1, got {n}")
    records = load_dataset(data)
    if not len(records):
        raise DataError("no images to calibrate on", path=data)
    return [Path(s.path) for s in candidate_order(records, seed=seed)[:n]]


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs advice through the root logger; keep it to errors."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx(
    src: str | Path,
    dst: str | Path,
    *,
    mode: QuantMode,
    calibration: Sequence[Any] | None = None,
    per_channel: bool = True,
    keep_float: Sequence[str] = (),
) -> Path:
    """Write an int8 version of the fp32 mtbrain ONNX file ``src`` to ``dst`` (atomically).

    Args:
        src: An fp32 file written by :func:`~mtbrain.export.onnx.export_onnx`.
        dst: The quantized file.
        mode: ``"dynamic"`` or ``"static"`` (see the module doc).
        calibration: Static mode: the images to calibrate on (paths, PIL images or arrays;
            e.g. :func:`calibration_images` of the training part). A few dozen suffice.
        per_channel: Per-output-channel weight scales (static mode; dynamic mode quantizes
            weights per tensor, as ``ConvInteger`` requires).
        keep_float: Parts of the network to leave float32, as substrings of ONNX node
            names (the exporter names nodes after modules, e.g. ``"backbone/blocks.2/"``
            for stage 2 of an EfficientNet). Measured on a trained Lite0 (256 px, 200
            validation images): quantizing every stage cost 0.11 mean IoU and 0.16 mAP50;
            keeping ``backbone/blocks.2/`` float kept the fp32 figures and 1.3x of the 1.7x
            speed-up (``docs/benchmarks.md``). Check a quantized model on a validation split
            before shipping it (``benchmarks/quantization.py``).

    Returns:
        The written path.

    Raises:
        ConfigError: for an unknown mode, or static mode without calibration images.
        DataError: when ``src`` is missing or not an mtbrain ONNX export.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mtbrain.export.onnx import CONFIG_KEY, INPUT_NAME, _parse_config

    if mode not in QUANT_MODES:
        raise ConfigError(f"quantization mode must be one of {QUANT_MODES}, got {mode!r}")
    if mode == "static" and not calibration:
        raise ConfigError("static quantization needs calibration images (e.g. "
                          "--calibration runs/x/split.json:train)")
    src = Path(src)
    proto = _read_proto(src)
    meta = read_metadata(proto)
    if CONFIG_KEY not in meta:
        raise DataError(f"not an mtbrain export: no {CONFIG_KEY!r} metadata", path=src)
    if QUANT_KEY in meta:
        raise DataError("already quantized: quantize the fp32 export", path=src)
    config = _parse_config(meta[CONFIG_KEY], src)
    settings: dict[str, Any] = {"mode": mode, "weights": "int8"}

    def write(tmp: Path) -> None:
        import onnx

        with tempfile.TemporaryDirectory() as work, _quiet_quantizer():
            pre = Path(work) / "pre.onnx"
            # ONNX shape inference and graph optimisation (the symbolic shape inference is
            # for transformer graphs, and gives up on some convolutional ones)
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            graph = onnx.load(str(pre))
            exclude = decode_nodes(graph)  # names after the optimisation
            for pattern in keep_float:
                matched = [n.name for n in graph.graph.node if pattern in n.name]
                if not matched:
                    example = next((n.name for n in graph.graph.node if n.op_type == "Conv"),
                                   graph.graph.node[0].name)
                    raise ConfigError(f"keep_float {pattern!r} matches no node of {src}; node "
                                      f"names look like {example!r}")
                exclude.extend(m for m in matched if m not in exclude)
            settings["float_nodes"] = len(exclude)
            if keep_float:
                settings["keep_float"] = list(keep_float)
            if mode == "dynamic":
                quantize_dynamic(pre, tmp, weight_type=QuantType.QInt8,
                                 op_types_to_quantize=list(DYNAMIC_OPS),
                                 nodes_to_exclude=exclude)
                settings["ops"] = list(DYNAMIC_OPS)
            else:
                reader = ImageCalibrationReader(config, list(calibration or []),
                                                input_name=INPUT_NAME)
                quantize_static(pre, tmp, reader, quant_format=QuantFormat.QDQ,
                                per_channel=per_channel, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                                calibrate_method=CalibrationMethod.MinMax)
                settings.update(format="QDQ", activations="uint8", per_channel=per_channel,
                                calibration="minmax", calibration_images=len(reader))
        out = onnx.load(str(tmp))
        kept = {p.key: p.value for p in out.metadata_props if not p.key.startswith("onnx.")}
        kept.update(meta)  # the fp32 file's metadata, whatever the quantizer kept
        kept[QUANT_KEY] = json.dumps(settings)
        del out.metadata_props[:]
        for key, value in kept.items():
            entry = out.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(out, str(tmp))

    return atomic_write(dst, write)
