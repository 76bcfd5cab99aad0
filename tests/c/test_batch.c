/* cytoseg_segment_folder: a batch run, cancelled and resumed, against the same folder.
 * Usage: test_batch MODEL_DIR ORT_LIBRARY IN_DIR OUT_DIR OUT_CANCELLED_DIR [HOSTILE_DIR N_HOSTILE
 *        [SEEDS_DIR N_SEEDS [STACK_DIR]]]
 * IN_DIR holds 3 readable images and 1 broken file; run.sh then compares OUT_DIR with the
 * `cytoseg segment` command's output for the same folder. HOSTILE_DIR holds one good image and
 * N_HOSTILE hostile files (headers claiming terabytes, ...): each must be a failed image.
 * SEEDS_DIR holds the fuzz seeds of the file readers: each is an image or a failed one.
 * STACK_DIR holds one z-stack: segmented in 3-D (do_3D, anisotropy from the file) into
 * OUT_DIR_3d, which run.sh compares with `cytoseg segment --do-3d`. */
#include "check.h"
#include "cytoseg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    int calls, lines, cancel_after_lines;
    size_t last_done, last_total;
} progress_state;

static int32_t on_progress(void *userdata, size_t done, size_t total, const char *line) {
    progress_state *s = userdata;
    s->calls++;
    s->last_done = done;
    s->last_total = total;
    if (line) {
        s->lines++;
        printf("  %s\n", line);
        if (s->cancel_after_lines > 0 && s->lines >= s->cancel_after_lines) return 1;
    }
    return 0;
}

static int32_t cancel_at_once(void *userdata, size_t done, size_t total, const char *line) {
    (void)userdata;
    (void)done;
    (void)total;
    (void)line;
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 8 && argc != 10 && argc != 11) {
        fprintf(stderr, "usage: %s MODEL_DIR ORT_LIBRARY IN_DIR OUT_DIR OUT_CANCELLED_DIR [HOSTILE_DIR N]\n", argv[0]);
        return 2;
    }
    cytoseg_load_options lo;
    cytoseg_load_options_init(&lo);
    lo.device = CYTOSEG_DEVICE_CPU;
    lo.ort_lib = argv[2];
    cytoseg_model *model = NULL;
    if (cytoseg_model_load(argv[1], &lo, &model) != CYTOSEG_STATUS_OK) {
        char msg[1024];
        cytoseg_last_error_message(msg, sizeof msg);
        fprintf(stderr, "model load failed: %s\n", msg);
        return 1;
    }
    const char *inputs[] = {argv[3]};
    cytoseg_batch_options opts;
    /* The first version's init writes the first version's fields only (older programs pass
     * smaller structs); _init_sized fills every field of this header's struct. */
    memset(&opts, 0xAB, sizeof opts);
    CHECK(cytoseg_batch_options_init(&opts) == CYTOSEG_STATUS_OK);
    CHECK(opts.struct_size == 48 && opts.objects == 1 && opts.jobs == 0 && opts.invocation == NULL);
    CHECK(opts.volume_mode == (int32_t)0xABABABAB);
    CHECK(cytoseg_batch_options_init_sized(&opts, sizeof opts - 1) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_batch_options_init_sized(&opts, sizeof opts + 8) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_batch_options_init_sized(NULL, sizeof opts) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_batch_options_init_sized(&opts, sizeof opts) == CYTOSEG_STATUS_OK);
    CHECK(opts.struct_size == sizeof opts && opts.objects == 1 && opts.jobs == 0 && opts.invocation == NULL);
    CHECK(opts.volume_mode == -1 && opts.volume_value == 0.0);
    opts.jobs = 2;
    opts.invocation = "test_batch.c";

    /* A whole run: 3 images ok, the broken one failed, every image reported once. */
    progress_state st = {0, 0, 0, 0, 0};
    cytoseg_batch_counts counts = {99, 99, 99, 99};
    CHECK(cytoseg_segment_folder(model, inputs, 1, argv[4], NULL, &opts, on_progress, &st, &counts) ==
          CYTOSEG_STATUS_OK);
    CHECK(counts.ok == 3 && counts.failed == 1 && counts.skipped == 0 && counts.cancelled == 0);
    CHECK(st.lines == 4 && st.last_done == 4 && st.last_total == 4);
    /* Again: nothing to redo. */
    CHECK(cytoseg_segment_folder(model, inputs, 1, argv[4], NULL, &opts, NULL, NULL, &counts) ==
          CYTOSEG_STATUS_OK);
    CHECK(counts.ok == 0 && counts.skipped == 3 && counts.failed == 1);

    /* Cancelled at the first call, which comes before any image starts: every image cancelled,
       however fast the first would have been. */
    opts.jobs = 1;
    CHECK(cytoseg_segment_folder(model, inputs, 1, argv[5], NULL, &opts, cancel_at_once, NULL, &counts) ==
          CYTOSEG_STATUS_CANCELLED);
    CHECK(counts.cancelled == 4 && counts.ok == 0 && counts.skipped == 0 && counts.failed == 0);

    /* Cancelled after the first image, then resumed: the same outputs as the whole run. */
    opts.jobs = 1;
    progress_state cancel = {0, 0, 1, 0, 0};
    CHECK(cytoseg_segment_folder(model, inputs, 1, argv[5], NULL, &opts, on_progress, &cancel, &counts) ==
          CYTOSEG_STATUS_CANCELLED);
    CHECK(counts.cancelled >= 1 && counts.ok + counts.skipped + counts.failed + counts.cancelled == 4);
    size_t first_ok = counts.ok;
    CHECK(cytoseg_segment_folder(model, inputs, 1, argv[5], NULL, &opts, NULL, NULL, &counts) ==
          CYTOSEG_STATUS_OK);
    CHECK(counts.cancelled == 0 && counts.skipped == first_ok && counts.ok + counts.skipped == 3);

    /* Bad calls: nothing written, clear messages. */
    char msg[1024];
    const char *missing[] = {"/no/such/folder"};
    CHECK(cytoseg_segment_folder(model, missing, 1, argv[5], NULL, NULL, NULL, NULL, NULL) == CYTOSEG_STATUS_IO);
    cytoseg_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "/no/such/folder") != NULL);
    CHECK(cytoseg_segment_folder(model, inputs, 0, argv[5], NULL, NULL, NULL, NULL, NULL) ==
          CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_segment_folder(model, NULL, 1, argv[5], NULL, NULL, NULL, NULL, NULL) ==
          CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_segment_folder(NULL, inputs, 1, argv[5], NULL, NULL, NULL, NULL, NULL) ==
          CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_segment_folder(model, inputs, 1, NULL, NULL, NULL, NULL, NULL, NULL) ==
          CYTOSEG_STATUS_NULL_POINTER);

    if (argc >= 8) {
        /* Hostile files: failed images with messages, never an abort of this process. */
        const char *hostile[] = {argv[6]};
        char out[4096];
        snprintf(out, sizeof out, "%s_hostile", argv[4]);
        CHECK(cytoseg_segment_folder(model, hostile, 1, out, NULL, NULL, NULL, NULL, &counts) ==
              CYTOSEG_STATUS_OK);
        CHECK(counts.ok == 1 && counts.failed == (size_t)atoi(argv[7]));
        printf("hostile files: %zu failed cleanly, %zu ok\n", counts.failed, counts.ok);
    }
    if (argc >= 10) {
        const char *seeds[] = {argv[8]};
        char out[4096];
        snprintf(out, sizeof out, "%s_seeds", argv[4]);
        cytoseg_batch_options rec;
        cytoseg_batch_options_init(&rec);
        rec.recursive = 1; /* one sub-folder per reader, as fuzz/seeds/ */
        CHECK(cytoseg_segment_folder(model, seeds, 1, out, NULL, &rec, NULL, NULL, &counts) ==
              CYTOSEG_STATUS_OK);
        CHECK(counts.ok + counts.failed == (size_t)atoi(argv[9]) && counts.cancelled == 0);
        printf("fuzz seeds: %zu segmented, %zu failed cleanly\n", counts.ok, counts.failed);
    }
    if (argc == 11) {
        /* Stacks into 3-D objects; a 2-D image in 3-D mode is a failed image; bad modes are
         * refused before anything is written. */
        const char *stacks[] = {argv[10], argv[3]};
        char out[4096];
        snprintf(out, sizeof out, "%s_3d", argv[4]);
        cytoseg_batch_options o3;
        CHECK(cytoseg_batch_options_init_sized(&o3, sizeof o3) == CYTOSEG_STATUS_OK);
        o3.volume_mode = CYTOSEG_VOLUME_MODE_DO3D;
        o3.volume_value = 0; /* the file's z spacing */
        o3.volume_mode = 7;
        CHECK(cytoseg_segment_folder(model, stacks, 1, out, NULL, &o3, NULL, NULL, &counts) ==
              CYTOSEG_STATUS_INVALID_ARGUMENT);
        cytoseg_last_error_message(msg, sizeof msg);
        CHECK(strstr(msg, "stack mode 7") != NULL);
        o3.volume_mode = CYTOSEG_VOLUME_MODE_STITCH;
        o3.volume_value = -1;
        CHECK(cytoseg_segment_folder(model, stacks, 1, out, NULL, &o3, NULL, NULL, &counts) ==
              CYTOSEG_STATUS_INVALID_ARGUMENT);
        o3.volume_mode = CYTOSEG_VOLUME_MODE_DO3D;
        o3.volume_value = 0;
        CHECK(cytoseg_segment_folder(model, stacks, 1, out, NULL, &o3, NULL, NULL, &counts) ==
              CYTOSEG_STATUS_OK);
        CHECK(counts.ok == 1 && counts.failed == 0);
        snprintf(out, sizeof out, "%s_3d_mixed", argv[4]);
        CHECK(cytoseg_segment_folder(model, stacks, 2, out, NULL, &o3, NULL, NULL, &counts) ==
              CYTOSEG_STATUS_OK);
        CHECK(counts.ok == 1 && counts.failed == 4); /* 3 flat images and the broken file */
        printf("3-D batch: the stack segmented in 3-D, %zu 2-D/broken files failed cleanly\n",
               counts.failed);
    }

    cytoseg_model_free(model);
    if (failures) {
        fprintf(stderr, "test_batch: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_batch: all checks passed\n");
    return 0;
}
