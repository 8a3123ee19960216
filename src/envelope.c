/*
 * A strict JSON scanner that answers one question about the gateway's answer:
 * is it an object whose top-level "error_code" is the number 0? It reads the
 * whole body (so a success answer with garbage after it, a broken string deep
 * inside, or invalid UTF-8 is not mistaken for success), allocates nothing and
 * builds no Lua value. Decoding the answer with lua-cjson costs about six times
 * as much (tables built, then collected), which a batch that drops the data
 * pays for nothing.
 *
 * Its verdict must never be "success" where the full decoder would say
 * otherwise. So it is narrower than the decoder everywhere: it accepts only
 * RFC 8259 JSON in valid UTF-8, within a depth below any decoder's limit, and
 * only the literal 0 (lua-cjson would also take 0.0 or -0 as zero; such bodies
 * are left to it). A top-level key written with escapes could decode to
 * "error_code", and a decoder keeps the last of two equal keys, so both make
 * the body AMBIGUOUS rather than judged here.
 */
#include "envelope.h"

#include <stdint.h>
#include <string.h>

#include "text.h"

/*
 * p at the opening quote: past the closing one, or NULL when the string is
 * not well formed. *escaped is set when it holds an escape. Runs of plain
 * bytes are checked as UTF-8 only when they hold a byte >= 0x80; a multi-byte
 * sequence never contains '"', '\\' or a control byte, so cutting the string
 * at those never splits a valid sequence.
 */
static const unsigned char *string_end(const unsigned char *p, const unsigned char *end, int *escaped)
{
    const unsigned char *run = p + 1;

    for (;;) {
        int high;
        size_t count, bad_at;
        unsigned long code_point;

        p = ao_json_plain_run_end(run, end, &high);
        if (p >= end)
            return NULL;
        if (high && ao_utf8_check(run, (size_t)(p - run), &count, &bad_at) != AO_UTF8_OK)
            return NULL;
        if (*p == '"')
            return p + 1;
        if (*p != '\\')
            return NULL;   /* a raw control byte */
        *escaped = 1;
        if (++p >= end)
            return NULL;
        switch (*p) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            run = p + 1;
            break;
        case 'u':
            run = ao_json_unicode_escape(p, end, &code_point);
            if (run == NULL)
                return NULL;
            break;
        default:
            return NULL;
        }
    }
}

static int is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? at p: past it, or NULL. */
static const unsigned char *number_end(const unsigned char *p, const unsigned char *end)
{
    if (p < end && *p == '-')
        p++;
    if (!is_digit(p, end))
        return NULL;
    if (*p++ != '0')
        while (is_digit(p, end))
            p++;
    if (p < end && *p == '.') {
        if (!is_digit(++p, end))
            return NULL;
        while (is_digit(p, end))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!is_digit(p, end))
            return NULL;
        while (is_digit(p, end))
            p++;
    }
    return p;
}

static const unsigned char *word_end(const unsigned char *p, const unsigned char *end, const char *word, size_t len)
{
    if ((size_t)(end - p) < len || memcmp(p, word, len) != 0)
        return NULL;
    return p + len;
}

static int is_error_code_key(const unsigned char *key, size_t len)
{
    return len == sizeof "error_code" - 1 && memcmp(key, "error_code", len) == 0;
}

/* What the scanner expects next. */
enum { WANT_VALUE, WANT_KEY, AFTER_VALUE };

/*
 * One loop over the body with the open containers on a small stack (no
 * recursion, no allocation). Only keys at depth 1 of an outermost object are
 * looked at; an "error_code" key there marks its value for judging.
 */
ao_envelope_status ao_envelope_check(const char *body, size_t len)
{
    unsigned char open[AO_ENVELOPE_MAX_DEPTH];   /* '{' or '[' of each open container */
    const unsigned char *p, *end;
    int depth = 0, state = WANT_VALUE, object;
    int error_codes = 0, zero = 0, escaped_key = 0, judge_next = 0;

    if (body == NULL || len == 0)
        return AO_ENVELOPE_INVALID;
    p = (const unsigned char *)body;
    end = p + len;
    p = ao_json_skip_space(p, end);
    object = p < end && *p == '{';
    for (;;) {
        const unsigned char *start;
        int c, judging;

        if (state == AFTER_VALUE) {
            p = ao_json_skip_space(p, end);
            if (depth == 0)
                break;
            if (p >= end)
                return AO_ENVELOPE_INVALID;
            if (*p == ',') {
                p++;
                state = open[depth - 1] == '{' ? WANT_KEY : WANT_VALUE;
            } else if (*p == (open[depth - 1] == '{' ? '}' : ']')) {
                p++;
                depth--;
            } else {
                return AO_ENVELOPE_INVALID;
            }
            continue;
        }
        p = ao_json_skip_space(p, end);
        if (p >= end)
            return AO_ENVELOPE_INVALID;
        c = *p;
        start = p;
        judging = 0;
        if (state == WANT_KEY) {
            if (c != '"')
                return AO_ENVELOPE_INVALID;
        } else {
            judging = judge_next;
            judge_next = 0;
            if (judging) {
                error_codes++;
                zero = 0;
            }
            if (c == '{' || c == '[') {
                if (depth == AO_ENVELOPE_MAX_DEPTH)
                    return AO_ENVELOPE_TOO_DEEP;
                open[depth++] = (unsigned char)c;
                p = ao_json_skip_space(p + 1, end);
                if (p < end && *p == (c == '{' ? '}' : ']')) {
                    p++;
                    depth--;
                    state = AFTER_VALUE;
                } else {
                    state = c == '{' ? WANT_KEY : WANT_VALUE;
                }
                continue;
            }
        }
        switch (c) {
        case '"': {
            /* keys and string values share this one call, which the compiler can inline */
            int escaped = 0;

            p = string_end(p, end, &escaped);
            if (p == NULL)
                return AO_ENVELOPE_INVALID;
            if (state == WANT_KEY) {
                if (depth == 1 && object) {
                    if (escaped)
                        escaped_key = 1;
                    else if (is_error_code_key(start + 1, (size_t)(p - 2 - start)))
                        judge_next = 1;
                }
                p = ao_json_skip_space(p, end);
                if (p >= end || *p++ != ':')
                    return AO_ENVELOPE_INVALID;
                state = WANT_VALUE;
                continue;
            }
            break;
        }
        case 't':
            p = word_end(p, end, "true", 4);
            break;
        case 'f':
            p = word_end(p, end, "false", 5);
            break;
        case 'n':
            p = word_end(p, end, "null", 4);
            break;
        default:
            p = number_end(p, end);
            break;
        }
        if (p == NULL)
            return AO_ENVELOPE_INVALID;
        if (judging)
            zero = p - start == 1 && *start == '0';
        state = AFTER_VALUE;
    }
    if (p != end)
        return AO_ENVELOPE_INVALID;
    if (!object)
        return AO_ENVELOPE_NOT_OBJECT;
    if (error_codes > 1 || escaped_key)
        return AO_ENVELOPE_AMBIGUOUS;
    if (error_codes == 0)
        return AO_ENVELOPE_NO_ERROR_CODE;
    return zero ? AO_ENVELOPE_OK : AO_ENVELOPE_NOT_ZERO;
}

static const char *status_name(ao_envelope_status status)
{
    switch (status) {
    case AO_ENVELOPE_OK:
        return "ok";
    case AO_ENVELOPE_INVALID:
        return "invalid_json";
    case AO_ENVELOPE_TOO_DEEP:
        return "too_deep";
    case AO_ENVELOPE_NOT_OBJECT:
        return "not_object";
    case AO_ENVELOPE_NO_ERROR_CODE:
        return "no_error_code";
    case AO_ENVELOPE_NOT_ZERO:
        return "not_zero";
    case AO_ENVELOPE_AMBIGUOUS:
        return "ambiguous";
    }
    return "invalid_json";
}

/* envelope_ok(body) -> true | false, reason (a name from status_name). */
static int envelope_ok(lua_State *L)
{
    size_t len;
    const char *body;
    ao_envelope_status status;

    luaL_checktype(L, 1, LUA_TSTRING);
    body = lua_tolstring(L, 1, &len);
    status = ao_envelope_check(body, len);
    lua_pushboolean(L, status == AO_ENVELOPE_OK);
    if (status == AO_ENVELOPE_OK)
        return 1;
    lua_pushstring(L, status_name(status));
    return 2;
}

void ao_envelope_register(lua_State *L)
{
    lua_pushcfunction(L, envelope_ok);
    lua_setfield(L, -2, "envelope_ok");
}
