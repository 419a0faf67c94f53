// The backend boundary: one small interface between the segmenter and an inference engine. A backend loads
// the model, reports the exporter's metadata and runs the graph; everything else (batching, the final-image
// step, JSON) is shared. Adding a backend (onnxruntime's C++ API, say) is one more file with a factory.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace yolact {

// The graph's outputs in python -m export's order (the fields of yolact.BatchResult).
inline constexpr std::array<const char*, 6> output_names{"num_dets", "boxes", "scores", "classes", "masks", "mask_scores"};

// The graph's outputs for a batch, viewed in the backend's memory: valid until the next infer().
struct BatchOutputs {
    int batch = 0;
    int max_detections = 0;  // K
    int proto_height = 0;    // Hp
    int proto_width = 0;     // Wp
    const std::int32_t* num_dets = nullptr;  // [B]
    const float* boxes = nullptr;            // [B, K, 4] normalised x1y1x2y2
    const float* scores = nullptr;           // [B, K]
    const std::int32_t* classes = nullptr;   // [B, K], -1 in padding
    const float* masks = nullptr;            // [B, K, Hp, Wp] cropped mask probabilities
    const float* mask_scores = nullptr;      // [B, K]
};

// What the segmenter's options mean to a backend; empty strings ask for the backend's default.
struct BackendOptions {
    std::string device;
    std::string precision;
    int threads = 0;
};

class Backend {
public:
    virtual ~Backend() = default;
    // The exporter's key/value metadata (`yolact.*`), as written into the ONNX metadata_props.
    virtual const std::map<std::string, std::string>& metadata() const = 0;
    // The largest batch one infer() accepts.
    virtual int max_batch() const = 0;
    // Run the graph on `batch` contiguous uint8 BGR images of height x width (NHWC).
    virtual BatchOutputs infer(const std::uint8_t* images, int batch, int height, int width) = 0;
};

std::unique_ptr<Backend> make_openvino_backend(const std::string& model_path, const BackendOptions& options);
#ifdef YOLACT_WITH_TENSORRT
std::unique_ptr<Backend> make_tensorrt_backend(const std::string& model_path, const BackendOptions& options);
#endif

}  // namespace yolact
