"""One ONNX graph from uint8 BGR images to padded detections, built from :class:`yolact.EndToEnd`.

Exporter choice: the dynamo exporter (``torch.onnx.export(dynamo=True)``). ``torch.export`` tracks symbolic
shapes, so every size that does not depend on the batch or the image size is a constant in the graph: the
outputs come out as [batch, K, ...] with static K, the anchors and the per-class / global TopK K are
initializers, and the graph has ~290 nodes. The TorchScript exporter (``dynamo=False``) records every
``tensor.shape`` as Shape/Gather/Concat chains (~670 nodes, ~380 after onnxslim) and loses the static K of
the outputs. The one drawback of dynamo is that it writes opset 18 whatever is asked below it; we convert down
with ``onnx.version_converter`` and verify the opset actually written. YOLACT++ graphs are traced at opset 19
itself: its deformable convolutions become the standard ``DeformConv`` (opset 19, for which onnx has no
down-converter), through onnxscript's translation of ``torchvision::deform_conv2d``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

import contract
import yolact
from contract import INPUT_NAME, INT32_OUTPUTS, ONNX_DYNAMIC_MAX_SIDE, OUTPUT_NAMES
from contract.files import replaced_on_success
from yolact import EndToEnd, Yolact
from yolact.preprocess import normalize
from yolact.priors import feature_sizes

DEFAULT_OPSET = 17  # what TensorRT 8.6-10 parse well
DEFORM_CONV_OPSET = 19  # the first opset with DeformConv, which YOLACT++ backbones need
DYNAMO_OPSET = 18  # the opset the dynamo exporter's op library is written for
# Bounds the exporter may assume for the dynamic axes (torch.export needs a range).
MAX_BATCH = 256


class ExportError(Exception):
    """The export cannot proceed as asked (bad input: weights, options, paths, a missing library); the
    message is one line."""


class ExportFailed(ExportError):
    """The export of good input failed (a graph that fails verification, a library that cannot convert it);
    the message is one line."""


class ExportModule(nn.Module):
    """The exported function: uint8 BGR images [B, H, W, 3] -> the fields of :class:`yolact.BatchResult`,
    num_dets [B] and classes [B, K] as int32: num_dets, boxes [B, K, 4], scores [B, K], classes, masks
    [B, K, Hp, Wp], mask_scores [B, K].

    With ``static_input`` the images must already be [B, S, S, 3] (S = ``cfg.max_size``) and the resize is
    left out: a half-pixel bilinear resize from S to S is the identity, so the numbers do not change.
    """

    def __init__(self, model: Yolact, static_input: bool = False):
        super().__init__()
        self.end_to_end = EndToEnd(model)
        self.static_input = static_input

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.static_input:
            cfg = self.end_to_end.model.cfg
            result = self.end_to_end.from_network_input(normalize(images.permute(0, 3, 1, 2).float(), cfg))
        else:
            result = self.end_to_end(images)
        return tuple(value.to(torch.int32) if name in INT32_OUTPUTS else value for name, value in zip(result._fields, result))


@dataclass
class ExportReport:
    """What was written: path, opset found in the file, node count per op type."""

    path: Path
    opset: int
    op_counts: dict[str, int]
    simplified_by: str

    def summary(self) -> str:
        ops = ", ".join(f"{op} {n}" for op, n in sorted(self.op_counts.items()))
        return f"wrote {self.path} (opset {self.opset}, {sum(self.op_counts.values())} nodes, simplified by {self.simplified_by}): {ops}"


def prototype_size(cfg: yolact.YolactConfig) -> tuple[int, int]:
    """(Hp, Wp): the protonet upsamples P3 by 2."""
    height, width = feature_sizes(cfg)[0]
    return 2 * height, 2 * width


def example_images(cfg: yolact.YolactConfig, static_input: bool) -> torch.Tensor:
    """A trace input [2, H, W, 3]: batch 2 and an odd non-square size so no dynamic axis is specialised."""
    size = cfg.max_size
    height, width = (size, size) if static_input else (size + 37, size + 81)
    return torch.randint(0, 256, (2, height, width, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _dynamic_shapes(static_input: bool) -> dict:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    if static_input:
        return {"images": {0: batch}}
    height = torch.export.Dim("height", min=2, max=ONNX_DYNAMIC_MAX_SIDE)
    width = torch.export.Dim("width", min=2, max=ONNX_DYNAMIC_MAX_SIDE)
    return {"images": {0: batch, 1: height, 2: width}}


def default_opset(cfg: yolact.YolactConfig) -> int:
    """Opset 17 for YOLACT, 19 (DeformConv) for a model with deformable convolutions."""
    return DEFORM_CONV_OPSET if any(cfg.dcn_layers) else DEFAULT_OPSET


def trace_to_onnx(module: ExportModule, images: torch.Tensor, opset: int) -> onnx.ModelProto:
    """Run the dynamo exporter and bring the graph to ``opset`` (traced at ``opset`` itself from 18 on)."""
    cfg = module.end_to_end.model.cfg
    if opset < default_opset(cfg):
        raise ExportError(
            f"--opset {opset}: {cfg.name} has deformable convolutions, which ONNX has as DeformConv from opset {DEFORM_CONV_OPSET} on"
        )
    trace_opset = max(opset, DYNAMO_OPSET)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (images,),
            dynamo=True,
            opset_version=trace_opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=_dynamic_shapes(module.static_input),
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    if opset != trace_opset:
        # Asked for another opset, dynamo silently keeps 18 when its own conversion fails (Reduce* axes
        # still computed); onnx's converter succeeds on the optimised graph.
        model = onnx.version_converter.convert_version(model, opset)
        drop_attributes_unknown_to(model, opset)
    return model


def drop_attributes_unknown_to(model: onnx.ModelProto, opset: int) -> None:
    """Remove attributes the target opset's schema does not define (onnx's converter leaves e.g. ReduceMax's
    ``noop_with_empty_axes`` behind), which is safe only where the value is the newer default: the
    behaviour the older opset has without the attribute."""
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        known = onnx.defs.get_schema(node.op_type, opset).attributes
        newest = onnx.defs.get_schema(node.op_type).attributes
        for attr in [a for a in node.attribute if a.name not in known]:
            default = newest[attr.name].default_value if attr.name in newest else None
            if default is None or onnx.helper.get_attribute_value(attr) != onnx.helper.get_attribute_value(default):
                raise ExportFailed(f"{node.op_type} attribute {attr.name} has no opset-{opset} equivalent")
            node.attribute.remove(attr)


def written_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the file declares."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def simplify(model: onnx.ModelProto, images: np.ndarray) -> tuple[onnx.ModelProto, str]:
    """Constant folding and graph clean-up with onnxslim, kept only if it round-trips: same outputs in
    onnxruntime on ``images``. Returns (model, what simplified it)."""
    import onnxslim

    with redirect_stdout(io.StringIO()):
        slim = onnxslim.slim(model)
    if slim is None or not outputs_match(model, slim, images):
        return model, "exporter only (onnxslim did not round-trip)"
    return slim, f"onnxslim {onnxslim.__version__}"


def run_onnxruntime(model: onnx.ModelProto | str | os.PathLike, images: np.ndarray) -> list[np.ndarray]:
    """All outputs of ``model`` for ``images`` on the CPU provider."""
    import onnxruntime as ort

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: images})


def outputs_match(a: onnx.ModelProto, b: onnx.ModelProto, images: np.ndarray, atol: float = 1e-5) -> bool:
    return all(x.shape == y.shape and np.allclose(x, y, atol=atol) for x, y in zip(run_onnxruntime(a, images), run_onnxruntime(b, images)))


def model_metadata(model: Yolact, exporter: str, static_input: bool) -> dict[str, str]:
    """Everything a runtime needs besides the graph, as string key/values (JSON for structured ones)."""
    cfg = model.cfg
    return {
        contract.CONFIG_NAME_KEY: cfg.name,
        contract.MODEL_FAMILY_KEY: cfg.model_family,
        contract.CLASS_NAMES_KEY: json.dumps(list(cfg.class_names)),
        contract.INPUT_SIZE_KEY: json.dumps([cfg.max_size, cfg.max_size]),
        contract.INPUT_FORMAT_KEY: "uint8 BGR NHWC",
        contract.STATIC_INPUT_KEY: json.dumps(static_input),
        contract.NORMALIZATION_KEY: cfg.normalization,
        contract.PIXEL_MEAN_KEY: json.dumps(list(cfg.pixel_mean_bgr)),
        contract.PIXEL_STD_KEY: json.dumps(list(cfg.pixel_std_bgr)),
        contract.MAX_DETECTIONS_KEY: str(cfg.max_num_detections),
        contract.PROTOTYPE_SIZE_KEY: json.dumps(list(prototype_size(cfg))),
        contract.BOX_FORMAT_KEY: "x1y1x2y2 normalised to the image",
        contract.NMS_KEY: json.dumps(
            {"type": "fast", "top_k": cfg.nms_top_k, "conf_thresh": cfg.nms_conf_thresh, "iou_thresh": cfg.nms_iou_thresh}
        ),
        contract.CONFIG_KEY: cfg.to_json(),
        contract.EXPORTER_KEY: exporter,
        contract.TOOLKIT_VERSION_KEY: yolact.__version__,
    }


def read_metadata(model: onnx.ModelProto | str | os.PathLike) -> dict[str, str]:
    """metadata_props of an ONNX model (or file) as a dict."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def verify(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """onnx.checker (full check, strict shape inference) and the asked opset; returns the shape-inferred
    model."""
    found = written_opset(model)
    if found != opset:
        raise ExportFailed(f"the exported graph declares opset {found}, not the requested {opset}")
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ExportFailed(f"the exported graph fails onnx.checker: {first_line}") from None


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return counts


@torch.no_grad()
def export_onnx(
    model: Yolact,
    out: str | os.PathLike,
    opset: int | None = None,
    static_input: bool = False,
    simplify_graph: bool = True,
) -> ExportReport:
    """Export ``model`` (its config's ``max_num_detections`` sets K) to ``out``, atomically, at ``opset``
    (default: :func:`default_opset`)."""
    model = model.eval()
    opset = opset or default_opset(model.cfg)
    module = ExportModule(model, static_input).eval()
    images = example_images(model.cfg, static_input)
    with replaced_on_success(out) as tmp:  # fails early on an unwritable path, leaves nothing behind on error
        onnx_model = trace_to_onnx(module, images, opset)
        simplified_by = "exporter only"
        if simplify_graph:
            onnx_model, simplified_by = simplify(onnx_model, images.numpy())
        exporter = f"torch.onnx dynamo (torch {torch.__version__}), simplified by {simplified_by}"
        onnx.helper.set_model_props(onnx_model, model_metadata(model, exporter, static_input))
        onnx_model = verify(onnx_model, opset)
        onnx.save(onnx_model, str(tmp))
    return ExportReport(Path(out), written_opset(onnx_model), op_counts(onnx_model), simplified_by)
