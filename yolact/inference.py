"""From images to detections: the end-to-end module (also what gets exported) and the final-image step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contract import GraphOutputs

from .box_utils import sanitize_coordinates
from .detection import PaddedDetections, assemble_masks, detect, detect_traditional, rescore_masks
from .model import Yolact
from .preprocess import preprocess


class BatchResult(GraphOutputs):
    """Static-shape results of a batch (K = ``max_num_detections``) as torch tensors, the fields of
    :class:`contract.GraphOutputs` that the exported graph returns: num_dets [B], boxes [B, K, 4] normalised
    x1y1x2y2, scores [B, K] (box scores), classes [B, K] (-1 in padding), masks [B, K, Hp, Wp] cropped mask
    probabilities at prototype resolution, mask_scores [B, K] (YOLACT++ with re-scoring: box score x
    predicted mask IoU; otherwise equal to ``scores``).
    """

    __slots__ = ()


class EndToEnd(nn.Module):
    """uint8 BGR images [B, H, W, 3] of any size -> :class:`BatchResult`: preprocessing, network, Fast
    NMS and mask assembly in one module.

    With ``nms="traditional"`` it uses exact NMS instead (PyTorch only, not exportable).
    """

    def __init__(self, model: Yolact, nms: str = "fast"):
        super().__init__()
        if nms not in ("fast", "traditional"):
            raise ValueError(f"nms must be 'fast' or 'traditional', not {nms!r}")
        self.model = model
        self.nms = nms

    def forward(self, images_bgr: torch.Tensor) -> BatchResult:
        return self.from_network_input(preprocess(images_bgr, self.model.cfg))

    def from_network_input(self, x: torch.Tensor) -> BatchResult:
        """Same as forward, for an already preprocessed batch [B, 3, S, S]."""
        return self.from_detections(*self.detections(x))

    def from_detections(self, dets: PaddedDetections, protos: torch.Tensor) -> BatchResult:
        """Masks (and for YOLACT++ their re-scoring) for the detections of :meth:`detections`."""
        masks = assemble_masks(protos, dets)
        if self.model.cfg.rescore_mask:
            mask_scores = rescore_masks(self.model.maskiou_net, masks, dets.scores, dets.classes)
        else:
            mask_scores = dets.scores
        return BatchResult(dets.num_dets, dets.boxes, dets.scores, dets.classes, masks, mask_scores)

    def detections(self, x: torch.Tensor) -> tuple[PaddedDetections, torch.Tensor]:
        """Detections (with coefficients and prior indices) and prototypes for a preprocessed batch."""
        output = self.model(x)
        run_nms = detect if self.nms == "fast" else detect_traditional
        return run_nms(output, self.model.cfg), output.protos


@dataclass
class ImageDetections:
    """Detections of one image in its own pixel coordinates (N detections, image H x W); the fields of
    ``runtime.Detections`` in the same order, without the class names and the image size.

    boxes [N, 4] int64 x1y1x2y2 pixels, scores [N] float32 box scores, class_ids [N] int64 (0-based),
    masks [N, H, W] bool, mask_scores [N] float32 (what ranks the masks; see :class:`BatchResult`).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    masks: np.ndarray
    mask_scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def classes(self) -> np.ndarray:
        """``class_ids`` under its name until 0.1 (documented then); kept for one release."""
        return self.class_ids

    def above(self, score_threshold: float) -> "ImageDetections":
        """The detections whose box score is above the threshold."""
        keep = self.scores > score_threshold
        return ImageDetections(self.boxes[keep], self.scores[keep], self.class_ids[keep], self.masks[keep], self.mask_scores[keep])


def to_image(result: BatchResult, index: int, height: int, width: int) -> ImageDetections:
    """The final-image step for image ``index`` of a batch: masks upsampled (bilinear) to the image and
    binarised at 0.5, boxes scaled to pixels, clamped to the image and truncated to integers."""
    n = int(result.num_dets[index])
    boxes = result.boxes[index, :n].float()
    masks = result.masks[index, :n].float()
    if n:
        masks = F.interpolate(masks[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    else:
        masks = masks.new_zeros(0, height, width)
    x1, x2 = sanitize_coordinates(boxes[:, 0], boxes[:, 2], width)
    y1, y2 = sanitize_coordinates(boxes[:, 1], boxes[:, 3], height)
    pixel_boxes = torch.stack((x1, y1, x2, y2), dim=1).long()
    return ImageDetections(
        boxes=pixel_boxes.cpu().numpy(),
        scores=result.scores[index, :n].float().cpu().numpy(),
        class_ids=result.classes[index, :n].cpu().numpy().astype(np.int64),
        masks=(masks > 0.5).cpu().numpy(),
        mask_scores=result.mask_scores[index, :n].float().cpu().numpy(),
    )


def batch_from_images(images_bgr: Sequence[np.ndarray], model: Yolact) -> torch.Tensor:
    """BGR uint8 images of any sizes -> one preprocessed batch [B, 3, S, S] on the model's device."""
    device = next(model.parameters()).device
    return torch.cat([preprocess(torch.from_numpy(np.ascontiguousarray(img))[None].to(device), model.cfg) for img in images_bgr])


@torch.inference_mode()
def predict(model: Yolact, images_bgr: Sequence[np.ndarray], nms: str = "fast") -> list[ImageDetections]:
    """Detections for BGR uint8 images of any sizes, all in one forward pass."""
    return predict_with_prototypes(model, images_bgr, nms)[0]


@torch.inference_mode()
def predict_with_prototypes(model: Yolact, images_bgr: Sequence[np.ndarray], nms: str = "fast") -> tuple[list[ImageDetections], np.ndarray]:
    """:func:`predict`, plus each image's prototypes [B, Hp, Wp, k] float32 from the same forward pass."""
    was_training = model.training
    model.eval()
    try:
        end_to_end = EndToEnd(model, nms)
        dets, protos = end_to_end.detections(batch_from_images(images_bgr, model))
        result = end_to_end.from_detections(dets, protos)
    finally:
        model.train(was_training)
    return [to_image(result, i, *img.shape[:2]) for i, img in enumerate(images_bgr)], protos.float().cpu().numpy()
