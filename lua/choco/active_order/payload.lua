-- validate and encode over the C core, the problem codes, and compile for
-- callers (the client) that check their options once, up front. Options tables
-- are compiled once (statuses, zone and limits parsed into a C value) and the
-- result is cached per options table, so the hot path never re-reads them.

local core = require "choco.active_order.core"
local errors = require "choco.active_order.errors"

local type, error = type, error
local compile_options = core.compile_options

local payload = {}

--- The problem codes a status can get, each with what it means. Stable: callers branch on them.
payload.CODES = {
    required = "a required field is missing (nil)",
    type = "a value of the wrong Lua type (a string where a number belongs, a numeric string, "
        .. "a number with a fraction, NaN, \"true\" for true, ...)",
    empty = "an empty string, or an empty deeplinks list",
    too_long = "longer than the limit (titles and subtitle in characters, links in bytes)",
    format = "a string of the wrong shape (date-time, URL, control characters in an identifier)",
    enum = "not one of the allowed values (deeplinks[i].type)",
    unknown_field = "a key the contract does not have (with a did-you-mean hint), or a key that "
        .. "makes deeplinks not a plain list",
    duplicate = "a deeplink type given more than once",
    range = "a number or date-time out of range (user_id < 1, beyond 2^53 - 1, 2023-02-29, 24:00:00)",
    encoding = "not valid UTF-8 (overlong form, surrogate, truncated sequence, beyond U+10FFFF)",
    unregistered = "external_status is not in options.statuses",
    conflict = "a subtitle with need_timer = true (the app shows the subtitle only without the timer)",
}

--- The defaults: utc_offset, limits, max_problems.
payload.DEFAULTS = core.payload_defaults

--- Compile an options table once: returns the compiled options, or nil and an
--- error (kind "config", code "BAD_OPTION"). Raises when opts or one of its
--- fields has a wrong type.
function payload.compile(opts)
    if opts ~= nil and type(opts) ~= "table" then
        error("options must be a table, not a " .. type(opts), 2)
    end
    local compiled, message = compile_options(opts)
    if not compiled then
        return nil, errors.new("config", "BAD_OPTION", message)
    end
    return compiled
end

--- validate(status [, opts]) -> true | nil, problems
--- encode(status [, opts]) -> body | nil, problems
--- opts: nil, an options table (compiled on first use and cached per table, in
--- C, weakly) or what compile returned. The C functions are exported as they
--- are: a Lua wrapper would cost a call on the hot path.
payload.validate = core.validate
payload.encode = core.encode

return payload
