"""Export to ONNX and TensorRT: ``python -m export``."""
