#include "buffer.h"

#include <stdlib.h>
#include <string.h>

void ao_buffer_init(ao_buffer *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = 0;
}

void ao_buffer_free(ao_buffer *b)
{
    free(b->data);
    ao_buffer_init(b);
}

void ao_buffer_reset(ao_buffer *b)
{
    b->len = 0;
    b->failed = 0;
}

int ao_buffer_reserve(ao_buffer *b, size_t extra)
{
    size_t need, cap;
    char *grown;

    if (b->failed)
        return -1;
    if (extra > (size_t)-1 - b->len) {
        b->failed = 1;
        return -1;
    }
    need = b->len + extra;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > (size_t)-1 / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    grown = realloc(b->data, cap);
    if (grown == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = grown;
    b->cap = cap;
    return 0;
}

int ao_buffer_append(ao_buffer *b, const void *src, size_t n)
{
    if (ao_buffer_reserve(b, n) != 0)
        return -1;
    if (n > 0)
        memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

int ao_buffer_putc(ao_buffer *b, char c)
{
    if (ao_buffer_reserve(b, 1) != 0)
        return -1;
    b->data[b->len++] = c;
    return 0;
}

int ao_buffer_puts(ao_buffer *b, const char *s)
{
    return ao_buffer_append(b, s, strlen(s));
}
