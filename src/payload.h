/* The status walk: every rule of the contract checked and JSON written in one pass. */
#ifndef AO_PAYLOAD_H
#define AO_PAYLOAD_H

#include "compat.h"

/*
 * Adds to the module table on top of the stack:
 *   compile_options(opts) -> options | nil, message   (wrong types raise)
 *   validate(status [, opts]) -> true | nil, problems
 *   encode(status [, opts])   -> body | nil, problems
 *   payload_defaults          { utc_offset, max_problems, limits = {...} }
 * opts: nil, an options table (compiled once, cached weakly per table) or compiled options.
 */
AO_HIDDEN void ao_payload_register(lua_State *L);

#endif
