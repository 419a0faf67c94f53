"""OpenVINO IR (``.xml`` + ``.bin``) of the end-to-end module, converted from PyTorch, and its NNCF INT8.

Why a second path beside the ONNX graph: OpenVINO's ONNX frontend rejects ONNX ``DeformConv`` (YOLACT++),
and its own DeformableConv2D does not follow torchvision's semantics, whereas ``openvino.convert_model`` on
the PyTorch module, which calls ``torchvision.ops.deform_conv2d``, reproduces it. For v1 models the IR gives
the ONNX graph's results. It has the ONNX graph's input and output names, dtypes and dynamic axes, and its
metadata in rt_info under ``framework``: where OpenVINO's ONNX frontend puts an ONNX file's metadata_props,
so the runtimes read both files' metadata the same way.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Iterator

import torch

from yolact import Yolact

from contract import INPUT_NAME, OUTPUT_NAMES, PRECISION_KEY

from .calibration import calibration_batches
from .onnx_export import ExportFailed, ExportModule, example_images, model_metadata
from .quantize import MASK_IOU_HEAD

METADATA_SECTION = "framework"
# What NNCF quantizes by default besides convolutions (MatMul, the element-wise ops, interpolation...) also
# occurs in the post-processing; only the network, from the first convolution to the final ones, is
# quantized, as in the onnxruntime QDQ recipe (export.quantize).
NETWORK_START, NETWORK_END = "Convolution", "Convolution"


def bin_path(xml: Path) -> Path:
    """Where OpenVINO looks for the weights of ``xml``: beside it, with the suffix ``.bin``."""
    return xml.with_suffix(".bin")


@contextmanager
def atomic_ir(xml: str | os.PathLike) -> Iterator[Path]:
    """A temporary ``.xml`` path (in a scratch folder beside ``xml``) for the block to save an IR to. On
    success the ``.bin`` then the ``.xml`` are renamed onto their targets (a reader looks for the ``.xml``,
    so it never finds a new one with an old ``.bin``); on error nothing is left behind."""
    target = Path(xml)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        temporary = scratch / "model.xml"
        yield temporary
        os.replace(bin_path(temporary), bin_path(target))
        try:
            os.replace(temporary, target)
        except OSError:
            bin_path(target).unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def convert_to_openvino(model: Yolact, static_input: bool = False):
    """``openvino.Model`` of the exported function (:class:`export.onnx_export.ExportModule`), traced on
    a uint8 image batch, with the ONNX graph's names and dynamic batch, height and width."""
    import openvino as ov

    module = ExportModule(model.eval(), static_input).eval()
    images = example_images(model.cfg, static_input)
    size = model.cfg.max_size
    shape = ov.PartialShape([-1, size, size, 3] if static_input else [-1, -1, -1, 3])
    with torch.no_grad(), warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the tracer's warnings about sizes that are constant by design
        converted = ov.convert_model(module, example_input=(images,), input=[(INPUT_NAME, shape, ov.Type.u8)])
    if len(converted.outputs) != len(OUTPUT_NAMES):
        raise ExportFailed(f"OpenVINO converted the model to {len(converted.outputs)} outputs, not {len(OUTPUT_NAMES)}")
    # Only the graph's own names: the tracer's tensor names would otherwise surface as aliases of the
    # outputs once a plugin folds the int32 casts away.
    for op in converted.get_ordered_ops():
        for output in op.outputs():
            if op.get_type_name() != "Parameter":
                output.get_tensor().set_names(set())
    for output, name in zip(converted.outputs, OUTPUT_NAMES):
        output.get_tensor().set_names({name})
    return converted


def set_metadata(ov_model, metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        ov_model.set_rt_info(value, [METADATA_SECTION, key])


def read_ir_metadata(xml: str | os.PathLike) -> dict[str, str]:
    """The ``yolact.*`` metadata of an IR."""
    import openvino as ov

    rt_info = ov.Core().read_model(str(xml)).get_rt_info()
    section = rt_info[METADATA_SECTION] if METADATA_SECTION in rt_info else {}
    return {key: value.astype(str) for key, value in section.items()}


def save_ir(ov_model, out: str | os.PathLike) -> Path:
    """Write ``ov_model`` to ``out`` (.xml) and its .bin atomically, weights kept in their precision
    (``save_model`` would compress FP32 weights to FP16 by default)."""
    import openvino as ov

    out = Path(out)
    with atomic_ir(out) as temporary:
        ov.save_model(ov_model, str(temporary), compress_to_fp16=False)
    return out


def export_openvino(model: Yolact, out: str | os.PathLike, static_input: bool = False) -> Path:
    """The FP32 IR of ``model`` at ``out`` (.xml, .bin beside it)."""
    converted = convert_to_openvino(model, static_input)
    exporter = f"openvino.convert_model (OpenVINO {_openvino_version()}) on the PyTorch module (torch {torch.__version__})"
    set_metadata(converted, model_metadata(model, exporter, static_input))
    return save_ir(converted, out)


def _openvino_version() -> str:
    import openvino as ov

    return ov.get_version().split("-")[0]


def network_op_names(ov_model) -> set[str]:
    """Names of the ops from the first convolution to the final ones (those with no convolution downstream
    but the mask-IoU head's): every op downstream of the first and upstream of a final one, both included."""
    ops = ov_model.get_ordered_ops()  # topological order
    consumers = {
        op.get_friendly_name(): [t.get_node().get_friendly_name() for out in op.outputs() for t in out.get_target_inputs()] for op in ops
    }
    is_conv = {op.get_friendly_name(): op.get_type_name() == NETWORK_END and MASK_IOU_HEAD not in op.get_friendly_name() for op in ops}
    feeds_conv: dict[str, bool] = {}
    for op in reversed(ops):
        name = op.get_friendly_name()
        feeds_conv[name] = any(is_conv[c] or feeds_conv[c] for c in consumers[name])
    first = next(op.get_friendly_name() for op in ops if op.get_type_name() == NETWORK_START)
    after_first = {first}
    for op in ops:
        if op.get_friendly_name() in after_first:
            after_first.update(consumers[op.get_friendly_name()])
    final = {name for name, conv in is_conv.items() if conv and not feeds_conv[name]}
    return {name for name in after_first if name in final or feeds_conv[name]}


def quantize_openvino(model: Yolact, out: str | os.PathLike, files: list[Path], static_input: bool = False) -> Path:
    """NNCF post-training INT8 of the IR of ``model``, calibrated on ``files`` (one image per batch, at its
    own size) and written to ``out``: the network, from the first convolution to the final ones, INT8;
    the preprocessing before it and the post-processing after it stay FP32."""
    import nncf

    converted = convert_to_openvino(model, static_input)
    network = network_op_names(converted)
    outside = [op.get_friendly_name() for op in converted.get_ordered_ops() if op.get_friendly_name() not in network]
    size = model.cfg.max_size if static_input else None
    dataset = nncf.Dataset(list(calibration_batches(files, size=size)))
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quantized = nncf.quantize(
            converted, dataset, subset_size=len(files), ignored_scope=nncf.IgnoredScope(names=outside, validate=False)
        )
    exporter = f"NNCF {nncf.__version__} post-training INT8 of openvino.convert_model (OpenVINO {_openvino_version()})"
    metadata = model_metadata(model, exporter, static_input)
    metadata[PRECISION_KEY] = f"int8 (NNCF, the network from first to final convolution; NNCF default calibration on {len(files)} images)"
    set_metadata(quantized, metadata)
    return save_ir(quantized, out)
