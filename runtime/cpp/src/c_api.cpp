// The C ABI over yolact::Segmenter: exceptions become status codes plus a per-thread message.
#include "yolact_runtime.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "yolact/coco_output.hpp"
#include "yolact/segmenter.hpp"

struct yolact_segmenter {
    yolact::Segmenter segmenter;
};

struct yolact_results {
    std::vector<yolact::ImageResult> images;
};

namespace {

thread_local std::string last_error;

yolact_status fail(yolact_status status, const std::string& message) {
    last_error = message;
    return status;
}

yolact_status status_of(yolact::ErrorKind kind) {
    switch (kind) {
        case yolact::ErrorKind::invalid_argument: return YOLACT_ERROR_INVALID_ARGUMENT;
        case yolact::ErrorKind::model: return YOLACT_ERROR_MODEL;
        case yolact::ErrorKind::image: return YOLACT_ERROR_IMAGE;
        case yolact::ErrorKind::backend: return YOLACT_ERROR_BACKEND;
    }
    return YOLACT_ERROR_BACKEND;
}

// Runs `body`, turning every exception into a status and last_error: nothing escapes into C.
template <typename Body>
yolact_status guarded(Body body) {
    try {
        body();
        return YOLACT_OK;
    } catch (const yolact::Error& error) {
        return fail(status_of(error.kind()), error.what());
    } catch (const std::bad_alloc&) {
        return fail(YOLACT_ERROR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception& error) {
        return fail(YOLACT_ERROR_BACKEND, error.what());
    } catch (...) {
        return fail(YOLACT_ERROR_BACKEND, "unknown error");
    }
}

std::string or_default(const char* text, const std::string& fallback) {
    return text ? std::string(text) : fallback;
}

const yolact::ImageResult* image_at(const yolact_results* results, std::size_t image) {
    if (results == nullptr || image >= results->images.size()) {
        return nullptr;
    }
    return &results->images[image];
}

yolact_status bad_image_index(const yolact_results* results, std::size_t image) {
    return fail(YOLACT_ERROR_INVALID_ARGUMENT,
                results == nullptr ? "results is NULL"
                                   : "image index " + std::to_string(image) + " out of range (" +
                                         std::to_string(results->images.size()) + " images)");
}

// A malloc'd copy, so that C callers release it with the library's free functions whatever allocator C++ uses.
void* malloc_copy(const void* data, std::size_t bytes) {
    void* copy = std::malloc(bytes);
    if (copy == nullptr) {
        throw std::bad_alloc();
    }
    std::memcpy(copy, data, bytes);
    return copy;
}

}  // namespace

extern "C" {

void yolact_options_init(yolact_options* options) {
    if (options == nullptr) {
        return;
    }
    const yolact::Options defaults;
    *options = yolact_options{nullptr, nullptr, nullptr, defaults.score_threshold, defaults.threads, defaults.max_batch};
}

yolact_status yolact_create(const char* model_path, const yolact_options* options, yolact_segmenter** segmenter) {
    if (model_path == nullptr || segmenter == nullptr) {
        return fail(YOLACT_ERROR_INVALID_ARGUMENT, "yolact_create: model_path and segmenter must not be NULL");
    }
    *segmenter = nullptr;
    return guarded([&] {
        yolact::Options cpp;
        if (options != nullptr) {
            cpp.backend = or_default(options->backend, cpp.backend);
            cpp.device = or_default(options->device, cpp.device);
            cpp.precision = or_default(options->precision, cpp.precision);
            cpp.score_threshold = options->score_threshold;
            cpp.threads = options->threads;
            cpp.max_batch = options->max_batch;
        }
        *segmenter = new yolact_segmenter{yolact::Segmenter(model_path, cpp)};
    });
}

void yolact_destroy(yolact_segmenter* segmenter) { delete segmenter; }

yolact_status yolact_run(yolact_segmenter* segmenter, const yolact_image* images, size_t count,
                         yolact_results** results) {
    if (segmenter == nullptr || results == nullptr || (images == nullptr && count > 0)) {
        return fail(YOLACT_ERROR_INVALID_ARGUMENT, "yolact_run: segmenter, images and results must not be NULL");
    }
    *results = nullptr;
    return guarded([&] {
        std::vector<yolact::ImageView> views;
        for (size_t i = 0; i < count; ++i) {
            views.push_back(yolact::ImageView{images[i].data, images[i].height, images[i].width, images[i].stride});
        }
        *results = new yolact_results{segmenter->segmenter.run(views)};
    });
}

void yolact_results_free(yolact_results* results) { delete results; }

size_t yolact_results_image_count(const yolact_results* results) {
    return results ? results->images.size() : 0;
}

size_t yolact_results_detection_count(const yolact_results* results, size_t image) {
    const yolact::ImageResult* result = image_at(results, image);
    return result ? result->detections.size() : 0;
}

yolact_status yolact_results_image_size(const yolact_results* results, size_t image, int* height, int* width) {
    const yolact::ImageResult* result = image_at(results, image);
    if (result == nullptr) {
        return bad_image_index(results, image);
    }
    if (height == nullptr || width == nullptr) {
        return fail(YOLACT_ERROR_INVALID_ARGUMENT, "yolact_results_image_size: height and width must not be NULL");
    }
    *height = result->height;
    *width = result->width;
    return YOLACT_OK;
}

yolact_status yolact_results_detection(const yolact_results* results, size_t image, size_t index,
                                       yolact_detection* detection) {
    const yolact::ImageResult* result = image_at(results, image);
    if (result == nullptr) {
        return bad_image_index(results, image);
    }
    if (detection == nullptr || index >= result->detections.size()) {
        return fail(YOLACT_ERROR_INVALID_ARGUMENT, "yolact_results_detection: detection index " +
                                                       std::to_string(index) + " out of range (" +
                                                       std::to_string(result->detections.size()) +
                                                       " detections) or detection is NULL");
    }
    const yolact::Detection& source = result->detections[index];
    *detection = yolact_detection{source.class_id, source.class_name.c_str(), source.score,
                                  {source.box.x1, source.box.y1, source.box.x2, source.box.y2},
                                  source.mask.ptr<uint8_t>(), source.mask_score};
    return YOLACT_OK;
}

yolact_status yolact_results_json(const yolact_results* results, size_t image, const char* image_name, char** json) {
    const yolact::ImageResult* result = image_at(results, image);
    if (result == nullptr) {
        return bad_image_index(results, image);
    }
    if (image_name == nullptr || json == nullptr) {
        return fail(YOLACT_ERROR_INVALID_ARGUMENT, "yolact_results_json: image_name and json must not be NULL");
    }
    *json = nullptr;
    return guarded([&] {
        const std::string text = yolact::detections_json(*result, image_name);
        *json = static_cast<char*>(malloc_copy(text.c_str(), text.size() + 1));
    });
}

void yolact_string_free(char* text) { std::free(text); }

yolact_status yolact_image_read(const char* path, yolact_image* image) {
    if (path == nullptr || image == nullptr) {
        return fail(YOLACT_ERROR_INVALID_ARGUMENT, "yolact_image_read: path and image must not be NULL");
    }
    *image = yolact_image{nullptr, 0, 0, 0};
    return guarded([&] {
        const cv::Mat pixels = yolact::read_image(path);  // continuous: imread allocates it whole
        const auto* data = static_cast<uint8_t*>(malloc_copy(pixels.data, pixels.total() * pixels.elemSize()));
        *image = yolact_image{data, pixels.rows, pixels.cols, pixels.step[0]};
    });
}

void yolact_image_free(yolact_image* image) {
    if (image != nullptr) {
        std::free(const_cast<uint8_t*>(image->data));
        *image = yolact_image{nullptr, 0, 0, 0};
    }
}

const char* yolact_last_error(void) { return last_error.c_str(); }

}  // extern "C"
