#include "yolact/segmenter.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <utility>

#include <opencv2/imgcodecs.hpp>

#include "backend.hpp"
#include "final_image.hpp"
#include "model_info.hpp"

namespace yolact {
namespace {

using Clock = std::chrono::steady_clock;

double milliseconds_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

bool ends_with(const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string resolve_backend(const std::string& requested, const std::string& model_path) {
    if (requested == "auto") {
        return ends_with(model_path, ".engine") ? "tensorrt" : "openvino";
    }
    if (requested == "openvino" || requested == "tensorrt") {
        return requested;
    }
    throw Error(ErrorKind::invalid_argument,
                "unknown backend '" + requested + "' (expected auto, openvino or tensorrt)");
}

void check_options(const Options& options) {
    const std::string& precision = options.precision;
    if (!precision.empty() && precision != "fp32" && precision != "fp16" && precision != "bf16") {
        throw Error(ErrorKind::invalid_argument, "unknown precision '" + precision + "' (expected fp32, fp16 or bf16)");
    }
    if (!(options.score_threshold >= 0.0f && options.score_threshold < 1.0f)) {
        throw Error(ErrorKind::invalid_argument,
                    "score threshold " + std::to_string(options.score_threshold) + ": must be in [0, 1)");
    }
    if (options.threads < 0) {
        throw Error(ErrorKind::invalid_argument, "threads must be 0 (backend default) or more");
    }
    if (options.max_batch < 1) {
        throw Error(ErrorKind::invalid_argument, "max_batch must be at least 1");
    }
}

std::unique_ptr<Backend> make_backend(const std::string& name, const std::string& model_path,
                                      const BackendOptions& options) {
    if (name == "openvino") {
        return make_openvino_backend(model_path, options);
    }
#ifdef YOLACT_WITH_TENSORRT
    return make_tensorrt_backend(model_path, options);
#else
    throw Error(ErrorKind::invalid_argument,
                "backend 'tensorrt' is not in this build (CMake found no TensorRT and CUDA when it was built)");
#endif
}

void check_outputs(const BatchOutputs& outputs, int batch, const ModelInfo& info) {
    if (outputs.batch != batch || outputs.max_detections != info.max_detections ||
        outputs.proto_height != info.proto_height || outputs.proto_width != info.proto_width) {
        throw Error(ErrorKind::backend,
                    "the graph's outputs (batch " + std::to_string(outputs.batch) + ", K " +
                        std::to_string(outputs.max_detections) + ", masks " + std::to_string(outputs.proto_height) +
                        "x" + std::to_string(outputs.proto_width) + ") do not match its metadata (batch " +
                        std::to_string(batch) + ", K " + std::to_string(info.max_detections) + ", masks " +
                        std::to_string(info.proto_height) + "x" + std::to_string(info.proto_width) + ")");
    }
}

ImageView view_of(const cv::Mat& image, std::size_t index) {
    if (image.empty() || image.type() != CV_8UC3 || image.dims != 2) {
        throw Error(ErrorKind::image, "image " + std::to_string(index) + ": expected a non-empty 8-bit 3-channel "
                                      "BGR cv::Mat (CV_8UC3)");
    }
    return ImageView{image.ptr<std::uint8_t>(), image.rows, image.cols, image.step[0]};
}

void check_view(const ImageView& view, std::size_t index) {
    if (view.data == nullptr || view.height < 1 || view.width < 1 ||
        view.stride < 3 * static_cast<std::size_t>(view.width)) {
        throw Error(ErrorKind::image, "image " + std::to_string(index) +
                                          ": needs pixel data, height and width of at least 1 and a stride of at "
                                          "least 3 * width bytes");
    }
}

// Indices of the images, grouped by size (the graph takes one size per batch) in order of first appearance,
// split into batches of at most `max_batch`.
std::vector<std::vector<std::size_t>> batches_by_size(const std::vector<ImageView>& images, int max_batch) {
    std::map<std::pair<int, int>, std::size_t> open_batch;  // size -> index in `batches` still taking images
    std::vector<std::vector<std::size_t>> batches;
    for (std::size_t i = 0; i < images.size(); ++i) {
        const std::pair<int, int> size{images[i].height, images[i].width};
        auto found = open_batch.find(size);
        if (found == open_batch.end() || batches[found->second].size() == static_cast<std::size_t>(max_batch)) {
            open_batch[size] = batches.size();
            batches.emplace_back();
        }
        batches[open_batch[size]].push_back(i);
    }
    return batches;
}

}  // namespace

Error::Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}

struct Segmenter::Impl {
    std::string backend_name;
    std::unique_ptr<Backend> backend;
    ModelInfo info;
    float score_threshold = 0.3f;
    int max_batch = 1;
    RunTiming timing;
    std::vector<std::uint8_t> packed;  // a batch as one NHWC buffer, when the images are not one already

    // Pointer to the batch as contiguous NHWC: the image itself when it is one contiguous image.
    const std::uint8_t* pack(const std::vector<ImageView>& images, const std::vector<std::size_t>& batch) {
        const ImageView& first = images[batch.front()];
        const std::size_t row_bytes = 3 * static_cast<std::size_t>(first.width);
        if (batch.size() == 1 && first.stride == row_bytes) {
            return first.data;
        }
        packed.resize(batch.size() * first.height * row_bytes);
        std::uint8_t* out = packed.data();
        for (std::size_t index : batch) {
            for (int y = 0; y < first.height; ++y, out += row_bytes) {
                std::memcpy(out, images[index].data + y * images[index].stride, row_bytes);
            }
        }
        return packed.data();
    }
};

Segmenter::Segmenter(const std::string& model_path, const Options& options) : impl_(std::make_unique<Impl>()) {
    check_options(options);
    impl_->backend_name = resolve_backend(options.backend, model_path);
    std::error_code error;
    if (!std::filesystem::is_regular_file(model_path, error)) {
        throw Error(ErrorKind::model, model_path + ": no such file");
    }
    impl_->backend = make_backend(impl_->backend_name, model_path,
                                  BackendOptions{options.device, options.precision, options.threads});
    impl_->info = parse_model_info(impl_->backend->metadata(), model_path);
    impl_->score_threshold = options.score_threshold;
    impl_->max_batch = std::min(options.max_batch, impl_->backend->max_batch());
}

Segmenter::~Segmenter() = default;
Segmenter::Segmenter(Segmenter&&) noexcept = default;
Segmenter& Segmenter::operator=(Segmenter&&) noexcept = default;

std::vector<ImageResult> Segmenter::run(const std::vector<ImageView>& images) {
    const auto start = Clock::now();
    RunTiming timing;
    for (std::size_t i = 0; i < images.size(); ++i) {
        check_view(images[i], i);
    }
    std::vector<ImageResult> results(images.size());
    for (const auto& batch : batches_by_size(images, impl_->max_batch)) {
        const int height = images[batch.front()].height, width = images[batch.front()].width;
        const std::uint8_t* pixels = impl_->pack(images, batch);
        const auto infer_start = Clock::now();
        const BatchOutputs outputs = impl_->backend->infer(pixels, static_cast<int>(batch.size()), height, width);
        timing.infer_ms += milliseconds_since(infer_start);
        check_outputs(outputs, static_cast<int>(batch.size()), impl_->info);
        const auto paste_start = Clock::now();
        for (std::size_t b = 0; b < batch.size(); ++b) {
            ImageResult& result = results[batch[b]];
            result.height = height;
            result.width = width;
            result.detections = image_detections(outputs, static_cast<int>(b), height, width,
                                                 impl_->score_threshold, impl_->info.class_names);
        }
        timing.paste_ms += milliseconds_since(paste_start);
    }
    timing.total_ms = milliseconds_since(start);
    timing.prepare_ms = timing.total_ms - timing.infer_ms - timing.paste_ms;
    impl_->timing = timing;
    return results;
}

std::vector<ImageResult> Segmenter::run(const std::vector<cv::Mat>& images) {
    std::vector<ImageView> views;
    views.reserve(images.size());
    for (std::size_t i = 0; i < images.size(); ++i) {
        views.push_back(view_of(images[i], i));
    }
    return run(views);
}

ImageResult Segmenter::run(const cv::Mat& image) {
    return std::move(run(std::vector<ImageView>{view_of(image, 0)}).front());
}

const std::vector<std::string>& Segmenter::class_names() const { return impl_->info.class_names; }
const std::string& Segmenter::backend() const { return impl_->backend_name; }
const RunTiming& Segmenter::last_timing() const { return impl_->timing; }

cv::Mat read_image(const std::string& path) {
    std::error_code error;
    if (!std::filesystem::is_regular_file(path, error)) {  // checked first: OpenCV would print its own warning
        throw Error(ErrorKind::image, path + ": no such file");
    }
    cv::Mat image;
    try {
        image = cv::imread(path, cv::IMREAD_COLOR);
    } catch (const cv::Exception&) {  // some decoders throw on corrupt data instead of returning nothing
    }
    if (image.empty()) {
        throw Error(ErrorKind::image, path + ": not a readable image (corrupt or not an image file)");
    }
    return image;
}

}  // namespace yolact
