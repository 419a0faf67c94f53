// OpenVINO backend: reads the exported .onnx directly (its ONNX frontend) or the OpenVINO IR (.xml + .bin) of
// python -m export --to openvino, compiles it for a device and runs one inference request. Both carry the
// exporter's metadata in the model's rt_info under "framework" (where the ONNX frontend puts metadata_props).
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

bool is_ir(const std::string& model_path) {
    return model_path.size() >= 4 && model_path.compare(model_path.size() - 4, 4, ".xml") == 0;
}

// An IR through ov::Core::read_model (its .bin beside it); anything else through OpenVINO's ONNX frontend
// alone: read_model would also probe the other frontends (TensorFlow, Paddle, ...) on a file that is not
// ONNX, which only adds their noise to the error.
std::shared_ptr<ov::Model> read_graph(const std::string& model_path) {
    if (is_ir(model_path)) {
        return shared_core().read_model(model_path);
    }
    ov::frontend::FrontEndManager manager;
    const ov::frontend::FrontEnd::Ptr onnx = manager.load_by_framework("onnx");
    return onnx->convert(onnx->load(model_path));
}

// The position of each of output_names among the model's outputs. By position, not by name: where two
// outputs are one tensor (a v1 model's mask_scores are its scores), a compiled IR keeps only one name.
std::array<std::size_t, output_names.size()> output_positions(const ov::Model& model, const std::string& model_path) {
    std::array<std::size_t, output_names.size()> positions{};
    const auto& outputs = model.outputs();
    for (std::size_t i = 0; i < output_names.size(); ++i) {
        const auto found = std::find_if(outputs.begin(), outputs.end(), [&](const ov::Output<const ov::Node>& output) {
            return output.get_names().count(output_names[i]) > 0;
        });
        if (found == outputs.end()) {
            const std::string hint = std::string(output_names[i]) == "mask_scores"
                                         ? ": exported by an older python -m export; export it again"
                                         : ": not a graph written by python -m export";
            throw Error(ErrorKind::model, model_path + ": no '" + output_names[i] + "' output" + hint);
        }
        positions[i] = static_cast<std::size_t>(found - outputs.begin());
    }
    return positions;
}

class OpenVinoBackend final : public Backend {
public:
    OpenVinoBackend(const std::string& model_path, const BackendOptions& options) {
        std::shared_ptr<ov::Model> model;
        try {
            model = read_graph(model_path);
        } catch (const std::exception& error) {
            throw Error(ErrorKind::model, model_path + (is_ir(model_path) ? ": OpenVINO cannot read it as an IR: "
                                                                          : ": OpenVINO cannot read it as ONNX: ") +
                                              reason(error));
        }
        if (model->has_rt_info("framework")) {
            for (const auto& [key, value] : model->get_rt_info<ov::AnyMap>("framework")) {
                metadata_[key] = value.as<std::string>();
            }
        }
        positions_ = output_positions(*model, model_path);
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
            const auto output = [&](std::size_t index) { return request_.get_output_tensor(positions_[index]); };
            const ov::Tensor masks = output(4);
            const ov::Shape mask_shape = masks.get_shape();  // [B, K, Hp, Wp]
            BatchOutputs outputs;
            outputs.batch = static_cast<int>(mask_shape.at(0));
            outputs.max_detections = static_cast<int>(mask_shape.at(1));
            outputs.proto_height = static_cast<int>(mask_shape.at(2));
            outputs.proto_width = static_cast<int>(mask_shape.at(3));
            outputs.num_dets = output(0).data<const std::int32_t>();
            outputs.boxes = output(1).data<const float>();
            outputs.scores = output(2).data<const float>();
            outputs.classes = output(3).data<const std::int32_t>();
            outputs.masks = masks.data<const float>();
            outputs.mask_scores = output(5).data<const float>();
            return outputs;
        } catch (const std::exception& error) {
            throw Error(ErrorKind::backend, "OpenVINO inference failed: " + reason(error));
        }
    }

private:
    ov::CompiledModel compiled_;
    ov::InferRequest request_;
    std::array<std::size_t, output_names.size()> positions_{};
    std::map<std::string, std::string> metadata_;
};

}  // namespace

std::unique_ptr<Backend> make_openvino_backend(const std::string& model_path, const BackendOptions& options) {
    return std::make_unique<OpenVinoBackend>(model_path, options);
}

}  // namespace yolact
