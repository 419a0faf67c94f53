// YOLACT instance segmentation from C++: load a model exported by `python -m export` (an ONNX file or an
// OpenVINO IR through OpenVINO, or a TensorRT engine with its JSON sidecar) and turn BGR images into detections with pixel boxes
// and binary masks at the image size. No backend type appears here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace yolact {

// Which kind of input was at fault, so callers (and the C ABI's status codes) can tell failures apart.
enum class ErrorKind {
    invalid_argument,  // an option or an argument outside what is accepted
    model,             // missing, unreadable or corrupt model, or a model without this toolkit's metadata
    image,             // unreadable or malformed image
    backend,           // the inference engine failed at run time
};

// Every failure of the library; the message is one line and names the culprit.
class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string& message);
    ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

struct Options {
    // "auto" (a .engine file -> "tensorrt", anything else -> "openvino"), "openvino" or "tensorrt".
    std::string backend = "auto";
    // The spellings of `python -m runtime`. Empty: the backend's default. OpenVINO: "cpu" (default), "gpu",
    // "gpu.N", "auto"; TensorRT: "cuda" (default, device 0) or "cuda:N".
    std::string device;
    // "fp32", "fp16" or "bf16". Empty: fp32 on OpenVINO (what onnxruntime computes); a TensorRT engine's
    // precision is fixed when it is built, so there it may only name the engine's own.
    std::string precision;
    // In [0, 1): detections scoring at or below it are dropped (as `python -m runtime --score-threshold`).
    float score_threshold = 0.3f;
    // OpenVINO inference threads; 0 lets the backend decide. TensorRT ignores it.
    int threads = 0;
    // Images of one size that go through the graph together; the backend may lower it.
    int max_batch = 8;
};

// A BGR image in caller memory: `stride` bytes from one row to the next (at least 3 * width).
struct ImageView {
    const std::uint8_t* data = nullptr;
    int height = 0;
    int width = 0;
    std::size_t stride = 0;
};

// Pixel box: x1 <= x2 in [0, width], y1 <= y2 in [0, height], truncated to integers.
struct Box {
    int x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

struct Detection {
    int class_id = 0;
    std::string class_name;
    float score = 0.0f;       // the box score: what the score threshold and the order go by
    float mask_score = 0.0f;  // what ranks the mask: YOLACT++'s box score x predicted mask IoU, else the score
    Box box;
    cv::Mat mask;  // CV_8UC1 at the image size, continuous: 1 on the instance, 0 elsewhere
};

struct ImageResult {
    int height = 0;
    int width = 0;
    std::vector<Detection> detections;  // by decreasing score (graph order)
};

// Where the time of the last run() went, in milliseconds.
struct RunTiming {
    double prepare_ms = 0;  // checking the images and packing them into batches
    double infer_ms = 0;    // the backend running the graph
    double paste_ms = 0;    // the final-image step: boxes to pixels, masks upsampled and binarised
    double total_ms = 0;    // the whole call
};

// Not thread-safe: one run() at a time per Segmenter (it owns one inference request).
class Segmenter {
public:
    explicit Segmenter(const std::string& model_path, const Options& options = Options());
    ~Segmenter();
    Segmenter(Segmenter&&) noexcept;
    Segmenter& operator=(Segmenter&&) noexcept;

    // One result per image, in order; images may have different sizes. cv::Mat images must be CV_8UC3 BGR.
    std::vector<ImageResult> run(const std::vector<cv::Mat>& images);
    std::vector<ImageResult> run(const std::vector<ImageView>& images);
    ImageResult run(const cv::Mat& image);

    const std::vector<std::string>& class_names() const;
    // "openvino" or "tensorrt": the backend "auto" chose.
    const std::string& backend() const;
    const RunTiming& last_timing() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// A colour image file as BGR (OpenCV's imread); Error(ErrorKind::image) naming the path if unreadable.
cv::Mat read_image(const std::string& path);

}  // namespace yolact
