/*
 * Text helpers for the status walk: UTF-8 checking and counting, the
 * gateway's date-time form, UTC offsets and key-name distance. Nothing here
 * touches Lua or allocates, so the walk can call it freely.
 */
#ifndef AO_TEXT_H
#define AO_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

/* Why a byte string is not valid UTF-8 (AO_UTF8_OK when it is). */
typedef enum {
    AO_UTF8_OK = 0,
    AO_UTF8_BAD_BYTE,     /* a byte that never starts a sequence (0x80..0xBF, 0xF8..0xFF) */
    AO_UTF8_TRUNCATED,    /* a lead byte without enough continuation bytes */
    AO_UTF8_OVERLONG,     /* a code point written with more bytes than needed */
    AO_UTF8_SURROGATE,    /* U+D800..U+DFFF, which UTF-8 must not carry */
    AO_UTF8_TOO_LARGE     /* beyond U+10FFFF */
} ao_utf8_status;

/*
 * Checks `s` and counts its code points into *count. On failure *bad_at is
 * the byte offset (0-based) of the offending sequence.
 */
AO_HIDDEN ao_utf8_status ao_utf8_check(const unsigned char *s, size_t len,
                                       size_t *count, size_t *bad_at);
AO_HIDDEN const char *ao_utf8_reason(ao_utf8_status status);

/* What one pass over a string learns, so the walk never scans a string twice. */
typedef struct {
    size_t chars;          /* code points */
    size_t bad_at;         /* byte offset of the invalid sequence, when not valid */
    size_t first_control;  /* byte offset of the first byte < 0x20 or 0x7F, or len */
    size_t first_space;    /* byte offset of the first ' ', or len */
    int needs_escape;      /* holds a byte JSON must escape: a control, '"' or '\\' */
} ao_text_info;

/* ao_utf8_check plus the facts above, eight ASCII bytes at a time. */
AO_HIDDEN ao_utf8_status ao_text_scan(const unsigned char *s, size_t len, ao_text_info *info);

/* A calendar moment without a zone, as the gateway writes it. */
typedef struct {
    int year, month, day, hour, minute, second;
} ao_datetime;

typedef enum {
    AO_DT_OK = 0,
    AO_DT_SHAPE,          /* not YYYY-MM-DD HH:MM:SS */
    AO_DT_MONTH,
    AO_DT_DAY,            /* no such day in that month (leap years honoured) */
    AO_DT_HOUR,           /* 24:00:00 included: the gateway's form has no end-of-day */
    AO_DT_MINUTE,
    AO_DT_SECOND,         /* no leap seconds */
    AO_DT_YEAR            /* year 0000 */
} ao_datetime_status;

#define AO_DATETIME_LEN 19  /* strlen("2021-10-20 16:49:36") */

AO_HIDDEN ao_datetime_status ao_datetime_parse(const char *s, size_t len, ao_datetime *out);
AO_HIDDEN int ao_days_in_month(int year, int month);

/*
 * Local time of `unix_seconds` (seconds since 1970-01-01 00:00:00 UTC) at
 * `offset_minutes` east of UTC. Returns 0, or -1 when the local time falls
 * outside years 1970..9999.
 */
AO_HIDDEN int ao_datetime_from_unix(int64_t unix_seconds, int offset_minutes, ao_datetime *out);

/* Writes exactly AO_DATETIME_LEN bytes (no terminator) into out. */
AO_HIDDEN void ao_datetime_format(const ao_datetime *dt, char *out);

/* "+HH:MM" or "-HH:MM" (HH 00..14, MM 00..59) into minutes east of UTC; 0 or -1. */
AO_HIDDEN int ao_utc_offset_parse(const char *s, size_t len, int *minutes);

/*
 * Optimal-string-alignment distance (Levenshtein plus adjacent swaps) between
 * two short names; strings longer than AO_NAME_DISTANCE_MAX are never close,
 * and the result is capped at AO_NAME_DISTANCE_MAX.
 */
#define AO_NAME_DISTANCE_MAX 64
AO_HIDDEN size_t ao_name_distance(const char *a, size_t alen, const char *b, size_t blen);

#endif
