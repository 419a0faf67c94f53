"""The check that compact masks are exactly the dense masks they stand for, shared by the runtime tests."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils


def assert_exact_masks(found, expected: np.ndarray) -> None:
    """``found`` (a ``runtime.Detections``) holds ``expected`` (bool [N, H, W]) pixel for pixel through
    every accessor (dense planes, one plane, crops, nothing set outside a crop), and its RLE, made from
    the crops, is pycocotools' encoding of ``expected``, byte for byte."""
    np.testing.assert_array_equal(found.masks, expected)
    for i in range(len(found)):
        crop = found.crop(i)
        np.testing.assert_array_equal(crop.mask, expected[i][crop.region])
        assert crop.mask.sum() == expected[i].sum(), f"mask {i} has pixels outside its crop"
        np.testing.assert_array_equal(found.mask(i), expected[i])
    encoded = mask_utils.encode(np.asfortranarray(expected.transpose(1, 2, 0), dtype=np.uint8)) if len(expected) else []
    assert [rle["counts"] for rle in found.rle()] == [rle["counts"] for rle in encoded]
    assert [list(rle["size"]) for rle in found.rle()] == [list(expected.shape[1:])] * len(expected)
