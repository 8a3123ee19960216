/*
 * The status walk. One function visits a status table in the order of the
 * contract's example, checks every rule and, while nothing is wrong yet,
 * writes the canonical JSON body into a reused buffer; validate runs the same
 * walk with no buffer. Tables are read with raw access only (no metamethod of
 * the caller's tables ever runs), and the only malloc'd memory belongs to
 * userdata with __gc, so a Lua error (out of memory) at any point leaks
 * nothing.
 */
#include "payload.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "text.h"

#define OPTIONS_MT "choco.active_order.options"
/* Registry field: the interned names of interned[], kept alive for the life of the state. */
#define INTERNED_REG "choco.active_order.interned"
#define SCRATCH_MT "choco.active_order.scratch"

#define DEFAULT_TITLE_LIMIT 30
#define DEFAULT_SUBTITLE_LIMIT 60
#define DEFAULT_LINK_LIMIT 2048
#define DEFAULT_ORDER_ID_LIMIT 128
#define DEFAULT_STATUS_LIMIT 64
#define DEFAULT_UTC_OFFSET_MINUTES (5 * 60)
#define DEFAULT_UTC_OFFSET "+05:00"
#define LIMIT_CEILING 1000000
#define MAX_PROBLEMS 100
/* Largest integer every Lua version (and every JSON reader) holds exactly: 2^53 - 1. */
#define MAX_EXACT_INTEGER INT64_C(9007199254740991)
/* A buffer grown past this by one big body is given back rather than kept. */
#define KEEP_BUFFER_BYTES 65536
/* How much of a caller's string a message or field path quotes. */
#define QUOTE_MAX 48

typedef struct {
    size_t title, subtitle, link, merchant_order_id, external_status;
} ao_limits;

typedef struct {
    size_t offset, len;
} status_entry;

/* The known keys of every level. */
enum {
    K_MERCHANT_ORDER_ID,
    K_USER_ID,
    K_EXTERNAL_STATUS,
    K_DEEPLINKS,
    K_EXTERNAL_DATA,
    K_LINK,
    K_TYPE,
    K_EXPIRED_AT,
    K_TITLE_CARD,
    K_TITLE_CTA,
    K_SUBTITLE,
    K_NEED_TIMER,
    K_COUNTDOWN_TIMER,
    K_COUNT
};

typedef struct {
    int utc_offset;          /* minutes east of UTC */
    ao_limits limits;
    char *status_bytes;      /* every registered status, back to back (malloc'd) */
    status_entry *statuses;  /* malloc'd; NULL when any status is accepted */
    size_t status_count;
    ao_buffer out;           /* reused output of encode */
    int busy;                /* out is in use by a walk further down the C stack */
    /*
     * This state's own copies of the key names and deeplink types (see
     * interned_names), so that the walk recognises the usual key with one
     * pointer comparison: short strings are interned by every Lua version,
     * and lua_tolstring of an equal string gives the same pointer. A string
     * that is not interned still matches by its bytes. Per state, never
     * static: the module runs in several lua_States on several threads.
     */
    const char *interned[K_COUNT + 2];
} ao_options;


#define KEY_NAMES(X)                                                                         \
    X("merchant_order_id") X("user_id") X("external_status") X("deeplinks") X("external_data")  \
    X("link") X("type")                                                                      \
    X("expired_at") X("title_active_order_card") X("title_call_to_action")                   \
    X("subtitle_active_order_card") X("need_timer") X("countdown_timer")
#define AS_NAME(s) s,
#define AS_LENGTH(s) sizeof(s) - 1,
static const char *const key_names[K_COUNT] = { KEY_NAMES(AS_NAME) };
static const size_t key_lengths[K_COUNT] = { KEY_NAMES(AS_LENGTH) };

#define UV_DEFAULTS lua_upvalueindex(1)
#define UV_CACHE lua_upvalueindex(2)     /* options table -> compiled options, weak keys */

/* The known keys of each level, for unknown-key checks and suggestions. */
static const int status_keys[] = { K_MERCHANT_ORDER_ID, K_USER_ID, K_EXTERNAL_STATUS,
                                   K_DEEPLINKS, K_EXTERNAL_DATA, -1 };
static const int deeplink_keys[] = { K_LINK, K_TYPE, -1 };
static const int external_data_keys[] = { K_EXPIRED_AT, K_TITLE_CARD, K_TITLE_CTA, K_SUBTITLE,
                                          K_NEED_TIMER, K_COUNTDOWN_TIMER, -1 };

static const char *const deeplink_types[2] = { "active_order_call_to_action", "active_order_card" };
#define I_DEEPLINK_TYPE K_COUNT   /* interned[I_DEEPLINK_TYPE + i] is deeplink_types[i] */

/* 1 for bytes that JSON strings must escape: controls, '"' and '\\'. */
static const unsigned char json_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

typedef struct {
    lua_State *L;
    const ao_options *opt;
    ao_buffer *out;     /* NULL when only validating */
    int writing;        /* out given and no problem found yet */
    int slot;           /* stack index holding the problems list (nil until the first) */
    int nil_slot;       /* stack index of a nil: where absent fields "are" */
    int count;
    int truncated;
} walk_t;

/* ---------------------------------------------------------------- problems */

#if defined(__GNUC__) || defined(__clang__)
#define AO_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define AO_PRINTF(f, a)
#endif

static void problem(walk_t *w, const char *field, const char *code, const char *fmt, ...)
    AO_PRINTF(4, 5);

static void problem(walk_t *w, const char *field, const char *code, const char *fmt, ...)
{
    lua_State *L = w->L;
    char message[512];
    va_list ap;

    /* Before anything below allocates: see run() for why the body must be dead by then. */
    w->writing = 0;
    if (w->count >= MAX_PROBLEMS) {
        w->truncated = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (lua_isnil(L, w->slot)) {
        lua_newtable(L);
        lua_replace(L, w->slot);
    }
    lua_createtable(L, 0, 3);
    lua_pushstring(L, field);
    lua_setfield(L, -2, "field");
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    lua_rawseti(L, w->slot, ++w->count);
}

/*
 * A short printable quote of a caller's bytes for messages and paths: at most
 * QUOTE_MAX bytes, cut between characters, controls and bytes that are not
 * valid UTF-8 shown as '?', so that a message is always valid UTF-8.
 */
static void quote(const char *s, size_t len, char *buf, size_t size)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, n = 0;

    while (i < len && i < QUOTE_MAX && n + 8 < size) {
        unsigned char c = u[i];
        size_t step = 1, count, bad_at;
        if (c >= 0x80) {
            size_t slice = len - i < 4 ? len - i : 4;
            step = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            if (step > slice || ao_utf8_check(u + i, step, &count, &bad_at) != AO_UTF8_OK)
                step = 0;
        }
        if (step == 0 || c < 0x20 || c == 0x7F) {
            buf[n++] = '?';
            i++;
        } else {
            memcpy(buf + n, s + i, step);
            n += step;
            i += step;
        }
    }
    if (i < len && n + 4 < size) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
}

/* "string \"abc\"", "number 1.5", "boolean true", "table", ... for messages. */
static void describe(lua_State *L, int idx, char *buf, size_t size)
{
    char q[QUOTE_MAX + 8];
    size_t len;
    const char *s;

    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        quote(s, len, q, sizeof q);
        snprintf(buf, size, "string \"%s\"", q);
        break;
    case LUA_TNUMBER:
        snprintf(buf, size, "number %.17g", (double)lua_tonumber(L, idx));
        break;
    case LUA_TBOOLEAN:
        snprintf(buf, size, "boolean %s", lua_toboolean(L, idx) ? "true" : "false");
        break;
    default:
        snprintf(buf, size, "%s", lua_typename(L, lua_type(L, idx)));
        break;
    }
}

/* Field path of a key of the table at `prefix` ("" at the top). Never raises. */
static void key_path(lua_State *L, int key, const char *prefix, char *buf, size_t size)
{
    char q[QUOTE_MAX + 8];
    size_t len;
    const char *s;

    switch (lua_type(L, key)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, key, &len);
        quote(s, len, q, sizeof q);
        snprintf(buf, size, "%s%s%s", prefix, *prefix ? "." : "", q);
        break;
    case LUA_TNUMBER:
        snprintf(buf, size, "%s[%.17g]", prefix, (double)lua_tonumber(L, key));
        break;
    case LUA_TBOOLEAN:
        snprintf(buf, size, "%s[%s]", prefix, lua_toboolean(L, key) ? "true" : "false");
        break;
    default:
        snprintf(buf, size, "%s[<%s>]", prefix, lua_typename(L, lua_type(L, key)));
        break;
    }
}

/* The known name closest to `s` if it is close enough to be a typo, else NULL. */
static const char *closest(const char *s, size_t len, const char *const *names, size_t n)
{
    const char *best = NULL;
    size_t best_distance = (size_t)-1, i;
    size_t allowed = len / 4 > 2 ? len / 4 : 2;

    for (i = 0; i < n; i++) {
        size_t d = ao_name_distance(s, len, names[i], strlen(names[i]));
        if (d < best_distance) {
            best_distance = d;
            best = names[i];
        }
    }
    return best_distance <= allowed ? best : NULL;
}

static const char *level_name(const int *keys)
{
    if (keys == status_keys)
        return "the status";
    if (keys == deeplink_keys)
        return "a deeplink";
    return "external_data";
}

/* Where a key that is known at another level belongs, for a friendlier message. */
static const char *home_of(const char *s, size_t len)
{
    static const int *const levels[3] = { status_keys, deeplink_keys, external_data_keys };
    static const char *const homes[3] = { "at the top level", "inside each deeplinks entry",
                                          "inside external_data" };
    int l, i;

    for (l = 0; l < 3; l++)
        for (i = 0; levels[l][i] >= 0; i++) {
            const char *name = key_names[levels[l][i]];
            if (strlen(name) == len && memcmp(name, s, len) == 0)
                return homes[l];
        }
    return NULL;
}

static void report_unknown_key(walk_t *w, int key, const char *prefix, const int *keys)
{
    lua_State *L = w->L;
    char field[192];
    const char *names[8];
    size_t n = 0, len;
    const char *s, *home, *near;

    if (w->count >= MAX_PROBLEMS) {
        w->truncated = 1;
        return;
    }
    key_path(L, key, prefix, field, sizeof field);
    if (lua_type(L, key) != LUA_TSTRING) {
        problem(w, field, "unknown_field", "%s has only named fields, found a %s key",
                level_name(keys), lua_typename(L, lua_type(L, key)));
        return;
    }
    s = lua_tolstring(L, key, &len);
    while (keys[n] >= 0) {
        names[n] = key_names[keys[n]];
        n++;
    }
    home = home_of(s, len);
    if (home != NULL) {
        char q[QUOTE_MAX + 8];
        quote(s, len, q, sizeof q);
        problem(w, field, "unknown_field", "unknown field in %s: %s belongs %s", level_name(keys), q, home);
        return;
    }
    if (len == 13 && memcmp(s, "is_need_timer", 13) == 0) {
        problem(w, field, "unknown_field",
                "is_need_timer belongs to an old revision of the contract; use "
                "external_data.need_timer and external_data.countdown_timer");
        return;
    }
    near = closest(s, len, names, n);
    if (near != NULL)
        problem(w, field, "unknown_field", "unknown field; did you mean %s?", near);
    else
        problem(w, field, "unknown_field", "unknown field; %s has no field by that name",
                level_name(keys));
}

/* Equality of two byte strings of the same short length, a word at a time, without a libc call. */
static int same_bytes(const char *a, const char *b, size_t len)
{
    uint64_t x, y;
    size_t i;

    if (len < 8) {
        for (i = 0; i < len; i++)
            if (a[i] != b[i])
                return 0;
        return 1;
    }
    for (i = 0; i + 8 < len; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            return 0;
    }
    /* the last eight bytes, overlapping what was compared already */
    memcpy(&x, a + len - 8, 8);
    memcpy(&y, b + len - 8, 8);
    return x == y;
}

/*
 * Slot of a known key among a level's keys, or -1. The lengths of a level's
 * names differ except for two pairs, which their first letters tell apart, so
 * one switch picks the only candidate and one comparison confirms it.
 */
static int match_key(const int *keys, const char *s, size_t len, const char *const *interned)
{
    int slot = -1;

    if (keys == status_keys) {
        switch (len) {
        case 17: slot = 0; break;   /* merchant_order_id */
        case 7: slot = 1; break;    /* user_id */
        case 15: slot = 2; break;   /* external_status */
        case 9: slot = 3; break;    /* deeplinks */
        case 13: slot = 4; break;   /* external_data */
        default: return -1;
        }
    } else if (keys == deeplink_keys) {
        if (len != 4)
            return -1;
        slot = s[0] == 'l' ? 0 : 1;  /* link, type */
    } else {
        switch (len) {
        case 10: slot = s[0] == 'e' ? 0 : 4; break;   /* expired_at, need_timer */
        case 23: slot = 1; break;   /* title_active_order_card */
        case 20: slot = 2; break;   /* title_call_to_action */
        case 26: slot = 3; break;   /* subtitle_active_order_card */
        case 15: slot = 5; break;   /* countdown_timer */
        default: return -1;
        }
    }
    if (s == interned[keys[slot]])
        return slot;
    return key_lengths[keys[slot]] == len && same_bytes(key_names[keys[slot]], s, len) ? slot : -1;
}

/*
 * One raw pass (lua_next) over table `t` whose stack slot is below `top`, the
 * current stack top. Each known key's value stays on the stack where lua_next
 * put it: pos[i] is the index of the value of keys[i] (nil_slot when absent)
 * and types[i] its type. Every other key is reported. Returns the new top.
 *
 * Why this shape: the walk's cost is Lua API calls, and a table must be
 * traversed anyway to find unknown keys; reading the values during that one
 * traversal (3 calls per key: lua_next, a copy of the key for the next
 * lua_next, lua_tolstring) is far cheaper than a lookup per known key plus a
 * counting pass. lua_tolstring may turn a number key into a string in place,
 * which is why lua_next gets the untouched copy.
 */
static int gather(walk_t *w, int t, int top, const int *keys, int *pos, int *types, const char *prefix)
{
    lua_State *L = w->L;
    int n;

    for (n = 0; keys[n] >= 0; n++) {
        pos[n] = w->nil_slot;
        types[n] = LUA_TNIL;
    }
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        /* stack: top+1 key, top+2 value, top+3 the key again for lua_next */
        size_t len;
        const char *s;
        int slot = -1;

        lua_pushvalue(L, top + 1);
        /* Allocates only for a number key, which is never known: the body is dead then (see run()). */
        s = lua_tolstring(L, top + 1, &len);
        if (s != NULL && len > 0)
            slot = match_key(keys, s, len, w->opt->interned);
        if (slot >= 0) {
            top += 2;
            pos[slot] = top;
            types[slot] = lua_type(L, top);
        } else {
            report_unknown_key(w, top + 3, prefix, keys);
            if (w->truncated) {
                /* Nothing more will be reported: stop reading a table that may be huge. */
                lua_settop(L, top);
                return top;
            }
            lua_replace(L, top + 1);
            lua_settop(L, top + 1);
        }
    }
    return top;
}

/* ------------------------------------------------------------------ output */

/*
 * Appends without a call in the common case: the reused buffer has room for a
 * body after the first encode, so most writes are a bounds check and a copy.
 */
static inline void put(walk_t *w, const char *s, size_t len)
{
    ao_buffer *b = w->out;
    if (!w->writing)
        return;
    if (b->cap - b->len >= len) {
        memcpy(b->data + b->len, s, len);
        b->len += len;
    } else {
        ao_buffer_append(b, s, len);
    }
}

#define PUT_LITERAL(w, lit) put((w), (lit), sizeof(lit) - 1)

/* A JSON string; `escape` says whether the scan saw a byte that needs escaping. */
static void put_json_string(walk_t *w, const char *s, size_t len, int escape)
{
    static const char hex[] = "0123456789abcdef";
    ao_buffer *b = w->out;
    char *o;
    size_t i;

    if (!w->writing)
        return;
    if (!escape) {
        if (b->cap - b->len < len + 2 && ao_buffer_reserve(b, len + 2) != 0)
            return;
        o = b->data + b->len;
        *o++ = '"';
        memcpy(o, s, len);
        o[len] = '"';
        b->len += len + 2;
        return;
    }
    if (len > ((size_t)-1 - 2) / 6 || ao_buffer_reserve(b, len * 6 + 2) != 0) {
        b->failed = 1;
        return;
    }
    o = b->data + b->len;
    *o++ = '"';
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!json_escape[c]) {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
            break;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
}

static void put_integer(walk_t *w, int64_t v, int quoted)
{
    char digits[24];
    size_t n = sizeof digits;
    uint64_t u = (uint64_t)v;   /* the walk only writes non-negative integers */

    if (quoted)
        digits[--n] = '"';
    do {
        digits[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (quoted)
        digits[--n] = '"';
    put(w, digits + n, sizeof digits - n);
}

/* ------------------------------------------------------------- value rules */

typedef enum { NUM_OK, NUM_NAN, NUM_INFINITE, NUM_FRACTION, NUM_TOO_LARGE } num_status;

/* An integer the same on every Lua version: whole and within +-(2^53 - 1). */
static num_status read_integer(lua_State *L, int idx, int64_t *out)
{
    double d;
    int64_t i;

    if (ao_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        if (v > MAX_EXACT_INTEGER || v < -MAX_EXACT_INTEGER)
            return NUM_TOO_LARGE;
        *out = (int64_t)v;
        return NUM_OK;
    }
    d = (double)lua_tonumber(L, idx);
    if (d != d)
        return NUM_NAN;
    if (d - d != 0)
        return NUM_INFINITE;
    if (d > (double)MAX_EXACT_INTEGER || d < -(double)MAX_EXACT_INTEGER)
        return NUM_TOO_LARGE;
    i = (int64_t)d;
    if ((double)i != d)
        return NUM_FRACTION;
    *out = i;
    return NUM_OK;
}

static void type_problem(walk_t *w, int idx, const char *field, const char *expected)
{
    char found[QUOTE_MAX + 32];
    describe(w->L, idx, found, sizeof found);
    problem(w, field, "type", "expected %s, found %s", expected, found);
}

/* Checks a whole number in [min, MAX_EXACT_INTEGER]; 1 when it is one. */
static int check_integer(walk_t *w, int idx, const char *field, int64_t min, int64_t *out)
{
    char found[QUOTE_MAX + 32];

    switch (read_integer(w->L, idx, out)) {
    case NUM_OK:
        if (*out >= min)
            return 1;
        describe(w->L, idx, found, sizeof found);
        problem(w, field, "range", "expected an integer of at least %d, found %s", (int)min, found);
        return 0;
    case NUM_NAN:
        problem(w, field, "type", "expected an integer, found NaN");
        return 0;
    case NUM_INFINITE:
        problem(w, field, "range", "expected an integer, found infinity");
        return 0;
    case NUM_FRACTION:
        describe(w->L, idx, found, sizeof found);
        problem(w, field, "type", "expected an integer, found %s, which has a fraction", found);
        return 0;
    case NUM_TOO_LARGE:
        describe(w->L, idx, found, sizeof found);
        problem(w, field, "range",
                "expected an integer of at most 9007199254740991 (2^53 - 1), found %s", found);
        return 0;
    }
    return 0;
}

#define TEXT_NO_CONTROL 1   /* identifiers and links: no control characters */
#define TEXT_BYTES 2        /* the limit counts bytes, not characters */
#define TEXT_NO_SPACE 4     /* links: no spaces */

/* A string that passed its rule, with what the scan learned for writing it. */
typedef struct {
    const char *s;
    size_t len;
    int escape;
} text_t;

/*
 * A string rule: non-empty, valid UTF-8, within `limit`, optionally without
 * control characters or spaces. Returns 1 when the string passes.
 */
static int check_text(walk_t *w, int idx, int type, const char *field, size_t limit, int flags,
                      text_t *out)
{
    ao_text_info info;
    size_t len;
    const unsigned char *s;
    ao_utf8_status status;

    if (type != LUA_TSTRING) {
        type_problem(w, idx, field, "a string");
        return 0;
    }
    s = (const unsigned char *)lua_tolstring(w->L, idx, &len);
    if (len == 0) {
        problem(w, field, "empty", "expected a non-empty string, found \"\"");
        return 0;
    }
    status = ao_text_scan(s, len, &info);
    if (status != AO_UTF8_OK) {
        problem(w, field, "encoding", "expected valid UTF-8, found %s at byte %lu",
                ao_utf8_reason(status), (unsigned long)info.bad_at + 1);
        return 0;
    }
    if (flags & TEXT_BYTES) {
        if (len > limit) {
            problem(w, field, "too_long", "%lu bytes, the limit is %lu", (unsigned long)len,
                    (unsigned long)limit);
            return 0;
        }
    } else if (info.chars > limit) {
        problem(w, field, "too_long", "%lu characters, the limit is %lu", (unsigned long)info.chars,
                (unsigned long)limit);
        return 0;
    }
    if ((flags & TEXT_NO_CONTROL) && info.first_control < len) {
        problem(w, field, "format", "expected no control characters, found byte 0x%02X at byte %lu",
                s[info.first_control], (unsigned long)info.first_control + 1);
        return 0;
    }
    if ((flags & TEXT_NO_SPACE) && info.first_space < len) {
        problem(w, field, "format", "expected a URL without spaces, found a space at byte %lu",
                (unsigned long)info.first_space + 1);
        return 0;
    }
    out->s = (const char *)s;
    out->len = len;
    out->escape = info.needs_escape;
    return 1;
}

static void required(walk_t *w, const char *field, const char *expected)
{
    problem(w, field, "required", "missing: expected %s", expected);
}

static void check_merchant_order_id(walk_t *w, int idx, int type)
{
    const char *field = key_names[K_MERCHANT_ORDER_ID];
    text_t text;
    int64_t id;

    switch (type) {
    case LUA_TNIL:
        required(w, field, "a string (or a non-negative integer)");
        return;
    case LUA_TNUMBER:
        /* An integer id is common in merchants' systems; the contract types it as a string. */
        if (check_integer(w, idx, field, 0, &id))
            put_integer(w, id, 1);
        return;
    case LUA_TSTRING:
        if (check_text(w, idx, type, field, w->opt->limits.merchant_order_id, TEXT_NO_CONTROL, &text))
            put_json_string(w, text.s, text.len, text.escape);
        return;
    default:
        type_problem(w, idx, field, "a string (or a non-negative integer)");
        return;
    }
}

static void check_user_id(walk_t *w, int idx, int type)
{
    const char *field = key_names[K_USER_ID];
    int64_t id;

    switch (type) {
    case LUA_TNIL:
        required(w, field, "a positive integer");
        return;
    case LUA_TNUMBER:
        if (check_integer(w, idx, field, 1, &id))
            put_integer(w, id, 0);
        return;
    case LUA_TSTRING:
        type_problem(w, idx, field, "a positive integer (a number, not a string)");
        return;
    default:
        type_problem(w, idx, field, "a positive integer");
        return;
    }
}

static int is_registered(const ao_options *opt, const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < opt->status_count; i++) {
        const status_entry *e = &opt->statuses[i];
        if (e->len == len && memcmp(opt->status_bytes + e->offset, s, len) == 0)
            return 1;
    }
    return 0;
}

static void check_external_status(walk_t *w, int idx, int type)
{
    const char *field = key_names[K_EXTERNAL_STATUS];
    text_t text;

    if (type == LUA_TNIL) {
        required(w, field, "a string");
        return;
    }
    if (!check_text(w, idx, type, field, w->opt->limits.external_status, TEXT_NO_CONTROL, &text))
        return;
    if (w->opt->statuses != NULL && !is_registered(w->opt, text.s, text.len)) {
        char q[QUOTE_MAX + 8];
        quote(text.s, text.len, q, sizeof q);
        problem(w, field, "unregistered",
                "\"%s\" is not one of the %lu statuses registered with Choco (options.statuses)", q,
                (unsigned long)w->opt->status_count);
        return;
    }
    put_json_string(w, text.s, text.len, text.escape);
}

static int is_scheme_char(unsigned char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

static int ascii_ieq(const char *a, size_t alen, const char *b)
{
    size_t i;
    if (alen != strlen(b))
        return 0;
    for (i = 0; i < alen; i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != b[i])
            return 0;
    }
    return 1;
}

static void check_link(walk_t *w, int idx, int type, const char *field)
{
    const char *s, *rest;
    size_t len, scheme_len;
    text_t text;
    char q[QUOTE_MAX + 8];

    if (!check_text(w, idx, type, field, w->opt->limits.link, TEXT_NO_CONTROL | TEXT_NO_SPACE | TEXT_BYTES, &text))
        return;
    s = text.s;
    len = text.len;
    for (scheme_len = 0; scheme_len < len && is_scheme_char((unsigned char)s[scheme_len], scheme_len == 0);
         scheme_len++)
        ;
    if (scheme_len == 0 || len - scheme_len < 3 || s[scheme_len] != ':'
        || s[scheme_len + 1] != '/' || s[scheme_len + 2] != '/') {
        quote(s, len, q, sizeof q);
        problem(w, field, "format",
                "expected an absolute URL such as https://host/path or rahmetapp://path, found \"%s\"", q);
        return;
    }
    rest = s + scheme_len + 3;
    if (ascii_ieq(s, scheme_len, "http")) {
        quote(s, len, q, sizeof q);
        problem(w, field, "format", "expected https:// (plain http is not allowed), found \"%s\"", q);
        return;
    }
    if (rest == s + len || (ascii_ieq(s, scheme_len, "https") && (*rest == '/' || *rest == '?' || *rest == '#'))) {
        quote(s, len, q, sizeof q);
        problem(w, field, "format", "expected a host or path after \"://\", found \"%s\"", q);
        return;
    }
    put_json_string(w, s, len, text.escape);
}

/* "deeplinks[12]" or "deeplinks[12].leaf" without printf: this runs for every valid entry. */
static void deeplink_path(char *buf, size_t size, long index, const char *leaf)
{
    char digits[24];
    size_t n = 0, d = 0, leaf_len = leaf ? strlen(leaf) : 0;
    unsigned long u = (unsigned long)index;

    do {
        digits[d++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0 && d < sizeof digits);
    if (10 + d + 2 + leaf_len + 1 > size) {
        buf[0] = '\0';
        return;
    }
    memcpy(buf, "deeplinks[", 10);
    n = 10;
    while (d > 0)
        buf[n++] = digits[--d];
    buf[n++] = ']';
    if (leaf) {
        buf[n++] = '.';
        memcpy(buf + n, leaf, leaf_len);
        n += leaf_len;
    }
    buf[n] = '\0';
}

/* The paths of the entries a valid list can have, ready made for the hot path. */
static const char *const common_paths[2][3] = {
    { "deeplinks[1]", "deeplinks[1].link", "deeplinks[1].type" },
    { "deeplinks[2]", "deeplinks[2].link", "deeplinks[2].type" },
};

/*
 * One entry of deeplinks, at the stack top (idx); `seen` remembers at which
 * index each type appeared. Leaves the entry's fields above idx.
 */
static void check_deeplink(walk_t *w, int idx, int type, long index, long seen[2], int first)
{
    lua_State *L = w->L;
    char prefix_buf[48], link_buf[64], type_buf[64];
    const char *prefix, *link_field, *field;
    int type_ok = -1, i, pos[2], types[2];
    const char *s;
    size_t len;

    if (index == 1 || index == 2) {
        prefix = common_paths[index - 1][0];
        link_field = common_paths[index - 1][1];
        field = common_paths[index - 1][2];
    } else {
        deeplink_path(prefix_buf, sizeof prefix_buf, index, NULL);
        deeplink_path(link_buf, sizeof link_buf, index, "link");
        deeplink_path(type_buf, sizeof type_buf, index, "type");
        prefix = prefix_buf;
        link_field = link_buf;
        field = type_buf;
    }
    if (type != LUA_TTABLE) {
        type_problem(w, idx, prefix, "a table {link = ..., type = ...}");
        return;
    }
    /* The entry is the stack top; the caller drops what is read above it. */
    gather(w, idx, idx, deeplink_keys, pos, types, prefix);
    if (first)
        PUT_LITERAL(w, "{\"link\":");
    else
        PUT_LITERAL(w, ",{\"link\":");
    if (types[0] == LUA_TNIL)
        required(w, link_field, "an absolute URL string");
    else
        check_link(w, pos[0], types[0], link_field);

    PUT_LITERAL(w, ",\"type\":");
    switch (types[1]) {
    case LUA_TNIL:
        required(w, field, "active_order_call_to_action or active_order_card");
        break;
    case LUA_TSTRING:
        s = lua_tolstring(L, pos[1], &len);
        for (i = 0; i < 2; i++)
            if (s == w->opt->interned[I_DEEPLINK_TYPE + i]
                || (strlen(deeplink_types[i]) == len && memcmp(deeplink_types[i], s, len) == 0))
                type_ok = i;
        if (type_ok < 0) {
            char q[QUOTE_MAX + 8];
            const char *near = closest(s, len, deeplink_types, 2);
            quote(s, len, q, sizeof q);
            if (near != NULL)
                problem(w, field, "enum",
                        "expected active_order_call_to_action or active_order_card, found \"%s\" "
                        "(did you mean %s?)", q, near);
            else
                problem(w, field, "enum",
                        "expected active_order_call_to_action or active_order_card, found \"%s\"", q);
        } else if (seen[type_ok] != 0) {
            problem(w, field, "duplicate", "%s already appears at deeplinks[%ld].type; each type at most once",
                    deeplink_types[type_ok], seen[type_ok]);
        } else {
            seen[type_ok] = index;
            put_json_string(w, s, len, 0);
        }
        break;
    default:
        type_problem(w, pos[1], field, "the string active_order_call_to_action or active_order_card");
        break;
    }
    PUT_LITERAL(w, "}");
}

/* Whole number >= 1 that a table key can be as a sequence index; 0 otherwise. */
static long sequence_index(lua_State *L, int key)
{
    int64_t v;
    if (lua_type(L, key) != LUA_TNUMBER || read_integer(L, key, &v) != NUM_OK || v < 1
        || v > (int64_t)0x7fffffff)
        return 0;
    return (long)v;
}

/* The list is at idx; top is the stack top (the list's slot may be below others). */
static void check_deeplinks(walk_t *w, int idx, int type, int top)
{
    lua_State *L = w->L;
    const char *field = key_names[K_DEEPLINKS];
    long seen[2] = { 0, 0 };
    size_t n, i, total = 0, walked = 0;

    if (type == LUA_TNIL) {
        required(w, field, "a non-empty list of {link, type}");
        return;
    }
    if (type != LUA_TTABLE) {
        type_problem(w, idx, field, "a non-empty list of {link = ..., type = ...}");
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_settop(L, top + 1);
        total++;
    }
    if (total == 0) {
        problem(w, field, "empty", "expected at least one deeplink, found an empty table");
        return;
    }
    PUT_LITERAL(w, "[");
    n = ao_rawlen(L, idx);
    for (i = 1; i <= n && !w->truncated; i++) {
        int entry_type;
        lua_rawgeti(L, idx, (int)i);
        entry_type = lua_type(L, top + 1);
        if (entry_type != LUA_TNIL) {
            check_deeplink(w, top + 1, entry_type, (long)i, seen, walked == 0);
            walked++;
        }
        lua_settop(L, top);
    }
    PUT_LITERAL(w, "]");
    if (walked == total && walked == n)
        return;

    /*
     * Not a plain sequence: report keys that cannot be indexes, check entries
     * beyond the border rawlen found, and name the first hole.
     */
    {
        long max_index = 0, first_hole;
        int key = top + 1;   /* where lua_next leaves the key; the value is above it */
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            long k;
            if (w->truncated) {
                lua_settop(L, key - 1);
                return;
            }
            k = sequence_index(L, key);
            if (k == 0) {
                char path[192];
                key_path(L, key, field, path, sizeof path);
                if (lua_type(L, -2) == LUA_TSTRING)
                    problem(w, path, "unknown_field",
                            "deeplinks must be a plain list of {link, type}, found a named key");
                else
                    problem(w, path, "unknown_field",
                            "deeplinks must be a plain list indexed 1, 2, ..., found this key");
            } else {
                if (k > max_index)
                    max_index = k;
                if ((size_t)k > n)
                    check_deeplink(w, key + 1, lua_type(L, key + 1), k, seen, 0);
            }
            lua_settop(L, key);
        }
        for (first_hole = 1; first_hole < max_index; first_hole++) {
            int missing;
            lua_rawgeti(L, idx, (int)first_hole);
            missing = lua_isnil(L, -1);
            lua_pop(L, 1);
            if (missing)
                break;
        }
        if (first_hole < max_index) {
            char path[48];
            snprintf(path, sizeof path, "deeplinks[%ld]", first_hole);
            problem(w, path, "required",
                    "deeplinks has a hole: entry %ld is missing but entries go up to %ld", first_hole,
                    max_index);
        }
    }
}

static void check_expired_at(walk_t *w, int idx, int type)
{
    lua_State *L = w->L;
    const char *field = "external_data.expired_at";
    ao_datetime dt;
    char text[AO_DATETIME_LEN + 1], q[QUOTE_MAX + 8];
    const char *s;
    size_t len;
    double d;

    switch (type) {
    case LUA_TNIL:
        required(w, field, "\"YYYY-MM-DD HH:MM:SS\" or Unix seconds");
        return;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        if (ao_datetime_parse(s, len, &dt) == AO_DT_OK) {
            put(w, "\"", 1);
            put(w, s, len);
            put(w, "\"", 1);
            return;
        }
        quote(s, len, q, sizeof q);
        switch (ao_datetime_parse(s, len, &dt)) {
        case AO_DT_OK:
            return;
        case AO_DT_SHAPE:
            problem(w, field, "format", "expected \"YYYY-MM-DD HH:MM:SS\", found \"%s\"", q);
            return;
        case AO_DT_YEAR:
            problem(w, field, "range", "expected a year from 0001, found \"%s\"", q);
            return;
        case AO_DT_MONTH:
            problem(w, field, "range", "expected a month 01..12, found \"%s\"", q);
            return;
        case AO_DT_DAY: {
            int year = 0, month = 0, i;
            for (i = 0; i < 4; i++)
                year = year * 10 + (s[i] - '0');
            month = (s[5] - '0') * 10 + (s[6] - '0');
            problem(w, field, "range", "expected a real date: %.4s-%.2s has %d days, found \"%s\"", s, s + 5,
                    ao_days_in_month(year, month), q);
            return;
        }
        case AO_DT_HOUR:
            problem(w, field, "range", "expected an hour 00..23 (24:00:00 is 00:00:00 of the next day), found \"%s\"",
                    q);
            return;
        case AO_DT_MINUTE:
            problem(w, field, "range", "expected minutes 00..59, found \"%s\"", q);
            return;
        case AO_DT_SECOND:
            problem(w, field, "range", "expected seconds 00..59, found \"%s\"", q);
            return;
        }
        return;
    case LUA_TNUMBER:
        d = (double)lua_tonumber(L, idx);
        if (d != d) {
            problem(w, field, "type", "expected Unix seconds, found NaN");
            return;
        }
        /* Fractions of a second are dropped: the gateway's form has whole seconds. */
        if (!(d >= 0 && d <= 253402300799.0)
            || ao_datetime_from_unix((int64_t)d, w->opt->utc_offset, &dt) != 0) {
            describe(L, idx, q, sizeof q);
            problem(w, field, "range",
                    "expected Unix seconds from 0 up to the end of year 9999 in the configured zone, found %s", q);
            return;
        }
        text[0] = '"';
        ao_datetime_format(&dt, text + 1);
        put(w, text, AO_DATETIME_LEN + 1);
        put(w, "\"", 1);
        return;
    default:
        type_problem(w, idx, field, "a string \"YYYY-MM-DD HH:MM:SS\" or Unix seconds");
        return;
    }
}

static void check_boolean(walk_t *w, int idx, int type, const char *field)
{
    if (type == LUA_TBOOLEAN) {
        if (lua_toboolean(w->L, idx))
            PUT_LITERAL(w, "true");
        else
            PUT_LITERAL(w, "false");
        return;
    }
    if (type == LUA_TNIL)
        required(w, field, "a boolean");
    else
        type_problem(w, idx, field, "a boolean (true or false, not a string)");
}

static void check_title(walk_t *w, int idx, int type, const char *field, size_t limit)
{
    text_t text;

    if (type == LUA_TNIL) {
        required(w, field, "a non-empty string");
        return;
    }
    if (check_text(w, idx, type, field, limit, 0, &text))
        put_json_string(w, text.s, text.len, text.escape);
}

/* The table is at idx; top is the stack top. */
static void check_external_data(walk_t *w, int idx, int type, int top)
{
    lua_State *L = w->L;
    int pos[6], types[6];
    text_t text;

    if (type == LUA_TNIL) {
        required(w, "external_data", "a table");
        return;
    }
    if (type != LUA_TTABLE) {
        type_problem(w, idx, "external_data", "a table");
        return;
    }
    /* All six at once, so the subtitle can see need_timer. */
    gather(w, idx, top, external_data_keys, pos, types, "external_data");
#define AT(k) pos[(k) - K_EXPIRED_AT]
#define TYPE(k) types[(k) - K_EXPIRED_AT]
    PUT_LITERAL(w, "{\"expired_at\":");
    check_expired_at(w, AT(K_EXPIRED_AT), TYPE(K_EXPIRED_AT));
    PUT_LITERAL(w, ",\"title_active_order_card\":");
    check_title(w, AT(K_TITLE_CARD), TYPE(K_TITLE_CARD), "external_data.title_active_order_card",
                w->opt->limits.title);
    PUT_LITERAL(w, ",\"title_call_to_action\":");
    check_title(w, AT(K_TITLE_CTA), TYPE(K_TITLE_CTA), "external_data.title_call_to_action",
                w->opt->limits.title);
    if (TYPE(K_SUBTITLE) != LUA_TNIL) {
        const char *field = "external_data.subtitle_active_order_card";
        PUT_LITERAL(w, ",\"subtitle_active_order_card\":");
        if (check_text(w, AT(K_SUBTITLE), TYPE(K_SUBTITLE), field, w->opt->limits.subtitle, 0, &text)) {
            if (TYPE(K_NEED_TIMER) == LUA_TBOOLEAN && lua_toboolean(L, AT(K_NEED_TIMER)))
                problem(w, field, "conflict",
                        "the app shows the subtitle only when need_timer is false, found need_timer = true");
            else
                put_json_string(w, text.s, text.len, text.escape);
        }
    }
    PUT_LITERAL(w, ",\"need_timer\":");
    check_boolean(w, AT(K_NEED_TIMER), TYPE(K_NEED_TIMER), "external_data.need_timer");
    PUT_LITERAL(w, ",\"countdown_timer\":");
    check_boolean(w, AT(K_COUNTDOWN_TIMER), TYPE(K_COUNTDOWN_TIMER), "external_data.countdown_timer");
    PUT_LITERAL(w, "}");
#undef AT
#undef TYPE
    /* The last field: run() returns from the stack top, so what gather left above `top` may stay. */
}

static void walk_status(walk_t *w, int status)
{
    lua_State *L = w->L;
    int base = lua_gettop(L), top, pos[5], types[5];

    if (lua_type(L, status) != LUA_TTABLE) {
        type_problem(w, status, "", "the status as a table");
        return;
    }
    top = gather(w, status, base, status_keys, pos, types, "");
    PUT_LITERAL(w, "{\"merchant_order_id\":");
    check_merchant_order_id(w, pos[K_MERCHANT_ORDER_ID], types[K_MERCHANT_ORDER_ID]);
    PUT_LITERAL(w, ",\"user_id\":");
    check_user_id(w, pos[K_USER_ID], types[K_USER_ID]);
    PUT_LITERAL(w, ",\"external_status\":");
    check_external_status(w, pos[K_EXTERNAL_STATUS], types[K_EXTERNAL_STATUS]);
    PUT_LITERAL(w, ",\"deeplinks\":");
    check_deeplinks(w, pos[K_DEEPLINKS], types[K_DEEPLINKS], top);
    PUT_LITERAL(w, ",\"external_data\":");
    check_external_data(w, pos[K_EXTERNAL_DATA], types[K_EXTERNAL_DATA], top);
    PUT_LITERAL(w, "}");
    /* run() returns from the stack top, so the values gathered above base may stay. */
}

/* ------------------------------------------------------------ entry points */

static int l_compile_options(lua_State *L);

/*
 * The options of a walk: the defaults for nil, compiled options as given, or
 * a plain options table compiled on first use and cached per table (so the
 * hot path never parses options). A table that does not compile raises: the
 * options are the program's, not data.
 */
static ao_options *options_arg(lua_State *L, int idx)
{
    ao_options *opt;

    switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
        return (ao_options *)lua_touserdata(L, UV_DEFAULTS);
    case LUA_TTABLE:
        lua_pushvalue(L, idx);
        lua_rawget(L, UV_CACHE);
        opt = (ao_options *)lua_touserdata(L, -1);
        if (opt != NULL) {
            lua_replace(L, idx);
            return opt;
        }
        lua_pop(L, 1);
        lua_pushcfunction(L, l_compile_options);
        lua_pushvalue(L, idx);
        lua_call(L, 1, 2);
        if (lua_isnil(L, -2))
            luaL_error(L, "bad options: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_pushvalue(L, idx);
        lua_pushvalue(L, -2);
        lua_rawset(L, UV_CACHE);
        opt = (ao_options *)lua_touserdata(L, -1);
        lua_replace(L, idx);
        return opt;
    default:
        opt = (ao_options *)ao_testudata(L, idx, OPTIONS_MT);
        if (opt == NULL)
            luaL_argerror(L, idx, "options table or compiled options expected");
        return opt;
    }
}

static int scratch_gc(lua_State *L)
{
    ao_buffer *b = (ao_buffer *)lua_touserdata(L, 1);
    if (b != NULL)
        ao_buffer_free(b);
    return 0;
}

/* Stack while walking: 1 status, 2 options, 3 problems (nil until the first), 4 nil, 5 scratch buffer. */
static int run(lua_State *L, int encoding)
{
    ao_options *opt = options_arg(L, 2);
    walk_t w;
    int own_buffer = 0;

    /* The deepest walk holds about 40 values: two per known key on each level, and messages. */
    luaL_checkstack(L, 64, "status walk");
    lua_settop(L, 4);   /* 3: problems (nil until the first), 4: a nil for absent fields */
    w.L = L;
    w.opt = opt;
    w.out = NULL;
    w.slot = 3;
    w.nil_slot = 4;
    w.count = 0;
    w.truncated = 0;
    /*
     * The options' buffer is shared by every walk with these options, and a
     * walk can start inside another one when an allocation runs a finalizer
     * that encodes. While the body is being written nothing allocates: the
     * only allocations in the walk are problem()'s (which ends writing
     * first) and lua_tolstring of a number key (always an unknown key, so a
     * problem follows). A nested walk that reuses the buffer can therefore
     * only overwrite a body that is already abandoned. The last allocation,
     * lua_pushlstring of the finished body, is guarded by `busy` (a nested
     * walk then takes a scratch buffer). Only an out-of-memory error in that
     * one call can leave busy set; that costs later calls a scratch buffer,
     * never a wrong body.
     */
    if (encoding) {
        if (!opt->busy) {
            own_buffer = 1;
            w.out = &opt->out;
        } else {
            w.out = (ao_buffer *)ao_newuserdata(L, sizeof(ao_buffer));
            ao_buffer_init(w.out);
            ao_setmetatable(L, SCRATCH_MT);
        }
        ao_buffer_reset(w.out);
    }
    w.writing = w.out != NULL;

    walk_status(&w, 1);

    if (w.count > 0) {
        lua_settop(L, 3);
        if (w.truncated) {
            lua_pushboolean(L, 1);
            lua_setfield(L, 3, "truncated");
        }
        lua_pushnil(L);
        lua_insert(L, 3);
        return 2;
    }
    if (!encoding) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (w.out->failed) {
        ao_buffer_free(w.out);
        lua_pushliteral(L, "not enough memory to encode the status");
        return lua_error(L);
    }
    if (own_buffer)
        opt->busy = 1;
    lua_pushlstring(L, w.out->data, w.out->len);
    if (own_buffer) {
        if (opt->out.cap > KEEP_BUFFER_BYTES)
            ao_buffer_free(&opt->out);
        opt->busy = 0;
    }
    return 1;
}

static int l_validate(lua_State *L)
{
    return run(L, 0);
}

static int l_encode(lua_State *L)
{
    return run(L, 1);
}

/* ----------------------------------------------------------------- options */

static void options_defaults(ao_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->utc_offset = DEFAULT_UTC_OFFSET_MINUTES;
    opt->limits.title = DEFAULT_TITLE_LIMIT;
    opt->limits.subtitle = DEFAULT_SUBTITLE_LIMIT;
    opt->limits.link = DEFAULT_LINK_LIMIT;
    opt->limits.merchant_order_id = DEFAULT_ORDER_ID_LIMIT;
    opt->limits.external_status = DEFAULT_STATUS_LIMIT;
    ao_buffer_init(&opt->out);
}

static ao_options *new_options(lua_State *L)
{
    ao_options *opt = (ao_options *)ao_newuserdata(L, sizeof(ao_options));
    int i;

    options_defaults(opt);
    ao_setmetatable(L, OPTIONS_MT);
    lua_getfield(L, LUA_REGISTRYINDEX, INTERNED_REG);
    for (i = 0; i < K_COUNT + 2; i++) {
        lua_rawgeti(L, -1, i + 1);
        /* The registry table keeps the string, so the pointer stays valid. */
        opt->interned[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return opt;
}

/* The strings behind ao_options.interned, created once per state. */
static void push_interned_names(lua_State *L)
{
    int i;

    lua_createtable(L, K_COUNT + 2, 0);
    for (i = 0; i < K_COUNT; i++) {
        lua_pushlstring(L, key_names[i], key_lengths[i]);
        lua_rawseti(L, -2, i + 1);
    }
    for (i = 0; i < 2; i++) {
        lua_pushstring(L, deeplink_types[i]);
        lua_rawseti(L, -2, I_DEEPLINK_TYPE + i + 1);
    }
}

static int options_gc(lua_State *L)
{
    ao_options *opt = (ao_options *)lua_touserdata(L, 1);
    if (opt == NULL)
        return 0;
    free(opt->status_bytes);
    free(opt->statuses);
    opt->status_bytes = NULL;
    opt->statuses = NULL;
    opt->status_count = 0;
    ao_buffer_free(&opt->out);
    return 0;
}

static int options_tostring(lua_State *L)
{
    lua_pushliteral(L, "choco.active_order.options");
    return 1;
}

static const char *const limit_names[] = { "title", "subtitle", "link", "merchant_order_id",
                                            "external_status" };
#define LIMIT_COUNT (sizeof limit_names / sizeof limit_names[0])

static size_t *limit_slot(ao_limits *limits, size_t i)
{
    size_t *slots[LIMIT_COUNT];
    slots[0] = &limits->title;
    slots[1] = &limits->subtitle;
    slots[2] = &limits->link;
    slots[3] = &limits->merchant_order_id;
    slots[4] = &limits->external_status;
    return slots[i];
}

/* Returns NULL, or a message left on the stack top. Raises on wrong types. */
static const char *read_limits(lua_State *L, int t, ao_options *opt)
{
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        size_t i, len;
        const char *name;
        int64_t v;
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "options.limits: keys must be limit names (strings)");
        name = lua_tolstring(L, -2, &len);
        for (i = 0; i < LIMIT_COUNT; i++)
            if (strlen(limit_names[i]) == len && memcmp(limit_names[i], name, len) == 0)
                break;
        if (i == LIMIT_COUNT) {
            const char *near = closest(name, len, limit_names, LIMIT_COUNT);
            char q[QUOTE_MAX + 8];
            quote(name, len, q, sizeof q);
            return lua_pushfstring(L, "options.limits.%s is not a known limit%s%s%s", q,
                                   near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
        }
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "options.limits.%s must be a number, not a %s", limit_names[i],
                       luaL_typename(L, -1));
        if (read_integer(L, -1, &v) != NUM_OK || v < 1 || v > LIMIT_CEILING)
            return lua_pushfstring(L, "options.limits.%s must be a whole number from 1 to %d",
                                   limit_names[i], LIMIT_CEILING);
        *limit_slot(&opt->limits, i) = (size_t)v;
        lua_pop(L, 1);
    }
    return NULL;
}

static const char *read_statuses(lua_State *L, int t, ao_options *opt)
{
    size_t n = ao_rawlen(L, t), i, total = 0;

    if (n == 0)
        return lua_pushfstring(L, "options.statuses is empty: leave it out to accept any status");
    for (i = 1; i <= n; i++) {
        size_t len;
        lua_rawgeti(L, t, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "options.statuses[%d] must be a string, not a %s", (int)i, luaL_typename(L, -1));
        lua_tolstring(L, -1, &len);
        lua_pop(L, 1);
        if (len == 0)
            return lua_pushfstring(L, "options.statuses[%d] is empty", (int)i);
        total += len;
    }
    /* Owned by the userdata at once, so an error below frees them through __gc. */
    opt->statuses = (status_entry *)malloc(n * sizeof(status_entry));
    opt->status_bytes = (char *)malloc(total);
    if (opt->statuses == NULL || opt->status_bytes == NULL)
        return lua_pushfstring(L, "not enough memory for options.statuses");
    total = 0;
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *s;
        lua_rawgeti(L, t, (int)i);
        s = lua_tolstring(L, -1, &len);
        memcpy(opt->status_bytes + total, s, len);
        opt->statuses[i - 1].offset = total;
        opt->statuses[i - 1].len = len;
        total += len;
        lua_pop(L, 1);
    }
    opt->status_count = n;
    return NULL;
}

/*
 * compile_options(opts) -> options | nil, message. Wrong types raise (they
 * are programming errors); wrong values return a message.
 */
static int l_compile_options(lua_State *L)
{
    ao_options *opt;
    const char *err = NULL;
    int opts = 1;

    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        new_options(L);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    opt = new_options(L);   /* at 2 */

    lua_getfield(L, opts, "utc_offset");
    if (!lua_isnil(L, -1)) {
        size_t len;
        const char *s;
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "options.utc_offset must be a string like \"+05:00\", not a %s",
                              luaL_typename(L, -1));
        s = lua_tolstring(L, -1, &len);
        if (ao_utc_offset_parse(s, len, &opt->utc_offset) != 0) {
            char q[QUOTE_MAX + 8];
            quote(s, len, q, sizeof q);
            err = lua_pushfstring(L, "options.utc_offset must look like +05:00 or -03:30 (at most 14:00), found \"%s\"", q);
        }
    }
    if (err == NULL) {
        lua_settop(L, 2);
        lua_getfield(L, opts, "limits");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TTABLE)
                return luaL_error(L, "options.limits must be a table, not a %s", luaL_typename(L, -1));
            err = read_limits(L, 3, opt);
        }
    }
    if (err == NULL) {
        lua_settop(L, 2);
        lua_getfield(L, opts, "statuses");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TTABLE)
                return luaL_error(L, "options.statuses must be a list of strings, not a %s",
                                  luaL_typename(L, -1));
            err = read_statuses(L, 3, opt);
        }
    }
    if (err != NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_settop(L, 2);
    return 1;
}

/* The defaults, as a plain table, for documentation and tests. */
static void push_defaults(lua_State *L)
{
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, DEFAULT_UTC_OFFSET);
    lua_setfield(L, -2, "utc_offset");
    lua_pushinteger(L, MAX_PROBLEMS);
    lua_setfield(L, -2, "max_problems");
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, DEFAULT_TITLE_LIMIT);
    lua_setfield(L, -2, "title");
    lua_pushinteger(L, DEFAULT_SUBTITLE_LIMIT);
    lua_setfield(L, -2, "subtitle");
    lua_pushinteger(L, DEFAULT_LINK_LIMIT);
    lua_setfield(L, -2, "link");
    lua_pushinteger(L, DEFAULT_ORDER_ID_LIMIT);
    lua_setfield(L, -2, "merchant_order_id");
    lua_pushinteger(L, DEFAULT_STATUS_LIMIT);
    lua_setfield(L, -2, "external_status");
    lua_setfield(L, -2, "limits");
}

static void push_walker(lua_State *L, int defaults, int cache, lua_CFunction f)
{
    lua_pushvalue(L, defaults);
    lua_pushvalue(L, cache);
    lua_pushcclosure(L, f, 2);
}

void ao_payload_register(lua_State *L)
{
    int module = lua_gettop(L), defaults, cache;

    luaL_newmetatable(L, OPTIONS_MT);
    lua_pushcfunction(L, options_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, options_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "choco.active_order.options");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    luaL_newmetatable(L, SCRATCH_MT);
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    /*
     * Never replaced once made (a second load of the module reuses it): the
     * pointers in every options object must keep pointing at live strings,
     * or a new string at a freed address would pass for a key.
     */
    lua_getfield(L, LUA_REGISTRYINDEX, INTERNED_REG);
    if (lua_isnil(L, -1)) {
        push_interned_names(L);
        lua_setfield(L, LUA_REGISTRYINDEX, INTERNED_REG);
    }
    lua_pop(L, 1);

    new_options(L);
    defaults = lua_gettop(L);
    lua_newtable(L);
    cache = lua_gettop(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, cache);
    push_walker(L, defaults, cache, l_validate);
    lua_setfield(L, module, "validate");
    push_walker(L, defaults, cache, l_encode);
    lua_setfield(L, module, "encode");
    lua_pushcfunction(L, l_compile_options);
    lua_setfield(L, module, "compile_options");
    push_defaults(L);
    lua_setfield(L, module, "payload_defaults");
    lua_settop(L, module);
}
