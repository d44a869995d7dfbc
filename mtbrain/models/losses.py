"""The masked multitask loss: each sample teaches only what it is annotated for.

One batch mixes samples of several kinds (box-annotated tumour images, no-tumour images,
images from classification-only sets, unlabelled images). Three masks say what each
sample can teach:

- ``label_mask`` (B,): the sample has a class label → class loss (cross-entropy).
- ``box_mask`` (B,): the sample has >= 1 tumour box → box regression (L1 + GIoU).
- ``box_known`` (B,): the sample's boxes are annotated, even if there are none → box
  confidence / centre heatmap. A no_tumor image of a box set is known (truly no
  box: all-negative target); a glioma image from a classification-only set is
  *not* known (it has a tumour, but nobody drew it) and is left out.
  When the batch has no ``box_known``, it defaults to
  ``box_mask | (labels is a no-box class)``.

Masked-out samples are *selected away* before any term is computed, so their gradient
through that term is exactly zero (not merely small), and a term with no sample in the
batch is an exact zero that stays connected to the graph (DistributedDataParallel needs
every parameter to receive a gradient).

All terms are computed in float32, also under ``torch.autocast`` with bfloat16.

Dense head box assignment (several ground-truth boxes per image): every cell of the output
grid is assigned the ground-truth box whose Gaussian (centred on the box, sigma
proportional to the box's width and height) is highest at that cell, i.e. the box whose
centre is nearest in units of its own size; ties go to the smaller box. A cell regresses
its assigned box when the cell centre lies inside that box (the box's centre cell always
does), weighted by that Gaussian (``reg_sigma``), so cells near a centre matter most.
The pooled head, which predicts one box, is matched to the ground-truth box it overlaps
most (IoU, ties to the first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtbrain.errors import ConfigError

REQUIRED_TARGETS: tuple[str, ...] = ("labels", "label_mask", "boxes", "box_valid", "box_mask")


@dataclass(frozen=True)
class LossConfig:
    """Weights and options of the multitask loss.

    ``loss = w_cls * CE + w_box * (l1_weight * L1 + giou_weight * GIoU) + w_conf * conf``

    Attributes:
        w_cls: Weight of the class cross-entropy.
        w_box: Weight of the box regression terms.
        l1_weight: Weight of L1 on box corners normalised by the image size (inside w_box).
        giou_weight: Weight of ``1 - GIoU`` (inside w_box).
        w_conf: Weight of the box-confidence term (centre-heatmap focal loss for the dense
            head, BCE for the pooled head).
        label_smoothing: Cross-entropy label smoothing, in [0, 1).
        class_weights: Per-class cross-entropy weights (one per class), or ``None``.
        focal_alpha: Exponent on the prediction error in the heatmap focal loss (CenterNet).
        focal_beta: Exponent reducing the penalty of negatives near a centre (CenterNet).
        centre_sigma: Heatmap Gaussian sigma as a fraction of the box width/height.
        reg_sigma: Sigma of the regression-weight Gaussian, fraction of the box size.
        min_sigma_cells: Lower bound on both sigmas, in grid cells.
    """

    w_cls: float = 1.0
    w_box: float = 1.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    w_conf: float = 1.0
    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] | None = None
    focal_alpha: float = 2.0
    focal_beta: float = 4.0
    centre_sigma: float = 0.1
    reg_sigma: float = 0.2
    min_sigma_cells: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "class_weights":
                if value is not None:
                    try:
                        weights = tuple(float(v) for v in value)
                    except (TypeError, ValueError):
                        raise ConfigError(
                            f"loss.class_weights must be a list of numbers, got {value!r}"
                        ) from None
                    if not weights or any(not math.isfinite(w) or w < 0 for w in weights):
                        raise ConfigError(
                            f"loss.class_weights must be finite and >= 0, got {value!r}"
                        )
                    object.__setattr__(self, "class_weights", weights)
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ConfigError(f"loss.{f.name} must be a finite number, got {value!r}")
            if value < 0:
                raise ConfigError(f"loss.{f.name} must be >= 0, got {value}")
            object.__setattr__(self, f.name, float(value))
        if self.label_smoothing >= 1:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name in ("centre_sigma", "reg_sigma", "min_sigma_cells"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"loss.{name} must be > 0")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> LossConfig:
        """Build from a config mapping; unknown keys are errors that name the key."""
        from mtbrain.config import from_dict

        return from_dict(cls, dict(values or {}), prefix="loss")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["class_weights"] is not None:
            d["class_weights"] = list(d["class_weights"])
        return d


# ---------------------------------------------------------------------------------------
# masks


def resolve_masks(
    targets: Mapping[str, Tensor],
    *,
    no_box_indices: Sequence[int] = (),
    device: torch.device | None = None,
) -> dict[str, Tensor]:
    """Targets on ``device`` with ``box_known`` filled in when absent (see module doc).

    Raises:
        ValueError: naming the missing target keys.
    """
    missing = [k for k in REQUIRED_TARGETS if k not in targets]
    if missing:
        raise ValueError(
            f"targets lack {missing}; a batch needs {list(REQUIRED_TARGETS)} "
            f"(and optionally 'box_known')"
        )
    t = {
        k: v.to(device) if device is not None else v
        for k, v in targets.items()
        if isinstance(v, Tensor)
    }
    t["labels"] = t["labels"].long()
    t["label_mask"] = t["label_mask"].bool() & (t["labels"] >= 0)
    t["box_mask"] = t["box_mask"].bool()
    t["box_valid"] = t["box_valid"].bool() & t["box_mask"][:, None]
    t["boxes"] = t["boxes"].float()
    if "box_known" in t:
        t["box_known"] = t["box_known"].bool() | t["box_mask"]
    else:
        known = t["box_mask"].clone()
        for idx in no_box_indices:
            known |= t["label_mask"] & (t["labels"] == idx)
        t["box_known"] = known
    return t


def zero_like_graph(x: Tensor) -> Tensor:
    """An exact 0 (float32) that is connected to ``x``'s graph (zero gradients)."""
    return x.float().sum() * 0.0


# ---------------------------------------------------------------------------------------
# classification


def masked_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    mask: Tensor,
    *,
    label_smoothing: float = 0.0,
    class_weights: Tensor | None = None,
) -> Tensor:
    """Cross-entropy over the rows where ``mask`` is true (mean; exact 0 if none)."""
    idx = mask.nonzero(as_tuple=True)[0]
    if idx.numel() == 0:
        return zero_like_graph(logits)
    return F.cross_entropy(
        logits.index_select(0, idx).float(),
        labels.index_select(0, idx),
        weight=class_weights,
        label_smoothing=label_smoothing,
    )


# ---------------------------------------------------------------------------------------
# boxes


def giou_pairs(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Generalised IoU of paired xyxy boxes (..., 4) x (..., 4) -> (...)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a + area_b - inter
    iou = inter / (union + eps)
    elt = torch.minimum(a[..., :2], b[..., :2])
    erb = torch.maximum(a[..., 2:], b[..., 2:])
    ewh = (erb - elt).clamp(min=0)
    enclose = ewh[..., 0] * ewh[..., 1]
    return iou - (enclose - union) / (enclose + eps)


def iou_pairs_matrix(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU of (B, 4) boxes against (B, K, 4) boxes -> (B, K)."""
    a = a[:, None, :]
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    return inter / (area_a + area_b - inter + eps)


def _scale(image_hw: tuple[int, int], device: torch.device) -> Tensor:
    h, w = image_hw
    return torch.tensor([w, h, w, h], dtype=torch.float32, device=device)


def cell_centres(
    grid_hw: tuple[int, int], image_hw: tuple[int, int], device: torch.device | None = None
) -> tuple[Tensor, Tensor, float, float]:
    """Centres (x: (W,), y: (H,)) of the grid cells in input pixels, and the strides."""
    gh, gw = grid_hw
    ih, iw = image_hw
    sx, sy = iw / gw, ih / gh
    xs = (torch.arange(gw, device=device, dtype=torch.float32) + 0.5) * sx
    ys = (torch.arange(gh, device=device, dtype=torch.float32) + 0.5) * sy
    return xs, ys, sx, sy


@dataclass
class DenseTargets:
    """Per-cell targets of the dense head for the samples with boxes.

    Attributes:
        heat: (B, H, W) centre heatmap in [0, 1]; exactly 1 at each box's centre cell.
        reg_weight: (B, H, W) regression weight per cell, summing to 1 per sample with a box.
        assigned: (B, H, W, 4) the ground-truth box (xyxy pixels) each cell regresses.
    """

    heat: Tensor
    reg_weight: Tensor
    assigned: Tensor


def dense_targets(
    boxes: Tensor,
    valid: Tensor,
    grid_hw: tuple[int, int],
    image_hw: tuple[int, int],
    cfg: LossConfig,
) -> DenseTargets:
    """Build heatmap, regression weights and assignments (see the module doc for the rule).

    Args:
        boxes: (B, K, 4) ground-truth xyxy boxes in input pixels (padded).
        valid: (B, K) which of them are real.
    """
    gh, gw = grid_hw
    xs, ys, sx, sy = cell_centres(grid_hw, image_hw, boxes.device)
    b = boxes.float()
    w = (b[..., 2] - b[..., 0]).clamp(min=1e-3)
    h = (b[..., 3] - b[..., 1]).clamp(min=1e-3)
    cx = (b[..., 0] + b[..., 2]) / 2
    cy = (b[..., 1] + b[..., 3]) / 2
    dx2 = (xs[None, None, None, :] - cx[..., None, None]) ** 2  # (B,K,1,W)
    dy2 = (ys[None, None, :, None] - cy[..., None, None]) ** 2  # (B,K,H,1)

    def gauss(frac: float) -> Tensor:
        sig_x = torch.clamp(frac * w, min=cfg.min_sigma_cells * sx)[..., None, None]
        sig_y = torch.clamp(frac * h, min=cfg.min_sigma_cells * sy)[..., None, None]
        return torch.exp(-dx2 / (2 * sig_x**2) - dy2 / (2 * sig_y**2))  # (B,K,H,W)

    vmask = valid[..., None, None].float()
    g_heat = gauss(cfg.centre_sigma) * vmask
    g_reg = gauss(cfg.reg_sigma) * vmask
    # centre cell of each box: exactly 1
    jc = (cx / sx).floor().clamp(0, gw - 1).long()
    ic = (cy / sy).floor().clamp(0, gh - 1).long()
    peak = torch.zeros_like(g_heat)
    flat = (ic * gw + jc)[..., None]  # (B,K,1)
    peak.view(*peak.shape[:2], -1).scatter_(2, flat, 1.0)
    peak = peak * vmask
    g_heat = torch.maximum(g_heat, peak)
    heat = g_heat.amax(dim=1) if g_heat.shape[1] else g_heat.new_zeros(b.shape[0], gh, gw)
    # assignment: highest heat gaussian, ties to the smaller box; invalid boxes never win
    area = (w * h) / float(image_hw[0] * image_hw[1])
    score = g_heat - 1e-6 * area[..., None, None] - 2.0 * (1 - vmask)
    k_star = score.argmax(dim=1)  # (B,H,W)
    assigned = torch.gather(b, 1, k_star.reshape(b.shape[0], -1, 1).expand(-1, -1, 4))
    assigned = assigned.reshape(b.shape[0], gh, gw, 4)
    inside = (
        (xs[None, None, :] > assigned[..., 0])
        & (xs[None, None, :] < assigned[..., 2])
        & (ys[None, :, None] > assigned[..., 1])
        & (ys[None, :, None] < assigned[..., 3])
    )
    is_peak = torch.gather(peak, 1, k_star[:, None]).squeeze(1) > 0
    reg = torch.gather(g_reg, 1, k_star[:, None]).squeeze(1) * (inside | is_peak).float()
    reg = torch.maximum(reg, is_peak.float())
    total = reg.sum(dim=(1, 2), keepdim=True)
    reg_weight = torch.where(total > 0, reg / total.clamp(min=1e-12), torch.zeros_like(reg))
    return DenseTargets(heat=heat, reg_weight=reg_weight, assigned=assigned)


def focal_heatmap_loss(
    logits: Tensor, heat: Tensor, *, alpha: float = 2.0, beta: float = 4.0
) -> Tensor:
    """CenterNet's penalty-reduced focal loss per sample, divided by its number of centres.

    Args:
        logits: (N, H, W) centre logits.
        heat: (N, H, W) target heatmap; cells equal to 1 are positives.

    Returns:
        (N,) loss per sample.
    """
    logits = logits.float()
    pos = heat >= 1.0
    log_p = F.logsigmoid(logits)
    log_1mp = F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_loss = -log_p * (1 - p).pow(alpha) * pos
    neg_loss = -log_1mp * p.pow(alpha) * (1 - heat).pow(beta) * (~pos)
    n_pos = pos.flatten(1).sum(dim=1).clamp(min=1).float()
    return (pos_loss + neg_loss).flatten(1).sum(dim=1) / n_pos


def dense_box_losses(
    centre: Tensor,
    cell_boxes: Tensor,
    targets: Mapping[str, Tensor],
    cfg: LossConfig,
    image_hw: tuple[int, int],
) -> dict[str, Tensor]:
    """Box terms of the dense head.

    Args:
        centre: (B, H, W) centre logits.
        cell_boxes: (B, H, W, 4) box predicted at each cell, xyxy input pixels.
        targets: Resolved targets (:func:`resolve_masks`).

    Returns:
        ``box_l1``, ``box_giou`` (over samples with ``box_mask``) and ``conf`` (over samples
        with ``box_known``), each a float32 scalar.
    """
    centre, cell_boxes = centre.float(), cell_boxes.float()
    grid = (centre.shape[1], centre.shape[2])
    out: dict[str, Tensor] = {}
    box_idx = targets["box_mask"].nonzero(as_tuple=True)[0]
    known_idx = targets["box_known"].nonzero(as_tuple=True)[0]
    # targets only for the samples that need them
    need = torch.unique(torch.cat([box_idx, known_idx]))
    if need.numel() == 0:
        zero_boxes, zero_centre = zero_like_graph(cell_boxes), zero_like_graph(centre)
        return {"box_l1": zero_boxes, "box_giou": zero_boxes, "conf": zero_centre}
    tg = dense_targets(
        targets["boxes"].index_select(0, need),
        targets["box_valid"].index_select(0, need),
        grid,
        image_hw,
        cfg,
    )
    pos_of = torch.full((centre.shape[0],), -1, dtype=torch.long, device=centre.device)
    pos_of[need] = torch.arange(need.numel(), device=centre.device)
    if box_idx.numel():
        rows = pos_of[box_idx]
        pred = cell_boxes.index_select(0, box_idx)
        gt = tg.assigned.index_select(0, rows)
        wgt = tg.reg_weight.index_select(0, rows)
        scale = _scale(image_hw, centre.device)
        l1 = ((pred - gt).abs() / scale).mean(dim=-1)
        giou = 1.0 - giou_pairs(pred, gt)
        n = float(box_idx.numel())
        out["box_l1"] = (l1 * wgt).sum() / n
        out["box_giou"] = (giou * wgt).sum() / n
    else:
        out["box_l1"] = zero_like_graph(cell_boxes)
        out["box_giou"] = zero_like_graph(cell_boxes)
    if known_idx.numel():
        heat = tg.heat.index_select(0, pos_of[known_idx])
        per = focal_heatmap_loss(
            centre.index_select(0, known_idx), heat, alpha=cfg.focal_alpha, beta=cfg.focal_beta
        )
        out["conf"] = per.mean()
    else:
        out["conf"] = zero_like_graph(centre)
    return out


def matched_box_losses(
    pred: Tensor, gts: Tensor, valid: Tensor, image_hw: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """L1 (normalised by the image size) and 1 - GIoU of one box per sample against the
    ground-truth box of its sample that it overlaps most (IoU, ties to the first).

    Args:
        pred: (N, 4) predicted xyxy boxes in input pixels.
        gts: (N, K, 4) the samples' ground-truth boxes (padded); valid: (N, K).

    Returns:
        ``(l1, giou)``: float32 means over the N samples.
    """
    pred = pred.float()
    gts = gts.float()
    iou = iou_pairs_matrix(pred.detach(), gts)
    iou = torch.where(valid, iou, torch.full_like(iou, -1.0))
    gt = gts[torch.arange(gts.shape[0], device=gts.device), iou.argmax(dim=1)]
    scale = _scale(image_hw, pred.device)
    l1 = ((pred - gt).abs() / scale).mean(dim=-1).mean()
    return l1, (1.0 - giou_pairs(pred, gt)).mean()


def pooled_box_losses(
    box: Tensor,
    conf: Tensor,
    targets: Mapping[str, Tensor],
    cfg: LossConfig,
    image_hw: tuple[int, int],
) -> dict[str, Tensor]:
    """Box terms of the pooled head: one box per image, matched to the GT box it overlaps most.

    Args:
        box: (B, 4) predicted xyxy box in input pixels.
        conf: (B,) box-confidence logit.
    """
    box, conf = box.float(), conf.float()
    out: dict[str, Tensor] = {}
    box_idx = targets["box_mask"].nonzero(as_tuple=True)[0]
    if box_idx.numel():
        out["box_l1"], out["box_giou"] = matched_box_losses(
            box.index_select(0, box_idx),
            targets["boxes"].index_select(0, box_idx),
            targets["box_valid"].index_select(0, box_idx),
            image_hw,
        )
    else:
        out["box_l1"] = zero_like_graph(box)
        out["box_giou"] = zero_like_graph(box)
    known_idx = targets["box_known"].nonzero(as_tuple=True)[0]
    if known_idx.numel():
        out["conf"] = F.binary_cross_entropy_with_logits(
            conf.index_select(0, known_idx), targets["box_mask"].index_select(0, known_idx).float()
        )
    else:
        out["conf"] = zero_like_graph(conf)
    return out


class MultitaskLoss(nn.Module):
    """Class cross-entropy + the box head's terms, each masked, weighted and summed.

    Args:
        cfg: Loss weights and options.
        num_classes: Number of classes (checks ``class_weights``).
        no_box_indices: Class indices that truly have no tumour box (``no_tumor``); used to
            default ``box_known`` when the batch does not carry it.
    """

    def __init__(
        self, cfg: LossConfig, *, num_classes: int, no_box_indices: Sequence[int] = ()
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.no_box_indices = tuple(int(i) for i in no_box_indices)
        if cfg.class_weights is not None:
            if len(cfg.class_weights) != num_classes:
                raise ConfigError(
                    f"loss.class_weights has {len(cfg.class_weights)} values for "
                    f"{num_classes} classes"
                )
            self.register_buffer("class_weights", torch.tensor(cfg.class_weights), persistent=False)
        else:
            self.class_weights = None

    def forward(
        self,
        logits: Tensor,
        box_out: Mapping[str, Tensor],
        box_head: Any,
        targets: Mapping[str, Tensor],
        image_hw: tuple[int, int],
    ) -> dict[str, Tensor]:
        """The loss dict: ``loss_cls``, ``loss_box_l1``, ``loss_box_giou``, ``loss_conf``,
        with a refining head ``loss_refine_l1`` and ``loss_refine_giou`` (weighted as the box
        terms), all unweighted float32, and ``loss`` (the weighted total)."""
        t = resolve_masks(targets, no_box_indices=self.no_box_indices, device=logits.device)
        cw = self.class_weights.float() if self.class_weights is not None else None
        cls = masked_cross_entropy(
            logits,
            t["labels"],
            t["label_mask"],
            label_smoothing=self.cfg.label_smoothing,
            class_weights=cw,
        )
        box = box_head.losses(box_out, t, self.cfg, image_hw)
        c = self.cfg
        total = (
            c.w_cls * cls
            + c.w_box * (c.l1_weight * box["box_l1"] + c.giou_weight * box["box_giou"])
            + c.w_conf * box["conf"]
        )
        out = {
            "loss_cls": cls,
            "loss_box_l1": box["box_l1"],
            "loss_box_giou": box["box_giou"],
            "loss_conf": box["conf"],
        }
        if "refine_l1" in box:  # a head with a second, box-refining stage
            total = total + c.w_box * (
                c.l1_weight * box["refine_l1"] + c.giou_weight * box["refine_giou"]
            )
            out["loss_refine_l1"] = box["refine_l1"]
            out["loss_refine_giou"] = box["refine_giou"]
        out["loss"] = total
        return out
