#include "final_image.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace yolact {
namespace {

// float -> int truncating towards zero like torch's .long(); NaN (a broken graph) becomes 0 rather than UB.
int truncate_to_int(float value) {
    if (std::isnan(value)) {
        return 0;
    }
    constexpr float limit = static_cast<float>(std::numeric_limits<int>::max() / 2);
    return static_cast<int>(std::clamp(value, -limit, limit));
}

// One axis of sanitize_coordinates: (low, high) pixels.
std::pair<int, int> pixel_span(float a, float b, int size) {
    const float scaled_a = a * static_cast<float>(size);
    const float scaled_b = b * static_cast<float>(size);
    const float low = std::max(std::min(scaled_a, scaled_b), 0.0f);
    const float high = std::min(std::max(scaled_a, scaled_b), static_cast<float>(size));
    return {truncate_to_int(low), truncate_to_int(high)};
}

// [first, last) of the target indices whose two source samples touch [nonzero_first, nonzero_last]; the
// sample indices grow with the target index, so this is one contiguous range.
std::pair<int, int> touching_range(const AxisSampling& axis, int nonzero_first, int nonzero_last) {
    const int first = static_cast<int>(
        std::lower_bound(axis.high.begin(), axis.high.end(), nonzero_first) - axis.high.begin());
    const int last = static_cast<int>(
        std::upper_bound(axis.low.begin(), axis.low.end(), nonzero_last) - axis.low.begin());
    return {first, std::max(first, last)};
}

}  // namespace

AxisSampling bilinear_sampling(int source_size, int target_size) {
    AxisSampling axis;
    axis.low.resize(target_size);
    axis.high.resize(target_size);
    axis.low_weight.resize(target_size);
    axis.high_weight.resize(target_size);
    const float scale = static_cast<float>(source_size) / static_cast<float>(target_size);
    for (int i = 0; i < target_size; ++i) {
        const float source = std::max(scale * (static_cast<float>(i) + 0.5f) - 0.5f, 0.0f);
        const int low = std::min(static_cast<int>(std::floor(source)), source_size - 1);
        const float high_weight = std::clamp(source - static_cast<float>(low), 0.0f, 1.0f);
        axis.low[i] = low;
        axis.high[i] = low < source_size - 1 ? low + 1 : low;
        axis.high_weight[i] = high_weight;
        axis.low_weight[i] = 1.0f - high_weight;
    }
    return axis;
}

Box pixel_box(const float* normalised_xyxy, int height, int width) {
    const auto [x1, x2] = pixel_span(normalised_xyxy[0], normalised_xyxy[2], width);
    const auto [y1, y2] = pixel_span(normalised_xyxy[1], normalised_xyxy[3], height);
    return Box{x1, y1, x2, y2};
}

void paste_mask(const float* proto_mask, int proto_height, int proto_width, const AxisSampling& rows,
                const AxisSampling& cols, cv::Mat& mask) {
    int row_first = proto_height, row_last = -1, col_first = proto_width, col_last = -1;
    for (int r = 0; r < proto_height; ++r) {
        const float* row = proto_mask + static_cast<std::size_t>(r) * proto_width;
        for (int c = 0; c < proto_width; ++c) {
            if (row[c] != 0.0f) {
                row_first = std::min(row_first, r);
                row_last = r;
                col_first = std::min(col_first, c);
                col_last = std::max(col_last, c);
            }
        }
    }
    if (row_last < 0) {
        return;
    }
    const auto [y_first, y_last] = touching_range(rows, row_first, row_last);
    const auto [x_first, x_last] = touching_range(cols, col_first, col_last);
    if (y_first == y_last || x_first == x_last) {  // downsampling to a tiny image can step over the support
        return;
    }
    // Two passes, in PyTorch's order of float operations: along the width for the prototype rows the region
    // reads, then along the height for each image row, from the two rows it reads.
    const int band_first = rows.low[y_first], band_rows = rows.high[y_last - 1] - band_first + 1;
    const int region_width = x_last - x_first;
    std::vector<float> along_width(static_cast<std::size_t>(band_rows) * region_width);
    for (int r = 0; r < band_rows; ++r) {
        const float* cells = proto_mask + static_cast<std::size_t>(band_first + r) * proto_width;
        float* out = along_width.data() + static_cast<std::size_t>(r) * region_width;
        for (int x = x_first; x < x_last; ++x) {
            out[x - x_first] = cells[cols.low[x]] * cols.low_weight[x] + cells[cols.high[x]] * cols.high_weight[x];
        }
    }
    for (int y = y_first; y < y_last; ++y) {
        const float* top = along_width.data() + static_cast<std::size_t>(rows.low[y] - band_first) * region_width;
        const float* bottom = along_width.data() + static_cast<std::size_t>(rows.high[y] - band_first) * region_width;
        const float top_weight = rows.low_weight[y], bottom_weight = rows.high_weight[y];
        std::uint8_t* out = mask.ptr<std::uint8_t>(y) + x_first;
        for (int i = 0; i < region_width; ++i) {
            out[i] = top[i] * top_weight + bottom[i] * bottom_weight > 0.5f ? 1 : 0;
        }
    }
}

std::vector<Detection> image_detections(const BatchOutputs& outputs, int index, int height, int width,
                                        float score_threshold, const std::vector<std::string>& class_names) {
    const int slots = outputs.max_detections;
    const int count = std::clamp(outputs.num_dets[index], 0, slots);
    const std::size_t first = static_cast<std::size_t>(index) * slots;
    const std::size_t mask_cells = static_cast<std::size_t>(outputs.proto_height) * outputs.proto_width;
    std::vector<int> kept;
    for (int i = 0; i < count; ++i) {
        if (outputs.scores[first + i] > score_threshold) {
            kept.push_back(i);
        }
    }
    std::vector<Detection> detections;
    if (kept.empty()) {
        return detections;
    }
    // One zeroed block holds every mask of the image, each a view of its rows: one allocation, one memset.
    const cv::Mat masks = cv::Mat::zeros(static_cast<int>(kept.size()) * height, width, CV_8UC1);
    const AxisSampling rows = bilinear_sampling(outputs.proto_height, height);
    const AxisSampling cols = bilinear_sampling(outputs.proto_width, width);
    for (std::size_t n = 0; n < kept.size(); ++n) {
        const std::size_t slot = first + kept[n];
        const int class_id = outputs.classes[slot];
        if (class_id < 0 || class_id >= static_cast<int>(class_names.size())) {
            throw Error(ErrorKind::backend, "the graph returned class id " + std::to_string(class_id) +
                                                " for a detection; the model has " +
                                                std::to_string(class_names.size()) + " classes");
        }
        Detection detection;
        detection.class_id = class_id;
        detection.class_name = class_names[class_id];
        detection.score = outputs.scores[slot];
        detection.mask_score = outputs.mask_scores[slot];
        detection.box = pixel_box(outputs.boxes + slot * 4, height, width);
        detection.mask = masks.rowRange(static_cast<int>(n) * height, static_cast<int>(n + 1) * height);
        paste_mask(outputs.masks + slot * mask_cells, outputs.proto_height, outputs.proto_width, rows, cols,
                   detection.mask);
        detections.push_back(std::move(detection));
    }
    return detections;
}

}  // namespace yolact
