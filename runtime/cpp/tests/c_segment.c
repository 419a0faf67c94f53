/* The C ABI from C: c_segment --model M --out DIR [--backend B] [--score-threshold T] IMAGE...
 *
 * For each image writes DIR/<stem>.json (yolact_results_json) and DIR/<stem>.txt, one line per detection
 * read back through the accessors: "class_id score mask_score x1 y1 x2 y2 mask_area class_name", the area counted from
 * the mask bytes. A bad image is reported on stderr and skipped (exit 1); a bad model or option exits 2; a
 * broken ABI contract exits 3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "yolact_runtime.h"

static int write_text(const char* path, const char* text) {
    FILE* file = fopen(path, "wb");
    if (file == NULL) {
        return 0;
    }
    int ok = fputs(text, file) >= 0;
    return fclose(file) == 0 && ok;
}

/* DIR/<file name without its last extension><suffix> */
static void output_path(char* out, size_t size, const char* dir, const char* image, const char* suffix) {
    const char* name = strrchr(image, '/') ? strrchr(image, '/') + 1 : image;
    const char* dot = strrchr(name, '.');
    int stem = (int)(dot && dot != name ? (size_t)(dot - name) : strlen(name));
    snprintf(out, size, "%s/%.*s%s", dir, stem, name, suffix);
}

static int write_summary(const char* path, const yolact_results* results) {
    int height = 0, width = 0;
    if (yolact_results_image_size(results, 0, &height, &width) != YOLACT_OK) {
        return 0;
    }
    FILE* file = fopen(path, "w");
    if (file == NULL) {
        return 0;
    }
    for (size_t i = 0; i < yolact_results_detection_count(results, 0); ++i) {
        yolact_detection d;
        if (yolact_results_detection(results, 0, i, &d) != YOLACT_OK) {
            fclose(file);
            return 0;
        }
        long area = 0;
        for (long p = 0; p < (long)height * width; ++p) {
            area += d.mask[p];
        }
        fprintf(file, "%d %.6f %.6f %d %d %d %d %ld %s\n", d.class_id, d.score, d.mask_score, d.box[0], d.box[1],
                d.box[2], d.box[3], area, d.class_name);
    }
    return fclose(file) == 0;
}

/* Out-of-range reads must fail with a status and a message, not crash. */
static int contract_holds(const yolact_results* results) {
    yolact_detection d;
    size_t count = yolact_results_detection_count(results, 0);
    return yolact_results_detection(results, 0, count, &d) == YOLACT_ERROR_INVALID_ARGUMENT &&
           strlen(yolact_last_error()) > 0 && yolact_results_detection_count(results, 1) == 0 &&
           yolact_results_detection(NULL, 0, 0, &d) == YOLACT_ERROR_INVALID_ARGUMENT;
}

int main(int argc, char** argv) {
    yolact_options options;
    yolact_options_init(&options);
    const char *model = NULL, *out = NULL;
    int first_image = argc;
    for (int i = 1; i < argc; ++i) {
        if (strncmp(argv[i], "--", 2) != 0) {
            first_image = i;
            break;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "error: %s: missing value\n", argv[i]);
            return 2;
        }
        if (strcmp(argv[i], "--model") == 0) model = argv[++i];
        else if (strcmp(argv[i], "--out") == 0) out = argv[++i];
        else if (strcmp(argv[i], "--backend") == 0) options.backend = argv[++i];
        else if (strcmp(argv[i], "--score-threshold") == 0) options.score_threshold = (float)atof(argv[++i]);
        else {
            fprintf(stderr, "error: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (model == NULL || out == NULL || first_image >= argc) {
        fprintf(stderr, "usage: c_segment --model M --out DIR [--backend B] [--score-threshold T] IMAGE...\n");
        return 2;
    }
    mkdir(out, 0777); /* an existing folder is fine; an unusable one shows when the first file is written */
    yolact_segmenter* segmenter = NULL;
    if (yolact_create(model, &options, &segmenter) != YOLACT_OK) {
        fprintf(stderr, "error: %s\n", yolact_last_error());
        return 2;
    }
    int status = 0;
    for (int i = first_image; i < argc && status != 3; ++i) {
        yolact_image image;
        yolact_results* results = NULL;
        if (yolact_image_read(argv[i], &image) != YOLACT_OK || yolact_run(segmenter, &image, 1, &results) != YOLACT_OK) {
            fprintf(stderr, "error: %s (skipped)\n", yolact_last_error());
            yolact_image_free(&image);
            status = status > 1 ? status : 1;
            continue;
        }
        char* json = NULL;
        char json_path[4096], summary_path[4096];
        output_path(json_path, sizeof json_path, out, argv[i], ".json");
        output_path(summary_path, sizeof summary_path, out, argv[i], ".txt");
        if (yolact_results_json(results, 0, argv[i], &json) != YOLACT_OK || !write_text(json_path, json) ||
            !write_summary(summary_path, results)) {
            fprintf(stderr, "error: %s: cannot write its results\n", argv[i]);
            status = 2;
        } else if (!contract_holds(results)) {
            fprintf(stderr, "error: the C ABI let an out-of-range read through\n");
            status = 3;
        }
        yolact_string_free(json);
        yolact_results_free(results);
        yolact_image_free(&image);
    }
    yolact_destroy(segmenter);
    return status;
}
