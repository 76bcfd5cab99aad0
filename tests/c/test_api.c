/* C API tests for cytoseg: conventions, flows -> labels, labels -> flows, bad input, threads.
 * Built and run by tests/c/run.sh (also under valgrind in CI). Exit status 0 = all passed. */
#include "check.h"
#include "cytoseg.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


enum { H = 48, W = 64 };

/* Two round cells with flows (x5) pointing to their centres, as a network would output. */
static void make_flows(float *dp, float *cellprob) {
    const float cy[2] = {20.0f, 26.0f}, cx[2] = {16.0f, 46.0f};
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++) {
            int i = y * W + x;
            dp[i] = dp[H * W + i] = 0.0f;
            cellprob[i] = -4.0f;
            for (int k = 0; k < 2; k++) {
                float dy = cy[k] - (float)y, dx = cx[k] - (float)x;
                float r = sqrtf(dy * dy + dx * dx);
                if (r < 9.0f) {
                    cellprob[i] = 4.0f;
                    if (r > 0.0f) {
                        dp[i] = 5.0f * dy / r;
                        dp[H * W + i] = 5.0f * dx / r;
                    }
                }
            }
        }
    }
}

static void test_version(void) {
    CHECK(strcmp(cytoseg_version(), CYTOSEG_VERSION_STRING) == 0);
    CHECK(cytoseg_version_number() == CYTOSEG_VERSION_NUMBER);
    CHECK(CYTOSEG_VERSION_NUMBER ==
          CYTOSEG_VERSION_MAJOR * 1000000 + CYTOSEG_VERSION_MINOR * 1000 + CYTOSEG_VERSION_PATCH);
}

static void test_errors_api(void) {
    char buf[8];
    CHECK(strcmp(cytoseg_status_name(CYTOSEG_STATUS_OK), "ok") == 0);
    CHECK(strcmp(cytoseg_status_name(12345), "unknown status") == 0);
    CHECK(cytoseg_masks_params_init(NULL) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_last_error_status() == CYTOSEG_STATUS_NULL_POINTER);
    size_t need = cytoseg_last_error_message(NULL, 0);
    CHECK(need > 1);
    /* Truncated copy is NUL-terminated and reports the full length. */
    CHECK(cytoseg_last_error_message(buf, sizeof buf) == need);
    CHECK(strlen(buf) == sizeof buf - 1);
    char *full = malloc(need);
    CHECK(cytoseg_last_error_message(full, need) == need);
    CHECK(strstr(full, "params") != NULL);
    free(full);
    cytoseg_clear_last_error();
    CHECK(cytoseg_last_error_message(NULL, 0) == 1);
    CHECK(cytoseg_last_error_status() == CYTOSEG_STATUS_OK);
}

static void test_flows_to_labels(void) {
    static float dp[2 * H * W], cellprob[H * W];
    static uint32_t labels[H * W];
    make_flows(dp, cellprob);
    cytoseg_masks_params p;
    CHECK(cytoseg_masks_params_init(&p) == CYTOSEG_STATUS_OK);
    CHECK(p.struct_size == sizeof p && p.niter == 200 && p.min_size == 15);
    CHECK(p.flow_threshold == 0.4 && p.max_size_fraction == 0.4 && p.cellprob_threshold == 0.0f);
    uint32_t n = 0;
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, &p, labels, H * W, &n) ==
          CYTOSEG_STATUS_OK);
    CHECK(n == 2);
    CHECK(labels[0] == 0);
    CHECK(labels[20 * W + 16] != 0 && labels[26 * W + 46] != 0);
    CHECK(labels[20 * W + 16] != labels[26 * W + 46]);
    /* NULL params means defaults; same result. */
    static uint32_t labels2[H * W];
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, NULL, labels2, H * W, NULL) ==
          CYTOSEG_STATUS_OK);
    CHECK(memcmp(labels, labels2, sizeof labels) == 0);

    /* Labels -> flows: unit vectors inside masks, zero outside. */
    static double flows[2 * H * W];
    CHECK(cytoseg_labels_to_flows(labels, H * W, H, W, flows, 2 * H * W) == CYTOSEG_STATUS_OK);
    CHECK(flows[0] == 0.0 && flows[H * W] == 0.0);
    int i = 20 * W + 12; /* left of the first centre: flow points right (+x) */
    CHECK(flows[H * W + i] > 0.5);
    double norm = flows[i] * flows[i] + flows[H * W + i] * flows[H * W + i];
    CHECK(fabs(norm - 1.0) < 1e-9);
}

static void test_bad_input(void) {
    static float dp[2 * H * W], cellprob[H * W];
    static uint32_t labels[H * W];
    make_flows(dp, cellprob);
    for (int i = 0; i < H * W; i++) labels[i] = 77;
    cytoseg_masks_params p;
    cytoseg_masks_params_init(&p);
    CHECK(cytoseg_flows_to_labels(NULL, 2 * H * W, cellprob, H * W, H, W, &p, labels, H * W, NULL) ==
          CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, &p, NULL, H * W, NULL) ==
          CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W - 1, cellprob, H * W, H, W, &p, labels, H * W, NULL) ==
          CYTOSEG_STATUS_SHAPE_MISMATCH);
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, &p, labels, H * W - 5, NULL) ==
          CYTOSEG_STATUS_SHAPE_MISMATCH);
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, 0, W, &p, labels, H * W, NULL) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_flows_to_labels(dp, 2, cellprob, 1, 1, 1, &p, labels, 1, NULL) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    /* Overflowing dimensions. */
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, (size_t)1 << 40, (size_t)1 << 40, &p,
                                  labels, H * W, NULL) == CYTOSEG_STATUS_TOO_LARGE);
    /* NaN in the flows. */
    dp[5] = NAN;
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, &p, labels, H * W, NULL) ==
          CYTOSEG_STATUS_NON_FINITE);
    dp[5] = 0.0f;
    cellprob[7] = INFINITY;
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, &p, labels, H * W, NULL) ==
          CYTOSEG_STATUS_NON_FINITE);
    cellprob[7] = -4.0f;
    /* Uninitialized parameters are caught by struct_size. */
    cytoseg_masks_params bad = p;
    bad.struct_size = 0;
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, &bad, labels, H * W, NULL) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    bad = p;
    bad.flow_threshold = NAN;
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, &bad, labels, H * W, NULL) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    /* Outputs untouched on failure. */
    for (int i = 0; i < H * W; i++) CHECK(labels[i] == 77);
    static double flows[2 * H * W];
    CHECK(cytoseg_labels_to_flows(labels, H * W, H, W, NULL, 2 * H * W) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_labels_to_flows(labels, H * W, H, W, flows, H * W) == CYTOSEG_STATUS_SHAPE_MISMATCH);
}

/* One flows -> labels call per thread, plus a per-thread error. */
static void *worker(void *arg) {
    (void)arg;
    static float dp[2 * H * W], cellprob[H * W];
    uint32_t *labels = malloc(sizeof(uint32_t) * H * W);
    float *d = malloc(sizeof(float) * 2 * H * W), *c = malloc(sizeof(float) * H * W);
    make_flows(d, c);
    (void)dp; (void)cellprob;
    uint32_t n = 0;
    int ok = cytoseg_flows_to_labels(d, 2 * H * W, c, H * W, H, W, NULL, labels, H * W, &n) ==
                 CYTOSEG_STATUS_OK && n == 2;
    int err = cytoseg_masks_params_init(NULL) == CYTOSEG_STATUS_NULL_POINTER &&
              cytoseg_last_error_status() == CYTOSEG_STATUS_NULL_POINTER;
    free(labels);
    free(d);
    free(c);
    return (void *)(intptr_t)(ok && err);
}

static void test_threads(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK((intptr_t)r == 1);
    }
    /* The other threads' errors did not leak into this one. */
    cytoseg_clear_last_error();
    CHECK(cytoseg_last_error_status() == CYTOSEG_STATUS_OK);
}

static void test_metrics(void) {
    /* truth: two objects; pred: the first matched exactly, the second half covered, one spurious */
    uint32_t t[16] = {1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 2, 2, 0, 0, 2, 2};
    uint32_t p[16] = {7, 7, 0, 0, 7, 7, 0, 9, 0, 0, 5, 0, 0, 0, 5, 0};
    double thr[2] = {0.5, 0.9};
    cytoseg_matching_stats st[2];
    double dice = 0;
    CHECK(cytoseg_evaluate_labels(t, p, 16, thr, 2, CYTOSEG_CRITERION_IOU, st, &dice) == CYTOSEG_STATUS_OK);
    CHECK(st[0].n_true == 2 && st[0].n_pred == 3);
    CHECK(st[0].tp == 2 && st[0].fp == 1 && st[0].fn_ == 0); /* IoU 1 and 0.5 */
    CHECK(st[1].tp == 1 && st[1].fp == 2 && st[1].fn_ == 1);
    CHECK(fabs(st[0].accuracy - 2.0 / 3.0) < 1e-12);
    CHECK(fabs(dice - 2.0 * 6.0 / (8.0 + 7.0)) < 1e-12);
    CHECK(cytoseg_evaluate_labels(t, p, 16, thr, 2, 7, st, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_evaluate_labels(NULL, p, 16, thr, 2, 0, st, NULL) == CYTOSEG_STATUS_NULL_POINTER);
}

/* cytoseg_masks_params as an older header would declare it, without its last two fields: the
 * C ABI promises that such a struct is accepted and the missing fields take their defaults. */
typedef struct {
    uint32_t struct_size;
    uint32_t niter;
    float cellprob_threshold;
    uint32_t reserved;
    double flow_threshold;
} old_masks_params;

/* ... and as a newer header might: one more field at the end. */
typedef struct {
    cytoseg_masks_params current;
    double added_later;
} newer_masks_params;

static void test_struct_versions(void) {
    static float dp[2 * H * W], cellprob[H * W];
    static uint32_t want[H * W], got[H * W];
    make_flows(dp, cellprob);
    uint32_t n_want = 0, n_got = 0;
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, NULL, want, H * W, &n_want) ==
          CYTOSEG_STATUS_OK);
    CHECK(n_want == 2);
    old_masks_params old = {sizeof(old_masks_params), 200, 0.0f, 0, 0.4};
    CHECK(sizeof old < sizeof(cytoseg_masks_params));
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, (const cytoseg_masks_params *)&old,
                                  got, H * W, &n_got) == CYTOSEG_STATUS_OK);
    CHECK(n_got == n_want && memcmp(got, want, sizeof got) == 0);
    /* The fields it has are read: a threshold above every logit leaves no mask. */
    old.cellprob_threshold = 100.0f;
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, (const cytoseg_masks_params *)&old,
                                  got, H * W, &n_got) == CYTOSEG_STATUS_OK);
    CHECK(n_got == 0);
    /* A size that ends inside a field is no version of the struct. */
    old.struct_size = 20;
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, (const cytoseg_masks_params *)&old,
                                  got, H * W, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    /* A struct from a newer header than this library is refused with a message saying so. */
    newer_masks_params newer;
    CHECK(cytoseg_masks_params_init(&newer.current) == CYTOSEG_STATUS_OK);
    newer.current.struct_size = sizeof newer;
    newer.added_later = 1.0;
    CHECK(cytoseg_flows_to_labels(dp, 2 * H * W, cellprob, H * W, H, W, &newer.current, got, H * W, NULL) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    char msg[512];
    cytoseg_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "newer cytoseg header") != NULL);
}

/* Model folders: the user's models folder ($CYTOSEG_USER_MODELS, set by run.sh), a clone's
 * folder under it, refused names, the string-length convention, and the by-name list. */
static void test_model_folders(void) {
    const char *user = getenv("CYTOSEG_USER_MODELS");
    char buf[1024];
    size_t needed = 0;
    CHECK(cytoseg_user_model_dir(NULL, buf, sizeof buf, &needed) == CYTOSEG_STATUS_OK);
    if (user != NULL) {
        CHECK(strcmp(buf, user) == 0);
    }
    CHECK(needed == strlen(buf) + 1);
    CHECK(cytoseg_user_model_dir("mycells", buf, sizeof buf, NULL) == CYTOSEG_STATUS_OK);
    size_t n = strlen(buf);
    CHECK(n > 8 && strcmp(buf + n - 8, "/mycells") == 0);
    /* too small a buffer: truncated, NUL-terminated, and `needed` says the full length */
    char small[4] = {'x', 'x', 'x', 'x'};
    CHECK(cytoseg_user_model_dir("mycells", small, sizeof small, &needed) == CYTOSEG_STATUS_OK);
    CHECK(small[3] == '\0' && needed == n + 1);
    const char *bad[] = {"../up", ".hidden", "a/b", "with space", ""};
    for (size_t i = 0; i < 4; i++) {
        CHECK(cytoseg_user_model_dir(bad[i], buf, sizeof buf, &needed) == CYTOSEG_STATUS_INVALID_ARGUMENT);
        char msg[512];
        cytoseg_last_error_message(msg, sizeof msg);
        CHECK(strstr(msg, "letters, digits") != NULL);
    }
    /* "" means the folder itself, like NULL */
    CHECK(cytoseg_user_model_dir(bad[4], buf, sizeof buf, NULL) == CYTOSEG_STATUS_OK);
    /* a misaligned `needed` is refused, not written */
    size_t words[2] = {0, 0};
    CHECK(cytoseg_user_model_dir("x", buf, sizeof buf, (size_t *)((char *)words + 1)) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    size_t list_len = cytoseg_list_models(NULL, 0);
    CHECK(list_len >= 1);
    char *list = malloc(list_len);
    CHECK(list != NULL);
    if (list != NULL) {
        CHECK(cytoseg_list_models(list, list_len) == list_len);
        CHECK(strlen(list) + 1 == list_len);
        /* every line is name<TAB>folder */
        for (char *line = list; *line != '\0';) {
            char *end = strchr(line, '\n');
            char *tab = strchr(line, '\t');
            CHECK(end != NULL && tab != NULL && tab < end);
            if (end == NULL) {
                break;
            }
            line = end + 1;
        }
        free(list);
    }
}

/* Per-plane labels of a 3-plane stack (2×6 planes, both rows alike) linked into 3-D labels. */
static void test_stitch(void) {
    uint32_t planes[3][6] = {{1, 1, 1, 0, 2, 2}, {1, 1, 0, 0, 0, 2}, {2, 2, 1, 0, 0, 0}};
    uint32_t want[3][6] = {{1, 1, 1, 0, 2, 2}, {1, 1, 0, 0, 0, 2}, {1, 1, 3, 0, 0, 0}};
    uint32_t v[36], n = 0;
    for (int z = 0; z < 3; z++)
        for (int y = 0; y < 2; y++)
            memcpy(v + (z * 2 + y) * 6, planes[z], sizeof planes[z]);
    CHECK(cytoseg_stitch_labels(v, 36, 3, 2, 6, 0.25, 0, &n) == CYTOSEG_STATUS_OK);
    CHECK(n == 3);
    for (int z = 0; z < 3; z++)
        for (int y = 0; y < 2; y++)
            CHECK(memcmp(v + (z * 2 + y) * 6, want[z], sizeof want[z]) == 0);
    /* Errors leave the buffer as it was. */
    uint32_t before[36];
    memcpy(before, v, sizeof v);
    CHECK(cytoseg_stitch_labels(NULL, 36, 3, 2, 6, 0.25, 0, NULL) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_stitch_labels(v, 35, 3, 2, 6, 0.25, 0, NULL) == CYTOSEG_STATUS_SHAPE_MISMATCH);
    CHECK(cytoseg_stitch_labels(v, 36, 3, 2, 6, 0.0, 0, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_stitch_labels(v, 36, 3, 2, 6, NAN, 0, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(memcmp(before, v, sizeof v) == 0);
}

/* 3-D flows: two balls of flows pointing at their centres in a 6×10×20 volume give two masks,
   each the ball's voxels; bad sizes and NaN are clear errors that leave the output alone. */
static void test_flows_3d(void) {
    enum { D = 6, H = 10, W = 20, N = D * H * W };
    static float dp[3 * N], cp[N];
    static uint32_t labels[N];
    const float centres[2][3] = {{3, 5, 5}, {3, 5, 14}};
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int i = (z * H + y) * W + x;
                cp[i] = -5.0f;
                for (int c = 0; c < 2; c++) {
                    float v[3] = {centres[c][0] - z, centres[c][1] - y, centres[c][2] - x};
                    float r = sqrtf(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
                    if (r < 4.0f) {
                        float s = r > 0 ? 5.0f / r : 0.0f;
                        for (int k = 0; k < 3; k++)
                            dp[k * N + i] = v[k] * s;
                        cp[i] = 3.0f;
                    }
                }
            }
    uint32_t n = 0;
    CHECK(cytoseg_flows_to_labels_3d(dp, 3 * N, cp, N, D, H, W, NULL, labels, N, &n) ==
          CYTOSEG_STATUS_OK);
    CHECK(n == 2);
    int agree = 1;
    for (int i = 0; i < N; i++)
        agree &= (labels[i] != 0) == (cp[i] > 0);
    CHECK(agree);
    CHECK(labels[(3 * H + 5) * W + 5] != labels[(3 * H + 5) * W + 14]);
    memset(labels, 0xAB, sizeof labels);
    CHECK(cytoseg_flows_to_labels_3d(dp, 3 * N, cp, N, D, H, W, NULL, labels, N - 1, NULL) ==
          CYTOSEG_STATUS_SHAPE_MISMATCH);
    CHECK(cytoseg_flows_to_labels_3d(dp, 3 * H * W, cp, H * W, 1, H, W, NULL, labels, H * W,
                                     NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_flows_to_labels_3d(NULL, 3 * N, cp, N, D, H, W, NULL, labels, N, NULL) ==
          CYTOSEG_STATUS_NULL_POINTER);
    cp[7] = NAN;
    CHECK(cytoseg_flows_to_labels_3d(dp, 3 * N, cp, N, D, H, W, NULL, labels, N, NULL) ==
          CYTOSEG_STATUS_NON_FINITE);
    CHECK(labels[0] == 0xABABABABu && labels[N - 1] == 0xABABABABu);
}

/* Labels -> 3-D flows: unit vectors inside masks, zero outside; 10x the flows with a cellprob
 * from the masks give two masks back, each inside its own box (flows -> labels; Cellpose also
 * leaves the edges of such flat boxes out); errors leave the output untouched. */
static void test_labels_to_flows_3d(void) {
    enum { D = 6, H = 12, W = 20, N = D * H * W };
    static uint32_t labels[N], back[N];
    static double flows[3 * N];
    static float dp[3 * N], cp[N];
    for (int z = 1; z < 5; z++)
        for (int y = 2; y < 10; y++)
            for (int x = 2; x < 18; x++)
                labels[(z * H + y) * W + x] = x < 10 ? 7 : 9;
    CHECK(cytoseg_labels_to_flows_3d(labels, N, D, H, W, flows, 3 * N) == CYTOSEG_STATUS_OK);
    int unit = 1, zero = 1;
    for (int i = 0; i < N; i++) {
        double s = flows[i] * flows[i] + flows[N + i] * flows[N + i] +
                   flows[2 * N + i] * flows[2 * N + i];
        if (labels[i])
            unit &= fabs(s - 1.0) < 1e-9;
        else
            zero &= s == 0.0;
        for (int c = 0; c < 3; c++)
            dp[c * N + i] = (float)(10.0 * flows[c * N + i]);
        cp[i] = labels[i] ? 4.0f : -4.0f;
    }
    CHECK(unit);
    CHECK(zero);
    /* the top plane of a box flows down (+z), its bottom plane up */
    CHECK(flows[(1 * H + 5) * W + 5] > 0 && flows[(4 * H + 5) * W + 5] < 0);
    uint32_t n = 0;
    CHECK(cytoseg_flows_to_labels_3d(dp, 3 * N, cp, N, D, H, W, NULL, back, N, &n) ==
          CYTOSEG_STATUS_OK);
    CHECK(n == 2);
    uint32_t a = 0, b = 0;
    for (int i = 0; i < N; i++) {
        if (!a && labels[i] == 7)
            a = back[i];
        if (!b && labels[i] == 9)
            b = back[i];
    }
    CHECK(a != 0 && b != 0 && a != b);
    int inside = 1;
    for (int i = 0; i < N; i++)
        if (back[i])
            inside &= labels[i] == (back[i] == a ? 7u : 9u);
    CHECK(inside);
    memset(flows, 0xAB, sizeof flows);
    CHECK(cytoseg_labels_to_flows_3d(labels, N, D, H, W, flows, 3 * N - 1) ==
          CYTOSEG_STATUS_SHAPE_MISMATCH);
    CHECK(cytoseg_labels_to_flows_3d(labels, H * W, 1, H, W, flows, 3 * H * W) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_labels_to_flows_3d(NULL, N, D, H, W, flows, 3 * N) ==
          CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_labels_to_flows_3d(labels, N, D, H, W, NULL, 3 * N) ==
          CYTOSEG_STATUS_NULL_POINTER);
    uint64_t first;
    memcpy(&first, flows, sizeof first);
    CHECK(first == 0xABABABABABABABABull);
}

int main(void) {
    test_version();
    test_model_folders();
    test_struct_versions();
    test_errors_api();
    test_flows_to_labels();
    test_bad_input();
    test_threads();
    test_metrics();
    test_stitch();
    test_flows_3d();
    test_labels_to_flows_3d();
    if (failures) {
        fprintf(stderr, "test_api: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_api: all checks passed\n");
    return 0;
}
