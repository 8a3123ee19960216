#include "payload.h"

void ao_payload_register(lua_State *L)
{
    (void)L;
}
