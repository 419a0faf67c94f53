// yolact_segment --model M --out DIR [options] IMAGE...
//
// Writes, per image, DIR/<stem>.png (masks, boxes, "class score" labels over the image) and DIR/<stem>.json
// (the format of `python -m yolact.predict` and `python -m runtime`). A bad image is reported on stderr and
// skipped (exit status 1 at the end); a bad model or option stops at once (exit status 2).
// --repeat N --timing-json FILE runs every batch N times and records where each run's time went:
// {model, backend, device, precision, threads, batch_size, runs: [{images, repeat, prepare_ms, infer_ms,
// paste_ms, total_ms}]}, infer_ms being the backend's inference alone (repeat 0 includes its warm-up).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "yolact/coco_output.hpp"
#include "yolact/segmenter.hpp"

namespace fs = std::filesystem;

namespace {

const char* const usage =
    "usage: yolact_segment --model MODEL --out DIR [--backend auto|openvino|tensorrt] [--device D]\n"
    "                      [--precision fp32|fp16|bf16] [--score-threshold T] [--threads N] [--batch-size N]\n"
    "                      [--repeat N --timing-json FILE] IMAGE...\n";

struct Arguments {
    std::string model;
    fs::path out;
    yolact::Options options;
    int repeat = 1;
    std::string timing_json;
    std::vector<std::string> images;
};

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

template <typename Number>
Number parse_number(const std::string& flag, const std::string& text) {
    try {
        std::size_t used = 0;
        const Number value = std::is_integral_v<Number> ? static_cast<Number>(std::stoi(text, &used))
                                                        : static_cast<Number>(std::stod(text, &used));
        if (used == text.size()) {
            return value;
        }
    } catch (const std::exception&) {  // stoi/stod: not a number or out of range; reported below
    }
    throw UsageError(flag + ": expected a number, got '" + text + "'");
}

Arguments parse_arguments(int argc, char** argv) {
    Arguments args;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag.rfind("--", 0) != 0) {
            args.images.push_back(flag);
            continue;
        }
        if (i + 1 >= argc) {
            throw UsageError(flag + ": missing value");
        }
        const std::string value = argv[++i];
        if (flag == "--model") args.model = value;
        else if (flag == "--out") args.out = value;
        else if (flag == "--backend") args.options.backend = value;
        else if (flag == "--device") args.options.device = value;
        else if (flag == "--precision") args.options.precision = value;
        else if (flag == "--score-threshold") args.options.score_threshold = parse_number<float>(flag, value);
        else if (flag == "--threads") args.options.threads = parse_number<int>(flag, value);
        else if (flag == "--batch-size") args.options.max_batch = parse_number<int>(flag, value);
        else if (flag == "--repeat") args.repeat = parse_number<int>(flag, value);
        else if (flag == "--timing-json") args.timing_json = value;
        else throw UsageError("unknown option " + flag);
    }
    if (args.model.empty() || args.out.empty() || args.images.empty()) {
        throw UsageError("--model, --out and at least one image are required");
    }
    if (args.repeat < 1) {
        throw UsageError("--repeat must be at least 1");
    }
    std::set<std::string> stems;
    for (const auto& image : args.images) {
        if (!stems.insert(fs::path(image).stem().string()).second) {
            throw UsageError("--out: two input images share a file name stem; their outputs would collide");
        }
    }
    return args;
}

// Written beside the target and renamed onto it, so a failure never leaves half a file.
void write_file_atomic(const fs::path& path, const std::string& bytes) {
    const fs::path temporary = path.parent_path() / ("." + path.filename().string() + ".tmp");
    {
        std::ofstream file(temporary, std::ios::binary);
        file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!file) {
            throw std::runtime_error(path.string() + ": cannot be written");
        }
    }
    fs::rename(temporary, path);
}

// A distinct, stable BGR colour per instance (golden-ratio hue steps), as yolact.visualize.instance_color.
cv::Scalar instance_color(std::size_t index) {
    const int hue = static_cast<int>(std::fmod(static_cast<double>(index) * 0.618033988749895, 1.0) * 179);
    cv::Mat bgr;
    cv::cvtColor(cv::Mat(1, 1, CV_8UC3, cv::Scalar(hue, 200, 255)), bgr, cv::COLOR_HSV2BGR);
    const cv::Vec3b pixel = bgr.at<cv::Vec3b>(0, 0);
    return cv::Scalar(pixel[0], pixel[1], pixel[2]);
}

// The image with every detection drawn, highest score on top, as yolact.visualize.draw_detections.
cv::Mat draw_detections(const cv::Mat& image, const yolact::ImageResult& result, float mask_alpha = 0.45f) {
    cv::Mat canvas;
    image.convertTo(canvas, CV_32FC3);
    const auto& detections = result.detections;
    for (std::size_t i = detections.size(); i-- > 0;) {  // lowest score first so the best ends up on top
        const cv::Scalar color = instance_color(i);
        for (int y = 0; y < canvas.rows; ++y) {
            const std::uint8_t* mask = detections[i].mask.ptr<std::uint8_t>(y);
            cv::Vec3f* pixel = canvas.ptr<cv::Vec3f>(y);
            for (int x = 0; x < canvas.cols; ++x) {
                if (mask[x]) {
                    for (int c = 0; c < 3; ++c) {
                        pixel[x][c] = pixel[x][c] * (1 - mask_alpha) + static_cast<float>(color[c]) * mask_alpha;
                    }
                }
            }
        }
    }
    cv::Mat out;
    canvas.convertTo(out, CV_8UC3);
    const int font = cv::FONT_HERSHEY_SIMPLEX, thickness = 1;
    const double scale = 0.45;
    for (std::size_t i = 0; i < detections.size(); ++i) {
        const cv::Scalar color = instance_color(i);
        const yolact::Box& box = detections[i].box;
        cv::rectangle(out, {box.x1, box.y1}, {box.x2, box.y2}, color, 1);
        char score[32];
        std::snprintf(score, sizeof score, " %.2f", detections[i].score);
        const std::string label = detections[i].class_name + score;
        int baseline = 0;
        const cv::Size text = cv::getTextSize(label, font, scale, thickness, &baseline);
        const int top = std::max(box.y1 - text.height - baseline - 2, 0);
        cv::rectangle(out, {box.x1, top}, {box.x1 + text.width + 2, top + text.height + baseline + 2}, color, -1);
        cv::putText(out, label, {box.x1 + 1, top + text.height + 1}, font, scale, cv::Scalar(0, 0, 0), thickness,
                    cv::LINE_AA);
    }
    return out;
}

void write_outputs(const fs::path& out, const std::string& path, const cv::Mat& image,
                   const yolact::ImageResult& result) {
    const std::string stem = fs::path(path).stem().string();
    std::vector<std::uint8_t> png;
    if (!cv::imencode(".png", draw_detections(image, result), png)) {
        throw std::runtime_error(path + ": OpenCV could not encode the overlay as PNG");
    }
    write_file_atomic(out / (stem + ".png"), std::string(png.begin(), png.end()));
    write_file_atomic(out / (stem + ".json"), yolact::detections_json(result, path));
}

nlohmann::json timing_record(const std::vector<std::string>& paths, int repeat, const yolact::RunTiming& timing) {
    return {{"images", paths},           {"repeat", repeat},          {"prepare_ms", timing.prepare_ms},
            {"infer_ms", timing.infer_ms}, {"paste_ms", timing.paste_ms}, {"total_ms", timing.total_ms}};
}

}  // namespace

int main(int argc, char** argv) {
    Arguments args;
    try {
        args = parse_arguments(argc, argv);
    } catch (const UsageError& error) {
        std::cerr << usage << "error: " << error.what() << "\n";
        return 2;
    }
    try {
        fs::create_directories(args.out);
        yolact::Segmenter segmenter(args.model, args.options);
        bool any_failed = false;
        std::size_t written = 0;
        nlohmann::json runs = nlohmann::json::array();
        const std::size_t batch_size = static_cast<std::size_t>(args.options.max_batch);
        for (std::size_t start = 0; start < args.images.size(); start += batch_size) {
            std::vector<std::string> paths;
            std::vector<cv::Mat> images;
            for (std::size_t i = start; i < std::min(args.images.size(), start + batch_size); ++i) {
                try {
                    images.push_back(yolact::read_image(args.images[i]));
                    paths.push_back(args.images[i]);
                } catch (const yolact::Error& error) {
                    std::cerr << "error: " << error.what() << " (skipped)\n";
                    any_failed = true;
                }
            }
            std::vector<yolact::ImageResult> results;
            for (int repeat = 0; repeat < args.repeat && !images.empty(); ++repeat) {
                results = segmenter.run(images);
                runs.push_back(timing_record(paths, repeat, segmenter.last_timing()));
            }
            for (std::size_t i = 0; i < images.size(); ++i, ++written) {
                write_outputs(args.out, paths[i], images[i], results[i]);
            }
        }
        if (!args.timing_json.empty()) {
            const nlohmann::json timing = {{"model", args.model},           {"backend", segmenter.backend()},
                                           {"device", args.options.device}, {"precision", args.options.precision},
                                           {"threads", args.options.threads}, {"batch_size", args.options.max_batch},
                                           {"runs", runs}};
            write_file_atomic(args.timing_json, timing.dump(1));
        }
        std::cout << "wrote " << written << " overlays and detection files to " << args.out.string() << "\n";
        return any_failed ? 1 : 0;
    } catch (const std::exception& error) {  // yolact::Error (model, options) or the output folder
        std::cerr << "error: " << error.what() << "\n";
    }
    return 2;
}
