"""The YOLACT training loss: prior matching, box regression, OHEM classification, mask and semantic terms.

Targets are the per-image dicts of ``yolact.data`` (``boxes`` [N, 4] normalised x1y1x2y2, ``labels`` [N]
0-based, ``masks`` [N, S, S] uint8, ``crowd_boxes`` [M, 4]), on the same device as the network output.
Normalisations follow the authors' ``multibox_loss.py``: the box, class and mask sums are divided by the
number of positive priors in the batch, the semantic segmentation sum by the number of P3 pixels and the
batch size.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .box_utils import box_ioa, box_iou, crop, encode, point_form
from .config import YolactConfig
from .model import MaskIoUNet, YolactOutput

# Label of a prior that takes part in no classification loss.
NEUTRAL = -1


class Matches(NamedTuple):
    """Ground truth assigned to each of the P priors of B images.

    - labels [B, P] int64: matched class + 1 for positives, 0 for background, ``NEUTRAL`` (-1) for ignored
    - gt_index [B, P] int64: index of the matched ground-truth box in its image (meaningful for positives)
    - boxes [B, P, 4]: the matched ground-truth box, normalised point form
    """

    labels: torch.Tensor
    gt_index: torch.Tensor
    boxes: torch.Tensor


def pad_boxes(boxes: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image [Ni, 4] tensors -> ([B, G, 4] zero-padded, valid [B, G] bool), G = max(1, max Ni).

    At least one column keeps reductions over G defined when no image has a box.
    """
    width = max([1] + [len(b) for b in boxes])
    padded = boxes[0].new_zeros((len(boxes), width, 4))
    valid = torch.zeros(len(boxes), width, dtype=torch.bool, device=padded.device)
    for i, b in enumerate(boxes):
        padded[i, : len(b)] = b
        valid[i, : len(b)] = True
    return padded, valid


@torch.no_grad()
def match(
    priors: torch.Tensor,
    gt_boxes: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    crowd_boxes: Sequence[torch.Tensor],
    cfg: YolactConfig,
) -> Matches:
    """Assign ground truth to priors (center-size [P, 4]) for a batch, all images at once.

    IoU is taken with the priors in point form. Every ground-truth box first claims its best prior (in order
    of decreasing overlap, each prior claimed at most once, as the authors do); then a prior is positive when
    its best IoU is >= ``positive_iou_thresh``, background when < ``negative_iou_thresh``, neutral between.
    A non-positive prior covered by a crowd box by more than ``crowd_iou_thresh`` of its own area is neutral.
    """
    num_priors = priors.shape[0]
    prior_boxes = point_form(priors)
    # Padding boxes get a harmless non-degenerate shape so that encoding them stays finite.
    boxes, valid = pad_boxes(gt_boxes)
    boxes[~valid] = boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
    labels = torch.zeros(valid.shape, dtype=torch.int64, device=boxes.device)
    for i, image_labels in enumerate(gt_labels):
        labels[i, : len(image_labels)] = image_labels

    overlaps = box_iou(boxes, prior_boxes).masked_fill(~valid[..., None], -1.0)  # [B, G, P]
    best_overlap, best_gt = overlaps.max(dim=1)  # [B, P]

    # Greedy forced assignment: the globally best (gt, prior) pair of each image first, then remove both.
    batch_index = torch.arange(len(gt_boxes), device=boxes.device)
    for _ in range(overlaps.shape[1]):
        best, flat_index = overlaps.flatten(1).max(dim=1)
        todo = best >= 0  # images with an unassigned valid ground-truth box left
        b, gt, prior = batch_index[todo], flat_index[todo] // num_priors, flat_index[todo] % num_priors
        overlaps[b, :, prior] = -1.0
        overlaps[b, gt, :] = -1.0
        best_overlap[b, prior] = 2.0
        best_gt[b, prior] = gt

    prior_labels = labels.gather(1, best_gt) + 1
    prior_labels[best_overlap < cfg.positive_iou_thresh] = NEUTRAL
    prior_labels[best_overlap < cfg.negative_iou_thresh] = 0

    if any(len(c) for c in crowd_boxes):
        crowds, crowd_valid = pad_boxes(crowd_boxes)
        crowd_cover = box_ioa(prior_boxes.expand(len(crowd_boxes), -1, -1), crowds)  # [B, P, M]
        crowd_cover = crowd_cover.masked_fill(~crowd_valid[:, None, :], 0.0).max(dim=2).values
        prior_labels[(prior_labels <= 0) & (crowd_cover > cfg.crowd_iou_thresh)] = NEUTRAL

    matched_boxes = boxes.gather(1, best_gt[..., None].expand(-1, -1, 4))
    return Matches(prior_labels, best_gt, matched_boxes)


@torch.no_grad()
def hard_negatives(conf: torch.Tensor, labels: torch.Tensor, negpos_ratio: int) -> torch.Tensor:
    """Online hard example mining: per image, the ``negpos_ratio`` x (number of positives) background
    priors with the largest background loss. conf [B, P, C + 1] logits, labels [B, P] -> [B, P] bool."""
    is_background = labels == 0
    background_loss = torch.logsumexp(conf, dim=-1) - conf[..., 0]
    background_loss = background_loss.masked_fill(~is_background, float("-inf"))
    rank = background_loss.argsort(dim=1, descending=True).argsort(dim=1)
    num_neg = (negpos_ratio * (labels > 0).sum(dim=1, keepdim=True)).clamp(max=labels.shape[1] - 1)
    return (rank < num_neg) & is_background


def downsample_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Binary masks [N, S, S] -> [N, h, w] float {0, 1}: bilinear resize, then > 0.5."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size), dtype=torch.float32)
    resized = F.interpolate(masks[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return (resized > 0.5).float()


class MaskIoUSamples(NamedTuple):
    """What the mask-IoU loss trains on, N positives: masks [N, 1, Hp, Wp] (the cropped predicted mask
    probabilities, not detached, as the authors feed them), iou [N] (of the mask binarised at 0.5 with the
    ground truth), labels [N] (0-based ground-truth class)."""

    masks: torch.Tensor
    iou: torch.Tensor
    labels: torch.Tensor


class YolactLoss(nn.Module):
    """YOLACT multi-task loss. ``forward(output, targets, maskiou_net)`` -> dict of scalar tensors ``box``,
    ``conf``, ``mask``, ``segm``, for YOLACT++ (``use_maskiou``) also ``maskiou``, and their sum ``total``.
    ``output`` must come from a model in training mode; ``maskiou_net`` is its mask-IoU net (YOLACT++), whose
    loss counts ``maskiou_weight`` times in ``total`` (0 before ``cfg.maskiou_start_iter``; still reported)."""

    def __init__(self, cfg: YolactConfig):
        super().__init__()
        self.cfg = cfg

    def forward(
        self,
        output: YolactOutput,
        targets: Sequence[dict],
        maskiou_net: MaskIoUNet | None = None,
        maskiou_weight: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        if output.segm is None:
            raise ValueError("YolactLoss needs the semantic segmentation output of a model in training mode")
        cfg = self.cfg
        if cfg.use_maskiou and maskiou_net is None:
            raise ValueError(f"config {cfg.name!r} trains a mask-IoU net: pass the model's maskiou_net")
        matches = match(
            output.priors,
            [t["boxes"] for t in targets],
            [t["labels"] for t in targets],
            [t["crowd_boxes"] for t in targets],
            cfg,
        )
        positive = matches.labels > 0
        # The authors divide by the batch's positive count; clamping only matters for a batch without any
        # ground truth, where every sum is zero anyway.
        num_pos = positive.sum().clamp(min=1).float()

        mask_loss, maskiou_samples = self.mask_loss(output, matches, targets)
        losses = {
            "box": self.box_loss(output, matches, positive) / num_pos,
            "conf": self.conf_loss(output, matches, positive) / num_pos,
            "mask": mask_loss / num_pos,
            "segm": self.semantic_segmentation_loss(output.segm, targets),
        }
        total = sum(losses.values())
        if cfg.use_maskiou:
            losses["maskiou"] = self.mask_iou_loss(maskiou_net, maskiou_samples) / num_pos
            total = total + losses["maskiou"] * maskiou_weight
        losses["total"] = total
        return losses

    def box_loss(self, output: YolactOutput, matches: Matches, positive: torch.Tensor) -> torch.Tensor:
        """Smooth-L1 between predicted and encoded matched boxes over positives, summed, x ``bbox_alpha``."""
        priors = output.priors.expand_as(output.loc)[positive]
        targets = encode(matches.boxes[positive], priors)
        return F.smooth_l1_loss(output.loc[positive], targets, reduction="sum") * self.cfg.bbox_alpha

    def conf_loss(self, output: YolactOutput, matches: Matches, positive: torch.Tensor) -> torch.Tensor:
        """Softmax cross-entropy over positives and OHEM-selected negatives, summed, x ``conf_alpha``."""
        selected = positive | hard_negatives(output.conf, matches.labels, self.cfg.ohem_negpos_ratio)
        loss = F.cross_entropy(output.conf[selected], matches.labels[selected], reduction="sum")
        return loss * self.cfg.conf_alpha

    def mask_loss(self, output: YolactOutput, matches: Matches, targets: Sequence[dict]) -> tuple[torch.Tensor, MaskIoUSamples | None]:
        """Per-pixel BCE of the assembled masks against the GT masks at prototype resolution, inside the GT
        box, each mask's sum divided by its box area in prototype pixels; summed, x ``mask_alpha``.

        At most ``masks_to_train`` random positives per image are used, their loss scaled up to stand for
        all positives of the image (as the authors do). With ``use_maskiou`` it also returns the mask-IoU
        samples of the same positives, those whose GT mask covers more than ``discard_mask_area`` prototype
        pixels (else None).
        """
        proto_h, proto_w = output.protos.shape[1:3]
        total = output.protos.new_zeros(())
        samples: list[MaskIoUSamples] = []
        for i, target in enumerate(targets):
            prior_index = torch.nonzero(matches.labels[i] > 0).squeeze(1)
            num_pos = len(prior_index)
            if num_pos == 0:
                continue
            if num_pos > self.cfg.masks_to_train:
                keep = torch.randperm(num_pos)[: self.cfg.masks_to_train].to(prior_index.device)
                prior_index = prior_index[keep]
            gt_index = matches.gt_index[i, prior_index]
            gt_masks = downsample_masks(target["masks"], (proto_h, proto_w))[gt_index]  # [n, h, w]
            gt_boxes = target["boxes"][gt_index]
            # sigmoid(P C^T) with the BCE taken on the logits: the same loss, numerically stable.
            logits = torch.einsum("hwk,nk->nhw", output.protos[i], output.coeffs[i, prior_index])
            pixel_loss = crop(F.binary_cross_entropy_with_logits(logits, gt_masks, reduction="none"), gt_boxes)
            box_area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * proto_w * (gt_boxes[:, 3] - gt_boxes[:, 1]) * proto_h
            total = total + (pixel_loss.sum(dim=(1, 2)) / box_area).sum() * (num_pos / len(prior_index))
            if self.cfg.use_maskiou:
                samples.append(self._maskiou_samples(crop(torch.sigmoid(logits), gt_boxes), gt_masks, target["labels"][gt_index]))
        return total * self.cfg.mask_alpha, self._sample_maskious(samples, output.protos) if self.cfg.use_maskiou else None

    def _maskiou_samples(self, masks: torch.Tensor, gt_masks: torch.Tensor, labels: torch.Tensor) -> MaskIoUSamples:
        """One image's samples: cropped mask probabilities [n, h, w], binary GT masks [n, h, w], labels [n]."""
        keep = gt_masks.sum(dim=(1, 2)) > self.cfg.discard_mask_area
        masks, gt_masks = masks[keep], gt_masks[keep]
        binary = (masks > 0.5).to(gt_masks.dtype)
        intersection = (binary * gt_masks).sum(dim=(1, 2))
        union = binary.sum(dim=(1, 2)) + gt_masks.sum(dim=(1, 2)) - intersection
        return MaskIoUSamples(masks[:, None], (intersection / union).detach(), labels[keep])

    def _sample_maskious(self, samples: list[MaskIoUSamples], protos: torch.Tensor) -> MaskIoUSamples:
        """The batch's samples, at most ``maskious_to_train`` of them, chosen at random."""
        if not samples:  # no positives at all: an empty batch keeps the net in the graph
            height, width = protos.shape[1:3]
            return MaskIoUSamples(
                protos.new_zeros((0, 1, height, width)), protos.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=protos.device)
            )
        batch = MaskIoUSamples(*(torch.cat(parts) for parts in zip(*samples)))
        limit = self.cfg.maskious_to_train
        if 0 < limit < len(batch.iou):
            keep = torch.randperm(len(batch.iou), device=batch.iou.device)[:limit]
            batch = MaskIoUSamples(*(t[keep] for t in batch))
        return batch

    def mask_iou_loss(self, maskiou_net: MaskIoUNet, samples: MaskIoUSamples) -> torch.Tensor:
        """Smooth-L1 between the IoU the net predicts for each sample's GT class and its actual IoU, summed,
        x ``maskiou_alpha`` (run even on no samples, so that every step uses the net's parameters)."""
        head = maskiou_net.before_relu if self.cfg.maskiou_loss_before_relu else maskiou_net
        predicted = head(samples.masks).gather(1, samples.labels[:, None]).squeeze(1)
        return F.smooth_l1_loss(predicted, samples.iou, reduction="sum") * self.cfg.maskiou_alpha

    def semantic_segmentation_loss(self, segm: torch.Tensor, targets: Sequence[dict]) -> torch.Tensor:
        """BCE-with-logits of the P3 class maps [B, C, H, W] against the union of each class's GT masks at
        P3 resolution; summed, divided by H * W and by B, x ``semantic_seg_alpha``."""
        batch, num_classes, height, width = segm.shape
        class_targets = []
        for target in targets:
            masks = downsample_masks(target["masks"], (height, width)).flatten(1)  # [N, H*W]
            class_of_mask = F.one_hot(target["labels"], num_classes).T.to(masks.dtype)  # [C, N]
            class_targets.append((class_of_mask @ masks).clamp(max=1.0).view(num_classes, height, width))
        loss = F.binary_cross_entropy_with_logits(segm, torch.stack(class_targets), reduction="sum")
        return loss / (height * width) / batch * self.cfg.semantic_seg_alpha
