/* cytoseg_train: fine-tune a model from C, with a progress callback that cancels, then resume.
 * Usage: test_train PARENT_DIR IMAGES_DIR LABELS_DIR OUT_DIR
 * IMAGES_DIR/LABELS_DIR hold image/label pairs; OUT_DIR must not exist. */
#include "check.h"
#include "cytoseg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>


typedef struct {
    int calls;
    uint64_t cancel_at, last_step, steps;
} state;

static int32_t on_step(void *userdata, const cytoseg_train_progress *p) {
    state *s = userdata;
    s->calls++;
    s->last_step = p->step;
    s->steps = p->steps;
    if (!(p->loss > 0.0) || !(p->learning_rate > 0.0) || p->eta_s < 0.0) return 1;
    return s->cancel_at > 0 && p->step >= s->cancel_at;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s PARENT_DIR IMAGES_DIR LABELS_DIR OUT_DIR\n", argv[0]);
        return 2;
    }
    const char *parent = argv[1], *images = argv[2], *labels = argv[3], *out = argv[4];
    char path[4096], msg[1024];

    cytoseg_train_options o;
    CHECK(cytoseg_train_options_init(&o) == CYTOSEG_STATUS_OK);
    CHECK(o.struct_size == sizeof o && o.steps == 1000 && o.batch_size == 8 && o.crop == 128);
    CHECK(o.learning_rate == 1e-3 && o.masks_dir == NULL && o.resume == 0);
    CHECK(cytoseg_train_options_init(NULL) == CYTOSEG_STATUS_NULL_POINTER);
    o.steps = 6;
    o.batch_size = 2;
    o.crop = 64;
    o.invocation = "test_train.c";

    /* bad input: a missing folder, NULL pointers, an out-of-range option; nothing written */
    CHECK(cytoseg_train(parent, "/nonexistent-cytoseg-dir", labels, out, &o, NULL, NULL, NULL) != CYTOSEG_STATUS_OK);
    cytoseg_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "nonexistent-cytoseg-dir") != NULL);
    CHECK(cytoseg_train(NULL, images, labels, out, &o, NULL, NULL, NULL) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(cytoseg_train(parent, images, labels, NULL, &o, NULL, NULL, NULL) == CYTOSEG_STATUS_NULL_POINTER);
    cytoseg_train_options bad = o;
    bad.crop = 50;
    CHECK(cytoseg_train(parent, images, labels, out, &bad, NULL, NULL, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(cytoseg_train("no-such-model", images, labels, out, &o, NULL, NULL, NULL) != CYTOSEG_STATUS_OK);
    bad = o;
    bad.struct_size = sizeof o + 8; /* a newer header than this library */
    CHECK(cytoseg_train(parent, images, labels, out, &bad, NULL, NULL, NULL) != CYTOSEG_STATUS_OK);
    CHECK(!exists(out));

    /* cancel at step 3: a checkpoint, no package */
    state s = {0, 3, 0, 0};
    CHECK(cytoseg_train(parent, images, labels, out, &o, on_step, &s, NULL) == CYTOSEG_STATUS_CANCELLED);
    CHECK(s.last_step == 3 && s.steps == 6);
    snprintf(path, sizeof path, "%s/checkpoint.cytoseg-train", out);
    CHECK(exists(path));
    snprintf(path, sizeof path, "%s/model.onnx", out);
    CHECK(!exists(path));

    /* resume to the end */
    o.resume = 1;
    s.cancel_at = 0;
    s.calls = 0;
    cytoseg_train_result r;
    memset(&r, 0, sizeof r);
    int st = cytoseg_train(parent, images, labels, out, &o, on_step, &s, &r);
    if (st != CYTOSEG_STATUS_OK) {
        cytoseg_last_error_message(msg, sizeof msg);
        fprintf(stderr, "resume failed: %s\n", msg);
    }
    CHECK(st == CYTOSEG_STATUS_OK);
    CHECK(s.calls == 3 && s.last_step == 6);
    CHECK(r.steps == 6 && r.train_images >= 1 && r.final_train_loss > 0.0 && r.diameter > 0.0 && r.wall_s > 0.0);
    const char *files[] = {"model.onnx", "manifest.json", "MODEL_CARD.md", "loss.csv", "loss.png"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", out, files[i]);
        CHECK(exists(path));
    }
    /* a package is never overwritten */
    o.resume = 0;
    CHECK(cytoseg_train(parent, images, labels, out, &o, NULL, NULL, NULL) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    cytoseg_last_error_message(msg, sizeof msg);
    CHECK(strstr(msg, "already holds a model package") != NULL);

    if (failures) {
        fprintf(stderr, "test_train: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_train: cancel at step 3, resume to 6, package written; bad inputs refused\n");
    return 0;
}
