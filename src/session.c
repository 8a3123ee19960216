/*
 * core.session{...}: one libcurl easy handle kept for the life of the
 * userdata, so consecutive requests to the same host share one kept-alive
 * connection. A request runs to completion inside s:request; libcurl writes
 * into the userdata's own buffer and never calls back into Lua.
 */
#include "session.h"

#include <string.h>

#include "http.h"

#define SESSION_MT "choco.active_order.session"

typedef struct {
    ao_http_options options;
    ao_http_transfer transfer;
    int closed;
    /*
     * Set while the outcome is being pushed: any allocation there can run a
     * finalizer, and one that closes this session or sends on it must not
     * free or rewrite the handle and buffer being read. close() then only
     * sets close_pending, and request() refuses.
     */
    int in_use;
    int close_pending;
} ao_session;

static ao_session *check_open_session(lua_State *L)
{
    ao_session *s = luaL_checkudata(L, 1, SESSION_MT);

    if (s->closed)
        luaL_error(L, "session is closed");
    if (s->in_use)
        luaL_error(L, "session is busy: request called while its previous result is being built (from a finalizer?)");
    return s;
}

static void session_free(ao_session *s)
{
    ao_http_transfer_close(&s->transfer);
    ao_http_options_free(&s->options);
    s->closed = 1;
    s->close_pending = 0;
}

static int session_new(lua_State *L)
{
    ao_session *s;
    CURLcode rc;

    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    s = ao_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    /* Not yet open: __gc has nothing of curl's to free if the options raise. */
    s->closed = 1;
    ao_setmetatable(L, SESSION_MT);
    ao_http_options_parse(L, 1, &s->options, NULL);
    rc = ao_http_transfer_open(&s->transfer, &s->options);
    if (rc != CURLE_OK)
        return luaL_error(L, "session: cannot create a libcurl handle: %s", curl_easy_strerror(rc));
    s->closed = 0;
    return 1;
}

/* Protected part of request: (session, curl code) -> response | nil, error. */
static int session_push_outcome(lua_State *L)
{
    ao_session *s = lua_touserdata(L, 1);
    CURLcode rc = (CURLcode)lua_tointeger(L, 2);

    if (ao_http_push_outcome(L, &s->transfer, rc))
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

static int session_request(lua_State *L)
{
    ao_session *s = check_open_session(L);
    ao_http_request r;
    CURLcode rc;
    int status, base;

    ao_http_request_check(L, 2, &r);
    lua_settop(L, 7);
    /* Allocates, so it comes before anything a finalizer could disturb. */
    lua_pushcfunction(L, session_push_outcome);
    if (s->closed)
        return luaL_error(L, "session is closed");
    base = lua_gettop(L) - 1;
    /* Nothing below raises until the outcome is pushed; the strings stay on the stack meanwhile. */
    rc = ao_http_transfer_prepare(&s->transfer, &r);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(s->transfer.easy);
    s->in_use = 1;
    lua_pushvalue(L, 1);
    lua_pushinteger(L, (lua_Integer)rc);
    /* Protected, so that in_use is cleared whatever happens (out of memory included). */
    status = lua_pcall(L, 2, LUA_MULTRET, 0);
    s->in_use = 0;
    if (s->close_pending)
        session_free(s);
    if (status != 0)
        return lua_error(L);
    return lua_gettop(L) - base;
}

static int session_close(lua_State *L)
{
    ao_session *s = luaL_checkudata(L, 1, SESSION_MT);

    if (s->in_use) {
        /* The request under way closes it once its result is built. */
        s->close_pending = 1;
        return 0;
    }
    session_free(s);
    return 0;
}

static int session_is_closed(lua_State *L)
{
    ao_session *s = luaL_checkudata(L, 1, SESSION_MT);

    lua_pushboolean(L, s->closed || s->close_pending);
    return 1;
}

static int session_tostring(lua_State *L)
{
    ao_session *s = luaL_checkudata(L, 1, SESSION_MT);

    lua_pushstring(L, s->closed || s->close_pending ? SESSION_MT " (closed)" : SESSION_MT);
    return 1;
}

static const luaL_Reg session_methods[] = {
    {"request", session_request},
    {"close", session_close},
    {"is_closed", session_is_closed},
    {NULL, NULL}
};

void ao_session_register(lua_State *L)
{
    luaL_newmetatable(L, SESSION_MT);
    lua_createtable(L, 0, 3);
    ao_setfuncs(L, session_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, session_close);
    lua_setfield(L, -2, "__gc");
    /* Lua 5.4's to-be-closed variables; an ordinary field elsewhere. */
    lua_pushcfunction(L, session_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, session_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, session_new);
    lua_setfield(L, -2, "session");
}
