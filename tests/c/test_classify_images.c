/* cytoseg_classifier_train_images / cytoseg_classify_labels / cytoseg_classifier_info from C,
 * on images held in memory (no output folder, no ONNX Runtime): a synthetic image of 12 square
 * objects, odd labels bright and flat, even labels dim and striped; four of each picked.
 * Bad input (NULL, wrong sizes, picks on the background or with an unknown class, one class)
 * gives statuses and messages naming the image and pick.
 * Usage: test_classify_images WORK_DIR */
#include "check.h"
#include "cytoseg.h"
#include "message.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define W 60
#define H 40
#define OBJECTS 12

static uint8_t pixels[H * W];
static uint32_t labels[H * W];

static void make_image(void) {
    for (int i = 0; i < H * W; i++) {
        pixels[i] = 10;
        labels[i] = 0;
    }
    for (uint32_t l = 1; l <= OBJECTS; l++) {
        int r0 = (int)((l - 1) / 6) * 20 + 3, c0 = (int)((l - 1) % 6) * 10 + 2;
        for (int r = r0; r < r0 + 6 + (int)(l % 3); r++) {
            for (int c = c0; c < c0 + 6; c++) {
                labels[r * W + c] = l;
                pixels[r * W + c] = (uint8_t)(l % 2 ? 200 : 60 + 40 * (r % 2));
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_classify_images WORK_DIR\n");
        return 2;
    }
    char model[4096];
    snprintf(model, sizeof model, "%s/picked.json", argv[1]);
    make_image();

    const void *images[1] = {pixels};
    const uint32_t *label_ptrs[1] = {labels};
    size_t widths[1] = {W}, heights[1] = {H};
    const char *names[1] = {"plate1_A01"};
    const char *classes[2] = {"flat", "striped"};
    uint32_t pick_labels[8] = {1, 3, 5, 7, 2, 4, 6, 8};
    uint32_t pick_classes[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    size_t counts[1] = {8};
    double cv = -1.0;

#define TRAIN(labels_arg, counts_arg, pl, pc, ncls, out) \
    cytoseg_classifier_train_images(1, images, CYTOSEG_DTYPE_U8, 1, widths, heights, labels_arg, names, NULL, \
                                    counts_arg, pl, pc, ncls, classes, 30, 1, 2, out, &cv)

    /* NULL and bad arguments */
    CHECK(TRAIN(label_ptrs, counts, pick_labels, pick_classes, 2, NULL) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(message_has("model_out"));
    CHECK(TRAIN(NULL, counts, pick_labels, pick_classes, 2, model) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(message_has("labels"));
    CHECK(TRAIN(label_ptrs, counts, NULL, pick_classes, 2, model) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(message_has("pick_labels"));
    CHECK(cytoseg_classifier_train_images(0, images, CYTOSEG_DTYPE_U8, 1, widths, heights, label_ptrs, names,
                                          NULL, counts, pick_labels, pick_classes, 2, classes, 30, 1, 2, model,
                                          &cv) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(message_has("n_images"));
    widths[0] = 0;
    CHECK(TRAIN(label_ptrs, counts, pick_labels, pick_classes, 2, model) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(message_has("empty"));
    widths[0] = W;
    /* a pick on the background */
    uint32_t on_background[8] = {1, 3, 5, 7, 2, 4, 0, 8};
    CHECK(TRAIN(label_ptrs, counts, on_background, pick_classes, 2, model) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(message_has("sample 'plate1_A01', pick 6") && message_has("background"));
    /* a label that is no object */
    uint32_t unknown[8] = {1, 3, 5, 99, 2, 4, 6, 8};
    CHECK(TRAIN(label_ptrs, counts, unknown, pick_classes, 2, model) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(message_has("pick 3") && message_has("no object 99"));
    /* a class index out of range; a single class */
    uint32_t bad_class[8] = {0, 0, 0, 0, 1, 1, 1, 2};
    CHECK(TRAIN(label_ptrs, counts, pick_labels, bad_class, 2, model) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(message_has("pick 7: class index 2"));
    uint32_t one_class[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(TRAIN(label_ptrs, counts, pick_labels, one_class, 2, model) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(message_has("only one class"));
    CHECK(cv == -1.0); /* outputs are written only on success */

    CHECK(TRAIN(label_ptrs, counts, pick_labels, pick_classes, 2, model) == CYTOSEG_STATUS_OK);
    CHECK(cv >= 0.0 && cv <= 1.0);

    /* info */
    size_t needed = 0;
    CHECK(cytoseg_classifier_info(model, NULL, 0, &needed) == CYTOSEG_STATUS_OK);
    CHECK(needed > 10);
    char info[8192];
    CHECK(cytoseg_classifier_info(model, info, sizeof info, NULL) == CYTOSEG_STATUS_OK);
    CHECK(strstr(info, "\"classes\":[\"flat\",\"striped\"]") != NULL);
    CHECK(strstr(info, "texture_") != NULL);
    CHECK(cytoseg_classifier_info(NULL, info, sizeof info, NULL) == CYTOSEG_STATUS_NULL_POINTER);

    /* classify: a count query, too small a buffer, wrong sizes, then every object */
    size_t n = 0;
    CHECK(cytoseg_classify_labels(model, pixels, CYTOSEG_DTYPE_U8, W, H, 1, W, labels, W * H, NULL, 0, NULL, NULL,
                                  NULL, &n) == CYTOSEG_STATUS_OK);
    CHECK(n == OBJECTS);
    uint32_t out_labels[OBJECTS];
    int32_t out_classes[OBJECTS];
    double out_p[OBJECTS];
    CHECK(cytoseg_classify_labels(model, pixels, CYTOSEG_DTYPE_U8, W, H, 1, W, labels, W * H, NULL, 4, out_labels,
                                  out_classes, out_p, &n) == CYTOSEG_STATUS_SHAPE_MISMATCH);
    CHECK(message_has("capacity 4"));
    CHECK(cytoseg_classify_labels(model, pixels, CYTOSEG_DTYPE_U8, W, H, 1, W, labels, W * H - 1, NULL, OBJECTS,
                                  out_labels, out_classes, out_p, &n) == CYTOSEG_STATUS_SHAPE_MISMATCH);
    CHECK(message_has("labels_len"));
    CHECK(cytoseg_classify_labels(model, NULL, CYTOSEG_DTYPE_U8, W, H, 1, W, labels, W * H, NULL, OBJECTS,
                                  out_labels, out_classes, out_p, &n) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_classify_labels(NULL, pixels, CYTOSEG_DTYPE_U8, W, H, 1, W, labels, W * H, NULL, OBJECTS,
                                  out_labels, out_classes, out_p, &n) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(message_has("model_path"));
    /* a calibrated image lacks the model's pixel-unit features */
    cytoseg_calibration cal;
    CHECK(cytoseg_calibration_init(&cal) == CYTOSEG_STATUS_OK);
    cal.pixel_width = cal.pixel_height = 0.5;
    cal.unit = "um";
    CHECK(cytoseg_classify_labels(model, pixels, CYTOSEG_DTYPE_U8, W, H, 1, W, labels, W * H, &cal, OBJECTS,
                                  out_labels, out_classes, out_p, &n) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(message_has("lacks the classifier's feature column(s) area"));
    CHECK(cytoseg_classify_labels(model, pixels, CYTOSEG_DTYPE_U8, W, H, 1, W, labels, W * H, NULL, OBJECTS,
                                  out_labels, out_classes, out_p, &n) == CYTOSEG_STATUS_OK);
    int right = 0;
    for (int i = 0; i < OBJECTS; i++) {
        CHECK(out_labels[i] == (uint32_t)(i + 1));
        CHECK(out_p[i] >= 0.5 && out_p[i] <= 1.0);
        right += out_classes[i] == (int32_t)((i + 1) % 2 == 0);
    }
    CHECK(right == OBJECTS);
    printf("classifier from C in memory: cross-validated accuracy %.3f, %d of %d objects right\n", cv, right,
           OBJECTS);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    return failures != 0;
}
