"""Efficiency profile of a model: size, FLOPs, latency, throughput and memory per runtime.

:func:`profile` measures one model in every deployment runtime, side by side in one process
(these machines are noisy: compare rows of one table, not figures across tables):

``eager-fp32``, ``eager-bf16``
    ``Model`` in PyTorch, ``torch.inference_mode``; bf16 under ``torch.autocast``.
``onnx-fp32``, ``onnx-int8-dynamic``, ``onnx-int8-static``
    onnxruntime (CPU) on the file of :func:`~mtbrain.export.onnx.export_onnx`, and its
    :func:`~mtbrain.export.quantize.quantize_onnx` versions; static int8 is calibrated on
    the ``calibration`` images (default: synthetic slices, which is fine for speed, not for
    accuracy).

Measured per runtime, on the network alone (input: the letterboxed ``(B, 1, S, S)`` float
tensor; outputs: logits, box, box score; image decoding and letterboxing excluded):

- ``p50_ms``/``p95_ms``: latency at batch 1 over ``iters`` calls after ``warmup`` calls;
- ``images_per_s``: throughput at batch ``batch`` (median of ``batch_iters`` calls);
- ``peak_mb``: growth of the process's peak resident memory during one batch call above
  its resident memory before it (Linux ``/proc``; ``None`` elsewhere). Weights already in
  memory are not counted: this is the working memory of inference;
- ``file_mb``: the checkpoint (eager rows) or the ONNX file.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass at
batch 1 (FLOPs = 2 x multiply-adds; convolutions counted with their groups, so depthwise
convolutions are not over-counted; elementwise operations are not counted). Its formula for
the *backward* of a grouped convolution over-counts (torch 2.14); :func:`flop_counter`
replaces it, for training FLOPs (``benchmarks/hardware_limit.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtbrain.errors import ConfigError
from mtbrain.models.backbones import count_parameters
from mtbrain.models.model import Model, ModelConfig

RUNTIMES = ("eager-fp32", "eager-bf16", "onnx-fp32", "onnx-int8-dynamic", "onnx-int8-static")
MiB = 1024 * 1024


def conv_backward_flops(grad_out_shape: Sequence[int], x_shape: Sequence[int],
                        w_shape: Sequence[int], _bias: Any, _stride: Any, _padding: Any,
                        _dilation: Any, transposed: bool, _output_padding: Any, _groups: int,
                        output_mask: Sequence[bool], out_shape: Any = None,
                        **kwargs: Any) -> int:
    """FLOPs of ``aten.convolution_backward``, counting groups.

    The input gradient (a transposed convolution of the output gradient with the weight)
    and the weight gradient (a convolution of the input with the output gradient) each take
    the multiply-adds of the forward convolution. torch 2.14's own formula builds the
    weight-gradient convolution from full-channel shapes and so over-counts a depthwise
    convolution's backward by about its number of channels.
    """
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape),
                              transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_counter() -> Any:
    """``torch.utils.flop_counter.FlopCounterMode`` (no display) with a groups-aware
    convolution backward (:func:`conv_backward_flops`); the forward formula already is."""
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten.convolution_backward: conv_backward_flops})


def count_flops(module: nn.Module, inputs: torch.Tensor) -> int:
    """FLOPs (2 x multiply-adds) of one forward pass of ``module`` (in eval mode)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), flop_counter() as counter:
            module(inputs)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _release_free_memory() -> None:
    """Give freed heap memory back to the system (glibc), so that it shows as growth again."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def peak_memory() -> Iterator[dict[str, float | None]]:
    """``with peak_memory() as m: ...``: ``m["peak_mb"]`` = peak RSS growth inside (MiB).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``); ``None`` where that
    is not possible (not Linux, or not allowed).
    """
    result: dict[str, float | None] = {"peak_mb": None}
    _release_free_memory()
    before = _status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        before = None
    yield result
    peak = _status_kib("VmHWM")
    if before is not None and peak is not None:
        result["peak_mb"] = max(0, peak - before) / 1024


# --------------------------------------------------------------------------- timing


def time_calls(run: Callable[[], Any], *, iters: int, warmup: int) -> list[float]:
    """Seconds of each of ``iters`` calls of ``run`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def percentile_ms(times: Sequence[float], q: float) -> float:
    return 1000.0 * float(np.percentile(np.asarray(times), q))


@dataclass
class RuntimeProfile:
    """One row of the profile (see the module doc for each figure)."""

    runtime: str
    file_mb: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    images_per_s: float | None = None
    peak_mb: float | None = None
    error: str | None = None


def _eager_runner(model: Model, bf16: bool) -> Callable[[np.ndarray], Any]:
    def run(batch: np.ndarray) -> Any:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(torch.from_numpy(batch))

    return run


def _onnx_runner(path: Path, threads: int | None) -> Callable[[np.ndarray], Any]:
    from mtbrain.export.onnx import OnnxPredictor

    return OnnxPredictor(path, threads=threads).run


def measure(run: Callable[[np.ndarray], Any], *, size: int, iters: int, warmup: int,
            batch: int, batch_iters: int) -> RuntimeProfile:
    """Latency at batch 1, throughput and peak memory at batch ``batch`` of ``run``."""
    rng = np.random.default_rng(0)
    one = rng.random((1, 1, size, size), dtype=np.float32)
    many = rng.random((batch, 1, size, size), dtype=np.float32)
    row = RuntimeProfile("")
    with peak_memory() as mem:
        run(many)  # the first batch call: warms up and shows the working memory
    row.peak_mb = mem["peak_mb"]
    times = time_calls(lambda: run(one), iters=iters, warmup=warmup)
    row.p50_ms, row.p95_ms = percentile_ms(times, 50), percentile_ms(times, 95)
    batch_times = time_calls(lambda: run(many), iters=batch_iters, warmup=0)
    row.images_per_s = batch / statistics.median(batch_times)
    return row


def _resized(model: Model, size: int | None) -> Model:
    """``model`` itself, or a copy whose config (and so its ONNX export) takes ``size`` px."""
    if size is None or size == model.config.img_size:
        return model.eval()
    cfg = ModelConfig.from_dict({**model.config.to_dict(), "img_size": int(size)})
    copy = Model.from_config(cfg, load_weights=False)
    copy.load_state_dict(model.state_dict())
    return copy.eval()


def synthetic_calibration(n: int = 8, *, seed: int = 0) -> list[np.ndarray]:
    """``n`` synthetic MRI-like slices (classes in turn) for a speed-only calibration."""
    from mtbrain.classes import CANONICAL_CLASSES
    from mtbrain.data.synthetic import render_slice, sample_rng

    return [render_slice(c, sample_rng(seed, c, i // len(CANONICAL_CLASSES)), size=256).image
            for i in range(n) for c in [CANONICAL_CLASSES[i % len(CANONICAL_CLASSES)]]]


def profile(
    model: Model,
    *,
    checkpoint: str | Path | None = None,
    size: int | None = None,
    runtimes: Sequence[str] = RUNTIMES,
    iters: int = 20,
    warmup: int = 3,
    batch: int = 32,
    batch_iters: int = 2,
    threads: int | None = None,
    calibration: Sequence[Any] | None = None,
    work_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Profile ``model`` in each of ``runtimes`` (see the module doc).

    Args:
        model: The model (its weights are used as they are).
        checkpoint: Its checkpoint file, for the size column of the eager rows.
        size: Input size S (default: the model's ``img_size``).
        runtimes: Any of :data:`RUNTIMES`.
        iters: Timed calls at batch 1 (after ``warmup`` calls).
        warmup: Untimed calls at batch 1 before timing.
        batch: Batch size of the throughput and memory figures.
        batch_iters: Timed calls at batch ``batch`` (after one untimed call).
        threads: Threads of both runtimes (default: torch's current number).
        calibration: Images for static int8 (default: :func:`synthetic_calibration`).
        work_dir: Where the ONNX files are written (default: a temporary folder).
        log: Called with a line per finished runtime.

    Returns:
        A JSON-ready dict: ``model`` (backbone, size, params, GFLOPs...), ``machine`` and
        ``rows`` (one :class:`RuntimeProfile` dict per runtime; a runtime that failed has
        ``error`` set and no figures).
    """
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ConfigError(f"unknown runtime(s) {unknown}; choose from {list(RUNTIMES)}")
    for name, value in (("iters", iters), ("batch", batch), ("batch_iters", batch_iters)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    net = _resized(model, size)
    size = net.config.img_size
    threads = int(threads or torch.get_num_threads())
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    flops = count_flops(net, torch.zeros(1, 1, size, size))
    ckpt_mb = Path(checkpoint).stat().st_size / MiB if checkpoint is not None else None
    rows: list[RuntimeProfile] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(work_dir) if work_dir is not None else Path(tmp)
            files: dict[str, Path] = {}
            for runtime in runtimes:
                try:
                    if runtime.startswith("eager"):
                        run = _eager_runner(net, bf16=runtime == "eager-bf16")
                        file_mb = ckpt_mb
                    else:
                        path = _onnx_file(runtime, net, folder, files, calibration)
                        run = _onnx_runner(path, threads)
                        file_mb = path.stat().st_size / MiB
                    row = measure(run, size=size, iters=iters, warmup=warmup, batch=batch,
                                  batch_iters=batch_iters)
                    row.runtime, row.file_mb = runtime, file_mb
                except (ImportError, RuntimeError, ValueError, OSError) as exc:
                    row = RuntimeProfile(runtime, error=f"{type(exc).__name__}: "
                                                        f"{str(exc).strip()[:300]}")
                rows.append(row)
                if log is not None:
                    log(format_row(row))
    finally:
        torch.set_num_threads(torch_threads)
    return {
        "model": {"backbone": net.config.backbone, "img_size": size,
                  "box_head": net.config.box_head, "classes": len(net.config.classes),
                  "params": count_parameters(net), "gflops": flops / 1e9,
                  "checkpoint_mb": ckpt_mb},
        "settings": {"iters": iters, "warmup": warmup, "batch": batch,
                     "batch_iters": batch_iters, "threads": threads},
        "machine": {"processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": threads},
        "rows": [asdict(r) for r in rows],
    }


def _onnx_file(runtime: str, model: Model, folder: Path, files: dict[str, Path],
               calibration: Sequence[Any] | None) -> Path:
    """The ONNX file of ``runtime``, exported/quantized on first use."""
    from mtbrain.export.onnx import export_onnx
    from mtbrain.export.quantize import quantize_onnx

    if "fp32" not in files:
        files["fp32"] = export_onnx(model, folder / "model-fp32.onnx")
    if runtime == "onnx-fp32":
        return files["fp32"]
    mode = runtime.rsplit("-", 1)[1]
    if mode not in files:
        images = None
        if mode == "static":
            images = list(calibration) if calibration else synthetic_calibration()
        files[mode] = quantize_onnx(files["fp32"], folder / f"model-int8-{mode}.onnx",
                                    mode=mode, calibration=images)  # type: ignore[arg-type]
    return files[mode]


# --------------------------------------------------------------------------- text


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def format_row(row: RuntimeProfile) -> str:
    if row.error:
        return f"{row.runtime}: failed: {row.error}"
    return (f"{row.runtime}: p50 {_cell(row.p50_ms, '.2f')} ms, p95 {_cell(row.p95_ms, '.2f')} "
            f"ms, {_cell(row.images_per_s, '.1f')} img/s, peak +{_cell(row.peak_mb, '.0f')} MiB")


def render_table(report: dict[str, Any]) -> str:
    """The profile as text: a header and a Markdown table."""
    m, s = report["model"], report["settings"]
    lines = [
        f"{m['backbone']} ({m['box_head']} box head, {m['classes']} classes) at "
        f"{m['img_size']} px: {m['params'] / 1e6:.2f} M parameters, "
        f"{m['gflops']:.3f} GFLOPs per image (2 x MACs), checkpoint "
        f"{_cell(m['checkpoint_mb'], '.1f')} MiB",
        f"{s['threads']} threads; latency over {s['iters']} calls at batch 1 after "
        f"{s['warmup']} warm-up calls; throughput median of {s['batch_iters']} calls at batch "
        f"{s['batch']}; peak = working memory of one batch-{s['batch']} call",
        "",
        f"| runtime | file (MiB) | p50 ms (b1) | p95 ms (b1) | img/s (b{s['batch']}) "
        f"| peak MiB (b{s['batch']}) |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if r["error"]:
            lines.append(f"| {r['runtime']} | failed: {r['error']} | | | | |")
            continue
        lines.append(
            f"| {r['runtime']} | {_cell(r['file_mb'], '.2f')} | {_cell(r['p50_ms'], '.2f')} | "
            f"{_cell(r['p95_ms'], '.2f')} | {_cell(r['images_per_s'], '.1f')} | "
            f"{_cell(r['peak_mb'], '.0f')} |")
    return "\n".join(lines) + "\n"
