/*
 * Text helpers for the status walk and the JSON scanners: UTF-8 checking and counting, the
 * gateway's date-time form, UTC offsets and key-name distance. Nothing here
 * touches Lua or allocates, so the walk can call it freely.
 */
#ifndef AO_TEXT_H
#define AO_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#define AO_SCAN_SIXTEEN 1
#endif

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

/* Whether s is valid UTF-8 (no counting); when not, *bad_at is the offset of the bad sequence. */
AO_HIDDEN int ao_utf8_valid(const unsigned char *s, size_t len, size_t *bad_at);

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

/*
 * JSON string scanning shared by the envelope check and the decoder, inline
 * because both call it once per string in their hottest loop.
 */
#define AO_ONES UINT64_C(0x0101010101010101)
#define AO_HIGHS UINT64_C(0x8080808080808080)

/*
 * Whether one of the eight bytes in w ends a run of plain string bytes: a
 * control byte (< 0x20), '"' or '\\'. Exact as a yes/no: a byte >= 0x80 never
 * sets a false alarm (its top bit is masked off by ~w).
 */
static inline uint64_t ao_json_ends_run(uint64_t w)
{
    uint64_t quotes = w ^ (AO_ONES * '"'), backslashes = w ^ (AO_ONES * '\\');

    return (((w - AO_ONES * 0x20) & ~w)
            | ((quotes - AO_ONES) & ~quotes)
            | ((backslashes - AO_ONES) & ~backslashes)) & AO_HIGHS;
}

/* Past the JSON white space at p (most JSON we read is compact: one test then). */
static inline const unsigned char *ao_json_skip_space(const unsigned char *p, const unsigned char *end)
{
    if (p < end && *p > ' ')
        return p;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* Where the first flagged byte of a mask from ao_json_ends_run is, on machines where that is one instruction. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define AO_FIRST_FLAGGED_BYTE(mask) ((unsigned)__builtin_ctzll(mask) / 8)
#endif

/*
 * The end of the run of plain string bytes that starts at p: the first
 * control byte, '"' or '\\', or `end`. *high is set when the run holds a byte
 * >= 0x80 (so it needs a UTF-8 check). The lowest flagged byte of ao_json_ends_run is
 * the first one that ends the run (a false alarm only ever sits above a true one).
 */
static inline const unsigned char *ao_json_plain_run_end(const unsigned char *p, const unsigned char *end, int *high)
{
    uint64_t seen = 0;

#ifdef AO_SCAN_SIXTEEN
    /* x86-64 always has SSE2: sixteen bytes per step, the same tests as ao_json_ends_run */
    {
        const __m128i quotes = _mm_set1_epi8('"'), backslashes = _mm_set1_epi8('\\');
        const __m128i last_control = _mm_set1_epi8(0x1F);
        unsigned highs_seen = 0;

        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i is_control = _mm_cmpeq_epi8(_mm_min_epu8(v, last_control), v);
            unsigned stop = (unsigned)_mm_movemask_epi8(
                _mm_or_si128(is_control, _mm_or_si128(_mm_cmpeq_epi8(v, quotes), _mm_cmpeq_epi8(v, backslashes))));
            unsigned highs = (unsigned)_mm_movemask_epi8(v);

            if (stop != 0) {
                unsigned n = (unsigned)__builtin_ctz(stop);

                *high = (highs_seen | (highs & ((1u << n) - 1))) != 0;
                return p + n;
            }
            highs_seen |= highs;
            p += 16;
        }
        if (highs_seen != 0)
            seen = AO_HIGHS;
    }
#endif

    while (end - p >= 8) {
        uint64_t w, stop;

        memcpy(&w, p, 8);
        stop = ao_json_ends_run(w);
        if (stop != 0) {
#ifdef AO_FIRST_FLAGGED_BYTE
            unsigned n = AO_FIRST_FLAGGED_BYTE(stop);

            seen |= w & ((UINT64_C(1) << (n * 8)) - 1);
            *high = (seen & AO_HIGHS) != 0;
            return p + n;
#else
            break;
#endif
        }
        seen |= w;
        p += 8;
    }
    *high = (seen & AO_HIGHS) != 0;
    while (p < end && *p >= 0x20 && *p != '"' && *p != '\\') {
        if (*p & 0x80)
            *high = 1;
        p++;
    }
    return p;
}

/*
 * p at the 'u' of a \u escape: past it (and past the low half after a high
 * surrogate) with the code point in *code_point, or NULL. A lone or reversed
 * surrogate is no character, and decoders refuse it.
 */
AO_HIDDEN const unsigned char *ao_json_unicode_escape(const unsigned char *p, const unsigned char *end,
                                                     unsigned long *code_point);

#endif
