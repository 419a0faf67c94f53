// The C++ API's own checks, built into one binary (also built under AddressSanitizer in CI):
//   segmenter_test                                            unit checks that need no model
//   segmenter_test --model M --foreign-model F --scratch DIR  plus the model, error and API checks
//   segmenter_test --json-sample                              prints a detections JSON for the Python check
// Exit status 0 when every check passes; each failure is printed.
#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "final_image.hpp"
#include "yolact/coco_output.hpp"
#include "yolact/segmenter.hpp"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        std::cerr << "FAILED: " << what << "\n";
        ++failures;
    }
}

// `action` must throw yolact::Error of `kind` whose message contains `culprit`.
void check_error(const std::function<void()>& action, yolact::ErrorKind kind, const std::string& culprit,
                 const std::string& what) {
    try {
        action();
        check(false, what + ": no exception");
    } catch (const yolact::Error& error) {
        const std::string message = error.what();
        check(error.kind() == kind, what + ": wrong error kind (" + message + ")");
        check(message.find(culprit) != std::string::npos, what + ": message does not name " + culprit + ": " + message);
        check(message.find('\n') == std::string::npos, what + ": message is not one line: " + message);
    } catch (const std::exception& error) {
        check(false, what + ": not a yolact::Error: " + error.what());
    }
}

// Expected strings from pycocotools.mask.encode on the same masks.
void rle_matches_pycocotools() {
    cv::Mat pattern(6, 5, CV_8UC1);
    for (int y = 0; y < 6; ++y) {
        for (int x = 0; x < 5; ++x) {
            pattern.at<std::uint8_t>(y, x) = (x * 7 + y * 3) % 11 < 4;
        }
    }
    check(yolact::rle_counts(pattern) == "022O10O10O10O10O1", "RLE of a 6x5 pattern");

    cv::Mat blob = cv::Mat::zeros(300, 200, CV_8UC1);  // long runs, negative run differences
    blob(cv::Range(20, 250), cv::Range(30, 170)).setTo(1);
    blob(cv::Range(100, 120), cv::Range(60, 61)).setTo(0);
    check(yolact::rle_counts(blob) == "li8V7V2" + std::string(58, '0') + "ZK^Nb1b1T3" + std::string(216, '0') + "dh8",
          "RLE of a 300x200 blob with a hole");

    check(yolact::rle_counts(cv::Mat::zeros(5, 7, CV_8UC1)) == "S1", "RLE of an empty mask");
    check(yolact::rle_counts(cv::Mat::ones(5, 7, CV_8UC1) * 255) == "0S1", "RLE of a full mask (nonzero = 1)");
    cv::Mat corners = cv::Mat::zeros(3, 4, CV_8UC1);
    corners.at<std::uint8_t>(0, 0) = corners.at<std::uint8_t>(2, 3) = 1;
    check(yolact::rle_counts(corners) == "01:0", "RLE starting with a one");
}

// The full-plane computation the region of interest must reproduce.
cv::Mat full_plane_mask(const std::vector<float>& proto, int proto_height, int proto_width, int height, int width) {
    const yolact::AxisSampling rows = yolact::bilinear_sampling(proto_height, height);
    const yolact::AxisSampling cols = yolact::bilinear_sampling(proto_width, width);
    cv::Mat mask(height, width, CV_8UC1);
    for (int y = 0; y < height; ++y) {
        for (int x = 0; x < width; ++x) {
            const auto at = [&](int r, int c) { return proto[static_cast<std::size_t>(r) * proto_width + c]; };
            const float top = at(rows.low[y], cols.low[x]) * cols.low_weight[x] +
                              at(rows.low[y], cols.high[x]) * cols.high_weight[x];
            const float bottom = at(rows.high[y], cols.low[x]) * cols.low_weight[x] +
                                 at(rows.high[y], cols.high[x]) * cols.high_weight[x];
            mask.at<std::uint8_t>(y, x) = top * rows.low_weight[y] + bottom * rows.high_weight[y] > 0.5f;
        }
    }
    return mask;
}

void paste_equals_full_plane() {
    std::mt19937 random(7);
    std::uniform_real_distribution<float> value(0.0f, 1.0f);
    const int proto_height = 32, proto_width = 24;
    const int sizes[][2] = {{120, 160}, {32, 24}, {17, 9}, {1, 1}, {301, 77}, {40, 500}};
    const int boxes[][4] = {{0, 0, 32, 24}, {5, 3, 12, 20}, {0, 20, 1, 24}, {31, 0, 32, 1}, {10, 10, 10, 10}};
    for (const auto& size : sizes) {
        for (const auto& box : boxes) {
            std::vector<float> proto(proto_height * proto_width, 0.0f);
            for (int r = box[0]; r < box[2]; ++r) {
                for (int c = box[1]; c < box[3]; ++c) {
                    proto[r * proto_width + c] = value(random);
                }
            }
            const cv::Mat expected = full_plane_mask(proto, proto_height, proto_width, size[0], size[1]);
            cv::Mat pasted = cv::Mat::zeros(size[0], size[1], CV_8UC1);
            yolact::paste_mask(proto.data(), proto_height, proto_width, yolact::bilinear_sampling(proto_height, size[0]),
                               yolact::bilinear_sampling(proto_width, size[1]), pasted);
            check(cv::countNonZero(expected != pasted) == 0,
                  "ROI paste equals the full plane at " + std::to_string(size[0]) + "x" + std::to_string(size[1]) +
                      " for cells [" + std::to_string(box[0]) + "," + std::to_string(box[2]) + ")x[" +
                      std::to_string(box[1]) + "," + std::to_string(box[3]) + ")");
        }
    }
}

void sampling_is_half_pixel() {
    // PyTorch's F.interpolate(align_corners=False) from 4 to 8: source (i + 0.5) / 2 - 0.5, clamped at 0.
    const yolact::AxisSampling axis = yolact::bilinear_sampling(4, 8);
    check(axis.low[0] == 0 && axis.high[0] == 1 && axis.high_weight[0] == 0.0f, "first sample clamps at 0");
    check(axis.low[1] == 0 && axis.high_weight[1] == 0.25f, "second sample at 0.25");
    check(axis.low[7] == 3 && axis.high[7] == 3, "last sample clamps at the edge");
}

void boxes_follow_sanitize_coordinates() {
    const auto box = [](std::vector<float> b, int height, int width) { return yolact::pixel_box(b.data(), height, width); };
    const yolact::Box inside = box({0.25f, 0.5f, 0.75f, 1.0f}, 100, 200);
    check(inside.x1 == 50 && inside.y1 == 50 && inside.x2 == 150 && inside.y2 == 100, "box scaled and truncated");
    const yolact::Box swapped = box({0.8f, 0.9f, -0.1f, 1.3f}, 10, 10);
    check(swapped.x1 == 0 && swapped.x2 == 8 && swapped.y1 == 9 && swapped.y2 == 10, "box ordered and clamped");
    const yolact::Box fraction = box({0.333f, 0.0f, 0.999f, 0.0f}, 7, 7);
    check(fraction.x1 == 2 && fraction.x2 == 6, "box truncated towards zero");
}

yolact::ImageResult sample_result() {
    yolact::ImageResult result;
    result.height = 4;
    result.width = 3;
    const float scores[] = {0.87654325f, 0.5f, 1e-05f, 0.30000001f};
    const char* names[] = {"circle", "quote \" back\\slash \t tab", "caf\xc3\xa9 \xf0\x9f\x99\x82", "ring"};
    for (int i = 0; i < 4; ++i) {
        yolact::Detection detection;
        detection.class_id = i;
        detection.class_name = names[i];
        detection.score = scores[i];
        detection.mask_score = scores[3 - i];
        detection.box = {i, 0, 3, 4 - i};
        detection.mask = cv::Mat::zeros(4, 3, CV_8UC1);
        detection.mask(cv::Rect(0, i, 3 - i % 3, 1)).setTo(1);
        result.detections.push_back(detection);
    }
    return result;
}

void model_checks(const std::string& model, const std::string& foreign_model, const std::string& scratch) {
    using yolact::ErrorKind;
    const std::string missing = scratch + "/missing.onnx", corrupt = scratch + "/corrupt.onnx";
    std::ofstream(corrupt) << "this is not an ONNX file";
    check_error([&] { yolact::Segmenter s(missing); }, ErrorKind::model, missing, "missing model");
    check_error([&] { yolact::Segmenter s(corrupt); }, ErrorKind::model, corrupt, "corrupt model");
    check_error([&] { yolact::Segmenter s(foreign_model); }, ErrorKind::model, "yolact.class_names",
                "model without our metadata");
    yolact::Options options;
    options.backend = "onnxruntime-gpu";
    check_error([&] { yolact::Segmenter s(model, options); }, ErrorKind::invalid_argument, "onnxruntime-gpu",
                "unknown backend");
    options = yolact::Options();
    options.precision = "int4";
    check_error([&] { yolact::Segmenter s(model, options); }, ErrorKind::invalid_argument, "int4", "unknown precision");
    check_error([&] { yolact::read_image(corrupt); }, ErrorKind::image, corrupt, "unreadable image");
    check_error([&] { yolact::read_image(missing); }, ErrorKind::image, missing, "missing image");

    yolact::Segmenter segmenter(model);
    check(segmenter.backend() == "openvino", "auto picks OpenVINO for .onnx");
    check(!segmenter.class_names().empty(), "class names from the metadata");
    check_error([&] { segmenter.run(cv::Mat(10, 10, CV_8UC1)); }, ErrorKind::image, "image 0", "grey cv::Mat");
    check_error([&] { segmenter.run(cv::Mat()); }, ErrorKind::image, "image 0", "empty cv::Mat");
    check_error([&] { segmenter.run(std::vector<yolact::ImageView>{{nullptr, 10, 10, 30}}); }, ErrorKind::image,
                "image 0", "null pixels");

    // A 90x70 image inside a wider buffer (stride > 3 * width) gives what its contiguous copy gives.
    cv::Mat canvas(90, 100, CV_8UC3);
    cv::randu(canvas, 0, 256);
    const cv::Mat inner = canvas(cv::Rect(13, 0, 70, 90));
    const yolact::ImageResult strided =
        segmenter.run(std::vector<yolact::ImageView>{{inner.data, inner.rows, inner.cols, inner.step[0]}}).front();
    const yolact::ImageResult contiguous = segmenter.run(inner.clone());
    check(!contiguous.detections.empty(), "the test model detects something on noise");
    check(strided.detections.size() == contiguous.detections.size(), "strided view: same detection count");
    for (std::size_t i = 0; i < std::min(strided.detections.size(), contiguous.detections.size()); ++i) {
        const yolact::Detection &a = strided.detections[i], &b = contiguous.detections[i];
        check(a.class_id == b.class_id && a.score == b.score && a.box.x1 == b.box.x1 && a.box.y2 == b.box.y2 &&
                  cv::countNonZero(a.mask != b.mask) == 0,
              "strided view: detection " + std::to_string(i) + " identical");
        check(a.mask.rows == 90 && a.mask.cols == 70 && a.mask.type() == CV_8UC1, "mask at the image size");
    }

    // Mixed sizes in one call: each result has its own image's size, in input order.
    cv::Mat small(40, 50, CV_8UC3), large(130, 90, CV_8UC3);
    cv::randu(small, 0, 256);
    cv::randu(large, 0, 256);
    const auto results = segmenter.run(std::vector<cv::Mat>{small, large, small});
    check(results.size() == 3 && results[0].height == 40 && results[1].width == 90 && results[2].width == 50,
          "mixed sizes keep input order");
    check(results[0].detections.size() == results[2].detections.size(), "same image twice in a batch: same count");
    const yolact::RunTiming& timing = segmenter.last_timing();
    check(timing.infer_ms > 0 && timing.total_ms >= timing.infer_ms + timing.paste_ms, "timing recorded");
}

}  // namespace

int main(int argc, char** argv) {
    std::string model, foreign_model, scratch;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--json-sample") {
            std::cout << yolact::detections_json(sample_result(), "dir/sample image.png");
            return 0;
        }
        if (i + 1 < argc && flag == "--model") model = argv[++i];
        else if (i + 1 < argc && flag == "--foreign-model") foreign_model = argv[++i];
        else if (i + 1 < argc && flag == "--scratch") scratch = argv[++i];
        else {
            std::cerr << "usage: segmenter_test [--json-sample | --model M --foreign-model F --scratch DIR]\n";
            return 2;
        }
    }
    rle_matches_pycocotools();
    paste_equals_full_plane();
    sampling_is_half_pixel();
    boxes_follow_sanitize_coordinates();
    if (!model.empty()) {
        model_checks(model, foreign_model, scratch);
    }
    std::cout << (failures ? "FAILED" : "passed") << " (" << failures << " failures)\n";
    return failures ? 1 : 0;
}
