"""The tensorrt backend on a real engine built by ``export.tensorrt_build``. TensorRT needs an NVIDIA GPU and
NVIDIA's wheels; where ``import tensorrt`` fails these tests are skipped, never faked."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU): the tensorrt backend is not exercised here")
pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed: the tensorrt backend needs it")

from export.tensorrt_build import BatchRange, build_engine  # noqa: E402
from runtime import ModelError, Segmenter  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory, onnx_model):
    path = tmp_path_factory.mktemp("engine") / "tiny.engine"
    return build_engine(onnx_model, path, BatchRange(1, 2, 2))


def test_engine_gives_the_detections_of_onnxruntime(engine, onnx_model, images):
    with Segmenter(engine) as tensorrt:
        assert (tensorrt.backend_name, tensorrt.precision, tensorrt.max_batch) == ("tensorrt", "fp32", 2)
        assert tensorrt.class_names == Segmenter(onnx_model).class_names
        found = tensorrt(images)
    expected = Segmenter(onnx_model, backend="onnxruntime", device="cpu")(images)
    for found_one, expected_one in zip(found, expected):
        assert len(found_one) == len(expected_one) > 0
        np.testing.assert_array_equal(found_one.class_ids, expected_one.class_ids)
        assert np.abs(found_one.boxes - expected_one.boxes).max() <= 1
        assert (found_one.masks == expected_one.masks).mean() >= 0.999


def test_batches_outside_the_engine_profile_are_refused(engine):
    with Segmenter(engine) as tensorrt:
        with pytest.raises(ModelError, match=r"batch of 3 images: .*tiny.engine takes at most 2"):
            tensorrt.infer(np.zeros((3, 200, 200, 3), np.uint8))
        with pytest.raises(ModelError, match=r"tiny.engine: a batch of shape \[1, 10, 10, 3\] is outside the engine's profile"):
            tensorrt.infer(np.zeros((1, 10, 10, 3), np.uint8))  # the profile starts at 32 px a side
    with pytest.raises(ModelError, match=r"batch size 3: .*tiny.engine takes at most 2 images per batch"):
        Segmenter(engine, batch_size=3)
