/* The status walk: every rule of the contract checked and JSON written in one pass. */
#ifndef AO_PAYLOAD_H
#define AO_PAYLOAD_H

#include "compat.h"

/* Adds validate/encode (and their helpers) to the module table on top of the stack. */
AO_HIDDEN void ao_payload_register(lua_State *L);

#endif
