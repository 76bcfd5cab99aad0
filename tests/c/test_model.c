/* C API tests for models: load, info, segment (with progress, cancellation, flows), errors,
 * and one model shared by several threads.
 * Usage: test_model MODEL_DIR ORT_LIBRARY   (run by tests/c/run.sh). */
#include "check.h"
#include "cytoseg.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


enum { H = 200, W = 240, SPOTS = 6 };
static uint16_t image[H * W];
static const float sy[SPOTS] = {30, 40, 100, 150, 160, 60}, sx[SPOTS] = {30, 120, 60, 200, 40, 200};

/* Bright round nuclei (radius ~8) on a dark background, 16-bit. */
static void make_image(void) {
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double v = 100.0;
            for (int k = 0; k < SPOTS; k++) {
                double r2 = (y - sy[k]) * (y - sy[k]) + (x - sx[k]) * (x - sx[k]);
                v += 3000.0 * exp(-r2 / (2.0 * 6.0 * 6.0));
            }
            image[y * W + x] = (uint16_t)v;
        }
}

static int calls = 0;
static int32_t count_progress(void *userdata, size_t done, size_t total) {
    (void)userdata;
    calls++;
    return done > total; /* never cancels */
}
static int32_t cancel_progress(void *userdata, size_t done, size_t total) {
    (void)done;
    (void)total;
    *(int *)userdata += 1;
    return 1;
}

static cytoseg_model *model;

/* cytoseg_segment_params as the header before `precision` declared it. */
typedef struct {
    uint32_t struct_size;
    int32_t channel;
    double diameter;
    uint32_t tile_size;
    uint32_t batch_size;
    double tile_overlap;
    cytoseg_masks_params masks;
    int32_t tiling;
} params_with_tiling;

static void *worker(void *arg) {
    (void)arg;
    uint32_t *labels = malloc(sizeof(uint32_t) * H * W);
    uint32_t n = 0;
    int ok = cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * sizeof(uint16_t), NULL,
                                   labels, H * W, NULL, 0, &n, NULL, NULL) == CYTOSEG_STATUS_OK &&
             n == SPOTS;
    free(labels);
    return (void *)(intptr_t)ok;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL_DIR ORT_LIBRARY\n", argv[0]);
        return 2;
    }
    make_image();
    cytoseg_load_options opts;
    CHECK(cytoseg_load_options_init(&opts) == CYTOSEG_STATUS_OK);
    opts.device = CYTOSEG_DEVICE_CPU;
    opts.ort_lib = argv[2];

    /* Errors before a model exists. */
    cytoseg_model *none = NULL;
    CHECK(cytoseg_model_load("no-such-model", &opts, &none) == CYTOSEG_STATUS_MODEL && none == NULL);
    CHECK(cytoseg_model_load(NULL, &opts, &none) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_model_load(argv[1], &opts, NULL) == CYTOSEG_STATUS_NULL_POINTER);
    cytoseg_load_options bad = opts;
    bad.device = 42;
    CHECK(cytoseg_model_load(argv[1], &bad, &none) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    cytoseg_model_free(NULL);

    CHECK(cytoseg_model_load(argv[1], &opts, &model) == CYTOSEG_STATUS_OK && model != NULL);
    if (!model) {
        char msg[1024];
        cytoseg_last_error_message(msg, sizeof msg);
        fprintf(stderr, "load failed: %s\n", msg);
        return 1;
    }
    size_t need = 0;
    CHECK(cytoseg_model_info(model, NULL, 0, &need) == CYTOSEG_STATUS_OK && need > 10);
    char *info = malloc(need);
    CHECK(cytoseg_model_info(model, info, need, NULL) == CYTOSEG_STATUS_OK);
    CHECK(strstr(info, "\"family\":\"cellpose-flows\"") != NULL);
    CHECK(strstr(info, "\"device\":\"cpu\"") != NULL);
    free(info);

    cytoseg_segment_params p;
    CHECK(cytoseg_segment_params_init(model, &p) == CYTOSEG_STATUS_OK);
    CHECK(p.channel == -1 && p.diameter == 0.0 && p.masks.flow_threshold == 0.4);
    static uint32_t labels[H * W];
    static float flows[3 * H * W];
    uint32_t n = 0;
    p.tile_size = 128; /* several tiles, so progress is called more than once */
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * sizeof(uint16_t), &p, labels,
                                H * W, flows, 3 * H * W, &n, count_progress, NULL) == CYTOSEG_STATUS_OK);
    CHECK(n == SPOTS);
    CHECK(calls >= 1);
    for (int k = 0; k < SPOTS; k++) CHECK(labels[(int)sy[k] * W + (int)sx[k]] != 0);
    CHECK(labels[0] == 0);
    CHECK(flows[2 * H * W + 30 * W + 30] > 0.0f); /* cellprob positive inside a nucleus */

    /* Same image as float with padding in each row: same labels. */
    size_t stride = W + 7;
    float *fimg = calloc(H * stride, sizeof(float));
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) fimg[y * stride + x] = image[y * W + x];
    static uint32_t labels2[H * W];
    CHECK(cytoseg_model_segment(model, fimg, CYTOSEG_DTYPE_F32, W, H, 1, stride * sizeof(float), &p, labels2,
                                H * W, NULL, 0, NULL, NULL, NULL) == CYTOSEG_STATUS_OK);
    CHECK(memcmp(labels, labels2, sizeof labels) == 0);
    free(fimg);

    /* Cancellation from the progress callback. */
    int cancel_calls = 0;
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, &p, labels2, H * W, NULL, 0,
                                NULL, cancel_progress, &cancel_calls) == CYTOSEG_STATUS_CANCELLED);
    CHECK(cancel_calls == 1);

    /* Bad input. */
    CHECK(cytoseg_model_segment(NULL, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, NULL, labels2, H * W, NULL, 0,
                                NULL, NULL, NULL) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_model_segment(model, image, 9, W, H, 1, W * 2, NULL, labels2, H * W, NULL, 0, NULL, NULL,
                                NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2 - 1, NULL, labels2, H * W, NULL,
                                0, NULL, NULL, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, NULL, labels2, H * W - 1, NULL,
                                0, NULL, NULL, NULL) == CYTOSEG_STATUS_SHAPE_MISMATCH);
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, NULL, labels2, H * W, flows, 5,
                                NULL, NULL, NULL) == CYTOSEG_STATUS_SHAPE_MISMATCH);
    cytoseg_segment_params q = p;
    q.channel = 3;
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, &q, labels2, H * W, NULL, 0,
                                NULL, NULL, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    q = p;
    q.tile_size = 100; /* not a multiple of 16 */
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, &q, labels2, H * W, NULL, 0,
                                NULL, NULL, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    /* Tiling: init_sized fills it (fast by default); Cellpose's tiles find the same nuclei; a
       value of no mode and a size of no version are refused. */
    cytoseg_segment_params tp;
    CHECK(cytoseg_segment_params_init_sized(model, &tp, sizeof tp) == CYTOSEG_STATUS_OK);
    CHECK(tp.struct_size == sizeof tp && tp.tiling == CYTOSEG_TILING_FAST && tp.masks.flow_threshold == 0.4);
    CHECK(cytoseg_segment_params_init_sized(model, &tp, sizeof tp - 3) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_segment_params_init_sized(model, &tp, sizeof tp + 8) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    tp.tiling = CYTOSEG_TILING_CELLPOSE;
    uint32_t nt = 0;
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, &tp, labels2, H * W, NULL, 0, &nt,
                                NULL, NULL) == CYTOSEG_STATUS_OK);
    CHECK(nt == SPOTS);
    for (int k = 0; k < SPOTS; k++) CHECK(labels2[(int)sy[k] * W + (int)sx[k]] != 0);
    tp.tiling = 7;
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, &tp, labels2, H * W, NULL, 0, NULL,
                                NULL, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    /* Precision: auto by default; this package has no int8 variant, so auto and fp32 give the
       same labels, "precisions" lists fp32 alone, and int8 is refused with a message saying why. */
    CHECK(cytoseg_segment_params_init_sized(model, &tp, sizeof tp) == CYTOSEG_STATUS_OK);
    CHECK(tp.precision == CYTOSEG_PRECISION_AUTO);
    char pmsg[2048];
    CHECK(cytoseg_model_info(model, pmsg, sizeof pmsg, NULL) == CYTOSEG_STATUS_OK);
    CHECK(strstr(pmsg, "\"precisions\":[\"fp32\"]") != NULL);
    tp.precision = CYTOSEG_PRECISION_FP32;
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, &tp, labels2, H * W, NULL, 0, &nt,
                                NULL, NULL) == CYTOSEG_STATUS_OK);
    CHECK(nt == n && memcmp(labels, labels2, sizeof labels) == 0);
    tp.precision = CYTOSEG_PRECISION_INT8;
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, &tp, labels2, H * W, NULL, 0, NULL,
                                NULL, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    cytoseg_last_error_message(pmsg, sizeof pmsg);
    CHECK(strstr(pmsg, "no int8 variant") != NULL);
    tp.precision = 3;
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, &tp, labels2, H * W, NULL, 0, NULL,
                                NULL, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    /* A program built against the header before `precision` (the struct ended with `tiling`):
       its struct is read, precision defaults to auto. */
    params_with_tiling v2;
    CHECK(sizeof v2 < sizeof tp);
    CHECK(cytoseg_segment_params_init_sized(model, (cytoseg_segment_params *)&v2, sizeof v2) == CYTOSEG_STATUS_OK);
    CHECK(v2.struct_size == sizeof v2 && v2.tiling == CYTOSEG_TILING_FAST);
    CHECK(cytoseg_model_segment(model, image, CYTOSEG_DTYPE_U16, W, H, 1, W * 2, (cytoseg_segment_params *)&v2,
                                labels2, H * W, NULL, 0, &nt, NULL, NULL) == CYTOSEG_STATUS_OK);
    CHECK(nt == n && memcmp(labels, labels2, sizeof labels) == 0);
    float nan_img[4 * 4];
    for (int i = 0; i < 16; i++) nan_img[i] = (float)i;
    nan_img[5] = NAN;
    static uint32_t small[16];
    CHECK(cytoseg_model_segment(model, nan_img, CYTOSEG_DTYPE_F32, 4, 4, 1, 16, NULL, small, 16, NULL, 0, NULL,
                                NULL, NULL) == CYTOSEG_STATUS_NON_FINITE);

    /* z-stacks into 3-D objects: two nuclei through 5 planes, in both of Cellpose's modes. */
    enum { D = 5, SH = 40, SW = 48 };
    static uint16_t stack[D * SH * SW];
    for (int z = 0; z < D; z++)
        for (int y = 0; y < SH; y++)
            for (int x = 0; x < SW; x++) {
                double r1 = (y - 14) * (y - 14) + (x - 14) * (x - 14);
                double r2 = (y - 26) * (y - 26) + (x - 34) * (x - 34);
                stack[(z * SH + y) * SW + x] =
                    (uint16_t)(100.0 + 3000.0 * (exp(-r1 / 72.0) + exp(-r2 / 72.0)));
            }
    static uint32_t vlabels[D * SH * SW];
    static float vflows[4 * D * SH * SW];
    size_t row = SW * sizeof(uint16_t), plane = SH * row;
    for (int mode = CYTOSEG_VOLUME_MODE_DO3D; mode <= CYTOSEG_VOLUME_MODE_STITCH; mode++) {
        double value = mode == CYTOSEG_VOLUME_MODE_DO3D ? 1.0 : 0.25;
        size_t nflows = (mode == CYTOSEG_VOLUME_MODE_DO3D ? 4 : 3) * (size_t)(D * SH * SW);
        uint32_t vn = 0;
        calls = 0;
        CHECK(cytoseg_model_segment_volume(model, stack, CYTOSEG_DTYPE_U16, SW, SH, D, 1, row, plane, NULL, mode,
                                           value, vlabels, D * SH * SW, vflows, nflows, &vn, count_progress,
                                           NULL) == CYTOSEG_STATUS_OK);
        CHECK(calls >= 1);
        CHECK(vn == 2);
        /* Each nucleus is one object through the middle planes. */
        uint32_t a = vlabels[(2 * SH + 14) * SW + 14], b = vlabels[(2 * SH + 26) * SW + 34];
        CHECK(a != 0 && b != 0 && a != b);
        for (int z = 1; z < D - 1; z++) CHECK(vlabels[(z * SH + 14) * SW + 14] == a);
    }
    /* Bad volume requests. */
    CHECK(cytoseg_model_segment_volume(NULL, stack, CYTOSEG_DTYPE_U16, SW, SH, D, 1, row, plane, NULL, 0, 1.0,
                                       vlabels, D * SH * SW, NULL, 0, NULL, NULL, NULL) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_model_segment_volume(model, stack, CYTOSEG_DTYPE_U16, SW, SH, 1, 1, row, plane, NULL, 0, 1.0,
                                       vlabels, SH * SW, NULL, 0, NULL, NULL, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_model_segment_volume(model, stack, CYTOSEG_DTYPE_U16, SW, SH, D, 1, row, plane, NULL, 7, 1.0,
                                       vlabels, D * SH * SW, NULL, 0, NULL, NULL, NULL) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_model_segment_volume(model, stack, CYTOSEG_DTYPE_U16, SW, SH, D, 1, row, plane, NULL,
                                       CYTOSEG_VOLUME_MODE_STITCH, -1.0, vlabels, D * SH * SW, NULL, 0, NULL, NULL,
                                       NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_model_segment_volume(model, stack, CYTOSEG_DTYPE_U16, SW, SH, D, 1, row, plane - 2, NULL, 0,
                                       1.0, vlabels, D * SH * SW, NULL, 0, NULL, NULL, NULL) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_model_segment_volume(model, stack, CYTOSEG_DTYPE_U16, SW, SH, D, 1, row, plane, NULL, 0, 1.0,
                                       vlabels, D * SH * SW - 1, NULL, 0, NULL, NULL, NULL) ==
          CYTOSEG_STATUS_SHAPE_MISMATCH);
    CHECK(cytoseg_model_segment_volume(model, stack, CYTOSEG_DTYPE_U16, SW, SH, D, 1, row, plane, NULL, 0, 1.0,
                                       vlabels, D * SH * SW, vflows, 3 * D * SH * SW, NULL, NULL, NULL) ==
          CYTOSEG_STATUS_SHAPE_MISMATCH);

    /* One model, four threads at once. */
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK((intptr_t)r == 1);
    }
    cytoseg_model_free(model);
    if (failures) {
        fprintf(stderr, "test_model: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_model: all checks passed\n");
    return 0;
}
