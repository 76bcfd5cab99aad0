/* C API tests for cytoseg measurements: cytoseg_measure, cytoseg_image_qc, cytoseg_qc_report and
 * the cytoseg_table accessors.
 * Expected values are computed here, independently, from the test's own label image (areas,
 * bounding boxes, centroids and intensity statistics of rectangles), and the parity of every
 * column with scikit-image is tested in tests/measure_parity.rs.
 * Built and run by tests/c/run.sh (also under valgrind). Exit status 0 = all passed. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, rmdir */
#include "check.h"
#include "cytoseg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


enum { H = 20, W = 30 };

/* Two rectangles: label 4 rows 2..5 x cols 3..10 (4x8), label 9 rows 10..18 x cols 20..24 (9x5). */
static void make_labels(uint32_t *labels) {
    memset(labels, 0, sizeof(uint32_t) * H * W);
    for (int y = 2; y <= 5; y++)
        for (int x = 3; x <= 10; x++) labels[y * W + x] = 4;
    for (int y = 10; y <= 18; y++)
        for (int x = 20; x <= 24; x++) labels[y * W + x] = 9;
}

static long find_column(const cytoseg_table *t, const char *name) {
    for (size_t i = 0; i < cytoseg_table_columns(t); i++)
        if (strcmp(cytoseg_table_column_name(t, i), name) == 0) return (long)i;
    return -1;
}

static double cell(const cytoseg_table *t, const char *name, size_t row) {
    long i = find_column(t, name);
    if (i < 0) {
        fprintf(stderr, "no column %s\n", name);
        failures++;
        return NAN;
    }
    size_t n = cytoseg_table_rows(t);
    double *v = malloc(sizeof(double) * (n ? n : 1));
    double out = NAN;
    if (cytoseg_table_column(t, (size_t)i, v, n) == CYTOSEG_STATUS_OK && row < n) out = v[row];
    free(v);
    return out;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-12 * (fabs(b) > 1 ? fabs(b) : 1); }

static void test_shape_uncalibrated(void) {
    uint32_t labels[H * W];
    make_labels(labels);
    cytoseg_table *t = NULL;
    CHECK(cytoseg_measure(labels, W, H, NULL, 0, 0, 0, NULL, &t) == CYTOSEG_STATUS_OK);
    CHECK(t != NULL);
    CHECK(cytoseg_table_rows(t) == 2);
    CHECK(cytoseg_table_columns(t) == 16);
    CHECK(strcmp(cytoseg_table_column_name(t, 0), "label") == 0);
    CHECK(cytoseg_table_column_name(t, 16) == NULL);
    CHECK(cytoseg_table_column_unit(t, 99) == NULL);
    CHECK(strcmp(cytoseg_table_column_unit(t, 1), "") == 0); /* uncalibrated: no units */
    CHECK(cell(t, "label", 0) == 4 && cell(t, "label", 1) == 9);
    CHECK(cell(t, "area", 0) == 32 && cell(t, "area", 1) == 45);
    CHECK(cell(t, "bbox-0", 0) == 2 && cell(t, "bbox-1", 0) == 3);
    CHECK(cell(t, "bbox-2", 0) == 6 && cell(t, "bbox-3", 0) == 11); /* exclusive ends */
    CHECK(near(cell(t, "centroid-0", 0), 3.5) && near(cell(t, "centroid-1", 0), 6.5));
    CHECK(near(cell(t, "centroid-0", 1), 14.0) && near(cell(t, "centroid-1", 1), 22.0));
    CHECK(near(cell(t, "solidity", 0), 1.0) && near(cell(t, "extent", 1), 1.0));
    CHECK(near(cell(t, "equivalent_diameter_area", 0), sqrt(4.0 * 32 / acos(-1.0))));
    /* Wrong length and bad index are errors that name the problem. */
    double v[3];
    CHECK(cytoseg_table_column(t, 1, v, 3) == CYTOSEG_STATUS_SHAPE_MISMATCH);
    CHECK(cytoseg_table_column(t, 77, v, 2) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    char msg[256];
    cytoseg_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "77") != NULL);
    CHECK(cytoseg_table_column(t, 1, NULL, 2) == CYTOSEG_STATUS_NULL_POINTER);
    cytoseg_table_free(t);
}

static void test_calibrated_multichannel(void) {
    uint32_t labels[H * W];
    make_labels(labels);
    /* Two channels of uint16 in padded rows of S2 samples: c0 = x + 100 y, c1 = 7. */
    enum { S2 = 64 };
    uint16_t *px = calloc(H * S2, sizeof(uint16_t));
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            px[y * S2 + 2 * x] = (uint16_t)(x + 100 * y);
            px[y * S2 + 2 * x + 1] = 7;
        }
    cytoseg_calibration cal;
    CHECK(cytoseg_calibration_init(&cal) == CYTOSEG_STATUS_OK);
    CHECK(cal.struct_size == sizeof cal && cal.pixel_width == 1.0 && cal.unit == NULL);
    cal.pixel_width = cal.pixel_height = 0.5;
    cal.unit = "um";
    cytoseg_table *t = NULL;
    CHECK(cytoseg_measure(labels, W, H, px, CYTOSEG_DTYPE_U16, 2, S2 * sizeof(uint16_t), &cal, &t) ==
          CYTOSEG_STATUS_OK);
    CHECK(cytoseg_table_columns(t) == 16 + 10);
    long area = find_column(t, "area");
    CHECK(area >= 0 && strcmp(cytoseg_table_column_unit(t, (size_t)area), "um^2") == 0);
    long cy = find_column(t, "centroid-0");
    CHECK(cy >= 0 && strcmp(cytoseg_table_column_unit(t, (size_t)cy), "um") == 0);
    CHECK(near(cell(t, "area", 0), 32 * 0.25));
    CHECK(near(cell(t, "centroid-1", 1), 22.0 * 0.5));
    CHECK(cell(t, "bbox-3", 1) == 25); /* bounding boxes stay in pixel indices */
    /* Label 4: x 3..10, y 2..5 -> mean x 6.5, mean y 3.5; c0 = x + 100 y. */
    double sum = 0, sq = 0;
    for (int y = 2; y <= 5; y++)
        for (int x = 3; x <= 10; x++) sum += x + 100 * y;
    double mean = sum / 32;
    for (int y = 2; y <= 5; y++)
        for (int x = 3; x <= 10; x++) sq += (x + 100 * y - mean) * (x + 100 * y - mean);
    CHECK(near(cell(t, "intensity_mean-0", 0), mean));
    CHECK(near(cell(t, "intensity_integrated-0", 0), sum));
    CHECK(near(cell(t, "intensity_std-0", 0), sqrt(sq / 32)));
    CHECK(cell(t, "intensity_min-0", 0) == 3 + 200 && cell(t, "intensity_max-0", 0) == 10 + 500);
    CHECK(cell(t, "intensity_mean-1", 1) == 7 && cell(t, "intensity_std-1", 1) == 0);
    cytoseg_table_free(t);

    /* A calibration struct of an older header, without `unit`: accepted, unit "pixel". */
    struct {
        size_t struct_size;
        double pixel_width, pixel_height;
    } old_cal = {sizeof old_cal, 0.5, 0.5};
    CHECK(sizeof old_cal < sizeof cal);
    t = NULL;
    CHECK(cytoseg_measure(labels, W, H, NULL, 0, 0, 0, (const cytoseg_calibration *)&old_cal, &t) ==
          CYTOSEG_STATUS_OK);
    area = find_column(t, "area");
    CHECK(area >= 0 && strcmp(cytoseg_table_column_unit(t, (size_t)area), "pixel^2") == 0);
    CHECK(near(cell(t, "area", 0), 32 * 0.25));
    cytoseg_table_free(t);

    /* Bad calibration, struct size, dtype, stride, sizes, NULLs. */
    cal.pixel_width = -1;
    t = NULL;
    CHECK(cytoseg_measure(labels, W, H, NULL, 0, 0, 0, &cal, &t) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(t == NULL);
    char msg[256];
    cytoseg_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "pixel width") != NULL);
    cal.pixel_width = 1;
    cal.struct_size = 3;
    CHECK(cytoseg_measure(labels, W, H, NULL, 0, 0, 0, &cal, &t) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_measure(labels, W, H, px, 99, 2, S2 * 2, NULL, &t) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_measure(labels, W, H, px, CYTOSEG_DTYPE_U16, 2, 3, NULL, &t) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_measure(labels, W, H, px, CYTOSEG_DTYPE_U16, 2, 10, NULL, &t) != CYTOSEG_STATUS_OK);
    CHECK(cytoseg_measure(NULL, W, H, NULL, 0, 0, 0, NULL, &t) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_measure(labels, W, H, NULL, 0, 0, 0, NULL, NULL) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_measure(labels, 0, H, NULL, 0, 0, 0, NULL, &t) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(t == NULL);
    free(px);
}

static void test_empty_and_null(void) {
    uint32_t zeros[4 * 5] = {0};
    cytoseg_table *t = NULL;
    CHECK(cytoseg_measure(zeros, 5, 4, NULL, 0, 0, 0, NULL, &t) == CYTOSEG_STATUS_OK);
    CHECK(cytoseg_table_rows(t) == 0 && cytoseg_table_columns(t) == 16);
    CHECK(cytoseg_table_column(t, 0, NULL, 0) == CYTOSEG_STATUS_OK);
    cytoseg_table_free(t);
    cytoseg_table_free(NULL);
    CHECK(cytoseg_table_rows(NULL) == 0 && cytoseg_table_columns(NULL) == 0);
    CHECK(cytoseg_table_column_name(NULL, 0) == NULL);
    CHECK(cytoseg_calibration_init(NULL) == CYTOSEG_STATUS_NULL_POINTER);
}

/* cytoseg_image_qc on the two rectangles (label 4 at 200, label 9 at 100) over a background of
 * 10: every expected value worked out here from the definitions in docs/qc.md. */
static void test_image_qc(void) {
    uint32_t labels[H * W];
    uint8_t img[H * W];
    make_labels(labels);
    for (int k = 0; k < H * W; k++) img[k] = labels[k] == 4 ? 200 : labels[k] == 9 ? 100 : 10;
    cytoseg_table *t = NULL;
    CHECK(cytoseg_image_qc(img, CYTOSEG_DTYPE_U8, W, H, 1, W, -1, labels, H * W, NULL, 0, NULL, &t) ==
          CYTOSEG_STATUS_OK);
    CHECK(cytoseg_table_rows(t) == 1);
    CHECK(cell(t, "objects", 0) == 2);
    CHECK(cell(t, "background", 0) == 10);
    /* 45 pixels at 100 and 32 at 200: the median (39th of 77) is 100. */
    CHECK(cell(t, "signal", 0) == 100);
    CHECK(near(cell(t, "saturated_fraction", 0), 32.0 / 600.0));
    CHECK(near(cell(t, "dynamic_range", 0), 190.0 / 255.0));
    /* Areas 32 and 45: quartiles 35.25 and 41.75. */
    CHECK(near(cell(t, "area_iqr", 0), 6.5));
    CHECK(isnan(cell(t, "mean_cellprob", 0)) && isnan(cell(t, "flow_qc_removed_fraction", 0)));
    cytoseg_table_free(t);

    /* Calibrated: area_iqr in um^2. */
    cytoseg_calibration cal;
    CHECK(cytoseg_calibration_init(&cal) == CYTOSEG_STATUS_OK);
    cal.pixel_width = cal.pixel_height = 0.5;
    cal.unit = "um";
    t = NULL;
    CHECK(cytoseg_image_qc(img, CYTOSEG_DTYPE_U8, W, H, 1, W, 0, labels, H * W, NULL, 0, &cal, &t) ==
          CYTOSEG_STATUS_OK);
    CHECK(near(cell(t, "area_iqr", 0), 6.5 * 0.25));
    long i = find_column(t, "area_iqr");
    CHECK(i >= 0 && strcmp(cytoseg_table_column_unit(t, (size_t)i), "um^2") == 0);
    cytoseg_table_free(t);

    /* With flows: cellprob logit 0 everywhere gives a mean probability of exactly 0.5. */
    float *flows = calloc(3 * H * W, sizeof(float));
    t = NULL;
    CHECK(cytoseg_image_qc(img, CYTOSEG_DTYPE_U8, W, H, 1, W, -1, labels, H * W, flows, 3 * H * W,
                           NULL, &t) == CYTOSEG_STATUS_OK);
    CHECK(cell(t, "mean_cellprob", 0) == 0.5);
    cytoseg_table_free(t);

    /* Bad input: a clear status, nothing written. */
    t = NULL;
    CHECK(cytoseg_image_qc(img, CYTOSEG_DTYPE_U8, W, H, 1, W, -1, labels, H * W, NULL, 0, NULL, NULL) ==
          CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_image_qc(img, CYTOSEG_DTYPE_U8, W, H, 1, W, -1, labels, H * W - 1, NULL, 0, NULL, &t) !=
          CYTOSEG_STATUS_OK);
    CHECK(cytoseg_image_qc(img, CYTOSEG_DTYPE_U8, W, H, 1, W, 3, labels, H * W, NULL, 0, NULL, &t) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_image_qc(img, CYTOSEG_DTYPE_U8, W, H, 1, W, -1, labels, H * W, flows, 5, NULL, &t) !=
          CYTOSEG_STATUS_OK);
    CHECK(cytoseg_image_qc(NULL, CYTOSEG_DTYPE_U8, W, H, 1, W, -1, labels, H * W, NULL, 0, NULL, &t) ==
          CYTOSEG_STATUS_NULL_POINTER);
    float fimg[H * W];
    for (int k = 0; k < H * W; k++) fimg[k] = 1.0f;
    fimg[7] = NAN;
    CHECK(cytoseg_image_qc(fimg, CYTOSEG_DTYPE_F32, W, H, 1, W * sizeof(float), -1, labels, H * W, NULL,
                           0, NULL, &t) == CYTOSEG_STATUS_NON_FINITE);
    CHECK(t == NULL);
    free(flows);
}

/* cytoseg_qc_report on a hand-written summary.csv: 12 images in two folders (the groups, from
 * the pattern), one of them without objects (always flagged); bad options and a folder without
 * a summary fail with a clear status and leave the outputs untouched. */
static void test_qc_report(void) {
    char dir[] = "/tmp/cytoseg-qc-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/summary.csv", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fprintf(f, "file,status,objects,area_median,focus_laplacian,signal,contrast_to_noise\n");
    for (int k = 0; k < 12; k++) {
        int objects = k == 3 ? 0 : 40 + k;
        fprintf(f, "/data/%s/img%02d.tif,ok,%d,%d,%.3f,%d,%.2f\n", k < 6 ? "scopeA" : "scopeB", k,
                objects, 100 + k, 0.2 + 0.01 * k, 500 + 3 * k, 12.0 + 0.1 * k);
    }
    fclose(f);

    const char *opts = "{\"pattern\": \"{scope}/*.tif\", \"group_by\": \"scope\"}";
    char html[512];
    size_t needed = 0;
    cytoseg_qc_counts counts;
    memset(&counts, 0, sizeof counts);
    CHECK(cytoseg_qc_report(dir, opts, html, sizeof html, &needed, &counts) == CYTOSEG_STATUS_OK);
    CHECK(needed == strlen(html) + 1);
    const char *tail = "/qc/qc_report.html";
    CHECK(strlen(html) > strlen(tail) && strcmp(html + strlen(html) - strlen(tail), tail) == 0);
    f = fopen(html, "r");
    CHECK(f != NULL);
    if (f) fclose(f);
    CHECK(counts.images == 12 && counts.groups == 2 && counts.flagged >= 1 && counts.confounded == 0);
    /* Defaults (NULL options): one group; a size query without a buffer. */
    needed = 0;
    CHECK(cytoseg_qc_report(dir, NULL, NULL, 0, &needed, NULL) == CYTOSEG_STATUS_OK);
    CHECK(needed == strlen(html) + 1);

    /* Errors: nothing written, the message names the problem. */
    cytoseg_qc_counts untouched = {7, 7, 7, 7, 7};
    char msg[512];
    CHECK(cytoseg_qc_report(dir, "{\"groupby\": \"scope\"}", NULL, 0, NULL, &untouched) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    cytoseg_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "groupby") != NULL);
    CHECK(cytoseg_qc_report(dir, "{\"group_by\": \"plate\"}", NULL, 0, NULL, &untouched) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    cytoseg_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "plate") != NULL);
    CHECK(cytoseg_qc_report("/no/such/run", NULL, NULL, 0, NULL, &untouched) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    cytoseg_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "summary.csv") != NULL);
    CHECK(untouched.images == 7 && untouched.confounded == 7);
    CHECK(cytoseg_qc_report(NULL, NULL, NULL, 0, NULL, NULL) == CYTOSEG_STATUS_NULL_POINTER);

    const char *written[] = {"qc/qc_report.html", "qc/qc_images.csv", "qc/qc_drift.csv", "summary.csv"};
    for (size_t i = 0; i < sizeof written / sizeof *written; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, written[i]);
        CHECK(remove(path) == 0);
    }
    snprintf(path, sizeof path, "%s/qc", dir);
    CHECK(rmdir(path) == 0);
    CHECK(rmdir(dir) == 0);
}

/* A label stack measured in 3-D: object 1 through both planes, object 2 in one. */
static void test_volume(void) {
    uint32_t labels[18] = {1, 1, 0, 0, 0, 0, 0, 0, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0};
    float image[18];
    for (int i = 0; i < 18; i++) image[i] = (float)i;
    cytoseg_calibration cal;
    CHECK(cytoseg_calibration_init(&cal) == CYTOSEG_STATUS_OK);
    cal.pixel_width = cal.pixel_height = 0.5;
    cal.unit = "um";
    cytoseg_table *t = NULL;
    CHECK(cytoseg_measure_volume(labels, 3, 3, 2, image, CYTOSEG_DTYPE_F32, 1, 3 * sizeof(float), 9 * sizeof(float),
                                 &cal, 2.0, &t) == CYTOSEG_STATUS_OK);
    CHECK(cytoseg_table_rows(t) == 2);
    CHECK(cell(t, "area", 0) == 4 * 0.5 * 0.5 * 2.0);
    CHECK(cell(t, "centroid-0", 0) == 1.0);
    CHECK(cell(t, "intensity_mean", 0) == (0 + 1 + 9 + 10) / 4.0);
    CHECK(cell(t, "intensity_mean", 1) == 8.0);
    CHECK(isinf(cell(t, "solidity", 1))); /* one voxel: skimage's hull fails */
    cytoseg_table_free(t);
    /* Shape only; bad strides and NULLs refused. */
    t = NULL;
    CHECK(cytoseg_measure_volume(labels, 3, 3, 2, NULL, 0, 0, 0, 0, NULL, 0.0, &t) == CYTOSEG_STATUS_OK);
    CHECK(cytoseg_table_columns(t) == 16);
    cytoseg_table_free(t);
    CHECK(cytoseg_measure_volume(labels, 3, 3, 2, image, CYTOSEG_DTYPE_F32, 1, 12, 8, NULL, 1.0, &t) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_measure_volume(NULL, 3, 3, 2, NULL, 0, 0, 0, 0, NULL, 1.0, &t) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_measure_volume(labels, 3, 3, 2, NULL, 0, 0, 0, 0, NULL, 1.0, NULL) ==
          CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_measure_volume(labels, 3, 3, 2, NULL, 0, 0, 0, 0, NULL, -1.0, &t) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
}

int main(void) {
    test_volume();
    test_shape_uncalibrated();
    test_calibrated_multichannel();
    test_empty_and_null();
    test_image_qc();
    test_qc_report();
    if (failures) {
        fprintf(stderr, "test_measure: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_measure: all checks passed\n");
    return 0;
}
