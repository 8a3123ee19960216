-- Templates for card titles and deep links: `{order_id}`, `{courier.name}`,
-- `{courier.name|Курьер}` (a default after `|`), `{{` and `}}` for literal
-- braces. A template is parsed once; rendering only walks the parsed parts.
-- In a link, each value is percent-encoded for the part of the URL it lands
-- in (path, query, fragment), decided at compile time from the fixed text
-- before it; in a title it is inserted as text.

local errors = require "choco.active_order.errors"

local type, tostring, floor, huge = type, tostring, math.floor, math.huge
local format, byte, concat = string.format, string.byte, table.concat

local template = {}

-- Characters kept as they are, per position. Everything else, including every
-- byte of a non-ASCII character, becomes %XX with upper-case hex (RFC 3986).
--   unreserved = ALPHA DIGIT - . _ ~
--   path: pchar = unreserved / sub-delims / ":" / "@"   (so / ? # % and space are encoded)
--   query: unreserved and ! $ ' ( ) * , ; : @ / ?       (& = + # % and space are encoded)
--   fragment: unreserved / sub-delims / ":" / "@" / "/" / "?"   (# % and space are encoded)
local function keep_set(extra)
    local keep = {}
    for c = byte "A", byte "Z" do keep[c] = true end
    for c = byte "a", byte "z" do keep[c] = true end
    for c = byte "0", byte "9" do keep[c] = true end
    for c in ("-._~" .. extra):gmatch(".") do keep[byte(c)] = true end
    return keep
end

local KEEP = {
    path = keep_set("!$&'()*+,;=:@"),
    query = keep_set("!$'()*,;:@/?"),
    fragment = keep_set("!$&'()*+,;=:@/?"),
}
template.KEEP = KEEP

local function encoder(keep)
    local escape = {}
    for c = 0, 255 do
        escape[string.char(c)] = keep[c] and string.char(c) or format("%%%02X", c)
    end
    return function(s) return (s:gsub(".", escape)) end
end

local ENCODE = {
    path = encoder(KEEP.path),
    query = encoder(KEEP.query),
    fragment = encoder(KEEP.fragment),
    text = function(s) return s end,
}

--- Percent-encode `s` for a URL position: "path", "query" or "fragment".
function template.encode(s, position)
    return ENCODE[position](s)
end

local MAX_EXACT = 2 ^ 53

--- A value as text: integral numbers without a fraction ("7", never "7.0"),
--- other numbers with up to 14 significant digits. nil for what cannot be text.
local function value_text(v)
    local t = type(v)
    if t == "string" then return v end
    if t == "number" then
        if v ~= v or v == huge or v == -huge then return nil, "is not a finite number" end
        if v == floor(v) and v > -MAX_EXACT and v < MAX_EXACT then
            return format("%d", v)
        end
        return format("%.14g", v)
    end
    if t == "boolean" then return tostring(v) end
    return nil, "is a " .. t .. ", not a value"
end
template.value_text = value_text

-- A value is absent when it is nil, JSON null (a userdata sentinel) or an empty string.
local function lookup(values, path)
    local v = values
    for i = 1, #path do
        if type(v) ~= "table" then return nil end
        local key = path[i]
        local found = v[key]
        if found == nil and key:match("^%d+$") then found = v[tonumber(key)] end
        v = found
    end
    if type(v) == "userdata" or v == "" then return nil end
    return v
end

-- Where a placeholder lands in a link, given the fixed text before it.
local function advance_position(position, literal)
    for i = 1, #literal do
        local c = literal:sub(i, i)
        if c == "#" then
            position = "fragment"
        elseif c == "?" and position ~= "fragment" then
            position = "query"
        end
    end
    return position
end

-- Positions are counted in characters (UTF-8 code points), as a person counts them.
local function compile_error(text, byte_pos, message)
    local _, before = text:sub(1, byte_pos - 1):gsub("[^\128-\191]", "")
    local pos = before + 1
    local e = errors.new("rules", "template", message .. " (at character " .. pos .. ")",
        { position = pos, template = text })
    return nil, e
end

local Compiled = {}
Compiled.__index = Compiled

--- Compile a template. opts.kind is "text" (default) or "link".
--- Returns the compiled template, or nil and an error with `position` (1-based, in characters).
function template.compile(text, opts)
    if type(text) ~= "string" then
        error("template.compile: text must be a string, got " .. type(text), 2)
    end
    local kind = opts and opts.kind or "text"
    if kind ~= "text" and kind ~= "link" then
        error("template.compile: kind must be \"text\" or \"link\", got " .. tostring(kind), 2)
    end
    local parts, names, literal = {}, {}, {}
    local i, n = 1, #text
    local position = "text"
    -- Placeholders may not stand in the scheme or host: the host decides where
    -- the user is sent, so it is always written out.
    local authority_end = 0
    if kind == "link" then
        position = "path"
        local prefix = text:match("^%a[%w+.-]*://")
        if prefix then authority_end = text:find("[/?#]", #prefix + 1) or n + 1 end
    end
    local function flush()
        if #literal > 0 then
            local s = concat(literal)
            parts[#parts + 1] = s
            if kind == "link" then position = advance_position(position, s) end
            literal = {}
        end
    end
    while i <= n do
        local c = text:sub(i, i)
        if c == "{" and text:sub(i + 1, i + 1) == "{" then
            literal[#literal + 1] = "{"
            i = i + 2
        elseif c == "}" then
            if text:sub(i + 1, i + 1) ~= "}" then
                return compile_error(text, i, "a lone '}' (write '}}' for a literal brace)")
            end
            literal[#literal + 1] = "}"
            i = i + 2
        elseif c == "{" then
            local close = text:find("}", i + 1, true)
            local nested = text:find("{", i + 1, true)
            if not close or (nested and nested < close) then
                return compile_error(text, i, "a '{' without its closing '}' (write '{{' for a literal brace)")
            end
            local inside = text:sub(i + 1, close - 1)
            local name, default = inside:match("^%s*([^|]-)%s*|(.*)$")
            if not name then name = inside:match("^%s*(.-)%s*$") end
            if name == "" then
                return compile_error(text, i, "an empty placeholder '{" .. inside .. "}'")
            end
            local path = {}
            for segment in (name .. "."):gmatch("([^.]*)%.") do
                if not segment:match("^[%a_][%w_]*$") and not segment:match("^%d+$") then
                    return compile_error(text, i, "'" .. name .. "' is not a field name "
                        .. "(letters, digits and _, parts joined with '.')")
                end
                path[#path + 1] = segment
            end
            flush()
            if i < authority_end then
                return compile_error(text, i, "a placeholder in the scheme or host of a link; "
                    .. "only the path, query and fragment can be filled")
            end
            parts[#parts + 1] = { name = name, path = path, default = default,
                                  encode = ENCODE[position], position = position }
            names[#names + 1] = name
            i = close + 1
        else
            local next_brace = text:find("[{}]", i)
            local stop = next_brace and next_brace - 1 or n
            literal[#literal + 1] = text:sub(i, stop)
            i = stop + 1
        end
    end
    flush()
    local fixed = {}
    for k = 1, #parts do
        if type(parts[k]) == "string" then fixed[#fixed + 1] = parts[k] end
    end
    return setmetatable({
        text = text,
        kind = kind,
        parts = parts,
        placeholders = names,
        fixed_text = concat(fixed), -- the template without its placeholders
        is_fixed = #names == 0,
    }, Compiled)
end

--- Fill the template from `values` (a table; nested fields by dotted names).
--- Returns the string, or nil and an error naming every missing placeholder.
function Compiled:render(values)
    if type(values) ~= "table" then
        error("render: values must be a table, got " .. type(values), 2)
    end
    local out, missing, bad = {}, {}, {}
    local parts = self.parts
    for k = 1, #parts do
        local part = parts[k]
        if type(part) == "string" then
            out[k] = part
        else
            local v = lookup(values, part.path)
            local s, why
            if v == nil then
                s = part.default
                if s == nil then missing[#missing + 1] = "{" .. part.name .. "}" end
            else
                s, why = value_text(v)
                if not s then bad[#bad + 1] = "{" .. part.name .. "} " .. why end
            end
            out[k] = s and part.encode(s) or ""
        end
    end
    if #missing > 0 or #bad > 0 then
        local msg = {}
        if #missing > 0 then msg[#msg + 1] = "missing value for " .. concat(missing, ", ") end
        if #bad > 0 then msg[#msg + 1] = concat(bad, ", ") end
        return nil, errors.new("rules", #missing > 0 and "missing_value" or "bad_value",
            concat(msg, "; "), { missing = missing, template = self.text })
    end
    return concat(out)
end

function Compiled:__tostring()
    return "template(" .. self.kind .. "): " .. self.text
end

return template
