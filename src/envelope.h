/*
 * The gateway's success answer recognised without decoding it: a strict JSON
 * check of the whole body that allocates nothing, for callers that do not want
 * the answer's data (push_many with keep_data = false).
 */
#ifndef AO_ENVELOPE_H
#define AO_ENVELOPE_H

#include <stddef.h>

#include "compat.h"

/* Containers nested deeper than this are not judged (the full decoder takes them). */
#define AO_ENVELOPE_MAX_DEPTH 64

typedef enum {
    AO_ENVELOPE_OK = 0,        /* an object whose one top-level "error_code" is the number 0 */
    AO_ENVELOPE_INVALID,       /* not strict JSON (RFC 8259, UTF-8), or not only JSON */
    AO_ENVELOPE_TOO_DEEP,      /* nested beyond AO_ENVELOPE_MAX_DEPTH */
    AO_ENVELOPE_NOT_OBJECT,    /* JSON, but not an object */
    AO_ENVELOPE_NO_ERROR_CODE, /* an object without a top-level "error_code" */
    AO_ENVELOPE_NOT_ZERO,      /* its error_code is something other than the literal 0 */
    AO_ENVELOPE_AMBIGUOUS      /* error_code twice, or a top-level key written with escapes */
} ao_envelope_status;

/*
 * Judges `len` bytes. Only AO_ENVELOPE_OK is a verdict a caller may act on
 * without decoding: every other status means "decode it and read it fully",
 * and is stricter than any decoder's success (0.0 or -0 are NOT_ZERO here even
 * though they equal 0), so a caller that falls back loses no case.
 */
AO_HIDDEN ao_envelope_status ao_envelope_check(const char *body, size_t len);

/* Adds envelope_ok(body) -> true | false, reason to the module table on top of the stack. */
AO_HIDDEN void ao_envelope_register(lua_State *L);

#endif
