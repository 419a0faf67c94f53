#!/usr/bin/env bash
# Every check the issues ask of a lent CUDA machine, in one run (a lease is short: nothing is retried).
#
#   benchmarks/gpu_checks.sh OUT_DIR [YOLACT_PLUS_SMALL_WEIGHTS]
#
# Needs python3 with torch on CUDA, and onnxruntime-gpu (CUDA provider) importable. Runs, each step logged to
# OUT_DIR/<step>.log with its exit status and seconds in OUT_DIR/steps.txt; a failing step does not stop
# the next one:
#   1. the authors' fixtures on CUDA: PyTorch (tests/test_authors_equivalence.py) and the YOLACT++ graph on
#      onnxruntime's CUDA provider (tests/test_export_yolact_plus.py);
#   2. benchmarks.fps of yolact_base at batch 1 and 8: PyTorch FP32 and FP16, torch.compile with CUDA graphs,
#      onnxruntime's CUDA provider;
#   3. benchmarks.divergence of the YOLACT++ fixture graph (the fixture's weights and image) on onnxruntime's
#      CUDA provider against its CPU one, tensor by tensor: where the CUDA scores leave the authors' (up to
#      1.45e-3 on 2026-12-04), with cuDNN's convolution algorithms as tuned (EXHAUSTIVE) and as its default;
#   4. the fps of step 2 for yolact_plus_base, without torch.compile (DeformConv on onnxruntime's CUDA kernel);
#   5. benchmarks.parity of a trained yolact_plus_small on CUDA (skipped without its weights).
# The benchmarks write their JSON, tables and charts to OUT_DIR (fps rewrites its report after every variant,
# cheapest first, so a step stopped at its limit keeps what it measured); copy them to benchmarks/results/.
# Measured on an H200 (2026-12-04): the whole script needs about 12 minutes, torch.compile about 140 s of it
# (step 3, added since, is not in that figure).
set -u
out=${1:?usage: benchmarks/gpu_checks.sh OUT_DIR [YOLACT_PLUS_SMALL_WEIGHTS]}
weights=${2:-runs/plus_small/weights.pth}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
failed=0

step() {  # step NAME SECONDS COMMAND...: at most SECONDS, so one stuck step cannot take the lease
    local name=$1 limit=$2 started rc
    shift 2
    started=$(date +%s)
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || failed=1
    echo "$name: exit $rc, $(($(date +%s) - started)) s" | tee -a "$out/steps.txt"
    tail -n 4 "$out/$name.log"
}

step environment 60 sh -c 'nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv &&
    python3 -c "import sys, torch, torchvision, onnxruntime as ort; print(sys.version.split()[0], torch.__version__, torch.version.cuda,
torchvision.__version__, ort.__version__, ort.get_available_providers())"'
step fixtures_cuda 240 python3 -m pytest -q -p no:cacheprovider tests/test_authors_equivalence.py tests/test_export_yolact_plus.py -k cuda
timing=(--device cuda --batch 1 8 --warmup 10 --iters 60 --out-dir "$out")
step fps_yolact_base 300 python3 -m benchmarks.fps --config yolact_base "${timing[@]}" \
    --variants onnxruntime_fp32 pytorch_fp32 pytorch_fp16 pytorch_compiled_fp16
step fixture_graph 180 python3 -c "import cv2, numpy as np; from export.onnx_export import export_onnx
from yolact.config import get_config; from yolact.recipe import recipe_model
cv2.imwrite('$out/fixture_image.png', np.load('tests/data/yolact_plus_resnet50.npz')['image_bgr'])
export_onnx(recipe_model(get_config('yolact_plus_resnet50'), conf_gain=3.0), '$out/yolact_plus_resnet50.onnx')"
for conv_algo in EXHAUSTIVE DEFAULT; do
    step "divergence_cuda_$conv_algo" 120 python3 -m benchmarks.divergence --model "$out/yolact_plus_resnet50.onnx" \
        --image "$out/fixture_image.png" --candidate "onnxruntime:cuda,use_tf32=0,cudnn_conv_algo_search=$conv_algo" --out-dir "$out"
done
step fps_yolact_plus_base 240 python3 -m benchmarks.fps --config yolact_plus_base "${timing[@]}" \
    --variants onnxruntime_fp32 pytorch_fp32 pytorch_fp16
if [ -f "$weights" ]; then
    step parity_yolact_plus_small 180 python3 -m benchmarks.parity --weights "$weights" --device cuda \
        --variants pytorch_fp32 pytorch_fp16 onnxruntime_fp32 --out-dir "$out"
else
    echo "parity_yolact_plus_small: skipped, no weights at $weights" | tee -a "$out/steps.txt"
fi
exit $failed
