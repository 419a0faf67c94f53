/* YOLACT instance segmentation through a C ABI, for C and for other languages' foreign-function interfaces
 * (Rust, Go, C#, Swift, Python ctypes). No C++ type crosses it: opaque handles, plain structs, status codes.
 *
 * Every function that can fail returns a yolact_status; on failure yolact_last_error() holds a one-line
 * message naming the culprit (per thread, until the next failing call on that thread). */
#ifndef YOLACT_RUNTIME_H
#define YOLACT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum yolact_status {
    YOLACT_OK = 0,
    YOLACT_ERROR_INVALID_ARGUMENT = 1, /* null pointer, index out of range, unknown backend or precision */
    YOLACT_ERROR_MODEL = 2,            /* missing, unreadable or corrupt model, or not exported by this toolkit */
    YOLACT_ERROR_IMAGE = 3,            /* unreadable or malformed image */
    YOLACT_ERROR_BACKEND = 4,          /* the inference engine failed */
    YOLACT_ERROR_OUT_OF_MEMORY = 5
} yolact_status;

/* Fill with yolact_options_init, then change what you need. NULL strings mean the default. */
typedef struct yolact_options {
    const char* backend;   /* "auto" (default: .engine -> tensorrt, else openvino), "openvino", "tensorrt" */
    const char* device;    /* OpenVINO: "cpu" (default), "gpu", "gpu.N", "auto"; TensorRT: "cuda" (default), "cuda:N" */
    const char* precision; /* "fp32" (default), "fp16", "bf16"; a TensorRT engine: its own (NULL) */
    float score_threshold; /* in [0, 1): detections scoring at or below it are dropped; default 0.3 */
    int threads;           /* OpenVINO inference threads; 0 (default): the backend decides */
    int max_batch;         /* images of one size per inference call; default 8 */
} yolact_options;

/* A BGR image, 8 bits per channel: `stride` bytes from one row to the next (at least 3 * width). */
typedef struct yolact_image {
    const uint8_t* data;
    int height;
    int width;
    size_t stride;
} yolact_image;

/* One detection. Pointers stay valid until the results are freed. */
typedef struct yolact_detection {
    int class_id;
    const char* class_name;
    float score;
    int box[4];          /* x1, y1, x2, y2 in pixels, clamped to the image */
    const uint8_t* mask; /* height * width bytes, row-major: 1 on the instance, 0 elsewhere */
    float mask_score;    /* what ranks the mask: YOLACT++'s box score x predicted mask IoU, else score */
} yolact_detection;

typedef struct yolact_segmenter yolact_segmenter;
typedef struct yolact_results yolact_results;

void yolact_options_init(yolact_options* options);

/* Load a model (options may be NULL for the defaults). On success *segmenter is to be destroyed. */
yolact_status yolact_create(const char* model_path, const yolact_options* options, yolact_segmenter** segmenter);
void yolact_destroy(yolact_segmenter* segmenter); /* NULL is ignored, as by every *_free below */

/* Segment `count` images (any sizes). On success *results is to be freed with yolact_results_free. */
yolact_status yolact_run(yolact_segmenter* segmenter, const yolact_image* images, size_t count,
                         yolact_results** results);
void yolact_results_free(yolact_results* results);

size_t yolact_results_image_count(const yolact_results* results);
/* Detections of image `image` (0 when `image` is out of range). */
size_t yolact_results_detection_count(const yolact_results* results, size_t image);
yolact_status yolact_results_image_size(const yolact_results* results, size_t image, int* height, int* width);
yolact_status yolact_results_detection(const yolact_results* results, size_t image, size_t index,
                                       yolact_detection* detection);
/* The detections of image `image` as the toolkit's JSON (what `python -m runtime` writes), `image_name`
 * recorded as its "image". On success *json is a NUL-terminated string to free with yolact_string_free. */
yolact_status yolact_results_json(const yolact_results* results, size_t image, const char* image_name, char** json);
void yolact_string_free(char* text);

/* Read an image file as BGR. On success image->data is owned by the library until yolact_image_free. */
yolact_status yolact_image_read(const char* path, yolact_image* image);
void yolact_image_free(yolact_image* image);

/* The message of the last failed call on this thread ("" if none). */
const char* yolact_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* YOLACT_RUNTIME_H */
