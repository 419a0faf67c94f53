"""``python -m benchmarks.deform_conv``: the deformable convolutions of a YOLACT++ config, layer by layer, in
each kernel that can run them on this machine.

YOLACT++'s new cost is its deformable 3x3 convolutions. Each one of the model (at the config's input size,
on the inputs, offsets and masks a real image gives it) is timed alone in:

- onnxruntime's ``DeformConv`` (one ONNX node, opset 19: what the exported graph runs);
- ``torchvision.ops.deform_conv2d`` (what PyTorch runs);
- OpenVINO, on the IR ``openvino.convert_model`` makes of that torchvision call (what the IR path runs);
- and, for scale, onnxruntime's plain ``Conv`` of the same shape (what the layer costs without deformation).

Each kernel's output is compared with torchvision's. Writes ``benchmarks/results/deform_conv_<machine>_<config>_<date>.json``
and ``.md``.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import torch
from onnx import TensorProto, helper, numpy_helper
from tqdm import tqdm

from command_line import entry_parser, entry_point, image_size, positive_int
from yolact.config import CONFIGS, get_config
from yolact.deform_conv import ModulatedDeformConv2d
from contract.files import write_text
from yolact.preprocess import preprocess

from .fps import encoded_images
from .machine import cpu_description, machine_details, machine_tag
from .reports import report_stem
from .variants import load_or_recipe, set_threads

PROG = "python -m benchmarks.deform_conv"
RESULTS = Path(__file__).parent / "results"
KERNELS = ("onnxruntime_deform_conv", "torchvision_deform_conv2d", "openvino_ir", "onnxruntime_plain_conv")


def layer_inputs(
    config: str, image_hw: tuple[int, int]
) -> list[tuple[str, ModulatedDeformConv2d, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Every deformable layer of ``config`` (recipe weights) with the input, offsets and mask one embedded
    image gives it: (name, module, x [1, C, H, W], offset [1, 2k², H', W'], mask [1, k², H', W'])."""
    import cv2

    model = load_or_recipe(config, None, "cpu")
    captured = []

    def capture(name):
        def hook(module, args, _):
            x = args[0]
            o1, o2, logits = torch.chunk(module.conv_offset_mask(x), 3, dim=1)
            captured.append((name, module, x, torch.cat((o1, o2), dim=1), torch.sigmoid(logits)))

        return hook

    handles = [m.register_forward_hook(capture(n)) for n, m in model.named_modules() if isinstance(m, ModulatedDeformConv2d)]
    image = cv2.imdecode(np.frombuffer(encoded_images(1, *image_hw)[0], np.uint8), cv2.IMREAD_COLOR)
    with torch.no_grad():
        model(preprocess(torch.from_numpy(image)[None], model.cfg))
    for handle in handles:
        handle.remove()
    return captured


def deform_conv_node(module: ModulatedDeformConv2d, plain: bool) -> onnx.ModelProto:
    """One ONNX ``DeformConv`` node with the module's weights (or, ``plain``, a ``Conv`` of the same shape)."""
    weight = module.weight.detach().numpy()
    k = weight.shape[-1]
    attributes = {
        "kernel_shape": [k, k],
        "strides": list(module.stride),
        "pads": [module.padding[0]] * 2 + [module.padding[1]] * 2,
        "dilations": list(module.dilation),
    }
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weight.shape[1], None, None])]
    if plain:
        node = helper.make_node("Conv", ["x", "weight", "bias"], ["y"], **attributes)
    else:
        inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("offset", "mask")]
        node = helper.make_node("DeformConv", ["x", "weight", "offset", "bias", "mask"], ["y"], group=1, offset_group=1, **attributes)
    graph = helper.make_graph(
        [node],
        "deform_conv",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(module.bias.detach().numpy(), "bias")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


class TorchvisionCall(torch.nn.Module):
    """The layer's deformable kernel alone, as OpenVINO's converter sees it."""

    def __init__(self, module: ModulatedDeformConv2d):
        super().__init__()
        self.module = module

    def forward(self, x, offset, mask):
        return self.module._deform(x, offset, mask)


def median_ms(run, warmup: int, iters: int) -> tuple[float, np.ndarray]:
    for _ in range(warmup):
        out = run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        out = run()
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(times)), 3), np.asarray(out)


def time_layer(module, x, offset, mask, threads: int, warmup: int, iters: int) -> dict:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    feeds = {"x": x.numpy(), "offset": offset.numpy(), "mask": mask.numpy()}
    deform = ort.InferenceSession(deform_conv_node(module, False).SerializeToString(), options, providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(deform_conv_node(module, True).SerializeToString(), options, providers=["CPUExecutionProvider"])
    ir = ov.convert_model(TorchvisionCall(module).eval(), example_input=(x, offset, mask))
    compiled = ov.Core().compile_model(ir, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    with torch.no_grad():
        runs = {
            "onnxruntime_deform_conv": lambda: deform.run(None, feeds)[0],
            "torchvision_deform_conv2d": lambda: module._deform(x, offset, mask).numpy(),
            "openvino_ir": lambda: request.infer([feeds["x"], feeds["offset"], feeds["mask"]])[0],
            "onnxruntime_plain_conv": lambda: plain.run(None, {"x": feeds["x"]})[0],
        }
        timed = {name: median_ms(run, warmup, iters) for name, run in runs.items()}
    reference = timed["torchvision_deform_conv2d"][1]
    return {
        "input": list(x.shape),
        "output": list(reference.shape),
        "stride": module.stride[0],
        "ms": {name: ms for name, (ms, _) in timed.items()},
        "max_abs_diff_vs_torchvision": {
            name: float(np.abs(out - reference).max())
            for name, (_, out) in timed.items()
            if name in ("onnxruntime_deform_conv", "openvino_ir")
        },
    }


def markdown(report: dict) -> str:
    lines = [
        f"{report['config']} deformable convolutions at {report['image_hw'][0]}x{report['image_hw'][1]}, {report['where']}",
        "",
        "| layer | input | stride | " + " | ".join(f"{k} ms" for k in KERNELS) + " | max diff vs torchvision (onnxruntime / OpenVINO) |",
        "|---|---|---|" + "---|" * len(KERNELS) + "---|",
    ]
    for layer in report["layers"]:
        diff = layer["max_abs_diff_vs_torchvision"]
        lines.append(
            f"| {layer['name']} | {'x'.join(map(str, layer['input'][1:]))} | {layer['stride']} | "
            + " | ".join(f"{layer['ms'][k]:.2f}" for k in KERNELS)
            + f" | {diff['onnxruntime_deform_conv']:.1e} / {diff['openvino_ir']:.1e} |"
        )
    totals = report["total_ms"]
    lines.append(f"| all {len(report['layers'])} | | | " + " | ".join(f"**{totals[k]:.1f}**" for k in KERNELS) + " | |")
    lines += [
        "",
        f"onnxruntime's DeformConv takes {totals['onnxruntime_deform_conv'] / totals['onnxruntime_plain_conv']:.1f}x a plain "
        f"convolution of the same shapes, {totals['onnxruntime_deform_conv'] / totals['torchvision_deform_conv2d']:.2f}x torchvision's "
        f"kernel and {totals['onnxruntime_deform_conv'] / totals['openvino_ir']:.2f}x OpenVINO's.",
    ]
    return "\n".join(lines) + "\n"


@entry_point(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--config", default="yolact_plus_base", choices=sorted(CONFIGS), metavar="CONFIG", help="a YOLACT++ config")
    parser.add_argument("--image-size", default="480x640", help="HxW of the image (resized to the config's input)")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--warmup", type=positive_int, default=2)
    parser.add_argument("--iters", type=positive_int, default=5)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not any(get_config(args.config).dcn_layers):
        parser.error(f"--config {args.config}: it has no deformable convolutions")
    height, width = image_size(parser, args.image_size)
    set_threads(args.threads)
    started = datetime.datetime.now(datetime.timezone.utc)
    layers = []
    for name, module, x, offset, mask in tqdm(layer_inputs(args.config, (height, width)), desc="layers", unit="layer"):
        layers.append({"name": name, **time_layer(module, x, offset, mask, args.threads, args.warmup, args.iters)})
    machine = {**machine_details(), "threads": args.threads}
    report = {
        "what": "each deformable convolution alone (the DeformConv kernel on given offsets and mask; the offset convolution not included)",
        "config": args.config,
        "image_hw": [height, width],
        "where": f"{cpu_description(machine)}, {args.threads} threads",
        "machine": machine,
        "layers": layers,
        "total_ms": {k: round(sum(layer["ms"][k] for layer in layers), 3) for k in KERNELS},
    }
    stem = report_stem(args.out_dir, "deform_conv", machine_tag(machine), started, args.config)
    write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(stem.with_suffix(".md"), markdown(report))
    print(markdown(report))
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
