/*
 * libFuzzer harness for the status walk. The input bytes are a small program
 * that builds a Lua value (nested tables, known and unknown keys, strings of
 * any bytes, integers, floats, NaN, booleans, functions); the harness then
 * runs validate and encode on it and checks what they promise:
 *   - neither raises;
 *   - encode returns a body exactly when validate returns true;
 *   - problems are a list of {field, code, message} strings, at most 100;
 *   - a body is the same on a second encode (the reused buffer is clean).
 * The same input, as raw bytes, also goes through the envelope check
 * (src/envelope.c), which must not read out of bounds on any bytes and must
 * judge consistently: the same verdict with whitespace around the body, and a
 * success never followed by more bytes or cut short.
 * Built only on request; see fuzz/README.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "../src/envelope.h"
#include "../src/payload.h"

#if LUA_VERSION_NUM >= 502
#define lua_objlen_compat(L, i) lua_rawlen((L), (i))
#else
#define lua_objlen_compat(L, i) lua_objlen((L), (i))
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *p;
    size_t left;
} reader;

static unsigned next_byte(reader *r)
{
    if (r->left == 0)
        return 0;
    r->left--;
    return *r->p++;
}

static const char *const known_keys[] = {
    "merchant_order_id", "user_id", "external_status", "deeplinks", "external_data", "link", "type",
    "expired_at", "title_active_order_card", "title_call_to_action", "subtitle_active_order_card",
    "need_timer", "countdown_timer", "active_order_card", "active_order_call_to_action",
    "https://rahmetapp.kz/1", "2021-10-20 16:49:36", "Ожидает оплаты",
};
#define KNOWN_COUNT (sizeof known_keys / sizeof known_keys[0])

static const char EXAMPLE[] =
    "return { merchant_order_id = 'WEE-11122', user_id = 1234567, external_status = 'created',"
    "  deeplinks = { { link = 'https://rahmetapp.kz/100/orders?tab=3', type = 'active_order_call_to_action' },"
    "                { link = 'https://rahmetapp.kz/100/orders?tab=5', type = 'active_order_card' } },"
    "  external_data = { expired_at = '2021-10-20 16:49:36', title_active_order_card = 'Ожидает оплаты',"
    "    title_call_to_action = 'К заказу', subtitle_active_order_card = 'Заказ отменен',"
    "    need_timer = false, countdown_timer = false } }";

static int a_function(lua_State *L)
{
    (void)L;
    return 0;
}

/* Pushes one value described by the input; depth bounds the recursion. */
static void push_value(lua_State *L, reader *r, int depth)
{
    unsigned op = next_byte(r) % 11;
    unsigned n, i;

    switch (op) {
    case 0:
        lua_pushnil(L);
        break;
    case 1:
        lua_pushboolean(L, next_byte(r) & 1);
        break;
    case 2:
        lua_pushinteger(L, (lua_Integer)(int32_t)(next_byte(r) << 24 | next_byte(r) << 16 | next_byte(r) << 8
                                                  | next_byte(r)));
        break;
    case 3: {
        double d;
        uint8_t bytes[8];
        for (i = 0; i < 8; i++)
            bytes[i] = (uint8_t)next_byte(r);
        memcpy(&d, bytes, sizeof d);
        lua_pushnumber(L, (lua_Number)d);
        break;
    }
    case 4:
    case 5:
        n = next_byte(r) % 48;
        if (n > r->left)
            n = (unsigned)r->left;
        lua_pushlstring(L, (const char *)r->p, n);
        r->p += n;
        r->left -= n;
        break;
    case 6:
    case 7:
        lua_pushstring(L, known_keys[next_byte(r) % KNOWN_COUNT]);
        break;
    case 8:
        lua_pushcfunction(L, a_function);
        break;
    default:
        if (depth >= 4) {
            lua_pushliteral(L, "deep");
            break;
        }
        n = next_byte(r) % 9;
        lua_createtable(L, 0, (int)n);
        for (i = 0; i < n && r->left > 0; i++) {
            unsigned key_kind = next_byte(r) % 4;
            if (key_kind == 0)
                lua_pushinteger(L, (lua_Integer)(next_byte(r) % 5));
            else
                lua_pushstring(L, known_keys[next_byte(r) % KNOWN_COUNT]);
            push_value(L, r, depth + 1);
            if (lua_isnil(L, -2) || lua_isnil(L, -1))
                lua_pop(L, 2);
            else
                lua_rawset(L, -3);
        }
        break;
    }
}

/* Runs core[name](status) protected; leaves the results. Aborts on a raise: that is the bug. */
static int call(lua_State *L, int core, const char *name, int status)
{
    int base = lua_gettop(L);
    lua_getfield(L, core, name);
    lua_pushvalue(L, status);
    if (lua_pcall(L, 1, LUA_MULTRET, 0) != 0)
        abort();
    return lua_gettop(L) - base;
}

static void check_problems(lua_State *L, int idx)
{
    lua_Integer i, n = (lua_Integer)lua_objlen_compat(L, idx);
    if (n < 1 || n > 100)
        abort();
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        lua_getfield(L, -1, "field");
        lua_getfield(L, -2, "code");
        lua_getfield(L, -3, "message");
        if (lua_type(L, -1) != LUA_TSTRING || lua_type(L, -2) != LUA_TSTRING
            || lua_type(L, -3) != LUA_TSTRING)
            abort();
        lua_pop(L, 4);
    }
}

/* The envelope check's promises on these bytes; abort() is how libFuzzer hears of a broken one. */
static void check_envelope(const uint8_t *data, size_t size)
{
    ao_envelope_status status = ao_envelope_check((const char *)data, size);
    char *copy = malloc(size + 2);

    if (copy == NULL)
        return;
    copy[0] = ' ';
    if (size > 0)
        memcpy(copy + 1, data, size);
    copy[size + 1] = '\n';
    if (ao_envelope_check(copy, size + 2) != status)
        abort();
    if (status == AO_ENVELOPE_OK) {
        size_t last = size;

        while (last > 0 && (data[last - 1] == ' ' || data[last - 1] == '\n' || data[last - 1] == '\r'
                            || data[last - 1] == '\t'))
            last--;
        if (ao_envelope_check((const char *)data, last - 1) == AO_ENVELOPE_OK)
            abort();
        copy[size + 1] = 'x';
        if (ao_envelope_check(copy, size + 2) != AO_ENVELOPE_INVALID)
            abort();
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L = NULL;
    reader r;
    int core, status, results;

    check_envelope(data, size);
    if (L == NULL) {
        L = luaL_newstate();
        luaL_openlibs(L);
    }
    lua_settop(L, 0);
    lua_newtable(L);
    ao_payload_register(L);
    core = lua_gettop(L);
    r.p = data;
    r.left = size;
    if (next_byte(&r) & 1) {
        push_value(L, &r, 0);
    } else {
        /* Start from the contract's example and change a few places: finds bugs on the encode path. */
        unsigned m, mutations = next_byte(&r) % 4;
        if (luaL_loadstring(L, EXAMPLE) != 0 || lua_pcall(L, 0, 1, 0) != 0)
            abort();
        for (m = 0; m < mutations; m++) {
            static const char *const places[] = { NULL, "deeplinks", "external_data" };
            unsigned place = next_byte(&r) % 4;
            lua_pushvalue(L, -1);
            if (place == 3) {
                lua_getfield(L, -1, "deeplinks");
                if (lua_type(L, -1) == LUA_TTABLE) {
                    lua_rawgeti(L, -1, 1 + (int)(next_byte(&r) % 3));
                    lua_remove(L, -2);
                }
            } else if (places[place] != NULL) {
                lua_getfield(L, -1, places[place]);
            } else {
                lua_pushvalue(L, -1);
            }
            lua_remove(L, -2);
            if (lua_type(L, -1) == LUA_TTABLE) {
                if (next_byte(&r) % 4 == 0)
                    lua_pushinteger(L, (lua_Integer)(next_byte(&r) % 4));
                else
                    lua_pushstring(L, known_keys[next_byte(&r) % KNOWN_COUNT]);
                push_value(L, &r, 2);
                lua_rawset(L, -3);
            }
            lua_pop(L, 1);
        }
    }
    status = lua_gettop(L);

    results = call(L, core, "validate", status);
    if (lua_toboolean(L, status + 1)) {
        size_t len1, len2;
        const char *body1, *body2;
        lua_settop(L, status);
        if (call(L, core, "encode", status) != 1 || lua_type(L, -1) != LUA_TSTRING)
            abort();
        body1 = lua_tolstring(L, -1, &len1);
        if (call(L, core, "encode", status) != 1)
            abort();
        body2 = lua_tolstring(L, -1, &len2);
        if (len1 != len2 || memcmp(body1, body2, len1) != 0)
            abort();
    } else {
        if (results != 2 || lua_type(L, status + 2) != LUA_TTABLE)
            abort();
        check_problems(L, status + 2);
        lua_settop(L, status);
        if (call(L, core, "encode", status) != 2 || !lua_isnil(L, -2))
            abort();
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
