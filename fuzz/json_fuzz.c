/*
 * libFuzzer harness for the JSON decoder (src/json.c), which an OpenResty app
 * runs on bodies posted from the network. The input bytes are the text; the
 * envelope check (src/envelope.c), a separate strict parser, is the judge:
 *   - json_decode never raises and never reads out of bounds;
 *   - it decodes exactly the texts the envelope check finds to be JSON (each
 *     text that nests no deeper than the envelope check's 64 levels);
 *   - with max_depth 64, it refuses as "too deep" exactly the texts the
 *     envelope check finds too deep;
 *   - the value's type is the one the text's first byte announces;
 *   - without a null value it decodes a subset of what it decodes with one.
 * Built only on request; see fuzz/README.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "../src/envelope.h"
#include "../src/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "json_fuzz: %s\n", what);
    abort();   /* the harness only: libFuzzer keeps the input */
}

/* json_decode(text, null_value [, max_depth]) from the table at index core:
 * returns whether it gave a value, which it leaves on top (else its reason). */
static int decode(lua_State *L, int core, const uint8_t *data, size_t size, int with_null, int max_depth)
{
    int status;

    lua_settop(L, core);
    lua_getfield(L, core, "json_decode");
    lua_pushlstring(L, (const char *)data, size);
    if (with_null)
        lua_pushboolean(L, 0);   /* any non-nil value stands for null */
    else
        lua_pushnil(L);
    if (max_depth > 0)
        lua_pushinteger(L, max_depth);
    else
        lua_pushnil(L);
    status = lua_pcall(L, 3, LUA_MULTRET, 0);
    if (status != 0)
        fail("json_decode raised on a string");
    /* one value (nil only for a top-level null without a null value), or nil, reason, position */
    if (lua_gettop(L) == core + 1)
        return 1;
    if (lua_gettop(L) != core + 3 || !lua_isnil(L, -3) || lua_type(L, -2) != LUA_TSTRING
        || lua_type(L, -1) != LUA_TNUMBER)
        fail("neither a value nor nil, a reason and a position");
    lua_pop(L, 1);   /* the reason stays on top */
    return 0;
}

/* The Lua type the first byte after white space announces. */
static int expected_type(const uint8_t *data, size_t size)
{
    size_t i = 0;

    while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r'))
        i++;
    switch (i < size ? data[i] : 0) {
    case '{': case '[': return LUA_TTABLE;
    case '"': return LUA_TSTRING;
    case 't': case 'f': case 'n': return LUA_TBOOLEAN;   /* null is false here */
    default: return LUA_TNUMBER;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L = NULL;
    ao_envelope_status verdict;
    int core, decoded, too_deep;

    if (L == NULL) {
        L = luaL_newstate();
        if (L == NULL)
            fail("no Lua state");
        luaL_openlibs(L);
    }
    lua_settop(L, 0);
    lua_newtable(L);
    ao_json_register(L);
    core = lua_gettop(L);

    verdict = ao_envelope_check((const char *)data, size);
    decoded = decode(L, core, data, size, 1, 0);
    if (verdict != AO_ENVELOPE_TOO_DEEP && decoded != (verdict != AO_ENVELOPE_INVALID))
        fail(decoded ? "decoded a text that is not JSON" : "refused a text that is JSON");
    if (decoded && lua_type(L, -1) != expected_type(data, size))
        fail("the value's type is not the one its first byte announces");

    too_deep = !decode(L, core, data, size, 1, AO_ENVELOPE_MAX_DEPTH)
               && strncmp(lua_tostring(L, -1), "JSON too deep", 13) == 0;
    if (too_deep != (verdict == AO_ENVELOPE_TOO_DEEP))
        fail(too_deep ? "too deep where the envelope check is not" : "not too deep where the envelope check is");

    if (decode(L, core, data, size, 0, 0) && !decoded)
        fail("decoded without a null value what it refuses with one");
    lua_settop(L, 0);
    return 0;
}
