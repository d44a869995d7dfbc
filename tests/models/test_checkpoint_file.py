"""Checkpoint files: truncated, tampered and foreign files raise DataError naming the file."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

from mtbrain.errors import DataError
from mtbrain.models import Model, read_checkpoint, write_checkpoint
from mtbrain.models.checkpoint import build_payload, check_plain


@pytest.fixture
def saved(tiny_model, tmp_path):
    return tiny_model().save(tmp_path / "model.pt")


def test_truncated_file(saved, tmp_path) -> None:
    data = saved.read_bytes()
    for n in (10, len(data) // 2, len(data) - 100):
        cut = tmp_path / f"cut{n}.pt"
        cut.write_bytes(data[:n])
        with pytest.raises(DataError, match=rf"cut{n}\.pt.*(truncated|corrupt|not a PyTorch)"):
            Model.load(cut)


def test_tampered_tensor(saved, tmp_path) -> None:
    payload = torch.load(saved, weights_only=True)
    key = next(k for k in payload["state_dict"] if k.endswith("fc.weight"))
    payload["state_dict"][key] = payload["state_dict"][key] + 1e-3
    bad = tmp_path / "tampered.pt"
    torch.save(payload, bad)
    with pytest.raises(DataError, match=r"tampered\.pt.*checksum mismatch"):
        Model.load(bad)


def test_tampered_config(saved, tmp_path) -> None:
    payload = torch.load(saved, weights_only=True)
    payload["config_json"] = payload["config_json"].replace('"no_tumor"', '"healthy"')
    bad = tmp_path / "config.pt"
    torch.save(payload, bad)
    with pytest.raises(DataError, match=r"config\.pt.*checksum"):
        Model.load(bad)


def test_flipped_bytes_in_the_archive(saved, tmp_path) -> None:
    """Damage inside a stored tensor: caught by the zip CRC or by the checksum."""
    with zipfile.ZipFile(saved) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    data = bytearray(saved.read_bytes())
    pos = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 100
    data[pos : pos + 8] = bytes(255 - b for b in data[pos : pos + 8])
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"flipped\.pt"):
        Model.load(bad)


def test_foreign_files(tmp_path) -> None:
    plain = tmp_path / "plain_dict.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    with pytest.raises(DataError, match=r"plain_dict\.pt.*not an mtbrain checkpoint"):
        Model.load(plain)
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a model\n")
    with pytest.raises(DataError, match=r"notes\.txt"):
        Model.load(text)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.pt.*empty"):
        Model.load(empty)
    with pytest.raises(DataError, match=r"nothere\.pt.*not found"):
        Model.load(tmp_path / "nothere.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_file_with_code_is_refused(tmp_path, capsys) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"format": "mtbrain-checkpoint", "x": _Evil()}, evil)
    with pytest.raises(DataError, match=r"evil\.pt.*refused"):
        Model.load(evil)
    assert "code ran" not in capsys.readouterr().out
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(DataError, match=r"raw\.pkl"):
        Model.load(raw)
    assert "code ran" not in capsys.readouterr().out


def test_newer_format_version(saved, tmp_path) -> None:
    payload = torch.load(saved, weights_only=True)
    payload["format_version"] = 99
    bad = tmp_path / "future.pt"
    torch.save(payload, bad)
    with pytest.raises(DataError, match=r"future\.pt.*version 99"):
        read_checkpoint(bad)


def test_weights_that_do_not_fit_the_config(tmp_path, tiny_model) -> None:
    model = tiny_model()
    cfg = model.config.to_dict()
    cfg["classes"] = ["a", "b", "c", "d", "e"]
    cfg["no_box_classes"] = []
    path = write_checkpoint(tmp_path / "mismatch.pt", config=cfg, state_dict=model.state_dict())
    with pytest.raises(DataError, match=r"mismatch\.pt.*(fit|match)"):
        Model.load(path)


def test_extra_must_be_plain_data(tmp_path) -> None:
    check_plain({"a": [1, 2.0, "x", None, (torch.zeros(2), torch.Size([2]))], 3: {"b": True}})
    with pytest.raises(TypeError, match=r"extra\['rng'\]\[1\].*numpy"):
        check_plain({"rng": ("MT19937", np.zeros(3))})
    with pytest.raises(TypeError):
        write_checkpoint(tmp_path / "x.pt", config={}, state_dict={}, extra={"f": io.BytesIO()})
    assert not (tmp_path / "x.pt").exists()


def test_checksum_is_stable_and_content_sensitive() -> None:
    sd = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(3)}
    a = build_payload(config={"k": 1}, state_dict=sd)
    b = build_payload(config={"k": 1}, state_dict={k: v.clone() for k, v in sd.items()})
    assert a["checksum"] == b["checksum"]
    c = build_payload(config={"k": 1}, state_dict={"w": sd["w"].reshape(3, 2), "n": sd["n"]})
    assert c["checksum"] != a["checksum"]
    d = build_payload(config={"k": 2}, state_dict=sd)
    assert d["checksum"] != a["checksum"]
