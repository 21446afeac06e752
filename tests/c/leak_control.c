/*
 * Negative control for the sanitizer pass of tests/c/run.sh: leaks one audio source on
 * purpose. valgrind (--errors-for-leak-kinds=definite) and LeakSanitizer must both report it
 * (a non-zero exit); if they do not, the leak checks of the smoke tests prove nothing.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#include "rvoip.h"

int main(void) {
    rvoip_audio_source *src = NULL;
    if (rvoip_audio_source_tone_new(440.0, 8000, 1000, &src) != RVOIP_RESULT_OK) return 3;
    src = NULL; /* the only pointer to it is gone: a definite leak */
    printf("leaked one rvoip_audio_source\n");
    return 0;
}
