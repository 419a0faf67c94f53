"""Immutable model configurations.

A :class:`YolactConfig` is one frozen object passed explicitly to every part of the model; nothing reads a
global. Named configs reproduce the authors' YOLACT v1 configs (``data/config.py`` in dbolya/yolact); the
small ones exist for fast tests and CPU training.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

COCO_CLASSES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

# Classes of the embedded procedurally generated dataset (yolact.data.shapes).
SHAPES_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring")

# BGR channel statistics of the ImageNet-pretrained ResNets, as the authors use them.
IMAGENET_MEAN_BGR = (103.94, 116.78, 123.68)
IMAGENET_STD_BGR = (57.38, 57.12, 58.40)

BASE_SCALES = (24, 48, 96, 192, 384)
OPTIMIZERS = ("sgd", "adamw")
TRAIN_PRECISIONS = ("fp32", "bf16")


def scales_for_size(size: int, base_size: int = 550) -> tuple[int, ...]:
    """Anchor scales of the 550 configs re-expressed for another input size, as the authors do (``int``)."""
    return tuple(int(s / base_size * size) for s in BASE_SCALES)


@dataclass(frozen=True)
class YolactConfig:
    """Everything that defines one YOLACT model, its post-processing and its training schedule.

    ``num_classes`` counts foreground classes only; the network predicts ``num_classes + 1`` logits with
    background at index 0.
    """

    name: str
    backbone: str  # "resnet" or "darknet"
    backbone_layers: tuple[int, ...]
    backbone_block: str = "bottleneck"  # ResNet block type: "bottleneck" or "basic"
    class_names: tuple[str, ...] = COCO_CLASSES
    max_size: int = 550
    fpn_channels: int = 256
    proto_channels: int = 256
    mask_dim: int = 32
    pred_scales: tuple[int, ...] = BASE_SCALES
    # Anchor scales per FPN level: ``s * 2 ** (j / scales_per_octave)`` for j < scales_per_octave (YOLACT++:
    # 3), each with every aspect ratio; 1 gives the v1 layout of one scale per level.
    scales_per_octave: int = 1
    aspect_ratios: tuple[float, ...] = (1.0, 0.5, 2.0)
    use_square_anchors: bool = True
    # Deformable convolutions (DCNv2) in the ResNet backbone, the authors' ``dcn_layers`` / ``dcn_interval``:
    # in stage s the last ``dcn_layers[s]`` bottlenecks whose index within the stage is a multiple of
    # ``dcn_interval`` (and the first one when the whole stage is deformable) get a deformable 3x3 conv2.
    dcn_layers: tuple[int, ...] = (0, 0, 0, 0)
    dcn_interval: int = 1
    # YOLACT++ fast mask re-scoring: a small conv net predicts each detection's mask IoU per class from its
    # cropped mask probabilities at prototype resolution (``maskiou_channels``: its stride-2 3x3 convs).
    use_maskiou: bool = False
    maskiou_channels: tuple[int, ...] = (8, 16, 32, 64, 128)
    # mask score = box score x predicted IoU of the detection's class (the box score itself is kept).
    rescore_mask: bool = False
    # Input normalisation: "mean_std" (BGR mean/std then RGB) or "unit" (RGB / 255, DarkNet).
    normalization: str = "mean_std"
    pixel_mean_bgr: tuple[float, float, float] = IMAGENET_MEAN_BGR
    pixel_std_bgr: tuple[float, float, float] = IMAGENET_STD_BGR
    # Detection
    nms_top_k: int = 200
    nms_conf_thresh: float = 0.05
    nms_iou_thresh: float = 0.5
    max_num_detections: int = 100
    # Training. "sgd" (momentum, weight decay on every parameter) is the authors' recipe; "adamw" (decoupled
    # weight decay, none on norms and biases) is what moves a network trained from scratch.
    optimizer: str = "sgd"
    # "fp32" as the authors train, or "bf16": autocast to bfloat16 with channels-last weights where the device
    # computes bf16 natively (CUDA, CPUs with AVX-512 BF16 or AMX), about 1.8x faster training on such a CPU.
    train_precision: str = "fp32"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 8
    max_iter: int = 800_000
    lr_steps: tuple[int, ...] = (280_000, 600_000, 700_000, 750_000)
    warmup_iters: int = 500
    warmup_init_lr: float = 1e-4
    positive_iou_thresh: float = 0.5
    negative_iou_thresh: float = 0.4
    crowd_iou_thresh: float = 0.7
    ohem_negpos_ratio: int = 3
    bbox_alpha: float = 1.5
    conf_alpha: float = 1.0
    mask_alpha: float = 6.125
    semantic_seg_alpha: float = 1.0
    masks_to_train: int = 100
    freeze_bn_below_batch: int = 6
    # Clip the gradient's global norm to this (0: off, as the authors train); lets from-scratch training
    # use a higher learning rate without diverging.
    grad_clip_norm: float = 0.0
    min_box_size_px: int = 4
    # Mask-IoU loss (YOLACT++): smooth-L1 between the predicted IoU and the IoU of the binarised predicted
    # mask with the ground truth, x ``maskiou_alpha``, over positives whose ground-truth mask covers more than
    # ``discard_mask_area`` prototype pixels, at most ``maskious_to_train`` of them per batch (-1: all).
    maskiou_alpha: float = 25.0
    discard_mask_area: int = 25
    maskious_to_train: int = -1
    # Iterations before the mask-IoU loss counts (0: from the first, as the authors, who start from ImageNet
    # weights). From scratch the first masks overlap nothing, so every IoU target is 0; fitting those drives
    # the net's final ReLU below zero for every input, and a dead ReLU never learns again.
    maskiou_start_iter: int = 0
    # Regress the IoU on the mask-IoU net's output before its final ReLU (inference is unchanged: the ReLU
    # passes every non-negative prediction as it is). The authors regress after it; from scratch a class's
    # output can still fall below zero for every input later on, and that class's mask scores stay 0 for good
    # (seen: "square" in a yolact_plus_small run, costing re-scoring 4.8 mask AP points).
    maskiou_loss_before_relu: bool = False
    # SSD augmentation strength: probability of the photometric distortion, largest zoom-out factor (1: none),
    # smallest side of a random crop as a fraction of the image's.
    photometric_p: float = 0.5
    zoom_out_max: float = 4.0
    crop_min_scale: float = 0.3

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"config {self.name!r}: optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.train_precision not in TRAIN_PRECISIONS:
            raise ValueError(f"config {self.name!r}: train_precision must be one of {TRAIN_PRECISIONS}, not {self.train_precision!r}")
        if self.rescore_mask and not self.use_maskiou:
            raise ValueError(f"config {self.name!r}: rescore_mask needs use_maskiou")
        if any(self.dcn_layers) and self.backbone != "resnet":
            raise ValueError(f"config {self.name!r}: deformable convolutions need the ResNet backbone")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map cell."""
        return len(self.aspect_ratios) * self.scales_per_octave

    @property
    def model_family(self) -> str:
        """``yolact++`` for the models with deformable convolutions or mask re-scoring, else ``yolact``."""
        return "yolact++" if self.use_maskiou or any(self.dcn_layers) else "yolact"

    def replace(self, **changes: Any) -> "YolactConfig":
        """A copy with some fields changed (the config itself never changes)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "YolactConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


_YOLACT_BASE = YolactConfig(name="yolact_base", backbone="resnet", backbone_layers=(3, 4, 23, 3))


def _plus(cfg: YolactConfig, name: str, dcn_layers: tuple[int, ...], dcn_interval: int = 1) -> YolactConfig:
    """The authors' YOLACT++ changes to a v1 config: deformable conv2 in the given bottlenecks, three anchor
    scales per level with true (not square) aspect ratios, and fast mask re-scoring."""
    return cfg.replace(
        name=name,
        dcn_layers=dcn_layers,
        dcn_interval=dcn_interval,
        scales_per_octave=3,
        use_square_anchors=False,
        use_maskiou=True,
        rescore_mask=True,
    )


def _resnet18_from_scratch(name: str, size: int, channels: int, max_iter: int, lr_steps: tuple[int, ...]) -> YolactConfig:
    """A ResNet-18 YOLACT with ``channels``-wide FPN and protonet at ``size``, trained from scratch on the
    embedded shape classes.

    Its anchors keep the 550 configs' pixel scales (24..384) rather than shrinking with the input: the
    strides stay 8..128 pixels, so shrunken anchors (8 px on a stride-8 grid at 192) leave most objects
    with one matching prior or none. AdamW, because SGD from scratch barely moves in a CPU-sized budget;
    mild augmentation, because zoom-out and small crops shrink the objects of a small input below a few
    pixels.
    """
    return _YOLACT_BASE.replace(
        name=name,
        class_names=SHAPES_CLASSES,
        backbone_block="basic",
        backbone_layers=(2, 2, 2, 2),
        max_size=size,
        pred_scales=BASE_SCALES,
        fpn_channels=channels,
        proto_channels=channels,
        max_iter=max_iter,
        lr_steps=lr_steps,
        optimizer="adamw",
        train_precision="bf16",
        lr=1e-3,
        weight_decay=0.05,
        warmup_iters=100,
        warmup_init_lr=1e-4,
        photometric_p=0.0,
        zoom_out_max=1.0,
        crop_min_scale=0.5,
    )


CONFIGS: dict[str, YolactConfig] = {
    cfg.name: cfg
    for cfg in (
        _YOLACT_BASE,
        _YOLACT_BASE.replace(name="yolact_resnet50", backbone_layers=(3, 4, 6, 3)),
        _YOLACT_BASE.replace(name="yolact_darknet53", backbone="darknet", backbone_layers=(1, 2, 8, 8, 4), normalization="unit"),
        _YOLACT_BASE.replace(name="yolact_im400", max_size=400, pred_scales=scales_for_size(400)),
        _YOLACT_BASE.replace(name="yolact_im700", max_size=700, pred_scales=scales_for_size(700)),
        # YOLACT++: ResNet-101 with DCN in every third bottleneck of stages 3-5 (11 layers), ResNet-50 with
        # DCN in every bottleneck of stages 3-5 (13 layers).
        _plus(_YOLACT_BASE, "yolact_plus_base", dcn_layers=(0, 4, 23, 3), dcn_interval=3),
        _plus(_YOLACT_BASE.replace(backbone_layers=(3, 4, 6, 3)), "yolact_plus_resnet50", dcn_layers=(0, 4, 6, 3)),
        # Trained from scratch: the CPU training default on the embedded dataset, sized so that
        # `python -m train` fits in 30 minutes on 2 CPU cores.
        _resnet18_from_scratch("yolact_small", size=192, channels=64, max_iter=5_000, lr_steps=(3_750, 4_600)),
        # Unit tests.
        _resnet18_from_scratch("yolact_tiny", size=128, channels=32, max_iter=200, lr_steps=(150,)),
        # The small recipes plus DCN, 9 anchors and the mask-IoU head (without the fifth stride-2 convolution,
        # which would not fit their 48- and 32-pixel prototypes). DCN only in stage 5: on a CPU, torchvision's
        # deformable kernel takes 6x a plain 3x3 convolution's time forward and backward, so the stages at
        # higher resolution would multiply the step time. yolact_plus_small has it in stage 5's last block
        # alone (like yolact_plus_base's one in three): its backward is still 40% of the step on 2 CPU cores
        # (0.50 s against yolact_small's 0.29; 0.68 s with both blocks deformable).
        # From scratch the mask-IoU loss waits until the masks overlap their objects (maskiou_start_iter) and
        # regresses the head's output before its final ReLU (maskiou_loss_before_relu).
        _plus(
            _resnet18_from_scratch("yolact_plus_small", size=192, channels=64, max_iter=5_000, lr_steps=(3_750, 4_600)),
            "yolact_plus_small",
            dcn_layers=(0, 0, 0, 1),
        ).replace(maskiou_channels=(8, 16, 32, 64), maskiou_start_iter=300, maskiou_loss_before_relu=True),
        _plus(
            _resnet18_from_scratch("yolact_plus_tiny", size=128, channels=32, max_iter=200, lr_steps=(150,)),
            "yolact_plus_tiny",
            dcn_layers=(0, 0, 0, 2),
        ).replace(maskiou_channels=(8, 16, 32, 64), maskiou_start_iter=100, maskiou_loss_before_relu=True),
    )
}


def get_config(name: str, **overrides: Any) -> YolactConfig:
    """The named config, with optional field overrides (e.g. ``class_names`` of a custom dataset)."""
    try:
        cfg = CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown config {name!r}; choose one of: {', '.join(CONFIGS)}") from None
    return cfg.replace(**overrides) if overrides else cfg
