// Results in the toolkit's JSON format: what `python -m yolact.predict` and `python -m runtime` write.
#pragma once

#include <string>

#include <opencv2/core.hpp>

#include "yolact/segmenter.hpp"

namespace yolact {

// COCO RLE of a binary mask (nonzero = 1), in pycocotools' compressed string form: the `counts` that
// pycocotools.mask.encode returns for the same mask.
std::string rle_counts(const cv::Mat& mask);

// The detections of one image as JSON, byte for byte as Python's json.dumps(..., indent=1) writes
// yolact.predict.detections_json: image (as given), height, width, detections with class_id, class_name,
// score (6 decimals), box_xyxy, mask_area and mask_rle {size, counts}.
std::string detections_json(const ImageResult& result, const std::string& image);

}  // namespace yolact
