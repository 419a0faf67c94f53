// What the segmenter needs from the exporter's metadata (export/onnx_export.py, model_metadata).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace yolact {

struct ModelInfo {
    std::vector<std::string> class_names;
    int max_detections = 0;  // K
    int proto_height = 0;
    int proto_width = 0;
};

// Error(ErrorKind::model) naming `model_path` when a key is missing ("not exported by this toolkit") or
// malformed.
ModelInfo parse_model_info(const std::map<std::string, std::string>& metadata, const std::string& model_path);

}  // namespace yolact
