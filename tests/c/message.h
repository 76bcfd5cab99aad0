/* message_has: whether the calling thread's last cytoseg error message holds `what` (printing
 * the message when it does not). */
#ifndef CYTOSEG_TEST_MESSAGE_H
#define CYTOSEG_TEST_MESSAGE_H

#include "cytoseg.h"

#include <stdio.h>
#include <string.h>

static inline int message_has(const char *what) {
    char buf[1024];
    cytoseg_last_error_message(buf, sizeof buf);
    if (strstr(buf, what) == NULL) {
        fprintf(stderr, "last error \"%s\" lacks \"%s\"\n", buf, what);
        return 0;
    }
    return 1;
}

#endif
