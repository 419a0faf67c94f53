"""Torch-free inference (numpy + onnxruntime, or TensorRT) over graphs made by ``python -m export``.

Planned: nothing here imports torch."""
