/*
 * json_decode(text, null_value [, max_depth]) -> value | nil, reason, byte
 *
 * lua-cjson grows each table key by key (rehashing as it goes) and copies
 * strings byte by byte; on nginx's event loop that is most of the cost of a
 * push. This decoder keeps the entries of the innermost open containers on
 * the Lua stack and creates each table with lua_createtable at its exact size
 * when the container closes, pushes strings without escapes straight from
 * the input, and never recurses in C (nginx worker threads may have small
 * C stacks): the open containers are a list of frames, the values being
 * built live on the Lua stack.
 *
 * Lua stack layout while decoding:
 *   1 text, 2 null_value, 3 max_depth, 4 frame storage (nil until more than
 *   LOCAL_FRAMES containers are open), then for each open container its slot
 *   (nil until its table exists), then its pending entries (key, value pairs
 *   for an object, values for an array), then the slot of the next container.
 *
 * Nothing here is malloc'd: the only memory is the Lua stack, Lua strings and
 * Lua userdata, so a Lua error (out of memory) raised by any lua_push* leaks
 * nothing.
 */
#include "json.h"

#include <float.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* lua-cjson's default decode depth. */
#define DEFAULT_MAX_DEPTH 1000
/* A larger max_depth is no different: the Lua stack gives out long before. */
#define DEPTH_CEILING 100000000
/* Entries of one container kept on the stack before they are moved into its table. */
#define CHUNK 64
/*
 * Containers nested deeper than this move their parent's pending entries into
 * the parent's table when they open (the parent then cannot be presized), so
 * a deep document needs about two stack slots per level: Lua 5.1 and LuaJIT
 * let one C call use only 8000 slots (5.3 and 5.4 a million).
 */
#define PRESIZE_DEPTH 16
/* Stack slots one open container may use: its slot, a chunk of pairs, a key, scratch. */
#define LEVEL_SLOTS (2 * CHUNK + 16)
#define LOCAL_FRAMES 32
/* Strings with escapes whose source is this short are decoded on the C stack. */
#define LOCAL_STRING 256

#define FRAMES_SLOT 4

/* 2^53: integers up to this are exact as doubles. */
#define EXACT_DOUBLE_LIMIT UINT64_C(9007199254740992)
#define MAX_MANTISSA_DIGITS 19

#if LUA_VERSION_NUM >= 503
typedef lua_Integer array_index;
#else
typedef int array_index;
#endif

typedef struct {
    int base;             /* stack index of the container's slot */
    int object;
    int has_table;        /* the slot holds the table (some entries were moved in early) */
    int maybe_duplicate;  /* objects: two keys may be equal (see key_hash) */
    uint64_t keys_seen;   /* objects: bit key_hash % 64 of every key so far */
    array_index filled;   /* arrays: elements already in the table */
} json_frame;

typedef enum { JSON_INVALID, JSON_TOO_DEEP, JSON_NULL_IN_ARRAY, JSON_TOO_LARGE } json_error_kind;

typedef struct {
    lua_State *L;
    const unsigned char *start, *end;
    int has_null_value;
    size_t depth, max_depth, capacity;
    json_frame *frames;   /* LOCAL_FRAMES on the C stack, then a userdata at FRAMES_SLOT */
    /* the first problem found */
    json_error_kind error_kind;
    const char *error;
    const unsigned char *error_at;
} json_decoder;

static const unsigned char *fail(json_decoder *d, const unsigned char *at, json_error_kind kind, const char *why)
{
    d->error_kind = kind;
    d->error = why;
    d->error_at = at;
    return NULL;
}

/* Writes code point cp (at most U+10FFFF, no surrogate) as UTF-8; returns the byte count. */
static size_t put_utf8(unsigned long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Pushes the string whose checked source (between the quotes, escapes
 * included) is s..e. The decoded text is never longer than its source: an
 * escape of two bytes gives one, \uXXXX at most three, a surrogate pair four.
 */
static void push_escaped(lua_State *L, const unsigned char *s, const unsigned char *e)
{
    char local[LOCAL_STRING];
    size_t span = (size_t)(e - s);
    char *out = local, *w;

    local[0] = '\0';   /* quiets gcc, which cannot see that every byte pushed was written */
    if (span > sizeof local)
        out = (char *)ao_newuserdata(L, span);
    w = out;
    while (s < e) {
        const unsigned char *escape = (const unsigned char *)memchr(s, '\\', (size_t)(e - s));
        unsigned long cp = 0;

        if (escape == NULL)
            escape = e;
        memcpy(w, s, (size_t)(escape - s));
        w += escape - s;
        if (escape == e)
            break;
        s = escape + 2;
        switch (escape[1]) {
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u':
            s = ao_json_unicode_escape(escape + 1, e, &cp);   /* checked already: never NULL */
            if (s == NULL)
                s = e;
            else
                w += put_utf8(cp, w);
            break;
        default:   /* '"', '\\', '/' */
            *w++ = (char)escape[1];
            break;
        }
    }
    lua_pushlstring(L, out, (size_t)(w - out));
    if (out != local)
        lua_replace(L, -2);   /* the string takes the scratch userdata's slot */
}

/*
 * p at an opening quote: past the closing quote, or NULL when the string is
 * not well formed. *escaped is set when it holds an escape. Runs of plain
 * bytes are found sixteen (or eight) bytes at a time and checked as UTF-8
 * only when they hold a byte >= 0x80; a multi-byte sequence never holds '"',
 * '\\' or a control byte, so cutting the string at those never splits one.
 */
static const unsigned char *string_end(json_decoder *d, const unsigned char *p, int *escaped)
{
    const unsigned char *end = d->end, *run = p + 1, *q;

    *escaped = 0;
    for (;;) {
        int high;
        unsigned long cp;

        q = ao_json_plain_run_end(run, end, &high);
        if (q >= end)
            return fail(d, end, JSON_INVALID, "unterminated string");
        if (high) {
            size_t bad_at;

            if (!ao_utf8_valid(run, (size_t)(q - run), &bad_at))
                return fail(d, run + bad_at, JSON_INVALID, "invalid UTF-8 in a string");
        }
        if (*q == '"')
            return q + 1;
        if (*q != '\\')
            return fail(d, q, JSON_INVALID, "control character in a string");
        *escaped = 1;
        if (q + 1 >= end)
            return fail(d, end, JSON_INVALID, "unterminated string");
        switch (q[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            run = q + 2;
            break;
        case 'u':
            run = ao_json_unicode_escape(q + 1, end, &cp);
            if (run == NULL)
                return fail(d, q, JSON_INVALID, "invalid \\u escape or lone surrogate");
            break;
        default:
            return fail(d, q, JSON_INVALID, "invalid escape");
        }
    }
}

static int is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/*
 * strtod on a number already checked against the JSON grammar (s..e). The
 * text is NUL-terminated (a Lua string), and the byte after a JSON number is
 * never one strtod would take, so strtod stops at e. strtod reads the decimal
 * point of the C library's LC_NUMERIC locale; Lua's own tonumber assumes the
 * same one. If a host program switched that locale to one with another
 * decimal point, strtod stops early and the number is read again with '.'
 * replaced by that locale's point (as Lua 5.3's lua_str2number does).
 */
static double parse_double(lua_State *L, const unsigned char *s, const unsigned char *e)
{
    char *stop;
    double v = strtod((const char *)s, &stop);

    if ((const unsigned char *)stop != e) {
        size_t len = (size_t)(e - s), i;
        char *copy = (char *)ao_newuserdata(L, len + 1);
        char point = localeconv()->decimal_point[0];

        memcpy(copy, s, len);
        copy[len] = '\0';
        for (i = 0; i < len; i++)
            if (copy[i] == '.')
                copy[i] = point;
        v = strtod(copy, &stop);
        lua_pop(L, 1);
    }
    return v;
}

/*
 * Clinger's fast path: a mantissa below 2^53 times or divided by an exact
 * power of ten up to 1e22 is one correctly rounded operation, the same double
 * strtod gives, as long as doubles are evaluated at double precision.
 */
static const double powers_of_ten[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

/*
 * p at the first byte of a number: pushes it and returns past it, or NULL.
 * -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? only. An integer literal is a
 * Lua integer on 5.3+ when it fits lua_Integer ("-0" stays the float -0.0);
 * everything else is the double strtod gives (1e400 is inf, as lua-cjson).
 */
static const unsigned char *push_number(json_decoder *d, const unsigned char *p)
{
    const unsigned char *s = p, *end = d->end;
    uint64_t mantissa = 0;
    int digits = 0, dropped = 0, negative = 0, integer = 1;
    long exponent = 0, fraction_digits = 0;

    if (*p == '-') {
        negative = 1;
        p++;
    }
    if (!is_digit(p, end))
        return fail(d, s, JSON_INVALID, "invalid number");
    if (*p == '0') {
        p++;
        if (is_digit(p, end))
            return fail(d, s, JSON_INVALID, "invalid number (leading zero)");
    } else {
        for (; is_digit(p, end); p++) {
            if (digits < MAX_MANTISSA_DIGITS) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                digits++;
            } else {
                dropped = 1;
            }
        }
    }
    if (p < end && *p == '.') {
        integer = 0;
        p++;
        if (!is_digit(p, end))
            return fail(d, p, JSON_INVALID, "invalid number (no digit after '.')");
        for (; is_digit(p, end); p++) {
            if (digits < MAX_MANTISSA_DIGITS) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                digits++;
                fraction_digits++;
            } else {
                dropped = 1;
            }
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        int exponent_negative = 0;

        integer = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            exponent_negative = *p++ == '-';
        if (!is_digit(p, end))
            return fail(d, p, JSON_INVALID, "invalid number (no digit in the exponent)");
        for (; is_digit(p, end); p++)
            if (exponent < 100000)
                exponent = exponent * 10 + (*p - '0');
        if (exponent_negative)
            exponent = -exponent;
    }
    if (integer && !dropped) {
#if AO_HAVE_INTEGER_SUBTYPE
        if (!negative && mantissa <= (uint64_t)LUA_MAXINTEGER) {
            lua_pushinteger(d->L, (lua_Integer)mantissa);
            return p;
        }
        if (negative && mantissa != 0 && mantissa <= (uint64_t)LUA_MAXINTEGER + 1) {
            lua_pushinteger(d->L, mantissa == (uint64_t)LUA_MAXINTEGER + 1
                                      ? LUA_MININTEGER : -(lua_Integer)mantissa);
            return p;
        }
#endif
        if (mantissa <= EXACT_DOUBLE_LIMIT) {
            double v = (double)mantissa;

            lua_pushnumber(d->L, (lua_Number)(negative ? -v : v));
            return p;
        }
    }
    if (FLT_EVAL_METHOD == 0 && !dropped && mantissa <= EXACT_DOUBLE_LIMIT) {
        long e10 = exponent - fraction_digits;

        if (e10 >= -22 && e10 <= 22) {
            double v = (double)mantissa;

            v = e10 < 0 ? v / powers_of_ten[-e10] : v * powers_of_ten[e10];
            lua_pushnumber(d->L, (lua_Number)(negative ? -v : v));
            return p;
        }
    }
    lua_pushnumber(d->L, (lua_Number)parse_double(d->L, s, p));
    return p;
}

static const unsigned char *literal_end(json_decoder *d, const unsigned char *p, const char *word, size_t len)
{
    if ((size_t)(d->end - p) < len || memcmp(p, word, len) != 0)
        return fail(d, p, JSON_INVALID, "expected a value");
    return p + len;
}

/*
 * Moves the pending entries of frame f (all of them, or all but a trailing
 * key when keep_key) into its table, creating the table on the first move.
 * Entries go in in document order, so the last of two equal keys wins and an
 * array grows at its end (inserting at the far end first would put the
 * elements in the hash part and rehash over and over).
 */
static void move_entries(lua_State *L, json_frame *f, int keep_key)
{
    int first = f->base + 1, last = lua_gettop(L) - keep_key, i;
    int count = last - first + 1;

    if (!f->has_table) {
        if (f->object)
            lua_createtable(L, 0, count / 2);
        else
            lua_createtable(L, count, 0);
        lua_replace(L, f->base);
        f->has_table = 1;
    }
    if (f->object) {
        for (i = first; i < last; i += 2) {
            lua_pushvalue(L, i);
            lua_pushvalue(L, i + 1);
            lua_rawset(L, f->base);
        }
    } else {
        for (i = first; i <= last; i++) {
            lua_pushvalue(L, i);
            lua_rawseti(L, f->base, ++f->filled);
        }
    }
    if (keep_key) {
        lua_pushvalue(L, -1);
        lua_replace(L, first);
        lua_settop(L, first);
    } else {
        lua_settop(L, f->base);
    }
}

/*
 * The innermost container is complete: its table, at its exact size when all
 * its entries are still pending, replaces the slot and is left on top.
 */
static void close_container(json_decoder *d)
{
    lua_State *L = d->L;
    json_frame *f = &d->frames[--d->depth];
    int count = lua_gettop(L) - f->base;

    if (f->has_table) {
        if (count > 0)
            move_entries(L, f, 0);
        return;
    }
    if (f->object) {
        lua_createtable(L, 0, count / 2);
        lua_replace(L, f->base);
        if (f->maybe_duplicate) {
            int i;

            for (i = f->base + 1; i < f->base + count; i += 2) {
                lua_pushvalue(L, i);
                lua_pushvalue(L, i + 1);
                lua_rawset(L, f->base);
            }
            lua_settop(L, f->base);
        } else {
            /* no two keys are equal, so the order does not matter: pairs are popped from the top */
            for (; count > 0; count -= 2)
                lua_rawset(L, f->base);
        }
    } else {
        /* every index fits the array part made here, so they can be popped from the far end */
        lua_createtable(L, count, 0);
        lua_replace(L, f->base);
        for (; count > 0; count--)
            lua_rawseti(L, f->base, (array_index)count);
    }
}

/* p at '{' or '[': a new innermost container, or NULL. */
static const unsigned char *open_container(json_decoder *d, const unsigned char *p)
{
    lua_State *L = d->L;
    json_frame *f;

    if (d->depth >= d->max_depth)
        return fail(d, p, JSON_TOO_DEEP, "too deep");
    if (!lua_checkstack(L, LEVEL_SLOTS))
        return fail(d, p, JSON_TOO_LARGE, "the Lua stack cannot grow");
    if (d->depth >= PRESIZE_DEPTH) {
        json_frame *parent = &d->frames[d->depth - 1];

        if (lua_gettop(L) - parent->base > parent->object)
            move_entries(L, parent, parent->object);
    }
    if (d->depth == d->capacity) {
        size_t capacity = d->capacity * 2;
        json_frame *frames = (json_frame *)ao_newuserdata(L, capacity * sizeof *frames);

        memcpy(frames, d->frames, d->depth * sizeof *frames);
        lua_replace(L, FRAMES_SLOT);   /* the old storage, if a userdata, goes to the collector */
        d->frames = frames;
        d->capacity = capacity;
    }
    lua_pushnil(L);
    f = &d->frames[d->depth++];
    f->base = lua_gettop(L);
    f->object = *p == '{';
    f->has_table = 0;
    f->maybe_duplicate = 0;
    f->keys_seen = 0;
    f->filled = 0;
    return p + 1;
}

/*
 * A cheap hash of a key written without escapes (its length and three of its
 * bytes). Equal keys always get the same one: an object whose keys all got
 * different bits (hash % 64) has no duplicate, so its table can be filled in
 * any order; a shared bit only sends the object down the ordered path.
 */
static unsigned key_hash(const unsigned char *key, size_t len)
{
    unsigned h = (unsigned)len * 7u;

    if (len > 0)
        h += key[0] * 3u + key[len - 1] + key[len / 2] * 5u;
    return h;
}

/* What the decoder expects next. */
enum { WANT_VALUE, WANT_KEY, AFTER_VALUE };

/* Decodes the whole text, leaving the value on top of the stack; NULL on failure. */
static const unsigned char *decode(json_decoder *d)
{
    lua_State *L = d->L;
    const unsigned char *p = d->start, *end = d->end;
    int state = WANT_VALUE;

    for (;;) {
        json_frame *f;

        p = ao_json_skip_space(p, end);
        if (state == AFTER_VALUE) {
            if (d->depth == 0)
                break;
            f = &d->frames[d->depth - 1];
            if (lua_gettop(L) - f->base >= (f->object ? 2 * CHUNK : CHUNK))
                move_entries(L, f, 0);
            if (p >= end)
                return fail(d, p, JSON_INVALID, "unexpected end of input");
            if (*p == ',') {
                p++;
                state = f->object ? WANT_KEY : WANT_VALUE;
            } else if (*p == (f->object ? '}' : ']')) {
                p++;
                close_container(d);
            } else {
                return fail(d, p, JSON_INVALID, f->object ? "expected ',' or '}'" : "expected ',' or ']'");
            }
            continue;
        }
        if (p >= end)
            return fail(d, p, JSON_INVALID, "unexpected end of input");
        if (*p == '"') {
            /* keys and string values share this one call, which the compiler can inline */
            const unsigned char *start = p;
            int escaped;

            p = string_end(d, p, &escaped);
            if (p == NULL)
                return NULL;
            if (escaped)
                push_escaped(L, start + 1, p - 1);
            else
                lua_pushlstring(L, (const char *)start + 1, (size_t)(p - start - 2));
            if (state == WANT_KEY) {
                f = &d->frames[d->depth - 1];
                if (escaped) {
                    f->maybe_duplicate = 1;   /* equal keys may be written differently */
                } else {
                    uint64_t bit = UINT64_C(1) << (key_hash(start + 1, (size_t)(p - start - 2)) % 64);

                    f->maybe_duplicate |= (f->keys_seen & bit) != 0;
                    f->keys_seen |= bit;
                }
                p = ao_json_skip_space(p, end);
                if (p >= end || *p != ':')
                    return fail(d, p, JSON_INVALID, "expected ':'");
                p++;
                state = WANT_VALUE;
            } else {
                state = AFTER_VALUE;
            }
            continue;
        }
        if (state == WANT_KEY)
            return fail(d, p, JSON_INVALID, "expected a string key");
        state = AFTER_VALUE;
        switch (*p) {
        case '{':
        case '[': {
            int object = *p == '{';

            p = open_container(d, p);
            if (p == NULL)
                return NULL;
            p = ao_json_skip_space(p, end);
            if (p < end && *p == (object ? '}' : ']')) {
                p++;
                close_container(d);
            } else {
                state = object ? WANT_KEY : WANT_VALUE;
            }
            continue;
        }
        case 't':
            p = literal_end(d, p, "true", 4);
            if (p != NULL)
                lua_pushboolean(L, 1);
            break;
        case 'f':
            p = literal_end(d, p, "false", 5);
            if (p != NULL)
                lua_pushboolean(L, 0);
            break;
        case 'n': {
            const unsigned char *at = p;

            p = literal_end(d, p, "null", 4);
            if (p == NULL)
                return NULL;
            if (d->has_null_value)
                lua_pushvalue(L, 2);
            else if (d->depth == 0)
                lua_pushnil(L);
            else if (d->frames[d->depth - 1].object)
                lua_pop(L, 1);   /* the key goes with its value: a nil leaves the key out */
            else
                return fail(d, at, JSON_NULL_IN_ARRAY, "null in an array (no null_value given)");
            break;
        }
        case '-': case '0': case '1': case '2': case '3': case '4':
        case '5': case '6': case '7': case '8': case '9':
            p = push_number(d, p);
            break;
        default:
            return fail(d, p, JSON_INVALID, "expected a value");
        }
        if (p == NULL)
            return NULL;
    }
    if (p != end)
        return fail(d, p, JSON_INVALID, "unexpected text after the value");
    return p;
}

static int json_decode(lua_State *L)
{
    json_frame local[LOCAL_FRAMES];
    json_decoder d = { 0 };
    size_t len;
    const char *text;

    luaL_checktype(L, 1, LUA_TSTRING);
    d.max_depth = DEFAULT_MAX_DEPTH;
    if (!lua_isnoneornil(L, 3)) {
        lua_Number depth;

        luaL_checktype(L, 3, LUA_TNUMBER);
        depth = lua_tonumber(L, 3);
        if (!(depth >= 1) || (depth <= DEPTH_CEILING && depth != (lua_Number)(long)depth))
            return luaL_argerror(L, 3, "max_depth must be a positive integer");
        d.max_depth = depth > DEPTH_CEILING ? DEPTH_CEILING : (size_t)depth;
    }
    lua_settop(L, 3);
    lua_pushnil(L);   /* FRAMES_SLOT */
    text = lua_tolstring(L, 1, &len);
    d.L = L;
    d.start = (const unsigned char *)text;
    d.end = d.start + len;
    d.has_null_value = !lua_isnil(L, 2);
    d.depth = 0;
    d.capacity = LOCAL_FRAMES;
    d.frames = local;
    if (decode(&d) != NULL)
        return 1;
    {
        char reason[160];
        size_t at = (size_t)(d.error_at - d.start) + 1;   /* 1-based; len + 1 means the end */

        if (d.error_kind == JSON_TOO_DEEP)
            snprintf(reason, sizeof reason, "JSON too deep at byte %lu: more than %lu nested arrays and objects",
                     (unsigned long)at, (unsigned long)d.max_depth);
        else if (d.error_kind == JSON_NULL_IN_ARRAY)
            snprintf(reason, sizeof reason, "JSON null in an array at byte %lu, and no null_value to stand for it",
                     (unsigned long)at);
        else if (d.error_kind == JSON_TOO_LARGE)
            snprintf(reason, sizeof reason, "JSON too large at byte %lu: %s", (unsigned long)at, d.error);
        else
            snprintf(reason, sizeof reason, "invalid JSON at byte %lu: %s", (unsigned long)at, d.error);
        lua_settop(L, 0);
        lua_pushnil(L);
        lua_pushstring(L, reason);
        lua_pushinteger(L, (lua_Integer)at);
        return 3;
    }
}

void ao_json_register(lua_State *L)
{
    lua_pushcfunction(L, json_decode);
    lua_setfield(L, -2, "json_decode");
}
