#include "session.h"

void ao_session_register(lua_State *L)
{
    (void)L;
}
