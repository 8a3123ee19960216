/*
 * A growable byte buffer that never raises: every write reports failure by
 * return value, so callers can free what they own before raising a Lua error
 * (an nginx worker must survive running out of memory).
 */
#ifndef AO_BUFFER_H
#define AO_BUFFER_H

#include <stddef.h>

#include "export.h"

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int failed;          /* sticky: set once an allocation failed */
} ao_buffer;

AO_HIDDEN void ao_buffer_init(ao_buffer *b);
AO_HIDDEN void ao_buffer_free(ao_buffer *b);
AO_HIDDEN void ao_buffer_reset(ao_buffer *b);             /* keep capacity, drop contents */
AO_HIDDEN int ao_buffer_reserve(ao_buffer *b, size_t extra); /* 0 on success, -1 on failure */
AO_HIDDEN int ao_buffer_append(ao_buffer *b, const void *src, size_t n);
AO_HIDDEN int ao_buffer_putc(ao_buffer *b, char c);
AO_HIDDEN int ao_buffer_puts(ao_buffer *b, const char *s);

#endif
