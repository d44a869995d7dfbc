"""Heads: a classifier on pooled features and box heads (dense or pooled), by registry.

Classification: dropout + linear on the pooled last-stage features.

Box heads all answer the same three calls (:class:`BoxHead`): ``forward`` (raw outputs),
``decode`` (one box per image in input pixels + its score) and ``losses`` (their masked
terms). They are built by name through :func:`build_box_head`:

``dense`` (default) — centre-based, CenterNet/FCOS-like, on spatial features. The stride-16
    and stride-32 maps are fused FPN-style (1x1 laterals, upsample, add), refined by two
    3x3 conv-BN-SiLU layers (64 channels by default), and each cell of the stride-16 grid
    predicts a centre logit and FCOS distances ``(l, t, r, b) = softplus(raw) * stride``
    from the cell centre (so the box is continuous, not quantised to the grid). With
    ``out_stride=8`` the stride-8 map is added (lateral + upsampled result + one
    depthwise-separable conv) and the grid is twice as fine. Decoding takes the cell with
    the highest centre logit and, by default (``decode="weighted"``), averages the boxes of
    the cells of its 3x3 neighbourhood whose score is at least half the best, weighted by
    score. Training targets and the box assignment rule: :mod:`mtbrain.models.losses`.

    Measured (tf_efficientnet_lite0, 256 px, batch 32, 2 CPU cores, channels_last fp32):
    the head adds about 0.06-0.09 s (stride 16) or 0.15 s (stride 8) to a ~4 s training
    step (2-4 %). On the real box set (validation: 15 % of exact-duplicate groups, so
    near-duplicates may leak), after 100 identical training steps mean IoU was 0.68
    (stride 16), 0.66 (stride 8) and 0.39 (``pooled``); after 300 steps (~15 min) 0.765
    (stride 16; IoU >= 0.5: 0.93) and 0.758 (stride 8; 0.94). On small synthetic tumours at
    128 px stride 8 wins clearly (0.69 vs 0.59; pooled 0.34). Stride 16 stays the default.

    With ``roi_refine=True`` a second stage refines the decoded box (Cascade R-CNN-like):
    RoIAlign pools a stride-8 map (stride-8 backbone lateral + the upsampled head features)
    inside the box widened by 25 %, and a conv + MLP predicts corrections of its four sides
    in units of its width and height. It is trained on the decoded box of each image
    (detached, as at test time) and on a jittered true box; with flip TTA each view refines
    the jointly decoded box with its own features and the two results are averaged.
    Measured: see docs/benchmarks.md ("A box-refining second stage").

    The image-level box confidence is the **sigmoid of the best centre logit**: it is the
    score of the very box that is returned (as in a detector, and as the ``box_score`` of
    the predictions file asks: "confidence that the box is a tumour"), it is trained by the
    heatmap loss on every box-known image (no-tumour images push every cell down), and it
    ranks boxes for mAP. A separate pooled logit would be a second opinion that can
    disagree with the box it is attached to.

``pooled`` — the simple baseline: dropout + linear on the pooled features to
    ``sigmoid(cx, cy, w, h)`` (normalised) and one confidence logit.

``none`` — no box head: a classification-only model (zero box loss, never a box).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from mtbrain.errors import ConfigError
from mtbrain.models.backbones import Backbone, BackboneFeatures
from mtbrain.models.losses import (
    LossConfig,
    cell_centres,
    dense_box_losses,
    matched_box_losses,
    pooled_box_losses,
    zero_like_graph,
)

_BOX_HEADS: dict[str, type[BoxHead]] = {}


def register_box_head(name: str) -> Callable[[type[BoxHead]], type[BoxHead]]:
    """Register a :class:`BoxHead` subclass under ``name`` (``box_head=name``)."""

    def deco(cls: type[BoxHead]) -> type[BoxHead]:
        _BOX_HEADS[name] = cls
        cls.kind = name
        return cls

    return deco


def box_head_names() -> list[str]:
    """Names accepted by ``box_head=``."""
    return sorted(_BOX_HEADS)


def check_box_head(name: str, options: Mapping[str, Any] | None = None) -> None:
    """Check a box head's name and options without building it (at config read).

    Raises:
        ConfigError: for an unknown head name, an unknown option or a bad option value,
            naming it.
    """
    if name not in _BOX_HEADS:
        raise ConfigError(f"unknown box_head {name!r}; choose one of {box_head_names()}")
    cls = _BOX_HEADS[name]
    options = dict(options or {})
    unknown = sorted(set(options) - set(cls.OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for box_head {name!r}; known: {sorted(cls.OPTIONS)}"
        )
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if k in cls.OPTIONS}
    cls.check_options({**defaults, **options})


def build_box_head(
    name: str, backbone: Backbone, options: Mapping[str, Any] | None = None
) -> BoxHead:
    """Build the box head ``name`` for ``backbone`` with its options.

    Raises:
        ConfigError: as :func:`check_box_head`.
    """
    check_box_head(name, options)
    return _BOX_HEADS[name](backbone, **dict(options or {}))


class ClassificationHead(nn.Module):
    """Dropout + linear on pooled features."""

    def __init__(self, in_features: int, num_classes: int, *, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.fc(self.drop(pooled))


class BoxHead(nn.Module):
    """Interface of the box heads.

    ``OPTIONS`` lists the keyword options the head accepts (``ModelConfig.box_head_options``).
    """

    kind: str = ""
    OPTIONS: tuple[str, ...] = ()

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` for a bad value in ``options`` (every option, defaults
        filled in), before anything is built; the rules of the head's arguments."""

    def forward(self, feats: BackboneFeatures, image_hw: tuple[int, int]) -> dict[str, Tensor]:
        raise NotImplementedError

    def decode(self, out: Mapping[str, Tensor], image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``(boxes (B, 4) xyxy input pixels clipped to the image, score (B,) in [0, 1])``."""
        raise NotImplementedError

    def mirror(self, out: Mapping[str, Tensor], image_hw: tuple[int, int]) -> dict[str, Tensor]:
        """The raw outputs of a mirrored image, mirrored back into the unmirrored image's
        frame, so that they can be averaged with its own (flip test-time augmentation)."""
        raise NotImplementedError

    def refine_boxes(
        self, out: Mapping[str, Tensor], boxes: Tensor, image_hw: tuple[int, int]
    ) -> Tensor:
        """Decoded boxes (B, 4) -> refined boxes (B, 4), from the same image's outputs; the
        identity for heads without a refining stage."""
        return boxes

    def losses(
        self,
        out: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        cfg: LossConfig,
        image_hw: tuple[int, int],
    ) -> dict[str, Tensor]:
        """``box_l1``, ``box_giou`` and ``conf`` (unweighted, float32)."""
        raise NotImplementedError


def _clip_boxes(boxes: Tensor, image_hw: tuple[int, int]) -> Tensor:
    h, w = image_hw
    x = boxes[..., 0::2].clamp(0, w)
    y = boxes[..., 1::2].clamp(0, h)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def ltrb_to_boxes(ltrb: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """FCOS distances (B, 4, H, W) in pixels -> boxes (B, H, W, 4) xyxy around the cell centres."""
    xs, ys, _, _ = cell_centres((ltrb.shape[2], ltrb.shape[3]), image_hw, ltrb.device)
    cx = xs[None, None, :]
    cy = ys[None, :, None]
    return torch.stack([cx - ltrb[:, 0], cy - ltrb[:, 1], cx + ltrb[:, 2], cy + ltrb[:, 3]], dim=-1)


def decode_dense(
    centre: Tensor,
    cell_boxes: Tensor,
    image_hw: tuple[int, int],
    *,
    mode: str = "weighted",
    min_ratio: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """One box per image from a centre map and per-cell boxes.

    Args:
        centre: (B, H, W) centre logits.
        cell_boxes: (B, H, W, 4) xyxy boxes in input pixels.
        mode: ``"best"``: the box of the best cell. ``"weighted"``: the score-weighted mean
            of the boxes of the best cell's 3x3 neighbourhood, counting cells whose score is
            at least ``min_ratio`` times the best.

    Returns:
        ``(boxes (B, 4), score (B,))``: clipped to the image; score = sigmoid(best logit).
    """
    centre = centre.float()
    cell_boxes = cell_boxes.float()
    b, gh, gw = centre.shape
    prob = torch.sigmoid(centre)
    best = prob.flatten(1).argmax(dim=1)
    score = prob.flatten(1).gather(1, best[:, None]).squeeze(1)
    if mode == "best":
        box = cell_boxes.flatten(1, 2)[torch.arange(b, device=centre.device), best]
        return _clip_boxes(box, image_hw), score
    if mode != "weighted":
        raise ConfigError(f"unknown decode mode {mode!r}; choose 'best' or 'weighted'")
    bi, bj = best // gw, best % gw
    off = torch.tensor([-1, 0, 1], device=centre.device)
    ii = (bi[:, None, None] + off[None, :, None]).expand(b, 3, 3)
    jj = (bj[:, None, None] + off[None, None, :]).expand(b, 3, 3)
    inside = (ii >= 0) & (ii < gh) & (jj >= 0) & (jj < gw)
    flat = (ii.clamp(0, gh - 1) * gw + jj.clamp(0, gw - 1)).reshape(b, 9)
    p = prob.flatten(1).gather(1, flat) * inside.reshape(b, 9)
    p = torch.where(p >= min_ratio * score[:, None], p, torch.zeros_like(p))
    boxes = cell_boxes.flatten(1, 2).gather(1, flat[..., None].expand(-1, -1, 4))
    box = (boxes * p[..., None]).sum(dim=1) / p.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return _clip_boxes(box, image_hw), score


def mirror_boxes(boxes: Tensor, width: int) -> Tensor:
    """Mirror xyxy boxes (..., 4) left-right in an image ``width`` pixels wide."""
    return torch.stack(
        [width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3]], dim=-1
    )


def _conv_bn_act(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.SiLU(inplace=True),
    )


@register_box_head("dense")
class DenseBoxHead(BoxHead):
    """Centre-based dense box head on fused multi-stride features (see module doc).

    The keyword arguments are the head's options (``model.box_head_options`` in a config).

    Args:
        backbone: The backbone whose feature maps the head reads.
        channels: Width of the fused features (64).
        num_convs: Number of 3x3 conv-BN-SiLU layers on the fused stride-16 map (2).
        out_stride: 16 (default): predict on the stride-16 grid. 8: add the stride-8 map
            (lateral + upsampled stride-16 result, one depthwise-separable conv) and predict
            on the finer grid, for more precise boxes of small tumours.
        decode: ``"weighted"`` (default) or ``"best"``.
        prior: Initial centre probability of every cell (0.01), for a stable start.
        init_size: Initial box half-size in strides (2.0).
        roi_refine: Add a second stage that refines the decoded box (False): the features of
            a stride-8 map (stride-8 backbone lateral + the upsampled head features) inside
            the box, widened by ``ROI_CONTEXT``, are pooled to ``roi_size`` x ``roi_size``
            (RoIAlign) and a small conv + MLP predicts corrections of the four sides in units
            of the box's width and height (zero at the start). Trained on the head's own
            decoded box (detached) and a jittered copy of a ground-truth box per image
            (L1 + GIoU against the true box it overlaps most), as in Cascade R-CNN.
        roi_size: RoIAlign output side (7).
    """

    OPTIONS = ("channels", "num_convs", "out_stride", "decode", "prior", "init_size",
               "roi_refine", "roi_size")
    ROI_CONTEXT = 1.25  # the pooled region: the box widened by this factor about its centre
    JITTER_SHIFT = 0.1  # training proposals: centre shift, std in box sides
    JITTER_SCALE = 0.15  # and log-size change, std

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        if options["decode"] not in ("weighted", "best"):
            raise ConfigError(f"dense box head: box_head_options.decode={options['decode']!r}, "
                              "choose 'weighted' or 'best'")
        if options["out_stride"] not in (8, 16):
            raise ConfigError(f"dense box head: box_head_options.out_stride="
                              f"{options['out_stride']!r}, choose 16 or 8")
        for name, kind, rule, ok in (
            ("channels", int, "an integer >= 1", lambda v: v >= 1),
            ("num_convs", int, "an integer >= 0", lambda v: v >= 0),
            ("prior", int | float, "in (0, 1)", lambda v: 0 < v < 1),
            ("init_size", int | float, "> 0", lambda v: v > 0),
            ("roi_size", int, "an integer >= 1", lambda v: v >= 1),
        ):
            value = options[name]
            if isinstance(value, bool) or not isinstance(value, kind) or not ok(value):
                raise ConfigError(
                    f"dense box head: box_head_options.{name}={value!r}, must be {rule}")
        if not isinstance(options["roi_refine"], bool):
            raise ConfigError("dense box head: box_head_options.roi_refine="
                              f"{options['roi_refine']!r}, must be true or false")

    def __init__(
        self,
        backbone: Backbone,
        *,
        channels: int = 64,
        num_convs: int = 2,
        out_stride: int = 16,
        decode: str = "weighted",
        prior: float = 0.01,
        init_size: float = 2.0,
        roi_refine: bool = False,
        roi_size: int = 7,
    ) -> None:
        super().__init__()
        c8, c16, c32 = backbone.level_channels[-3:]
        self.decode_mode = decode
        self.out_stride = out_stride
        self.lat32 = nn.Conv2d(c32, channels, 1)
        self.lat16 = nn.Conv2d(c16, channels, 1)
        self.tower = nn.Sequential(*[_conv_bn_act(channels, channels) for _ in range(num_convs)])
        if out_stride == 8:
            self.lat8 = nn.Conv2d(c8, channels, 1)
            self.refine = nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
                nn.BatchNorm2d(channels),
                nn.SiLU(inplace=True),
                nn.Conv2d(channels, channels, 1, bias=False),
                nn.BatchNorm2d(channels),
                nn.SiLU(inplace=True),
            )
        self.centre = nn.Conv2d(channels, 1, 3, padding=1)
        self.ltrb = nn.Conv2d(channels, 4, 3, padding=1)
        nn.init.normal_(self.centre.weight, std=0.01)
        nn.init.constant_(self.centre.bias, -math.log((1 - prior) / prior))
        nn.init.normal_(self.ltrb.weight, std=0.01)
        # softplus^-1(init_size * 16 / out_stride): the same initial size in pixels
        nn.init.constant_(self.ltrb.bias, math.log(math.expm1(init_size * 16 / out_stride)))
        self.roi_refine = bool(roi_refine)
        self.roi_size = int(roi_size)
        if self.roi_refine:
            self.roi_lat8 = nn.Conv2d(c8, channels, 1)
            self.roi_head = nn.Sequential(
                _conv_bn_act(channels, channels),
                nn.Flatten(),
                nn.Linear(channels * self.roi_size**2, 256),
                nn.SiLU(inplace=True),
                nn.Linear(256, 4),
            )
            self.reset_refiner()

    def reset_refiner(self) -> None:
        """Re-initialise the refining stage's layers after ``roi_map`` (the conv + MLP): new
        random weights, zero corrections, as at construction (used by the post-training
        refit, :mod:`mtbrain.engine.refit`)."""
        if not self.roi_refine:
            raise ConfigError("this dense box head has no refining stage (roi_refine=false)")
        for module in self.roi_head.modules():
            if isinstance(module, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
                module.reset_parameters()
        nn.init.zeros_(self.roi_head[-1].weight)
        nn.init.zeros_(self.roi_head[-1].bias)

    @staticmethod
    def _up_add(lateral: Tensor, top: Tensor) -> Tensor:
        if top.shape[-2:] != lateral.shape[-2:]:
            top = F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
        return lateral + top

    def forward(self, feats: BackboneFeatures, image_hw: tuple[int, int]) -> dict[str, Tensor]:
        c8, c16, c32 = feats.maps[-3:]
        x = self.tower(self._up_add(self.lat16(c16), self.lat32(c32)))
        if self.out_stride == 8:
            x = self.refine(self._up_add(self.lat8(c8), x))
        centre = self.centre(x).float()[:, 0]
        stride = torch.tensor(
            [image_hw[1] / x.shape[3], image_hw[0] / x.shape[2]] * 2,
            device=x.device,
            dtype=torch.float32,
        )
        ltrb = F.softplus(self.ltrb(x).float()) * stride[None, :, None, None]
        out = {"centre": centre, "cell_boxes": ltrb_to_boxes(ltrb, image_hw)}
        if self.roi_refine:
            out["roi_map"] = self._up_add(self.roi_lat8(c8), x)
        return out

    def _refine_rois(self, roi_map: Tensor, boxes: Tensor, batch_idx: Tensor,
                      image_hw: tuple[int, int]) -> Tensor:
        """Boxes (N, 4) of the images ``batch_idx`` (N,) -> refined boxes (N, 4)."""
        boxes = boxes.float()
        wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)
        ctr = (boxes[:, :2] + boxes[:, 2:]) / 2
        half = wh * (self.ROI_CONTEXT / 2)
        rois = torch.cat([batch_idx[:, None].to(boxes), ctr - half, ctr + half], dim=1)
        pooled = roi_align(roi_map.float(), rois.detach(), self.roi_size,
                           spatial_scale=roi_map.shape[-1] / image_hw[1],
                           sampling_ratio=2, aligned=True)
        delta = self.roi_head(pooled.to(roi_map.dtype)).float()
        return boxes + delta * torch.cat([wh, wh], dim=1)

    def refine_boxes(
        self, out: Mapping[str, Tensor], boxes: Tensor, image_hw: tuple[int, int]
    ) -> Tensor:
        if not self.roi_refine:
            return boxes
        idx = torch.arange(boxes.shape[0], device=boxes.device)
        return _clip_boxes(self._refine_rois(out["roi_map"], boxes, idx, image_hw), image_hw)

    def _refine_losses(self, out: Mapping[str, Tensor], targets: Mapping[str, Tensor],
                       image_hw: tuple[int, int]) -> dict[str, Tensor]:
        """The refining stage's losses on the head's own decoded boxes (detached)."""
        with torch.no_grad():
            decoded, _ = self.decode(out, image_hw)
        return self.refine_losses(out["roi_map"], decoded, targets, image_hw)

    def refine_losses(self, roi_map: Tensor, decoded: Tensor, targets: Mapping[str, Tensor],
                      image_hw: tuple[int, int]) -> dict[str, Tensor]:
        """``refine_l1`` / ``refine_giou`` of the refining stage on the samples with boxes.

        Two proposals per such sample: its decoded box and a jittered copy of one of its
        true boxes (a random one); each refined box is scored against the true box it
        overlaps most (:func:`~mtbrain.models.losses.matched_box_losses`).

        Args:
            roi_map: (B, C, H, W) the ``roi_map`` output of :meth:`forward`.
            decoded: (B, 4) the decoded boxes of the same images (no gradient flows to them).
            targets: ``boxes``, ``box_valid`` and ``box_mask`` as from
                :func:`mtbrain.data.dataset.collate`.
            image_hw: The network input's height and width.
        """
        box_idx = targets["box_mask"].nonzero(as_tuple=True)[0]
        if box_idx.numel() == 0:  # exact zeros reaching every parameter of the stage (DDP)
            zero = zero_like_graph(roi_map) + sum(
                zero_like_graph(p) for p in self.roi_head.parameters())
            return {"refine_l1": zero, "refine_giou": zero}
        gts = targets["boxes"].index_select(0, box_idx).float()
        valid = targets["box_valid"].index_select(0, box_idx)
        # a random true box per image (valid ones only), moved and resized at random
        pick = torch.multinomial(valid.float(), 1).squeeze(1)
        gt = gts[torch.arange(gts.shape[0], device=gts.device), pick]
        wh = (gt[:, 2:] - gt[:, :2]).clamp(min=1.0)
        ctr = (gt[:, :2] + gt[:, 2:]) / 2 + torch.randn_like(wh) * self.JITTER_SHIFT * wh
        wh = wh * torch.exp(torch.randn_like(wh) * self.JITTER_SCALE)
        jittered = _clip_boxes(torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1), image_hw)
        proposals = torch.cat([decoded.detach().float().index_select(0, box_idx), jittered])
        idx = torch.cat([box_idx, box_idx])
        refined = self._refine_rois(roi_map, proposals, idx, image_hw)
        l1, giou = matched_box_losses(refined, torch.cat([gts, gts]),
                                      torch.cat([valid, valid]), image_hw)
        return {"refine_l1": l1, "refine_giou": giou}

    def decode(self, out: Mapping[str, Tensor], image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        return decode_dense(out["centre"], out["cell_boxes"], image_hw, mode=self.decode_mode)

    def mirror(self, out: Mapping[str, Tensor], image_hw: tuple[int, int]) -> dict[str, Tensor]:
        return {"centre": out["centre"].flip(-1),
                "cell_boxes": mirror_boxes(out["cell_boxes"].flip(2), image_hw[1])}

    def losses(
        self,
        out: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        cfg: LossConfig,
        image_hw: tuple[int, int],
    ) -> dict[str, Tensor]:
        losses = dense_box_losses(out["centre"], out["cell_boxes"], targets, cfg, image_hw)
        if self.roi_refine:
            losses.update(self._refine_losses(out, targets, image_hw))
        return losses


@register_box_head("pooled")
class PooledBoxHead(BoxHead):
    """Pooled features -> sigmoid (cx, cy, w, h) normalised + one confidence logit.

    The keyword arguments are the head's options (``model.box_head_options`` in a config).

    Args:
        backbone: The backbone whose pooled features the head reads.
        drop_rate: Dropout before the linear layer (0).
    """

    OPTIONS = ("drop_rate",)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        value = options["drop_rate"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise ConfigError(
                f"pooled box head: box_head_options.drop_rate={value!r}, must be in [0, 1)")

    def __init__(self, backbone: Backbone, *, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(backbone.num_features, 5)
        nn.init.zeros_(self.fc.bias)

    def forward(self, feats: BackboneFeatures, image_hw: tuple[int, int]) -> dict[str, Tensor]:
        raw = self.fc(self.drop(feats.pooled)).float()
        cx, cy, w, h = torch.sigmoid(raw[:, :4]).unbind(dim=1)
        ih, iw = image_hw
        box = torch.stack(
            [(cx - w / 2) * iw, (cy - h / 2) * ih, (cx + w / 2) * iw, (cy + h / 2) * ih], dim=1
        )
        return {"box": box, "conf": raw[:, 4]}

    def decode(self, out: Mapping[str, Tensor], image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        return _clip_boxes(out["box"], image_hw), torch.sigmoid(out["conf"])

    def mirror(self, out: Mapping[str, Tensor], image_hw: tuple[int, int]) -> dict[str, Tensor]:
        return {"box": mirror_boxes(out["box"], image_hw[1]), "conf": out["conf"]}

    def losses(
        self,
        out: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        cfg: LossConfig,
        image_hw: tuple[int, int],
    ) -> dict[str, Tensor]:
        return pooled_box_losses(out["box"], out["conf"], targets, cfg, image_hw)


@register_box_head("none")
class NoBoxHead(BoxHead):
    """No box head: a classification-only model (the baselines' "box loss off").

    It has no parameters and costs nothing: ``decode`` gives zero boxes with score 0, the
    box loss terms are exact zeros (so the loss is the class term alone, whatever the box
    weights), and predictions never carry a box (:func:`mtbrain.models.model.keeps_box`).
    """

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()

    def forward(self, feats: BackboneFeatures, image_hw: tuple[int, int]) -> dict[str, Tensor]:
        return {"pooled": feats.pooled}

    def decode(self, out: Mapping[str, Tensor], image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        n = out["pooled"].shape[0]
        return (out["pooled"].new_zeros((n, 4), dtype=torch.float32),
                out["pooled"].new_zeros((n,), dtype=torch.float32))

    def mirror(self, out: Mapping[str, Tensor], image_hw: tuple[int, int]) -> dict[str, Tensor]:
        return dict(out)

    def losses(
        self,
        out: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        cfg: LossConfig,
        image_hw: tuple[int, int],
    ) -> dict[str, Tensor]:
        zero = out["pooled"].new_zeros((), dtype=torch.float32)
        return {"box_l1": zero, "box_giou": zero, "conf": zero}
