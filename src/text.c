#include "text.h"

#include <string.h>

ao_utf8_status ao_utf8_check(const unsigned char *s, size_t len, size_t *count, size_t *bad_at)
{
    size_t i = 0, n = 0;

    while (i < len) {
        unsigned c = s[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;   /* allowed range of the second byte */

        if (c < 0x80) {
            /* ASCII runs eight bytes at a time: no byte has its top bit set. */
            while (i + 8 <= len) {
                uint64_t word;
                memcpy(&word, s + i, 8);
                if (word & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
                n += 8;
            }
            if (i < len && s[i] < 0x80) {
                i++;
                n++;
            }
            continue;
        }
        if (c < 0xC0) {
            *bad_at = i;
            return AO_UTF8_BAD_BYTE;
        }
        if (c < 0xC2) {
            *bad_at = i;
            return AO_UTF8_OVERLONG;
        }
        if (c < 0xE0) {
            need = 1;
        } else if (c < 0xF0) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c < 0xF5) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else if (c < 0xF8) {
            *bad_at = i;
            return AO_UTF8_TOO_LARGE;
        } else {
            *bad_at = i;
            return AO_UTF8_BAD_BYTE;
        }
        if (len - i - 1 < need) {
            *bad_at = i;
            return AO_UTF8_TRUNCATED;
        }
        {
            unsigned second = s[i + 1];
            size_t k;
            if ((second & 0xC0) != 0x80) {
                *bad_at = i;
                return AO_UTF8_TRUNCATED;
            }
            if (second < lo || second > hi) {
                *bad_at = i;
                if (c == 0xED)
                    return AO_UTF8_SURROGATE;
                if (c == 0xF4)
                    return AO_UTF8_TOO_LARGE;
                return AO_UTF8_OVERLONG;
            }
            for (k = 2; k <= need; k++) {
                if ((s[i + k] & 0xC0) != 0x80) {
                    *bad_at = i;
                    return AO_UTF8_TRUNCATED;
                }
            }
        }
        i += need + 1;
        n++;
    }
    *count = n;
    return AO_UTF8_OK;
}

/* For words of ASCII bytes only: whether some byte is below n (n <= 128) or equals c. */
#define HAS_LESS(x, n) (((x) - AO_ONES * (n)) & ~(x) & AO_HIGHS)
#define HAS_BYTE(x, c) HAS_LESS((x) ^ (AO_ONES * (c)), 1)

/* Bytes the scan must look at one by one: non-ASCII, controls, '"', '\\', ' '. */
static int word_is_plain(uint64_t w)
{
    return !((w & AO_HIGHS) | HAS_LESS(w, 0x21) | HAS_BYTE(w, 0x22) | HAS_BYTE(w, 0x5C)
             | HAS_BYTE(w, 0x7F));
}

/*
 * Whether eight bytes are four well-formed two-byte sequences (U+0080..U+07FF):
 * each lead 0xC2..0xDF, each second byte 0x80..0xBF. The masks assume the
 * first byte in memory is the word's lowest; elsewhere the check says no and
 * the byte-wise loop does the work.
 */
static int word_is_four_pairs(uint64_t w)
{
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t shape_mask = UINT64_C(0xC0E0C0E0C0E0C0E0), shape = UINT64_C(0x80C080C080C080C0);
    const uint64_t lead_bits = UINT64_C(0x001E001E001E001E);   /* zero only for 0xC0, 0xC1 (overlong) */
    const uint64_t lane_tops = UINT64_C(0x8000800080008000);
    return (w & shape_mask) == shape && (((w & lead_bits) + UINT64_C(0x7FFF7FFF7FFF7FFF)) & lane_tops) == lane_tops;
#else
    (void)w;
    return 0;
#endif
}

/* How many bytes from s on are words of four two-byte sequences (a multiple of 8). */
static size_t four_pair_words(const unsigned char *s, size_t left)
{
    size_t run = 0;

    while (left - run >= 8) {
        uint64_t word;

        memcpy(&word, s + run, 8);
        if (!word_is_four_pairs(word))
            break;
        run += 8;
    }
    return run;
}

/*
 * The length of the well-formed three- or four-byte sequence at s (the ranges
 * of RFC 3629's table: no overlong form, no surrogate, nothing past U+10FFFF),
 * or 0; `left` bytes are readable.
 */
static size_t long_sequence_length(const unsigned char *s, size_t left)
{
    unsigned c = s[0];

    if (c >= 0xE0 && c <= 0xEF) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;

        if (left >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80)
            return 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;

        if (left >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80)
            return 4;
    }
    return 0;
}

ao_utf8_status ao_text_scan(const unsigned char *s, size_t len, ao_text_info *info)
{
    size_t i = 0, n = 0;

    info->first_control = len;
    info->first_space = len;
    info->needs_escape = 0;
    while (i < len) {
        unsigned c = s[i];

        if (c < 0x80) {
            if (c > 0x20 && c != '"' && c != '\\' && c != 0x7F) {
                i++;
                n++;
                while (i + 8 <= len) {
                    uint64_t word;
                    memcpy(&word, s + i, 8);
                    if (!word_is_plain(word))
                        break;
                    i += 8;
                    n += 8;
                }
                continue;
            }
            if (c < 0x20 || c == 0x7F) {
                if (info->first_control == len)
                    info->first_control = i;
                if (c < 0x20)
                    info->needs_escape = 1;
            } else if (c == ' ') {
                if (info->first_space == len)
                    info->first_space = i;
            } else {
                info->needs_escape = 1;
            }
            i++;
            n++;
            continue;
        }
        /* Well-formed sequences inline (the ranges of RFC 3629's table); the checker explains the rest. */
        if (c >= 0xC2 && c <= 0xDF) {
            if (len - i >= 2 && (s[i + 1] & 0xC0) == 0x80) {
                i += 2;
                n++;
                /* Cyrillic and Kazakh words are runs of two-byte letters: four at a time. */
                {
                    size_t run = four_pair_words(s + i, len - i);

                    i += run;
                    n += run / 2;
                }
                while (len - i >= 2 && s[i] >= 0xC2 && s[i] <= 0xDF && (s[i + 1] & 0xC0) == 0x80) {
                    i += 2;
                    n++;
                }
                continue;
            }
        } else {
            size_t k = long_sequence_length(s + i, len - i);

            if (k != 0) {
                i += k;
                n++;
                continue;
            }
        }
        {
            size_t count, slice = len - i < 4 ? len - i : 4;
            ao_utf8_status status = ao_utf8_check(s + i, slice, &count, &info->bad_at);
            /* The sequence at i is malformed, so the checker stops right there. */
            info->bad_at += i;
            return status == AO_UTF8_OK ? AO_UTF8_BAD_BYTE : status;
        }
    }
    info->chars = n;
    return AO_UTF8_OK;
}

/*
 * Only whether s is UTF-8, for text that is mostly non-ASCII (the JSON
 * decoder calls it on string runs holding a byte >= 0x80): ASCII and
 * two-byte letters eight bytes at a time, other sequences inline.
 */
int ao_utf8_valid(const unsigned char *s, size_t len, size_t *bad_at)
{
    size_t i = 0;

    while (i < len) {
        unsigned c = s[i];

        if (c < 0x80) {
            i++;
            while (len - i >= 8) {
                uint64_t word;
                memcpy(&word, s + i, 8);
                if (word & AO_HIGHS)
                    break;
                i += 8;
            }
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            if (len - i >= 2 && (s[i + 1] & 0xC0) == 0x80) {
                i += 2;
                i += four_pair_words(s + i, len - i);
                continue;
            }
        } else {
            size_t k = long_sequence_length(s + i, len - i);

            if (k != 0) {
                i += k;
                continue;
            }
        }
        *bad_at = i;
        return 0;
    }
    return 1;
}

const char *ao_utf8_reason(ao_utf8_status status)
{
    switch (status) {
    case AO_UTF8_OK:
        return "valid";
    case AO_UTF8_BAD_BYTE:
        return "a byte that cannot start a UTF-8 sequence";
    case AO_UTF8_TRUNCATED:
        return "a truncated multi-byte sequence";
    case AO_UTF8_OVERLONG:
        return "an overlong encoding";
    case AO_UTF8_SURROGATE:
        return "a UTF-16 surrogate (U+D800..U+DFFF)";
    case AO_UTF8_TOO_LARGE:
        return "a code point beyond U+10FFFF";
    }
    return "invalid UTF-8";
}

static int is_leap(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int ao_days_in_month(int year, int month)
{
    static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (month == 2 && is_leap(year))
        return 29;
    return days[month - 1];
}

static int digits(const char *s, int n, int *value)
{
    int v = 0, i;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *value = v;
    return 0;
}

ao_datetime_status ao_datetime_parse(const char *s, size_t len, ao_datetime *out)
{
    ao_datetime dt;

    if (len != AO_DATETIME_LEN || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':'
        || s[16] != ':')
        return AO_DT_SHAPE;
    if (digits(s, 4, &dt.year) || digits(s + 5, 2, &dt.month) || digits(s + 8, 2, &dt.day)
        || digits(s + 11, 2, &dt.hour) || digits(s + 14, 2, &dt.minute)
        || digits(s + 17, 2, &dt.second))
        return AO_DT_SHAPE;
    if (dt.year < 1)
        return AO_DT_YEAR;
    if (dt.month < 1 || dt.month > 12)
        return AO_DT_MONTH;
    if (dt.day < 1 || dt.day > ao_days_in_month(dt.year, dt.month))
        return AO_DT_DAY;
    if (dt.hour > 23)
        return AO_DT_HOUR;
    if (dt.minute > 59)
        return AO_DT_MINUTE;
    if (dt.second > 59)
        return AO_DT_SECOND;
    *out = dt;
    return AO_DT_OK;
}

/* Days since 1970-01-01 to a proleptic Gregorian date (eras of 400 years). */
static void civil_from_days(int64_t z, int *year, int *month, int *day)
{
    int64_t era, doe, yoe, y, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(y + (*month <= 2));
}

int ao_datetime_from_unix(int64_t unix_seconds, int offset_minutes, ao_datetime *out)
{
    /* 9999-12-31 23:59:59 UTC; bounds keep the arithmetic far from overflow. */
    const int64_t last = INT64_C(253402300799);
    int64_t local, days, rest;

    if (unix_seconds < 0 || unix_seconds > last)
        return -1;
    local = unix_seconds + (int64_t)offset_minutes * 60;
    if (local < 0 || local > last)
        return -1;
    days = local / 86400;
    rest = local % 86400;
    civil_from_days(days, &out->year, &out->month, &out->day);
    out->hour = (int)(rest / 3600);
    out->minute = (int)(rest % 3600 / 60);
    out->second = (int)(rest % 60);
    return 0;
}

static void put2(char *out, int v)
{
    out[0] = (char)('0' + v / 10);
    out[1] = (char)('0' + v % 10);
}

void ao_datetime_format(const ao_datetime *dt, char *out)
{
    put2(out, dt->year / 100);
    put2(out + 2, dt->year % 100);
    out[4] = '-';
    put2(out + 5, dt->month);
    out[7] = '-';
    put2(out + 8, dt->day);
    out[10] = ' ';
    put2(out + 11, dt->hour);
    out[13] = ':';
    put2(out + 14, dt->minute);
    out[16] = ':';
    put2(out + 17, dt->second);
}

int ao_utc_offset_parse(const char *s, size_t len, int *minutes)
{
    int hh, mm;

    if (len != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':')
        return -1;
    if (digits(s + 1, 2, &hh) || digits(s + 4, 2, &mm))
        return -1;
    if (hh > 14 || mm > 59 || (hh == 14 && mm != 0))
        return -1;
    *minutes = (s[0] == '-' ? -1 : 1) * (hh * 60 + mm);
    return 0;
}

size_t ao_name_distance(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Three rows of the dynamic-programming table: two back for swaps. */
    size_t rows[3][AO_NAME_DISTANCE_MAX + 1];
    size_t i, j;

    if (alen > AO_NAME_DISTANCE_MAX || blen > AO_NAME_DISTANCE_MAX)
        return AO_NAME_DISTANCE_MAX;
    for (j = 0; j <= blen; j++)
        rows[0][j] = j;
    for (i = 1; i <= alen; i++) {
        size_t *cur = rows[i % 3], *prev = rows[(i - 1) % 3], *prev2 = rows[(i + 1) % 3];
        cur[0] = i;
        for (j = 1; j <= blen; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (prev[j - 1] + cost < best)
                best = prev[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]
                && prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
    }
    return rows[alen % 3][blen];
}

/* JSON string scanning, shared by the envelope check and the decoder (see text.h). */

static int hex_value(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    c |= 0x20;   /* lower case */
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    return -1;
}

/* The four hex digits at p (at least four bytes readable) as a number, or -1. */
static long hex4(const unsigned char *p)
{
    long v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        int d = hex_value(p[i]);

        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

const unsigned char *ao_json_unicode_escape(const unsigned char *p, const unsigned char *end,
                                           unsigned long *code_point)
{
    long unit;

    if (end - p < 5 || (unit = hex4(p + 1)) < 0)
        return NULL;
    p += 5;
    if (unit >= 0xDC00 && unit <= 0xDFFF)
        return NULL;
    if (unit >= 0xD800 && unit <= 0xDBFF) {
        long low;

        if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
            return NULL;
        low = hex4(p + 2);
        if (low < 0xDC00 || low > 0xDFFF)
            return NULL;
        *code_point = 0x10000 + (((unsigned long)unit - 0xD800) << 10) + ((unsigned long)low - 0xDC00);
        return p + 6;
    }
    *code_point = (unsigned long)unit;
    return p;
}
