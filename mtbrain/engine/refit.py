"""Post-training refit of the box-refining stage on frozen features.

At the end of a time-boxed run the refining stage of the dense box head
(``box_head_options.roi_refine``) is under-trained: retrained from scratch for 16 epochs
on the frozen ``roi_map`` features of the train part it gains about +0.01 mean IoU on
validation and test alike (docs/benchmarks.md, "The box stages are under-trained").
Its inputs are cheap to keep: one eval-mode pass over the train part's box-annotated
images gives each image's ``roi_map`` and decoded box; the stage then trains on them
with its own loss (:meth:`~mtbrain.models.heads.DenseBoxHead.refine_losses`: the decoded
box and a jittered true box as proposals, new jitter every epoch) without another pass
through the backbone.

:func:`cache_roi_maps` makes the pass, :func:`refit_refiner` trains the stage;
:class:`~mtbrain.engine.trainer.Trainer` runs both after its main phase when
``train.refit_epochs > 0``. Memory: ``channels x (size/8)^2`` bf16 values per image
(128 KiB for 64 channels at 256 px: about 360 MiB for the 2818 tumour images of the
box set's train part).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mtbrain.data.dataset import collate
from mtbrain.engine.trainer import NonFiniteLossError
from mtbrain.errors import ConfigError


@dataclass
class RoiCache:
    """What the refining stage needs of each box-annotated training image.

    Attributes:
        maps: (N, C, H, W) the box head's ``roi_map`` (bf16).
        decoded: (N, 4) the head's decoded box (xyxy input pixels).
        boxes: (N, K, 4) true boxes, zero-padded to the largest count K.
        valid: (N, K) which of ``boxes`` are real.
        image_hw: The network input's height and width.
    """

    maps: Tensor
    decoded: Tensor
    boxes: Tensor
    valid: Tensor
    image_hw: tuple[int, int]

    def __len__(self) -> int:
        return int(self.maps.shape[0])


def refinable_head(model: torch.nn.Module) -> Any:
    """The model's box head if it has a refining stage, else a :class:`ConfigError`."""
    head = model.box_head
    if not getattr(head, "roi_refine", False):
        raise ConfigError("train.refit_epochs > 0 needs a box head with a refining stage "
                          "(model.box_head: dense with box_head_options.roi_refine: true)")
    return head


@torch.no_grad()
def cache_roi_maps(model: torch.nn.Module, datasets: list[Dataset], *, batch_size: int,
                   device: torch.device, channels_last: bool = True,
                   autocast: contextlib.AbstractContextManager[Any] | None = None) -> RoiCache:
    """One eval-mode pass of ``model`` over the box-annotated samples of ``datasets``.

    Args:
        model: An :class:`mtbrain.Model` whose box head has a refining stage.
        datasets: Un-augmented datasets (:class:`mtbrain.data.dataset.MRIDataset`); only
            their samples with at least one box are kept.
        batch_size: Images per forward pass.
        device: Where the model runs.
        channels_last: Feed the images channels-last (as in training).
        autocast: The precision context of the pass (``None``: fp32).

    Returns:
        The :class:`RoiCache` (on the CPU). Raises :class:`ValueError` when no sample
        has a box.
    """
    head = refinable_head(model)
    was_training = model.training
    model.eval()
    maps, decoded, boxes, valid = [], [], [], []
    image_hw = (0, 0)
    try:
        with autocast or contextlib.nullcontext():
            for images, targets in (batch for ds in datasets for batch in
                                    DataLoader(ds, batch_size=batch_size, collate_fn=collate)):
                keep = targets["box_mask"]
                if not keep.any():
                    continue
                images = images[keep].to(device)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                image_hw = (int(images.shape[-2]), int(images.shape[-1]))
                out = head(model.backbone(model.normalize(images)), image_hw)
                box, _ = head.decode(out, image_hw)
                maps.append(out["roi_map"].to("cpu", torch.bfloat16,
                                              memory_format=torch.contiguous_format))
                decoded.append(box.float().cpu())
                boxes.append(targets["boxes"][keep])
                valid.append(targets["box_valid"][keep])
    finally:
        model.train(was_training)
    if not maps:
        raise ValueError("no training image has a box: nothing to refit the refining stage on")
    k = max(b.shape[1] for b in boxes)
    boxes = [torch.nn.functional.pad(b, (0, 0, 0, k - b.shape[1])) for b in boxes]
    valid = [torch.nn.functional.pad(v, (0, k - v.shape[1])) for v in valid]
    return RoiCache(maps=torch.cat(maps), decoded=torch.cat(decoded), boxes=torch.cat(boxes),
                    valid=torch.cat(valid), image_hw=image_hw)


def refit_refiner(model: torch.nn.Module, cache: RoiCache, *, epochs: int, lr: float = 1e-3,
                  weight_decay: float = 1e-4, batch_size: int = 32, seed: int = 0,
                  device: torch.device | None = None) -> dict[str, float]:
    """Re-initialise the refining stage and train it on ``cache`` (all else frozen).

    AdamW with a one-cycle schedule, fp32, batches of ``batch_size`` images in a new
    random order each epoch (seeded by ``seed``), the stage's own loss weighted as in
    training (L1 x ``loss.l1_weight`` + GIoU x ``loss.giou_weight`` of the model's
    config); the model is left in eval mode.

    Returns:
        The mean ``refine_l1`` and ``refine_giou`` of the last epoch.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs}: must be at least 1")
    head = refinable_head(model)
    device = device or next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        head.reset_refiner()
        params = list(head.roi_head.parameters())
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        n = len(cache)
        per_epoch = max(1, n // batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr,
                                                        total_steps=epochs * per_epoch)
        loss_cfg = model.config.loss_config
        head.roi_head.train()
        totals = {"refine_l1": 0.0, "refine_giou": 0.0}
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            totals = dict.fromkeys(totals, 0.0)
            for step in range(per_epoch):
                idx = order[step * batch_size:(step + 1) * batch_size]
                valid = cache.valid[idx].to(device)
                targets = {"boxes": cache.boxes[idx].to(device), "box_valid": valid,
                           "box_mask": valid.any(dim=1)}
                losses = head.refine_losses(cache.maps[idx].to(device).float(),
                                            cache.decoded[idx].to(device), targets,
                                            cache.image_hw)
                loss = (loss_cfg.l1_weight * losses["refine_l1"]
                        + loss_cfg.giou_weight * losses["refine_giou"])
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"non-finite loss {loss.item()} in the refit of the refining stage "
                        f"(epoch {epoch + 1}, step {step + 1}); lower train.refit_lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                for key in totals:
                    totals[key] += float(losses[key].detach()) / per_epoch
    model.eval()
    return totals
