/*
 * Out-of-memory sweep for the C module. Each scenario (a Lua chunk calling
 * the module) runs again and again in one Lua state whose allocator refuses
 * every allocation from the k-th on, for k = 1, 2, ... until the chunk gets
 * through. What it proves, together with ASan/LSan or valgrind around it:
 *   - every refused allocation becomes a Lua error, never a crash;
 *   - nothing malloc'd is held across that error (the leak checker at exit);
 *   - the state stays usable: with memory back, the same chunk gives the
 *     same result as before the sweep.
 * Built and run by spec/payload_oom_spec.lua; by hand:
 *   cc -std=c99 -D_POSIX_C_SOURCE=200809L -g -fsanitize=address,undefined \
 *      $(pkg-config --cflags lua5.4) -I src fuzz/oom.c src/[a-z]*.c \
 *      $(pkg-config --libs lua5.4) -lcurl -o build/oom && build/oom
 * Prints "N passed, 0 failed" and exits 0, or names the failing scenario.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_choco_active_order_core(lua_State *L);

typedef struct {
    int armed;
    size_t count;       /* growing allocations since arming */
    size_t fail_from;   /* refuse the fail_from-th and every later one */
} budget_t;

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    budget_t *b = ud;

    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    /* Lua needs shrinking to succeed; only growth is refused. */
    if (b->armed && (ptr == NULL || nsize > osize) && ++b->count >= b->fail_from)
        return NULL;
    return realloc(ptr, nsize);
}

/* Globals the scenarios share, built while memory is plentiful. */
static const char SETUP[] =
    "core = ...\n"
    "function example()\n"
    "  return { merchant_order_id = 'WEE-11122', user_id = 1234567, external_status = 'created',\n"
    "    deeplinks = { { link = 'https://rahmetapp.kz/100/orders?tab=3', type = 'active_order_call_to_action' },\n"
    "                  { link = 'https://rahmetapp.kz/100/orders?tab=5', type = 'active_order_card' } },\n"
    "    external_data = { expired_at = 1634730576, title_active_order_card = 'Ожидает оплаты',\n"
    "      title_call_to_action = 'К заказу', subtitle_active_order_card = 'Заказ отменен',\n"
    "      need_timer = false, countdown_timer = false } }\n"
    "end\n"
    "status = example()\n"
    "broken = { merchant_order_id = '', user_id = 1.5, external_status = 7, title_call_to_actoin = 1,\n"
    "  [1] = true, deeplinks = { { link = 'http://x', type = 'card' }, 'x', [5] = {} },\n"
    "  external_data = { expired_at = '2023-02-29 10:00:00', title_active_order_card = ('ж'):rep(31),\n"
    "    subtitle_active_order_card = 's', need_timer = 'true', countdown_timer = 1, extra = 1 } }\n"
    "many = { deeplinks = {} }\n"
    "for i = 1, 150 do many['unknown_' .. i] = i end\n"
    "local parts = {}\n"
    "for i = 1, 300 do parts[i] = tostring(i) end\n"
    "json_doc = '{\"list\":[' .. table.concat(parts, ',') .. '],\"deep\":' .. ('[{\"k\":'):rep(40) .. '1.5e-300'\n"
    "  .. ('}]'):rep(40) .. ',\"long\":\"' .. ('\\\\u00e9ab\\\\n'):rep(100) .. '\",\"a\":[1,null,{\"b\":\"x\\\\/y\"}]}'\n"
    "options = { utc_offset = '+03:00', statuses = { 'created', 'paid', 'done' }, limits = { title = 20 } }\n";

typedef struct {
    const char *name;
    const char *chunk;   /* returns one string that describes the outcome */
} scenario_t;

static const scenario_t scenarios[] = {
    { "encode a valid status", "return (core.encode(status))" },
    { "validate a valid status", "return tostring(core.validate(status))" },
    { "encode a status with many kinds of problems",
      "local ok, problems = core.encode(broken)\n"
      "local out = {}\n"
      "for i, p in ipairs(problems) do out[i] = p.field .. ' ' .. p.code end\n"
      "return table.concat(out, ';')" },
    { "problems beyond the cap", "local _, p = core.validate(many) return #p .. tostring(p.truncated)" },
    { "compile options", "return tostring(core.compile_options(options) ~= nil)" },
    { "encode with a plain options table (compiled and cached on first use)",
      "return (core.encode(example(), { statuses = { 'created' }, utc_offset = '+06:00' }))" },
    { "session with options, then closed",
      "local s = core.session { user_agent = 'oom', ca_file = '/nonexistent', max_response_bytes = 10 }\n"
      "s:close() s:close() return tostring(s:is_closed())" },
    { "multi with queued requests, then closed",
      "local m = core.multi { max_in_flight = 1, proxy = 'http://127.0.0.1:9' }\n"
      "m:add(1, 'PUT', 'http://127.0.0.1:9/a', { 'Content-Type: application/json' }, '{}', 100, 100)\n"
      "m:add(2, 'GET', 'http://127.0.0.1:9/b', nil, nil, 100, 100)\n"
      "local n = m:in_flight() m:close() return tostring(n)" },
    { "json_decode a document with chunks, deep nesting and long escaped strings",
      "local t = core.json_decode(json_doc, false)\n"
      "local d = t.deep for _ = 1, 40 do d = d[1].k end\n"
      "return t.a[3].b .. #t.long .. tostring(t.a[2]) .. #t.list .. t.list[300] .. tostring(d)" },
    { "json_decode refusing a document",
      "local v, reason, at = core.json_decode('[1,2,{\"a\":tru}]', false) return reason .. at" },
};

#define SCENARIO_COUNT (sizeof scenarios / sizeof scenarios[0])
#define MAX_STEPS 100000

/* Runs a chunk; on success copies its string result into out (malloc'd). */
static int run_chunk(lua_State *L, const char *chunk, char **out)
{
    int rc = luaL_loadstring(L, chunk);
    size_t len;
    const char *s;

    if (rc == 0)
        rc = lua_pcall(L, 0, 1, 0);
    if (rc != 0) {
        lua_pop(L, 1);
        return rc;
    }
    s = lua_tolstring(L, -1, &len);
    *out = malloc(len + 1);
    if (*out == NULL || s == NULL) {
        lua_pop(L, 1);
        free(*out);
        *out = NULL;
        return -1;
    }
    memcpy(*out, s, len + 1);
    lua_pop(L, 1);
    return 0;
}

static int sweep(lua_State *L, budget_t *b, const scenario_t *sc)
{
    char *expected = NULL, *got = NULL;
    size_t k;
    int top = lua_gettop(L), failed = 0;

    if (run_chunk(L, sc->chunk, &expected) != 0) {
        fprintf(stderr, "FAIL %s: does not run with memory to spare\n", sc->name);
        return 1;
    }
    for (k = 1; k < MAX_STEPS; k++) {
        int rc;
        b->count = 0;
        b->fail_from = k;
        b->armed = 1;
        rc = run_chunk(L, sc->chunk, &got);
        b->armed = 0;
        lua_gc(L, LUA_GCCOLLECT, 0);
        if (lua_gettop(L) != top) {
            fprintf(stderr, "FAIL %s: stack %d -> %d after refusing allocation %lu\n", sc->name, top,
                    lua_gettop(L), (unsigned long)k);
            failed = 1;
            break;
        }
        if (rc == 0) {
            free(got);
            got = NULL;
            break;
        }
    }
    if (!failed && k == MAX_STEPS) {
        fprintf(stderr, "FAIL %s: never got through\n", sc->name);
        failed = 1;
    }
    if (!failed) {
        if (run_chunk(L, sc->chunk, &got) != 0 || strcmp(got, expected) != 0) {
            fprintf(stderr, "FAIL %s: different result once memory is back\n", sc->name);
            failed = 1;
        }
    }
    free(got);
    free(expected);
    if (!failed)
        printf("ok %s (%lu refusal points)\n", sc->name, (unsigned long)k - 1);
    return failed;
}

int main(void)
{
    budget_t budget = { 0, 0, 0 };
    lua_State *L = lua_newstate(budget_alloc, &budget);
    size_t i, failed = 0;

    if (L == NULL) {
        fprintf(stderr, "cannot create a Lua state with a custom allocator\n");
        return 2;
    }
    luaL_openlibs(L);
    lua_pushcfunction(L, luaopen_choco_active_order_core);
    lua_call(L, 0, 1);
    if (luaL_loadstring(L, SETUP) != 0) {
        fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 2;
    }
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 2;
    }
    for (i = 0; i < SCENARIO_COUNT; i++)
        failed += (size_t)sweep(L, &budget, &scenarios[i]);
    lua_close(L);
    printf("%lu passed, %lu failed\n", (unsigned long)(SCENARIO_COUNT - failed), (unsigned long)failed);
    return failed == 0 ? 0 : 1;
}
