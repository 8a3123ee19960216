/*
 * Every difference between Lua 5.1, LuaJIT 2.1, 5.3 and 5.4 that the C module
 * cares about lives here, so the rest of src/ is written against one API.
 */
#ifndef AO_COMPAT_H
#define AO_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#include "export.h"

/* Length of a table's sequence part or a string, without metamethods. */
#if LUA_VERSION_NUM >= 502
#define ao_rawlen(L, i) lua_rawlen((L), (i))
#else
#define ao_rawlen(L, i) lua_objlen((L), (i))
#endif

/*
 * Integers: 5.3+ has a real integer subtype; 5.1 and LuaJIT only have
 * doubles, so an integer there is a double with no fraction within 2^53.
 */
#if LUA_VERSION_NUM >= 503
#define AO_HAVE_INTEGER_SUBTYPE 1
#define ao_isinteger(L, i) lua_isinteger((L), (i))
#else
#define AO_HAVE_INTEGER_SUBTYPE 0
#define ao_isinteger(L, i) 0
#endif

/* Register functions into the table on top of the stack (luaL_setfuncs with no upvalues). */
static inline void ao_setfuncs(lua_State *L, const luaL_Reg *reg)
{
    for (; reg->name != NULL; reg++) {
        lua_pushcfunction(L, reg->func);
        lua_setfield(L, -2, reg->name);
    }
}

/* Attach a metatable from the registry to the userdata on top of the stack. */
static inline void ao_setmetatable(lua_State *L, const char *tname)
{
    luaL_getmetatable(L, tname);
    lua_setmetatable(L, -2);
}

/* Userdata allocation: 5.4 takes a number of user values. */
#if LUA_VERSION_NUM >= 504
#define ao_newuserdata(L, size) lua_newuserdatauv((L), (size), 0)
#else
#define ao_newuserdata(L, size) lua_newuserdata((L), (size))
#endif

/* luaL_testudata appeared in 5.2 (LuaJIT has it too, but plain 5.1 does not). */
static inline void *ao_testudata(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    if (p == NULL || !lua_getmetatable(L, idx))
        return NULL;
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2))
        p = NULL;
    lua_pop(L, 2);
    return p;
}

/* Absolute stack index, so helpers can push without shifting relative ones. */
#define ao_absindex(L, i) \
    (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)

#endif
