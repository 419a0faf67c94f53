// OpenVINO backend: reads the exported .onnx directly (its ONNX frontend), compiles it for a device and runs
// one inference request. The exporter's metadata_props arrive in the model's rt_info under "framework".
#include <algorithm>
#include <cctype>

#include <openvino/frontend/manager.hpp>
#include <openvino/openvino.hpp>

#include "backend.hpp"
#include "yolact/segmenter.hpp"

namespace yolact {
namespace {

// The reason in an OpenVINO exception: its message is a chain of "Exception from <file>:<line>:" and
// "Check '...' failed at <file>:<line>:" lines that ends with the reason itself.
std::string reason(const std::exception& error) {
    std::string text = error.what();
    text.erase(text.find_last_not_of(" \n") + 1);
    const std::size_t line_start = text.find_last_of('\n');
    return line_start == std::string::npos ? text : text.substr(line_start + 1);
}

ov::element::Type inference_precision(const std::string& precision) {
    if (precision == "bf16") {
        return ov::element::bf16;
    }
    if (precision == "fp16") {
        return ov::element::f16;
    }
    return ov::element::f32;  // exact: what onnxruntime computes
}

// Our device spelling (cpu, gpu, gpu.N, auto) -> OpenVINO's (CPU, GPU, GPU.N, AUTO).
std::string openvino_device(const std::string& device) {
    std::string name = device.empty() ? "CPU" : device;
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
    return name;
}

// One Core for the process, as OpenVINO recommends: each device plugin loads once. Never destroyed, so the
// plugins stay loaded until the process ends (a compiled model never outlives its plugin, and leak checkers
// can still name the plugin's own allocations).
ov::Core& shared_core() {
    static ov::Core* const core = new ov::Core();
    return *core;
}

// The file through OpenVINO's ONNX frontend alone: ov::Core::read_model would also probe the other frontends
// (TensorFlow, Paddle, ...) on a file that is not ONNX, which only adds their noise to the error.
std::shared_ptr<ov::Model> read_onnx(const std::string& model_path) {
    ov::frontend::FrontEndManager manager;
    const ov::frontend::FrontEnd::Ptr onnx = manager.load_by_framework("onnx");
    return onnx->convert(onnx->load(model_path));
}

class OpenVinoBackend final : public Backend {
public:
    OpenVinoBackend(const std::string& model_path, const BackendOptions& options) {
        std::shared_ptr<ov::Model> model;
        try {
            model = read_onnx(model_path);
        } catch (const std::exception& error) {
            throw Error(ErrorKind::model, model_path + ": OpenVINO cannot read it as ONNX: " + reason(error));
        }
        if (model->has_rt_info("framework")) {
            for (const auto& [key, value] : model->get_rt_info<ov::AnyMap>("framework")) {
                metadata_[key] = value.as<std::string>();
            }
        }
        ov::AnyMap config{ov::hint::inference_precision(inference_precision(options.precision))};
        if (options.threads > 0) {
            config.emplace(ov::inference_num_threads(options.threads));
        }
        const std::string device = openvino_device(options.device);
        try {
            compiled_ = shared_core().compile_model(model, device, config);
            request_ = compiled_.create_infer_request();
        } catch (const std::exception& error) {
            throw Error(ErrorKind::backend, model_path + ": OpenVINO cannot compile it for device " + device + ": " +
                                                reason(error));
        }
    }

    const std::map<std::string, std::string>& metadata() const override { return metadata_; }

    int max_batch() const override { return 1 << 16; }

    BatchOutputs infer(const std::uint8_t* images, int batch, int height, int width) override {
        try {
            const ov::Shape shape{static_cast<std::size_t>(batch), static_cast<std::size_t>(height),
                                  static_cast<std::size_t>(width), 3};
            // Wraps the caller's pixels: the input is never written, and no copy is made.
            request_.set_tensor("images", ov::Tensor(ov::element::u8, shape, const_cast<std::uint8_t*>(images)));
            request_.infer();
            const ov::Tensor masks = request_.get_tensor("masks");
            const ov::Shape mask_shape = masks.get_shape();  // [B, K, Hp, Wp]
            BatchOutputs outputs;
            outputs.batch = static_cast<int>(mask_shape.at(0));
            outputs.max_detections = static_cast<int>(mask_shape.at(1));
            outputs.proto_height = static_cast<int>(mask_shape.at(2));
            outputs.proto_width = static_cast<int>(mask_shape.at(3));
            outputs.num_dets = request_.get_tensor("num_dets").data<const std::int32_t>();
            outputs.boxes = request_.get_tensor("boxes").data<const float>();
            outputs.scores = request_.get_tensor("scores").data<const float>();
            outputs.classes = request_.get_tensor("classes").data<const std::int32_t>();
            outputs.masks = masks.data<const float>();
            return outputs;
        } catch (const std::exception& error) {
            throw Error(ErrorKind::backend, "OpenVINO inference failed: " + reason(error));
        }
    }

private:
    ov::CompiledModel compiled_;
    ov::InferRequest request_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace

std::unique_ptr<Backend> make_openvino_backend(const std::string& model_path, const BackendOptions& options) {
    return std::make_unique<OpenVinoBackend>(model_path, options);
}

}  // namespace yolact
