// The final-image step, equal to Python's yolact.inference.to_image followed by ImageDetections.above:
// boxes scaled to pixels, ordered, clamped and truncated; each prototype-resolution mask upsampled
// bilinearly to the image (half-pixel centres, PyTorch's align_corners=False) and binarised at 0.5.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "backend.hpp"
#include "yolact/segmenter.hpp"

namespace yolact {

// Bilinear sampling along one axis, per target index: the two source indices and their weights, computed
// in float32 as PyTorch's upsample_bilinear2d does.
struct AxisSampling {
    std::vector<int> low, high;
    std::vector<float> low_weight, high_weight;
};

AxisSampling bilinear_sampling(int source_size, int target_size);

// Normalised x1y1x2y2 -> pixels: scaled, ordered, the low side clamped at 0 and the high side at the image
// size (as yolact.box_utils.sanitize_coordinates), truncated towards zero.
Box pixel_box(const float* normalised_xyxy, int height, int width);

// A [proto_height, proto_width] mask of probabilities, upsampled and binarised into `mask`: CV_8UC1
// [rows.size(), cols.size()], all 0 on entry. Only the region whose samples touch a nonzero prototype cell is
// computed and written; elsewhere the upsampled value is exactly 0.
void paste_mask(const float* proto_mask, int proto_height, int proto_width, const AxisSampling& rows,
                const AxisSampling& cols, cv::Mat& mask);

// The detections of image `index` of a batch, of size height x width, scoring above `score_threshold`.
std::vector<Detection> image_detections(const BatchOutputs& outputs, int index, int height, int width,
                                        float score_threshold, const std::vector<std::string>& class_names);

}  // namespace yolact
