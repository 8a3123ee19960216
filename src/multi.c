#include "multi.h"

void ao_multi_register(lua_State *L)
{
    (void)L;
}
