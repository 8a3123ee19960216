/*
 * A JSON decoder for the event loop: json_decode(text, null_value [, max_depth])
 * builds the same Lua value lua-cjson would, with every table created at its
 * final size, and refuses anything that is not strict RFC 8259 JSON in UTF-8.
 */
#ifndef AO_JSON_H
#define AO_JSON_H

#include "compat.h"

/* Adds json_decode to the module table on top of the stack. */
AO_HIDDEN void ao_json_register(lua_State *L);

#endif
