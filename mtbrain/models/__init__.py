"""Models: :class:`Model` (backbone + class head + box head), its loss, weights and files."""

from mtbrain.models.backbones import FIRST_CLASS_BACKBONES, TEST_BACKBONES, Backbone
from mtbrain.models.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from mtbrain.models.heads import box_head_names, register_box_head
from mtbrain.models.losses import LossConfig, MultitaskLoss
from mtbrain.models.model import Model, ModelConfig, Prediction
from mtbrain.models.weights import register_weights, registered_weights

__all__ = [
    "FIRST_CLASS_BACKBONES",
    "TEST_BACKBONES",
    "Backbone",
    "Checkpoint",
    "LossConfig",
    "Model",
    "ModelConfig",
    "MultitaskLoss",
    "Prediction",
    "box_head_names",
    "read_checkpoint",
    "register_box_head",
    "register_weights",
    "registered_weights",
    "write_checkpoint",
]
