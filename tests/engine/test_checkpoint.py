"""Training checkpoints: model + trainer state in one verified file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtbrain  # noqa: F401  (offline env first)
from mtbrain.engine.checkpoint import load_training_checkpoint, save_training_checkpoint
from mtbrain.errors import DataError
from mtbrain.models import Model

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**kw) -> Model:
    torch.manual_seed(0)
    return Model(backbone="mobilenetv3_small_050", img_size=64, **kw)


def test_round_trip_with_trainer_state(tmp_path) -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(2, 1, 64, 64))["logits"].sum().backward()
    opt.step()
    state = {
        "optimizer": opt.state_dict(),
        "epoch": 2,
        "best_value": np.float64(0.5),
        "history": [{"loss": 1.0, "acc": np.float32(0.25)}],
        "rng": torch.get_rng_state(),
    }
    path = save_training_checkpoint(
        tmp_path / "last.pt", model, trainer_state=state, train_config={"train": {"epochs": 3}}
    )
    fresh = _model()
    torch.nn.init.zeros_(fresh.cls_head.fc.weight)
    got = load_training_checkpoint(path, fresh)
    assert torch.equal(fresh.cls_head.fc.weight, model.cls_head.fc.weight)
    ts = got["trainer_state"]
    assert ts["epoch"] == 2 and type(ts["best_value"]) is float and ts["history"][0]["acc"] == 0.25
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    opt2.load_state_dict(ts["optimizer"])
    assert got["train_config"] == {"train": {"epochs": 3}}
    assert got["model_config"]["backbone"] == "mobilenetv3_small_050"
    # the same file is an ordinary model file
    loaded = Model.load(path)
    assert torch.equal(loaded.cls_head.fc.bias, model.cls_head.fc.bias)
    # without a model, one is built from the file
    assert isinstance(load_training_checkpoint(path)["model"], Model)


def test_model_only_file_and_wrappers(tmp_path) -> None:
    model = _model()
    ema = torch.optim.swa_utils.AveragedModel(model)
    path = save_training_checkpoint(tmp_path / "best.pt", ema)
    got = load_training_checkpoint(path, _model())
    assert got["trainer_state"] is None and got["train_config"] is None


def test_bad_state_is_refused_before_writing(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"trainer_state.*\['rng'\].*ndarray"):
        save_training_checkpoint(tmp_path / "x.pt", _model(), trainer_state={"rng": np.zeros(3)})
    assert not any(tmp_path.iterdir())


def test_weights_that_do_not_fit(tmp_path) -> None:
    path = save_training_checkpoint(tmp_path / "a.pt", _model(classes=["a", "b"]))
    with pytest.raises(DataError, match=r"a\.pt.*do not fit"):
        load_training_checkpoint(path, _model())
