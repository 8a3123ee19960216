/*
 * luaopen_choco_active_order_core: the C face of the library. Each part adds
 * its functions to the module table; this file only assembles them, so that
 * the one exported symbol stays the only thing visible outside the module.
 */
#include "compat.h"
#include "payload.h"
#include "session.h"
#include "multi.h"
#include "clock.h"
#include "envelope.h"
#include "json.h"

AO_EXPORT int luaopen_choco_active_order_core(lua_State *L);

int luaopen_choco_active_order_core(lua_State *L)
{
    lua_newtable(L);
    ao_payload_register(L);
    ao_session_register(L);
    ao_multi_register(L);
    ao_clock_register(L);
    ao_envelope_register(L);
    ao_json_register(L);
    return 1;
}
