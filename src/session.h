/* libcurl: one kept-alive easy handle per session userdata. */
#ifndef AO_SESSION_H
#define AO_SESSION_H

#include "compat.h"

/* Adds the session constructor to the module table on top of the stack. */
AO_HIDDEN void ao_session_register(lua_State *L);

#endif
