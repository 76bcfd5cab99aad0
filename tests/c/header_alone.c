/* The header compiles alone (C11 and, renamed .cpp by run.sh, C++17) with all warnings as errors. */
#include "cytoseg.h"

int main(void) {
    cytoseg_masks_params p;
    return cytoseg_masks_params_init(&p) == CYTOSEG_STATUS_OK ? 0 : 1;
}
