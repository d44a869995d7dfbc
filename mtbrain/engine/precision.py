"""Training precision: ``fp32``, ``bf16`` autocast, or ``auto`` (bf16 where it is native).

bf16 autocast only pays where the hardware computes in bfloat16: CPUs with AVX-512 BF16 or
AMX (oneDNN reports them as bf16-capable), and CUDA GPUs that support it. On other CPUs
(AVX2 only, or AVX-512 hidden by the hypervisor) oneDNN emulates bf16 and a training step
is slower than in fp32 (docs/benchmarks.md, "Precision on a CPU without bf16"), so ``auto``
picks fp32 there.
"""

from __future__ import annotations

import warnings

import torch

from mtbrain.errors import ConfigError, MtbrainWarning

PRECISIONS = ("fp32", "bf16", "auto")
"""Values of ``train.precision``."""


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (not by emulation)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str | None]:
    """The precision a run uses, and what ``auto`` chose (a line for the log).

    Args:
        precision: ``fp32``, ``bf16`` or ``auto``.
        device: The device the run trains on.

    Returns:
        ``("fp32" | "bf16", note)``: ``auto`` becomes ``bf16`` where :func:`native_bf16`
        holds, else ``fp32``, and the note says so; ``None`` for an explicit value. An
        explicit ``bf16`` on a device that would emulate it is kept, with a
        :class:`~mtbrain.errors.MtbrainWarning`.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return "fp32", None
    native = native_bf16(device)
    if precision == "auto":
        chosen = "bf16" if native else "fp32"
        why = "computes bf16 natively" if native else "has no native bf16, emulated bf16 is slow"
        return chosen, f"precision auto: {chosen} (this {device.type} {why})"
    if not native:
        warnings.warn(f"train.precision=bf16 on a {device.type} without native bf16: it is "
                      "emulated and usually slower than fp32 (train.precision=auto chooses "
                      "for you)", MtbrainWarning, stacklevel=2)
    return "bf16", None
