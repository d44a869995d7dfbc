"""train.precision: ``auto`` picks bf16 only where the device computes it natively."""

from __future__ import annotations

import warnings

import pytest
import torch

from mtbrain.engine import precision
from mtbrain.errors import ConfigError, MtbrainWarning


@pytest.mark.parametrize(("native", "want"), [(True, "bf16"), (False, "fp32")])
def test_auto_follows_native_support(monkeypatch: pytest.MonkeyPatch, native: bool,
                                     want: str) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    chosen, note = precision.resolve_precision("auto", torch.device("cpu"))
    assert chosen == want
    assert note is not None and note.startswith(f"precision auto: {want}")


def test_explicit_values_are_kept_and_emulated_bf16_is_warned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert precision.resolve_precision("fp32", cpu) == ("fp32", None)
    with pytest.warns(MtbrainWarning, match="emulated"):
        assert precision.resolve_precision("bf16", cpu) == ("bf16", None)
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.resolve_precision("bf16", cpu) == ("bf16", None)
    with pytest.raises(ConfigError, match="train.precision must be one of"):
        precision.resolve_precision("fp16", cpu)


def test_native_bf16_answers_for_this_machine() -> None:
    assert isinstance(precision.native_bf16(torch.device("cpu")), bool)
    assert precision.native_bf16(torch.device("meta")) is False
