/* libcurl multi: many requests in flight over kept-alive connections, for batches. */
#ifndef AO_MULTI_H
#define AO_MULTI_H

#include "compat.h"

/* Adds the multi constructor to the module table on top of the stack. */
AO_HIDDEN void ao_multi_register(lua_State *L);

#endif
