"""``mtbrain.Model``: one backbone, a class head and a box head, trained with a masked loss.

Input: ``images`` (B, 1, S, S) float in [0, 1] (8-bit grey, letterboxed to S x S by the data
pipeline or by :meth:`Model.predict`). The model normalises internally with the mean/std in
its config (and repeats grey to RGB for ``in_chans=3`` backbones), so callers never need to
know the backbone's preprocessing.

``forward(images, targets)``:

- training mode with ``targets``: the loss dict (``loss_cls``, ``loss_box_l1``,
  ``loss_box_giou``, ``loss_conf`` and the weighted total ``loss``);
- otherwise: ``logits`` (B, C), ``probs`` (B, C), ``boxes`` (B, 4) xyxy in input pixels,
  ``box_score`` (B,); with ``targets`` in eval mode, the loss terms are added (validation);
  ``tta_flip=True`` averages with the mirrored images (flip test-time augmentation).

``predict`` takes paths, PIL images or arrays and returns :class:`Prediction` records with
the box in **original** image pixels. ``save``/``load`` use one self-describing file
(:mod:`mtbrain.models.checkpoint`): weights, this config (classes, preprocessing), the mtbrain
version, a format marker and a checksum; loading never executes code from the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtbrain.classes import CANONICAL_CLASSES, NO_TUMOR, check_class_names
from mtbrain.errors import ConfigError, DataError
from mtbrain.models.backbones import Backbone, default_norm
from mtbrain.models.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from mtbrain.models.heads import ClassificationHead, build_box_head, mirror_boxes
from mtbrain.models.losses import LossConfig, MultitaskLoss


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`Model` (saved in every checkpoint as JSON).

    Attributes:
        backbone: timm model name.
        classes: Class names, in output order.
        in_chans: Backbone input channels (1 grey, or 3 with grey repeated).
        img_size: Network input size S (images are letterboxed to S x S).
        keep_ratio: Letterbox keeps the aspect ratio (pads) or stretches.
        pretrained: Whether ImageNet weights were loaded at creation (informative after).
        checkpoint_path: Backbone weights file used at creation (informative after).
        drop_rate: Dropout before the class head.
        drop_path_rate: Stochastic depth in the backbone.
        box_head: ``"dense"``, ``"pooled"`` or ``"none"`` (classification only; see
            :mod:`mtbrain.models.heads`).
        box_head_options: Options of the box head (e.g. ``{"channels": 96}``).
        loss: :class:`LossConfig` as a dict.
        mean: Per-channel normalisation mean for pixels in [0, 1] (``None``: backbone's).
        std: Per-channel normalisation std (``None``: backbone's).
        no_box_classes: Classes that have no tumour box (``None``: ``no_tumor`` if present).
        box_threshold: :meth:`Model.predict` gives no box below this box score.
    """

    backbone: str = "tf_efficientnet_lite0"
    classes: list[str] = field(default_factory=lambda: list(CANONICAL_CLASSES))
    in_chans: int = 1
    img_size: int = 256
    keep_ratio: bool = True
    pretrained: bool = False
    checkpoint_path: str | None = None
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    box_head: str = "dense"
    box_head_options: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=lambda: LossConfig().to_dict())
    mean: list[float] | None = None
    std: list[float] | None = None
    no_box_classes: list[str] | None = None
    box_threshold: float = 0.1

    def __post_init__(self) -> None:
        try:
            self.classes = check_class_names(self.classes)
        except ValueError as exc:
            raise ConfigError(f"model classes: {exc}") from None
        if self.in_chans not in (1, 3):
            raise ConfigError(f"model in_chans must be 1 or 3, got {self.in_chans}")
        if not isinstance(self.img_size, int) or self.img_size < 32:
            raise ConfigError(f"model img_size must be an integer >= 32, got {self.img_size!r}")
        for name in ("drop_rate", "drop_path_rate"):
            if not 0 <= float(getattr(self, name)) < 1:
                raise ConfigError(f"model {name} must be in [0, 1)")
        if not 0 <= self.box_threshold <= 1:
            raise ConfigError(f"model box_threshold must be in [0, 1], got {self.box_threshold}")
        if isinstance(self.loss, LossConfig):
            self.loss = self.loss.to_dict()
        self.loss = LossConfig.from_dict(self.loss).to_dict()  # validates, fills defaults
        if self.no_box_classes is None:
            self.no_box_classes = [c for c in self.classes if c == NO_TUMOR]
        unknown = [c for c in self.no_box_classes if c not in self.classes]
        if unknown:
            raise ConfigError(f"model no_box_classes {unknown} are not among the classes")
        if self.checkpoint_path is not None:
            self.checkpoint_path = str(self.checkpoint_path)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                value = [float(v) for v in value]
                if len(value) != self.in_chans:
                    raise ConfigError(f"model {name} needs {self.in_chans} value(s), got {value}")
                setattr(self, name, value)
        if self.std is not None and min(self.std) <= 0:
            raise ConfigError("model std values must be > 0")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Build from a mapping; unknown keys are errors that name the key."""
        from mtbrain.config import from_dict

        return from_dict(cls, dict(values or {}), prefix="model")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    @property
    def loss_config(self) -> LossConfig:
        return LossConfig.from_dict(self.loss)


@dataclass
class Prediction:
    """One image's prediction (a record of the predictions file, see CONTRACT.md).

    Attributes:
        label: Predicted class name (``None`` only with ``error``).
        probs: Probability per class name.
        box: ``[x1, y1, x2, y2]`` in pixels of the original image, or ``None`` when the
            predicted class has no tumour box (``no_tumor``) or ``box_score`` is below the
            model's ``box_threshold``.
        box_score: Confidence that the predicted box is a tumour (sigmoid of the best
            centre logit for the dense head), always given when there is no error.
        image: The input's name when it was a path.
        error: Why the input could not be read (``predict(..., on_error="skip")``).
    """

    label: str | None
    probs: dict[str, float]
    box: list[float] | None
    box_score: float | None
    image: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The predictions-file record."""
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {
            "image": self.image,
            "label": self.label,
            "probs": self.probs,
            "box": self.box,
            "box_score": self.box_score,
        }


def read_input(item: Any) -> tuple[np.ndarray, str | None]:
    """Decode one predict input into an H x W uint8 array (and its name if a path).

    Paths are image files, or single-frame DICOM files (:mod:`mtbrain.data.medical`; a
    NIfTI volume or a multi-frame DICOM holds many images: pass its slices or frames from
    :func:`mtbrain.data.medical.read_medical`, as ``mtbrain predict`` does).
    """
    from PIL import Image

    from mtbrain.data.image_io import read_gray, to_gray

    if isinstance(item, str | Path):
        from mtbrain.data.image_io import is_image_name
        from mtbrain.data.medical import is_dicom_file, is_nifti_name, read_dicom

        hint = "(mtbrain.data.medical.read_medical gives them; mtbrain predict reads them)"
        if is_nifti_name(item):
            raise DataError(f"a NIfTI volume holds many slices: predict its slices {hint}",
                            path=item, kind="bad_image")
        if is_image_name(item) or not is_dicom_file(item):
            return read_gray(item), str(item)
        frames = read_dicom(item)
        if len(frames) != 1:
            raise DataError(f"a DICOM file of {len(frames)} frames: predict its frames {hint}",
                            path=item, kind="bad_image")
        return frames[0], str(item)
    if isinstance(item, Image.Image):
        return to_gray(item), None
    if isinstance(item, np.ndarray):
        arr = item
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim == 2 and arr.dtype == np.uint8:
            return np.ascontiguousarray(arr), None
        if arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype == np.uint8:
            return to_gray(Image.fromarray(np.ascontiguousarray(arr))), None
        if arr.ndim == 2 and arr.dtype in (np.uint16, np.int32, np.float32, np.float64):
            return to_gray(Image.fromarray(arr.astype(np.float32))), None
        raise ValueError(
            f"cannot predict on an array of shape {arr.shape} and dtype {arr.dtype}: "
            f"use H x W (uint8, uint16 or float) or H x W x 3/4 uint8"
        )
    raise TypeError(
        f"cannot predict on a {type(item).__name__}: give a path, a PIL image or a "
        f"numpy array (or a list of those)"
    )


PRECISIONS = ("fp32", "bf16")
"""Inference precisions of :meth:`Model.predict`."""

# (probs (B, C), boxes (B, 4) input pixels, box_score (B,)) of a (B, 1, S, S) float32 batch
RunBatch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


# -- prediction shared by every runtime ---------------------------------------------------


def prepare_gray(config: ModelConfig, gray: np.ndarray) -> tuple[np.ndarray, Any]:
    """Letterbox an H x W uint8 image to the network input: ((1, S, S) float32, geometry).

    Every runtime (PyTorch, ONNX) feeds the network through this.
    """
    from mtbrain.data.dataset import preprocess

    img, geo = preprocess(gray, config.img_size, keep_ratio=config.keep_ratio)
    return (img.astype(np.float32) / np.float32(255.0))[None], geo


def keeps_box(config: ModelConfig, label: str, box_score: float, threshold: float) -> bool:
    """Whether a prediction of class ``label`` shows its box: the model has a box head, the
    class has tumour boxes and ``box_score`` reaches ``threshold``."""
    return (config.box_head != "none" and label not in (config.no_box_classes or [])
            and box_score >= threshold)


def predict_with(
    config: ModelConfig,
    run: RunBatch,
    inputs: Any,
    *,
    batch_size: int = 32,
    box_threshold: float | None = None,
    on_error: str = "raise",
) -> list[Prediction]:
    """``Model.predict`` for any runtime: decode, letterbox, ``run`` per batch, map back.

    Args:
        config: The model config (classes, img_size, keep_ratio, thresholds).
        run: (B, 1, S, S) float32 -> (probs (B, C), boxes (B, 4) input pixels, scores (B,)).
        inputs: A path, a PIL image, an H x W / H x W x 3 numpy array, or a list of those.
        batch_size: Images per ``run`` call.
        box_threshold: Override of the config's ``box_threshold``.
        on_error: ``"raise"`` or ``"skip"`` (an unreadable input gets an error record).
    """
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    items = list(inputs) if isinstance(inputs, list | tuple) else [inputs]
    thr = config.box_threshold if box_threshold is None else float(box_threshold)
    results: list[Prediction | None] = [None] * len(items)
    prepared: list[tuple[int, np.ndarray, Any, str | None]] = []
    for i, item in enumerate(items):
        try:
            gray, name = read_input(item)
            array, geo = prepare_gray(config, gray)
        except (DataError, ValueError, TypeError) as exc:
            if on_error == "raise":
                raise
            name = str(item) if isinstance(item, str | Path) else None
            results[i] = Prediction(None, {}, None, None, image=name, error=str(exc))
            continue
        prepared.append((i, array, geo, name))
    for start in range(0, len(prepared), batch_size):
        chunk = prepared[start : start + batch_size]
        probs, boxes, scores = run(np.stack([c[1] for c in chunk]).astype(np.float32))
        boxes = np.asarray(boxes, dtype=np.float64)
        for (i, _, geo, name), p, b, s in zip(chunk, probs, boxes, scores, strict=True):
            label = config.classes[int(np.argmax(p))]
            keep = keeps_box(config, label, float(s), thr)
            box = [float(v) for v in geo.inverse(b[None])[0]] if keep else None
            results[i] = Prediction(
                label=label,
                probs={c: float(v) for c, v in zip(config.classes, p, strict=True)},
                box=box,
                box_score=float(s),
                image=name,
            )
    return [r for r in results if r is not None]


class Model(nn.Module):
    """Multitask model: class and tumour box from one shared timm backbone.

    Args:
        backbone: Any timm model name; first-class ``tf_efficientnet_lite0`` (offline
            pretrained weights), ``convnext_tiny``, ``resnet50``.
        num_classes: Number of classes (names ``class_0``...) when ``classes`` is not given.
        classes: Class names in output order (default: the canonical 4 classes).
        in_chans: 1 (grey stem, pretrained first conv summed over RGB) or 3.
        img_size: Network input size S.
        keep_ratio: Letterbox keeps the aspect ratio (pads) or stretches.
        pretrained: Load ImageNet weights (offline for ``tf_efficientnet_lite0/1/2``; see
            :mod:`mtbrain.models.weights`).
        checkpoint_path: Local backbone weights (timm state dict or mtbrain checkpoint).
        drop_rate: Dropout before the class head.
        drop_path_rate: Stochastic depth in the backbone.
        box_head: ``"dense"`` (centre-based, default), ``"pooled"`` or ``"none"``
            (classification only: no box head, no box loss, no boxes predicted).
        box_head_options: Options of the box head.
        loss: :class:`LossConfig` or a dict of its fields.
        mean: Normalisation mean override (one value per ``in_chans``).
        std: Normalisation std override.
        no_box_classes: Classes without a tumour box (default ``["no_tumor"]`` if present).
        box_threshold: :meth:`predict` gives no box below this score.
    """

    def __init__(
        self,
        *,
        backbone: str = "tf_efficientnet_lite0",
        num_classes: int | None = None,
        classes: Sequence[str] | None = None,
        in_chans: int = 1,
        img_size: int = 256,
        keep_ratio: bool = True,
        pretrained: bool = False,
        checkpoint_path: str | Path | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        box_head: str = "dense",
        box_head_options: Mapping[str, Any] | None = None,
        loss: LossConfig | Mapping[str, Any] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        no_box_classes: Sequence[str] | None = None,
        box_threshold: float = 0.1,
    ) -> None:
        if classes is None:
            if num_classes is None:
                classes = list(CANONICAL_CLASSES)
            else:
                if num_classes < 1:
                    raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
                classes = [f"class_{i}" for i in range(num_classes)]
        elif num_classes is not None and num_classes != len(classes):
            raise ConfigError(f"num_classes={num_classes} but {len(classes)} class names given")
        if isinstance(loss, LossConfig):
            loss = loss.to_dict()
        cfg = ModelConfig(
            backbone=backbone,
            classes=list(classes),
            in_chans=in_chans,
            img_size=img_size,
            keep_ratio=keep_ratio,
            pretrained=pretrained,
            checkpoint_path=str(checkpoint_path) if checkpoint_path is not None else None,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            box_head=box_head,
            box_head_options=dict(box_head_options or {}),
            loss=dict(loss) if loss is not None else LossConfig().to_dict(),
            mean=list(mean) if mean is not None else None,
            std=list(std) if std is not None else None,
            no_box_classes=list(no_box_classes) if no_box_classes is not None else None,
            box_threshold=box_threshold,
        )
        super().__init__()
        self._build(cfg, load_weights=True)

    # -- construction --------------------------------------------------------------------

    def _build(self, cfg: ModelConfig, *, load_weights: bool) -> None:
        self.backbone = Backbone(
            cfg.backbone,
            in_chans=cfg.in_chans,
            pretrained=cfg.pretrained and load_weights and cfg.checkpoint_path is None,
            checkpoint_path=cfg.checkpoint_path if load_weights else None,
            drop_path_rate=cfg.drop_path_rate,
        )
        if cfg.mean is None or cfg.std is None:
            mean, std = default_norm(self.backbone)
            cfg.mean = cfg.mean if cfg.mean is not None else mean
            cfg.std = cfg.std if cfg.std is not None else std
        self.config = cfg
        self.cls_head = ClassificationHead(
            self.backbone.num_features, len(cfg.classes), drop_rate=cfg.drop_rate
        )
        self.box_head = build_box_head(cfg.box_head, self.backbone, cfg.box_head_options)
        self.criterion = MultitaskLoss(
            cfg.loss_config,
            num_classes=len(cfg.classes),
            no_box_indices=[cfg.classes.index(c) for c in cfg.no_box_classes or []],
        )
        self.register_buffer(
            "pixel_mean", torch.tensor(cfg.mean).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer("pixel_std", torch.tensor(cfg.std).view(1, -1, 1, 1), persistent=False)
        # Channels-last weights from the start (built, loaded or trained alike): convolutions
        # run about twice as fast on CPU (oneDNN) as with contiguous weights; predict() makes
        # its inputs channels-last too.
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(
        cls, config: ModelConfig | Mapping[str, Any], *, load_weights: bool = True
    ) -> Model:
        """Build a model from a config; ``load_weights=False`` skips pretrained/file weights."""
        cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        cfg = ModelConfig.from_dict(cfg.to_dict())  # a private copy
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model._build(cfg, load_weights=load_weights)
        return model

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    @property
    def img_size(self) -> int:
        return self.config.img_size

    # -- forward -------------------------------------------------------------------------

    def normalize(self, images: Tensor) -> Tensor:
        """Grey images in [0, 1] -> backbone input (channels repeated, mean/std applied)."""
        if images.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        if images.shape[1] != self.config.in_chans:
            if images.shape[1] == 1:
                images = images.expand(-1, self.config.in_chans, -1, -1)
            elif self.config.in_chans == 1 and images.shape[1] == 3:
                images = images.mean(dim=1, keepdim=True)
            else:
                raise ValueError(
                    f"images have {images.shape[1]} channels; the model takes 1 "
                    f"(grey) or {self.config.in_chans}"
                )
        return (images.float() - self.pixel_mean) / self.pixel_std

    def forward(
        self,
        images: Tensor,
        targets: Mapping[str, Tensor] | None = None,
        *,
        tta_flip: bool = False,
    ) -> dict[str, Tensor]:
        """Losses (training with targets) or predictions (+ losses when targets are given).

        With ``tta_flip`` (eval only) the mirrored images go through the network in the same
        batch; their class logits and raw box-head outputs, mirrored back
        (:meth:`BoxHead.mirror <mtbrain.models.heads.BoxHead.mirror>`), are averaged with
        those of the images before one box is decoded: horizontal-flip test-time
        augmentation (brains are roughly left-right symmetric). Losses, when asked for,
        are those of the unmirrored images.
        """
        image_hw = (int(images.shape[-2]), int(images.shape[-1]))
        n = images.shape[0]
        tta = tta_flip and not self.training
        batch = torch.cat([images, images.flip(-1)]) if tta else images
        feats = self.backbone(self.normalize(batch))
        all_logits = self.cls_head(feats.pooled)
        all_out = self.box_head(feats, image_hw)
        logits, box_out = all_logits[:n], {k: v[:n] for k, v in all_out.items()}
        losses: dict[str, Tensor] = {}
        if targets is not None:
            losses = self.criterion(logits, box_out, self.box_head, targets, image_hw)
            if self.training:
                return losses
        if tta:
            flip_out = {k: v[n:] for k, v in all_out.items()}
            mirrored = self.box_head.mirror(flip_out, image_hw)
            averaged = {k: (box_out[k].float() + m.float()) / 2 for k, m in mirrored.items()}
            logits = (logits.float() + all_logits[n:].float()) / 2
            boxes, score = self.box_head.decode(averaged, image_hw)
            # a refining stage sees each view's own features: refine the box in both, average
            width = image_hw[1]
            flipped = self.box_head.refine_boxes(flip_out, mirror_boxes(boxes, width), image_hw)
            boxes = (self.box_head.refine_boxes(box_out, boxes, image_hw)
                     + mirror_boxes(flipped, width)) / 2
        else:
            boxes, score = self.box_head.decode(box_out, image_hw)
            boxes = self.box_head.refine_boxes(box_out, boxes, image_hw)
        logits = logits.float()
        return {
            "logits": logits,
            "probs": logits.softmax(dim=1),
            "boxes": boxes,
            "box_score": score,
            **losses,
        }

    # -- prediction ----------------------------------------------------------------------

    def keeps_box(self, label: str, box_score: float, threshold: float | None = None) -> bool:
        """Whether a prediction of class ``label`` shows its box (see :func:`keeps_box`);
        ``threshold`` defaults to the config's ``box_threshold``."""
        thr = self.config.box_threshold if threshold is None else float(threshold)
        return keeps_box(self.config, label, box_score, thr)

    def prepare(self, gray: np.ndarray) -> tuple[Tensor, Any]:
        """Letterbox an H x W uint8 image to the model's input; returns (1, S, S) and geometry."""
        array, geo = prepare_gray(self.config, gray)
        return torch.from_numpy(array), geo

    def predict(
        self,
        inputs: Any,
        *,
        batch_size: int = 32,
        box_threshold: float | None = None,
        on_error: str = "raise",
        tta_flip: bool = False,
        precision: str = "fp32",
    ) -> list[Prediction]:
        """Predict class, probabilities and tumour box for images.

        Args:
            inputs: A path, a PIL image, an H x W / H x W x 3 numpy array, or a list of those.
            batch_size: Images per forward pass.
            box_threshold: Override of the config's ``box_threshold``.
            on_error: ``"raise"`` (default) or ``"skip"``: an unreadable input gets a
                :class:`Prediction` with ``error`` set instead of stopping the run.
            tta_flip: Average with the prediction of the mirrored image (see :meth:`forward`).
            precision: ``"fp32"`` or ``"bf16"`` (autocast: the network in bfloat16, the box
                decoding and the outputs in float32). Whether bf16 is faster depends on the
                hardware; measure it with ``mtbrain profile``.

        Returns:
            One :class:`Prediction` per input, boxes in original image pixels.
        """
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        device = next(self.parameters()).device

        def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            images = torch.from_numpy(batch).to(device).contiguous(
                memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16,
                                enabled=precision == "bf16"):
                out = self(images, tta_flip=tta_flip)
            return (out["probs"].float().cpu().numpy(), out["boxes"].float().cpu().numpy(),
                    out["box_score"].float().cpu().numpy())

        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return predict_with(self.config, run, inputs, batch_size=batch_size,
                                    box_threshold=box_threshold, on_error=on_error)
        finally:
            self.train(was_training)

    # -- files ---------------------------------------------------------------------------

    def save(self, path: str | Path, *, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the model (weights + config) to one checkpoint file, atomically.

        ``extra`` (tensors and plain data) is stored beside it, for trainer state.
        """
        return write_checkpoint(
            path, config=self.config.to_dict(), state_dict=self.state_dict(), extra=extra
        )

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Model:
        """Build a model from a verified :class:`Checkpoint` (no pretrained/file loading)."""
        where = str(ckpt.path) if ckpt.path is not None else "<checkpoint>"
        try:
            cfg = ModelConfig.from_dict(ckpt.config)
        except (ConfigError, TypeError) as exc:
            raise DataError(f"checkpoint config is invalid: {exc}", path=where) from None
        model = cls.from_config(cfg, load_weights=False)
        result = model.load_state_dict(ckpt.state_dict, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise DataError(
                f"checkpoint weights do not match its config: missing "
                f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}",
                path=where,
            )
        return model

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Load a model saved with :meth:`save` (verified; never executes code from the file).

        The model is returned in eval mode (call ``.train()`` to fine-tune it).

        Raises:
            DataError: naming the file when it is missing, truncated, tampered with or foreign.
        """
        try:
            return cls.from_checkpoint(read_checkpoint(path)).eval()
        except RuntimeError as exc:  # size mismatch inside load_state_dict
            raise DataError(
                f"checkpoint weights do not fit its config: {str(exc)[:200]}", path=path
            ) from None
