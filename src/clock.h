/* A monotonic clock and a sleep for the retry policy, without LuaSocket. */
#ifndef AO_CLOCK_H
#define AO_CLOCK_H

#include "compat.h"

/* Adds monotonic() and sleep(seconds) to the module table on top of the stack. */
AO_HIDDEN void ao_clock_register(lua_State *L);

#endif
