/* cytoseg_classifier_train / cytoseg_classifier_apply from C: NULL and bad inputs give statuses
 * and messages, a model is trained and applied, a model of another format version is refused.
 * Usage: test_classify OUT_DIR LABELS_CSV WORK_DIR
 * OUT_DIR is a cytoseg segment output; LABELS_CSV labels some of its objects (two classes). */
#include "check.h"
#include "cytoseg.h"
#include "message.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: test_classify OUT_DIR LABELS_CSV WORK_DIR\n");
        return 2;
    }
    const char *out = argv[1], *labels = argv[2], *work = argv[3];
    char model[4096], bad_model[4096], missing[4096];
    snprintf(model, sizeof model, "%s/model.json", work);
    snprintf(bad_model, sizeof bad_model, "%s/bad_version.json", work);
    snprintf(missing, sizeof missing, "%s/no_such_labels.csv", work);

    double cv = -1.0;
    CHECK(cytoseg_classifier_train(NULL, labels, model, 0, 0, 0, &cv) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(message_has("objects_dir"));
    CHECK(cytoseg_classifier_train(out, labels, NULL, 0, 0, 0, &cv) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(message_has("model_out"));
    CHECK(cytoseg_classifier_train(out, missing, model, 0, 0, 0, &cv) == CYTOSEG_STATUS_IO);
    CHECK(message_has("no_such_labels.csv"));
    CHECK(cytoseg_classifier_train(out, labels, model, 0, 0, 1, &cv) == CYTOSEG_STATUS_INVALID_ARGUMENT);
    CHECK(message_has("folds"));
    CHECK(cv == -1.0); /* outputs are written only on success */

    CHECK(cytoseg_classifier_train(out, labels, model, 50, 3, 3, &cv) == CYTOSEG_STATUS_OK);
    CHECK(cv >= 0.0 && cv <= 1.0);
    CHECK(cytoseg_classifier_train(out, labels, model, 50, 3, 3, NULL) == CYTOSEG_STATUS_OK);

    uint64_t n = 0;
    CHECK(cytoseg_classifier_apply(NULL, out, &n) == CYTOSEG_STATUS_NULL_POINTER);
    CHECK(message_has("model_path"));
    CHECK(cytoseg_classifier_apply(model, out, &n) == CYTOSEG_STATUS_OK);
    CHECK(n > 0);
    uint64_t again = 0;
    CHECK(cytoseg_classifier_apply(model, out, &again) == CYTOSEG_STATUS_OK);
    CHECK(again == n);

    FILE *f = fopen(bad_model, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("{\"format\": \"cytoseg-classifier\", \"format_version\": 99}\n", f);
        fclose(f);
    }
    CHECK(cytoseg_classifier_apply(bad_model, out, &n) == CYTOSEG_STATUS_FORMAT);
    CHECK(message_has("version 99"));

    printf("classifier from C: cross-validated accuracy %.3f, %llu objects classified\n", cv,
           (unsigned long long)again);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    return failures != 0;
}
