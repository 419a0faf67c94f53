// TensorRT 10 backend: deserializes a .engine built by `python -m export --to trt` and runs it with
// enqueueV3 on a CUDA stream. An engine has no metadata store, so the exporter's metadata comes from the
// JSON sidecar written beside it (<engine>.json, key "onnx_metadata"), with the optimisation profile.
// Compiled only when CMake finds TensorRT and CUDA.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend.hpp"
#include "yolact/segmenter.hpp"

namespace yolact {
namespace {

constexpr const char* input_name = "images";

class Logger final : public nvinfer1::ILogger {
    void log(Severity severity, const char* message) noexcept override {
        if (severity <= Severity::kWARNING) {
            std::cerr << "TensorRT: " << message << "\n";
        }
    }
};

void check_cuda(cudaError_t status, const char* what) {
    if (status != cudaSuccess) {
        throw Error(ErrorKind::backend, std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status));
    }
}

// Device memory that only grows.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() { cudaFree(data_); }

    void* reserve(std::size_t bytes) {
        if (bytes > bytes_) {
            cudaFree(data_);
            data_ = nullptr;
            bytes_ = 0;
            check_cuda(cudaMalloc(&data_, bytes), "cudaMalloc");
            bytes_ = bytes;
        }
        return data_;
    }

    void* data() const { return data_; }

private:
    void* data_ = nullptr;
    std::size_t bytes_ = 0;
};

struct OutputBinding {
    DeviceBuffer device;
    std::vector<unsigned char> host;  // operator new's alignment suits float and int32
    nvinfer1::Dims shape{};
};

nlohmann::json read_sidecar(const std::string& model_path) {
    const std::string path = model_path + ".json";
    std::ifstream file(path);
    if (!file) {
        throw Error(ErrorKind::model, path + ": no such file (a TensorRT engine needs the JSON sidecar that "
                                             "python -m export --to trt writes beside it)");
    }
    nlohmann::json sidecar = nlohmann::json::parse(file, nullptr, false);
    if (sidecar.is_discarded() || !sidecar.is_object() || !sidecar.contains("onnx_metadata") ||
        !sidecar["onnx_metadata"].is_object()) {
        throw Error(ErrorKind::model, path + ": not a TensorRT sidecar of this toolkit (no onnx_metadata object)");
    }
    return sidecar;
}

// "cuda" or "cuda:N" (empty: cuda) -> N.
int cuda_device(const std::string& device) {
    if (device.empty() || device == "cuda") {
        return 0;
    }
    const std::string index = device.rfind("cuda:", 0) == 0 ? device.substr(5) : "";
    if (index.empty() || index.size() > 4 || index.find_first_not_of("0123456789") != std::string::npos) {
        throw Error(ErrorKind::invalid_argument,
                    "device '" + device + "': tensorrt runs on CUDA GPUs (device takes cuda or cuda:N)");
    }
    return std::stoi(index);
}

std::size_t element_count(const nvinfer1::Dims& dims) {
    std::size_t count = 1;
    for (int i = 0; i < dims.nbDims; ++i) {
        count *= static_cast<std::size_t>(std::max<std::int64_t>(dims.d[i], 0));
    }
    return count;
}

class TensorRtBackend final : public Backend {
public:
    TensorRtBackend(const std::string& model_path, const BackendOptions& options) : model_path_(model_path) {
        const nlohmann::json sidecar = read_sidecar(model_path);
        const std::string built = sidecar.value("precision", "fp32");
        if (!options.precision.empty() && options.precision != built) {
            throw Error(ErrorKind::invalid_argument, "precision " + options.precision + ": " + model_path +
                                                         " was built for " + built +
                                                         " (python -m export --to trt sets it)");
        }
        for (const auto& [key, value] : sidecar["onnx_metadata"].items()) {
            if (value.is_string()) {
                metadata_[key] = value.get<std::string>();
            }
        }
        read_profile(sidecar);
        check_cuda(cudaSetDevice(cuda_device(options.device)), "cudaSetDevice");

        std::ifstream file(model_path, std::ios::binary);
        const std::vector<char> engine_bytes{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
        runtime_.reset(nvinfer1::createInferRuntime(logger_));
        if (runtime_) {
            engine_.reset(runtime_->deserializeCudaEngine(engine_bytes.data(), engine_bytes.size()));
        }
        if (!engine_) {
            throw Error(ErrorKind::model, model_path + ": TensorRT cannot deserialize it (corrupt, or built by "
                                                       "another TensorRT version or for another GPU)");
        }
        context_.reset(engine_->createExecutionContext());
        if (!context_) {
            throw Error(ErrorKind::backend, model_path + ": TensorRT cannot create an execution context");
        }
        for (const char* name : output_names) {
            const nvinfer1::DataType type = engine_->getTensorDataType(name);
            if (type != nvinfer1::DataType::kFLOAT && type != nvinfer1::DataType::kINT32) {
                throw Error(ErrorKind::model, model_path + ": output " + name + " is not float32/int32 as exported");
            }
        }
        check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate");
    }

    ~TensorRtBackend() override {
        if (stream_) {
            cudaStreamDestroy(stream_);
        }
    }

    const std::map<std::string, std::string>& metadata() const override { return metadata_; }

    int max_batch() const override { return largest_[0]; }

    BatchOutputs infer(const std::uint8_t* images, int batch, int height, int width) override {
        const std::array<int, 3> shape{batch, height, width};
        for (std::size_t i = 0; i < shape.size(); ++i) {
            if (shape[i] < smallest_[i] || shape[i] > largest_[i]) {
                throw Error(ErrorKind::image, "a batch of " + std::to_string(batch) + " images of " +
                                                  std::to_string(height) + "x" + std::to_string(width) +
                                                  " is outside the profile " + model_path_ + " was built for "
                                                  "(batch, height, width from " + profile_text(smallest_) +
                                                  " to " + profile_text(largest_) + ")");
            }
        }
        if (!context_->setInputShape(input_name, nvinfer1::Dims4{batch, height, width, 3})) {
            throw Error(ErrorKind::backend, "TensorRT rejected the input shape " + std::to_string(batch) + "x" +
                                                std::to_string(height) + "x" + std::to_string(width) + "x3");
        }
        const std::size_t input_bytes = static_cast<std::size_t>(batch) * height * width * 3;
        void* device_input = input_.reserve(input_bytes);
        check_cuda(cudaMemcpyAsync(device_input, images, input_bytes, cudaMemcpyHostToDevice, stream_), "copy to GPU");
        context_->setTensorAddress(input_name, device_input);
        for (std::size_t i = 0; i < output_names.size(); ++i) {
            OutputBinding& output = outputs_[i];
            output.shape = context_->getTensorShape(output_names[i]);
            const std::size_t bytes = element_count(output.shape) * 4;  // float32 or int32
            output.host.resize(bytes);
            context_->setTensorAddress(output_names[i], output.device.reserve(bytes));
        }
        if (!context_->enqueueV3(stream_)) {
            throw Error(ErrorKind::backend, "TensorRT enqueueV3 failed (its log above says why)");
        }
        for (OutputBinding& output : outputs_) {
            check_cuda(cudaMemcpyAsync(output.host.data(), output.device.data(), output.host.size(),
                                       cudaMemcpyDeviceToHost, stream_),
                       "copy from GPU");
        }
        check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");

        const nvinfer1::Dims& mask_shape = outputs_[4].shape;  // [B, K, Hp, Wp]
        BatchOutputs result;
        result.batch = static_cast<int>(mask_shape.d[0]);
        result.max_detections = static_cast<int>(mask_shape.d[1]);
        result.proto_height = static_cast<int>(mask_shape.d[2]);
        result.proto_width = static_cast<int>(mask_shape.d[3]);
        result.num_dets = reinterpret_cast<const std::int32_t*>(outputs_[0].host.data());
        result.boxes = reinterpret_cast<const float*>(outputs_[1].host.data());
        result.scores = reinterpret_cast<const float*>(outputs_[2].host.data());
        result.classes = reinterpret_cast<const std::int32_t*>(outputs_[3].host.data());
        result.masks = reinterpret_cast<const float*>(outputs_[4].host.data());
        result.mask_scores = reinterpret_cast<const float*>(outputs_[5].host.data());
        return result;
    }

private:
    // The optimisation profile's (batch, height, width) limits, from its [B, H, W, 3] shapes in the sidecar.
    void read_profile(const nlohmann::json& sidecar) {
        const nlohmann::json profile = sidecar.value("profile", nlohmann::json::object());
        const auto limits = [&](const char* key) {
            const nlohmann::json value = profile.value(key, nlohmann::json::array());
            if (!value.is_array() || value.size() != 4 ||
                !std::all_of(value.begin(), value.end(), [](const auto& v) { return v.is_number_integer(); })) {
                throw Error(ErrorKind::model, model_path_ + ".json: profile." + key + " is not a [B, H, W, 3] shape");
            }
            return std::array<int, 3>{value[0].get<int>(), value[1].get<int>(), value[2].get<int>()};
        };
        smallest_ = limits("min");
        largest_ = limits("max");
    }

    static std::string profile_text(const std::array<int, 3>& limits) {
        return std::to_string(limits[0]) + "x" + std::to_string(limits[1]) + "x" + std::to_string(limits[2]);
    }

    std::string model_path_;
    std::map<std::string, std::string> metadata_;
    std::array<int, 3> smallest_{}, largest_{};
    Logger logger_;
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    std::unique_ptr<nvinfer1::IExecutionContext> context_;
    cudaStream_t stream_ = nullptr;
    DeviceBuffer input_;
    std::array<OutputBinding, output_names.size()> outputs_;
};

}  // namespace

std::unique_ptr<Backend> make_tensorrt_backend(const std::string& model_path, const BackendOptions& options) {
    return std::make_unique<TensorRtBackend>(model_path, options);
}

}  // namespace yolact
