"""The contract between ``python -m export`` (which writes a graph) and ``runtime`` (which runs it), defined
once: the graph's input and output names, the raw-output fields, the ``yolact.*`` metadata keys and the
image-size limits.

It sits below ``yolact``, ``export`` and ``runtime`` and needs nothing but the standard library, so that the
torch-free runtime ships it: ``runtime/contract`` links here, and ``pip install ./runtime`` installs it as
this top-level package (as it does ``command_line``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

# The graph's one input: uint8 BGR images [B, H, W, 3].
INPUT_NAME = "images"


class GraphOutputs(NamedTuple):
    """The graph's outputs for a batch of B images (K = the model's max detections), in the graph's order:
    num_dets [B] int32, boxes [B, K, 4] normalised x1y1x2y2, scores [B, K] box scores, classes [B, K] int32
    class ids (-1 in padding), masks [B, K, Hp, Wp] cropped mask probabilities at prototype resolution,
    mask_scores [B, K] (YOLACT++ with re-scoring: box score x predicted mask IoU; otherwise the box scores).

    ``yolact.BatchResult`` (torch tensors) and ``runtime.RawOutputs`` (numpy arrays) are this tuple, typed
    for their floor; the field names are the graph's output names.
    """

    num_dets: Any
    boxes: Any
    scores: Any
    classes: Any
    masks: Any
    mask_scores: Any


OUTPUT_NAMES: tuple[str, ...] = GraphOutputs._fields
# int32 in the graph because TensorRT 8.x cannot bind INT64 network outputs.
INT32_OUTPUTS = ("num_dets", "classes")

# Image-size limits, in pixels of an image's longer side.
ONNX_DYNAMIC_MAX_SIDE = 8192  # what the exporter lets a graph of dynamic height/width assume (torch.export's range)
TRT_PROFILE_MIN_SIDE = 32  # the smallest side a TensorRT engine's optimisation profile takes
TRT_PROFILE_MAX_SIDE = 4096  # the largest side a TensorRT engine's optimisation profile takes
SERVER_DEFAULT_MAX_SIDE = ONNX_DYNAMIC_MAX_SIDE  # python -m runtime.serve refuses longer sides (--max-image-side)

# The model's metadata: ONNX metadata_props, OpenVINO rt_info["framework"], the TensorRT sidecar's
# onnx_metadata and Triton config parameters all carry these string key/values (JSON for structured ones).
METADATA_PREFIX = "yolact."
CONFIG_NAME_KEY = "yolact.config_name"
MODEL_FAMILY_KEY = "yolact.model_family"
CLASS_NAMES_KEY = "yolact.class_names"  # JSON list, index = class id; its absence marks a foreign model
INPUT_SIZE_KEY = "yolact.input_size"  # JSON [S, S], the network's input size
INPUT_FORMAT_KEY = "yolact.input_format"
STATIC_INPUT_KEY = "yolact.static_input"  # JSON bool: the graph takes [B, S, S, 3] only
NORMALIZATION_KEY = "yolact.normalization"
PIXEL_MEAN_KEY = "yolact.pixel_mean_bgr"
PIXEL_STD_KEY = "yolact.pixel_std_bgr"
MAX_DETECTIONS_KEY = "yolact.max_detections"
PROTOTYPE_SIZE_KEY = "yolact.prototype_size"
BOX_FORMAT_KEY = "yolact.box_format"
NMS_KEY = "yolact.nms"
CONFIG_KEY = "yolact.config"
EXPORTER_KEY = "yolact.exporter"
TOOLKIT_VERSION_KEY = "yolact.toolkit_version"
PRECISION_KEY = "yolact.precision"  # only in an INT8 graph: "int8 (<how it was quantized>)"
