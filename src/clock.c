#include "clock.h"

#include <errno.h>
#include <time.h>

/* Seconds on a clock that never jumps with the wall clock, for deadlines and token expiry. */
static int clock_monotonic(lua_State *L)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        return luaL_error(L, "clock_gettime(CLOCK_MONOTONIC) failed");
    lua_pushnumber(L, (lua_Number)now.tv_sec + (lua_Number)now.tv_nsec / 1e9);
    return 1;
}

/*
 * Blocks the calling thread: fine for plain Lua and inside an nginx worker
 * thread, never to be called on nginx's event loop (the adapter passes
 * ngx.sleep there instead).
 */
static int clock_sleep(lua_State *L)
{
    lua_Number seconds = luaL_checknumber(L, 1);
    struct timespec wait;

    if (!(seconds >= 0) || seconds > 86400)
        return luaL_argerror(L, 1, "seconds must be between 0 and 86400");
    wait.tv_sec = (time_t)seconds;
    wait.tv_nsec = (long)((seconds - (lua_Number)wait.tv_sec) * 1e9);
    if (wait.tv_nsec > 999999999L)
        wait.tv_nsec = 999999999L;
    while (nanosleep(&wait, &wait) != 0 && errno == EINTR) {
    }
    return 0;
}

void ao_clock_register(lua_State *L)
{
    static const luaL_Reg functions[] = {
        { "monotonic", clock_monotonic },
        { "sleep", clock_sleep },
        { NULL, NULL },
    };
    ao_setfuncs(L, functions);
}
