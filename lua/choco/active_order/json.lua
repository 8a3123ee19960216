-- JSON text to Lua values, with the C core's decoder: every table is made at
-- its final size and strings are copied once, where lua-cjson grows its
-- tables key by key (on nginx's event loop, decoding a posted status with
-- lua-cjson cost more than checking and encoding it). The values are the ones
-- lua-cjson makes (null is cjson.null, both [] and {} are tables), except that
-- an integer is a Lua integer on 5.3 and later. The decoder takes strict
-- RFC 8259 JSON in UTF-8 only.

local core = require "choco.active_order.core"
local errors = require "choco.active_order.errors"
-- an instance of its own: another module's cjson settings never change how answers are read
local cjson = require("cjson.safe").new()

local type, error = type, error
local json_decode = core.json_decode
local cjson_decode = cjson.decode

local json = {}

-- What a JSON null becomes (the same light value lua-cjson uses, so code that
-- compares with cjson.null keeps working).
json.null = cjson.null

--- decode(text) -> value | nil, err (kind "decode", code "BAD_JSON", with
--- `position`, the byte where the text stops being JSON). Raises when text is
--- not a string.
function json.decode(text)
    if type(text) ~= "string" then error("decode_json expects a string, not " .. type(text), 2) end
    local value, reason, position = json_decode(text, json.null)
    if value == nil then
        return nil, errors.new("decode", "BAD_JSON", reason, { position = position })
    end
    return value
end

--- An answer of the gateway: value | nil. What the strict decoder refuses
--- (invalid UTF-8 in a string, say) is left to lua-cjson, so answers are read
--- exactly as leniently as before; only the common case is faster.
function json.decode_answer(text)
    local value = json_decode(text, json.null)
    if value == nil then value = cjson_decode(text) end
    return value
end

return json
