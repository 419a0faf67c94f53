#include "model_info.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "yolact/segmenter.hpp"

namespace yolact {
namespace {

const std::string& required_entry(const std::map<std::string, std::string>& metadata, const std::string& key,
                                  const std::string& model_path) {
    auto found = metadata.find(key);
    if (found == metadata.end()) {
        throw Error(ErrorKind::model, model_path + ": no " + key +
                                          " in its metadata: not a model exported by this toolkit (python -m export)");
    }
    return found->second;
}

// The JSON value of a metadata entry, checked by `valid`; Error naming the key otherwise.
template <typename Valid>
nlohmann::json json_entry(const std::map<std::string, std::string>& metadata, const std::string& key,
                          const std::string& model_path, const char* expected, Valid valid) {
    nlohmann::json value = nlohmann::json::parse(required_entry(metadata, key, model_path), nullptr, false);
    if (value.is_discarded() || !valid(value)) {
        throw Error(ErrorKind::model, model_path + ": metadata " + key + " is not " + expected);
    }
    return value;
}

bool is_positive_integer(const nlohmann::json& value) {
    return value.is_number_integer() && value.get<long long>() > 0 && value.get<long long>() < (1 << 20);
}

}  // namespace

ModelInfo parse_model_info(const std::map<std::string, std::string>& metadata, const std::string& model_path) {
    ModelInfo info;
    auto names = json_entry(metadata, "yolact.class_names", model_path, "a JSON list of strings",
                            [](const nlohmann::json& v) {
                                return v.is_array() && !v.empty() &&
                                       std::all_of(v.begin(), v.end(), [](const auto& n) { return n.is_string(); });
                            });
    info.class_names = names.get<std::vector<std::string>>();
    info.max_detections = json_entry(metadata, "yolact.max_detections", model_path, "a positive integer",
                                     is_positive_integer)
                              .get<int>();
    auto proto = json_entry(metadata, "yolact.prototype_size", model_path, "a [height, width] list",
                            [](const nlohmann::json& v) {
                                return v.is_array() && v.size() == 2 && is_positive_integer(v[0]) &&
                                       is_positive_integer(v[1]);
                            });
    info.proto_height = proto[0].get<int>();
    info.proto_width = proto[1].get<int>();
    return info;
}

}  // namespace yolact
