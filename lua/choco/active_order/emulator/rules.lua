-- The emulator's own reading of the contract: parses a status body (JSON or form
-- encoding) strictly and checks every rule, written independently of the C core
-- so that the two catch each other's mistakes. Pure Lua (cjson only): no ngx.
--
-- Field names in problems follow the notation of the body that arrived, with the
-- wire's 0-based indexes: `deeplinks[0].type` for JSON, `deeplinks[0][type]` for
-- form encoding.

local cjson = require "cjson.safe"

local byte, find, sub, match = string.byte, string.find, string.sub, string.match
local type, pairs, tostring, floor = type, pairs, tostring, math.floor

local rules = {}

rules.DEFAULT_LIMITS = {
    title = 30,               -- characters (code points), from the contract
    subtitle = 60,            -- the contract says "XX"; the same default as the core
    link = 2048,              -- bytes
    merchant_order_id = 255,  -- characters
    body_bytes = 65536,       -- request body
    history_per_order = 1000, -- accepted statuses kept per order (oldest dropped first)
}

rules.LINK_TYPES = { active_order_call_to_action = true, active_order_card = true }

local TOP_KEYS = { merchant_order_id = true, user_id = true, external_status = true, deeplinks = true,
    external_data = true }
local TOP_ORDER = { "merchant_order_id", "user_id", "external_status", "deeplinks", "external_data" }
local DATA_KEYS = { expired_at = true, title_active_order_card = true, title_call_to_action = true,
    subtitle_active_order_card = true, need_timer = true, countdown_timer = true }
local DATA_REQUIRED = { "expired_at", "title_active_order_card", "title_call_to_action", "need_timer",
    "countdown_timer" }
local LINK_KEYS = { link = true, type = true }
-- keys that may appear once in a whole body (link/type appear once per deeplink)
local UNIQUE_KEYS = { merchant_order_id = true, user_id = true, external_status = true, deeplinks = true,
    external_data = true, expired_at = true, title_active_order_card = true, title_call_to_action = true,
    subtitle_active_order_card = true, need_timer = true, countdown_timer = true }
local TEXT_KEYS = { "title_active_order_card", "title_call_to_action", "subtitle_active_order_card" }
local MAX_SAFE_INTEGER = 9007199254740991

local null = cjson.null
local decoder = cjson.new()
decoder.decode_invalid_numbers(false)   -- no NaN, Infinity or hex numbers
decoder.decode_max_depth(16)

--- Code points in a valid UTF-8 string, or nil when it is not valid UTF-8
--- (overlong forms, surrogates, values past U+10FFFF, truncated sequences).
function rules.utf8_length(s)
    local len = #s
    if not find(s, "[\128-\255]") then return len end
    local i, n = 1, 0
    while i <= len do
        local c = byte(s, i)
        if c < 0x80 then
            i = i + 1
        elseif c >= 0xC2 and c <= 0xDF then
            local c2 = byte(s, i + 1)
            if not c2 or c2 < 0x80 or c2 > 0xBF then return nil end
            i = i + 2
        elseif c >= 0xE0 and c <= 0xEF then
            local c2, c3 = byte(s, i + 1, i + 2)
            local lo, hi = 0x80, 0xBF
            if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
            if not c3 or c2 < lo or c2 > hi or c3 < 0x80 or c3 > 0xBF then return nil end
            i = i + 3
        elseif c >= 0xF0 and c <= 0xF4 then
            local c2, c3, c4 = byte(s, i + 1, i + 3)
            local lo, hi = 0x80, 0xBF
            if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
            if not c4 or c2 < lo or c2 > hi or c3 < 0x80 or c3 > 0xBF or c4 < 0x80 or c4 > 0xBF then
                return nil
            end
            i = i + 4
        else
            return nil
        end
        n = n + 1
    end
    return n
end

local DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

--- true when `s` is `YYYY-MM-DD HH:MM:SS` naming a real moment of the calendar;
--- else false, the problem code ("format" for the shape, "range" for a moment
--- the calendar does not have) and why.
function rules.valid_datetime(s)
    local y, mo, d, h, mi, se = match(s, "^(%d%d%d%d)%-(%d%d)%-(%d%d) (%d%d):(%d%d):(%d%d)$")
    if not y then return false, "format", "must be YYYY-MM-DD HH:MM:SS" end
    y, mo, d, h, mi, se = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(se)
    if y < 1 then return false, "range", "has no year 0000" end
    if mo < 1 or mo > 12 then return false, "range", "has no such month" end
    local days = DAYS[mo]
    if mo == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then days = 29 end
    if d < 1 or d > days then return false, "range", "has no such day" end
    if h > 23 or mi > 59 or se > 59 then return false, "range", "has no such time of day" end
    return true
end

local function is_array(t)
    local n = 0
    for k in pairs(t) do
        if type(k) ~= "number" then return false end
        n = n + 1
    end
    return n == #t
end

local function type_name(v)
    if v == null then return "null" end
    local t = type(v)
    if t == "table" then return is_array(v) and next(v) ~= nil and "array" or "object" end
    return t
end

-- Field naming in the notation of the body that arrived.
local NAMERS = {
    json = {
        top = function(k) return k end,
        data = function(k) return "external_data." .. k end,
        link = function(i, k) return "deeplinks[" .. (i - 1) .. "]" .. (k and ("." .. k) or "") end,
    },
    form = {
        top = function(k) return k end,
        data = function(k) return "external_data[" .. k .. "]" end,
        link = function(i, k) return "deeplinks[" .. (i - 1) .. "]" .. (k and ("[" .. k .. "]") or "") end,
    },
}

local function problem(list, field, code, message)
    list[#list + 1] = { field = field, code = code, message = field .. ": " .. message }
end

local function check_text(list, field, v, limit, what)
    if type(v) ~= "string" then
        return problem(list, field, "type", "expected a string, found " .. type_name(v))
    end
    if v == "" then return problem(list, field, "empty", "must not be empty") end
    local n = rules.utf8_length(v)
    if not n then return problem(list, field, "encoding", "is not valid UTF-8") end
    if limit and n > limit then
        return problem(list, field, "too_long", n .. " characters, the limit is " .. limit)
    end
    if what == "no_controls" and find(v, "%c") then
        return problem(list, field, "format", "must not contain control characters")
    end
    return true
end

local function check_link(list, field, v, limit)
    if type(v) ~= "string" then
        return problem(list, field, "type", "expected a string, found " .. type_name(v))
    end
    if v == "" then return problem(list, field, "empty", "must not be empty") end
    if #v > limit then return problem(list, field, "too_long", #v .. " bytes, the limit is " .. limit) end
    if find(v, "[%s%c]") then return problem(list, field, "format", "must not contain spaces or control characters") end
    if not rules.utf8_length(v) then return problem(list, field, "encoding", "is not valid UTF-8") end
    local scheme, rest = match(v, "^(%a[%w+.%-]*)://(.*)$")
    if not scheme or rest == "" then
        return problem(list, field, "format", "must be an absolute URL (scheme://...)")
    end
    scheme = scheme:lower()
    if (scheme == "http" or scheme == "https") and not match(rest, "^[^/?#@]+") then
        return problem(list, field, "format", "must name a host after " .. scheme .. "://")
    end
    return true
end

local function check_boolean(list, field, v)
    if type(v) ~= "boolean" then
        return problem(list, field, "type", "expected a boolean, found " .. type_name(v))
    end
    return true
end

--- Check a status table (already parsed). `reported` marks fields whose problem
--- the parser already reported. Returns the list of problems (empty when valid)
--- and a list of warnings.
function rules.check(status, cfg, notation, reported)
    local list, warnings = {}, {}
    local name = NAMERS[notation or "json"]
    local limits = cfg.limits
    reported = reported or {}

    for k in pairs(status) do
        if not TOP_KEYS[k] then
            problem(list, name.top(tostring(k)), "unknown_field", "is not a field of the contract")
        end
    end
    for _, k in ipairs(TOP_ORDER) do
        if status[k] == nil and not reported[name.top(k)] then
            problem(list, name.top(k), "required", "is required")
        end
    end

    local moid = status.merchant_order_id
    if moid ~= nil then check_text(list, "merchant_order_id", moid, limits.merchant_order_id, "no_controls") end

    local uid = status.user_id
    if uid ~= nil then
        if type(uid) ~= "number" then
            problem(list, "user_id", "type", "expected an integer, found " .. type_name(uid))
        elseif uid ~= uid or uid == math.huge or uid == -math.huge or floor(uid) ~= uid then
            problem(list, "user_id", "type", "expected an integer, found " .. tostring(uid))
        elseif uid < 1 then
            problem(list, "user_id", "range", "must be a positive integer, found " .. tostring(uid))
        elseif uid > MAX_SAFE_INTEGER then
            problem(list, "user_id", "range", "must be at most 2^53-1")
        end
    end

    local es = status.external_status
    if es ~= nil and check_text(list, "external_status", es, nil, "no_controls") == true then
        if not cfg.status_index[es] then
            problem(list, "external_status", "unregistered", "\"" .. es .. "\" is not a registered status")
        end
    end

    local links = status.deeplinks
    if links ~= nil then
        if type(links) ~= "table" or links == null or (next(links) ~= nil and not is_array(links)) then
            problem(list, "deeplinks", "type", "expected an array of {link, type}, found " .. type_name(links))
        elseif #links == 0 then
            problem(list, "deeplinks", "empty", "must list at least one deeplink")
        else
            local seen = {}
            for i = 1, #links do
                local entry = links[i]
                if type(entry) ~= "table" or entry == null or (next(entry) ~= nil and is_array(entry)) then
                    problem(list, name.link(i), "type", "expected an object {link, type}, found " .. type_name(entry))
                else
                    for k in pairs(entry) do
                        if not LINK_KEYS[k] then
                            problem(list, name.link(i, tostring(k)), "unknown_field", "is not a field of a deeplink")
                        end
                    end
                    if entry.link == nil then
                        if not reported[name.link(i, "link")] then
                            problem(list, name.link(i, "link"), "required", "is required")
                        end
                    else
                        check_link(list, name.link(i, "link"), entry.link, limits.link)
                    end
                    local t = entry.type
                    if t == nil then
                        if not reported[name.link(i, "type")] then
                            problem(list, name.link(i, "type"), "required", "is required")
                        end
                    elseif type(t) ~= "string" then
                        problem(list, name.link(i, "type"), "type", "expected a string, found " .. type_name(t))
                    elseif not rules.LINK_TYPES[t] then
                        problem(list, name.link(i, "type"), "enum",
                            "must be active_order_call_to_action or active_order_card, found \"" .. t .. "\"")
                    elseif seen[t] then
                        problem(list, name.link(i, "type"), "duplicate", "\"" .. t .. "\" is already used by "
                            .. name.link(seen[t]))
                    else
                        seen[t] = i
                    end
                end
            end
        end
    end

    local data = status.external_data
    if data ~= nil then
        if type(data) ~= "table" or data == null or (next(data) ~= nil and is_array(data)) then
            problem(list, "external_data", "type", "expected an object, found " .. type_name(data))
        else
            for k in pairs(data) do
                if not DATA_KEYS[k] then
                    problem(list, name.data(tostring(k)), "unknown_field", "is not a field of external_data")
                end
            end
            for _, k in ipairs(DATA_REQUIRED) do
                if data[k] == nil and not reported[name.data(k)] then
                    problem(list, name.data(k), "required", "is required")
                end
            end
            local exp = data.expired_at
            if exp ~= nil then
                if type(exp) ~= "string" then
                    problem(list, name.data("expired_at"), "type", "expected a string, found " .. type_name(exp))
                else
                    local ok, code, why = rules.valid_datetime(exp)
                    if not ok then
                        problem(list, name.data("expired_at"), code, why .. ", found \"" .. exp .. "\"")
                    end
                end
            end
            for _, k in ipairs { "title_active_order_card", "title_call_to_action" } do
                if data[k] ~= nil then check_text(list, name.data(k), data[k], limits.title) end
            end
            if data.subtitle_active_order_card ~= nil then
                check_text(list, name.data("subtitle_active_order_card"), data.subtitle_active_order_card,
                    limits.subtitle)
                if data.need_timer == true then
                    warnings[#warnings + 1] = name.data("subtitle_active_order_card")
                        .. ": the app shows the subtitle only when need_timer is false"
                end
            end
            for _, k in ipairs { "need_timer", "countdown_timer" } do
                if data[k] ~= nil then check_boolean(list, name.data(k), data[k]) end
            end
        end
    end
    return list, warnings
end

-- JSON allows only space, tab, CR and LF between tokens and no raw control
-- character inside strings; cjson lets the latter through, so look for them.
local function raw_control_problem(body)
    if find(body, "[%z\1-\8\11\12\14-\31]") then return "a raw control character" end
    if not find(body, "[\t\n\r]") then return nil end
    local i = 1
    while true do
        local q = find(body, '"', i, true)
        if not q then return nil end
        local j = q + 1
        while true do
            local k = find(body, '["\\]', j)
            if not k then return nil end
            if byte(body, k) == 92 then
                j = k + 2
            else
                local c = find(body, "[\t\n\r]", q + 1)
                if c and c < k then return "a raw tab or line break inside a string" end
                i = k + 1
                break
            end
        end
    end
end

local COUNTED = {}
for k in pairs(UNIQUE_KEYS) do COUNTED[#COUNTED + 1] = { k, '"' .. k .. '"' } end
COUNTED[#COUNTED + 1] = { "link", '"link"' }
COUNTED[#COUNTED + 1] = { "type", '"type"' }

-- How often each contract key appears as a key in the raw text: a quoted name
-- followed by a colon. A key inside a string value cannot match (its quotes
-- would be escaped), and a value that happens to equal a key name is not
-- followed by a colon. Plain searches: pattern classes over the whole body would
-- cost more than decoding it.
local function count_keys(body)
    local counts = {}
    for i = 1, #COUNTED do
        local key, needle = COUNTED[i][1], COUNTED[i][2]
        local n, at = 0, 1
        while true do
            local p = find(body, needle, at, true)
            if not p then break end
            at = p + #needle
            local c = byte(body, at)
            while c == 32 or c == 9 or c == 10 or c == 13 do
                at = at + 1
                c = byte(body, at)
            end
            if c == 58 then n = n + 1 end
        end
        counts[key] = n
    end
    return counts
end

local function colons(s)
    local n, at = 0, 1
    while true do
        local p = find(s, ":", at, true)
        if not p then return n end
        n = n + 1
        at = p + 1
    end
end

-- Colons the decoded value accounts for: one after every object key, plus those
-- inside strings.
local function decoded_colons(v)
    local n = 0
    for k, x in pairs(v) do
        if type(k) == "string" then n = n + 1 + colons(k) end
        local t = type(x)
        if t == "string" then
            n = n + colons(x)
        elseif t == "table" then
            n = n + decoded_colons(x)
        end
    end
    return n
end

--- Parse a JSON body strictly. Returns status, nil | nil, message (for HTTP 400),
--- and checks the raw text for what cjson cannot see: duplicate keys and the
--- written form of user_id. Those come back as problems in a second list.
function rules.parse_json(body)
    if not find(body, "^[ \t\r\n]*{") then return nil, "the body must be a JSON object" end
    local status, err = decoder.decode(body)
    if status == nil then return nil, "the body is not valid JSON: " .. tostring(err) end
    -- cjson lets raw control characters through inside strings; only the texts
    -- of external_data may legitimately hold (escaped) ones, so the slow scan of
    -- the raw body runs only when one of them does
    local data = status.external_data
    if type(data) == "table" then
        for _, k in ipairs(TEXT_KEYS) do
            local v = data[k]
            if type(v) == "string" and find(v, "%c") then
                local bad = raw_control_problem(body)
                if bad then return nil, "the body is not valid JSON: " .. bad end
                break
            end
        end
    end
    local extra = {}
    -- In valid JSON a colon is either after a key or inside a string: when the
    -- raw text has no more colons than the decoded value explains, no key was
    -- written twice, and the exact (slower) count is not needed.
    local counts = colons(body) == decoded_colons(status) and {} or count_keys(body)
    for key, n in pairs(counts) do
        if n > 1 and UNIQUE_KEYS[key] then
            local field = DATA_KEYS[key] and ("external_data." .. key) or key
            problem(extra, field, "duplicate", "the key appears " .. n .. " times")
        end
    end
    local links = status.deeplinks
    local n_links = type(links) == "table" and #links or 0
    for key in pairs(LINK_KEYS) do
        if (counts[key] or 0) > n_links then
            problem(extra, "deeplinks", "duplicate", "a deeplink has the key \"" .. key .. "\" more than once")
        end
    end
    if type(status.user_id) == "number" then
        local written = match(body, '"user_id"[ \t\r\n]*:[ \t\r\n]*([%-+%w.]+)')
        if written and not find(written, "^%-?[1-9]%d*$") and written ~= "0" and written ~= "-0" then
            problem(extra, "user_id", "type", "expected an integer written with digits only, found " .. written)
        end
    end
    return status, extra
end

local FORM_KEY_TOP = "^([%a_][%w_]*)$"
local FORM_KEY_DATA = "^external_data%[([%w_]+)%]$"
local FORM_KEY_LINK = "^deeplinks%[(%d+)%]%[([%w_]+)%]$"
local MAX_FORM_LINKS = 16

--- Turn decoded form arguments (name -> string | list of strings | true) into a
--- status table, converting user_id and the booleans. Returns status, problems,
--- reported (fields whose problem is already listed).
function rules.from_form(args)
    local status, list, reported = {}, {}, {}
    local links, data = nil, nil
    local function report(field, code, message)
        reported[field] = true
        problem(list, field, code, message)
    end
    for key, value in pairs(args) do
        if type(value) == "table" then
            report(key, "duplicate", "is given " .. #value .. " times")
        elseif value == true then
            report(key, "type", "has no value (no '=')")
        else
            local top = match(key, FORM_KEY_TOP)
            local dkey = not top and match(key, FORM_KEY_DATA)
            local index, lkey
            if not top and not dkey then index, lkey = match(key, FORM_KEY_LINK) end
            if top then
                if top == "deeplinks" or top == "external_data" then
                    report(key, "type", "must be sent as " .. (top == "deeplinks" and "deeplinks[0][link]"
                        or "external_data[expired_at]") .. " and so on")
                elseif top == "user_id" then
                    if find(value, "^[1-9]%d*$") then
                        if #value <= 16 and tonumber(value) <= MAX_SAFE_INTEGER then
                            status.user_id = tonumber(value)
                        else
                            report(key, "range", "must be at most 2^53-1")
                        end
                    elseif find(value, "^%-?%d+$") then
                        report(key, "range", "must be a positive integer without leading zeros, found " .. value)
                    else
                        report(key, "type", "expected an integer, found \"" .. value .. "\"")
                    end
                else
                    status[top] = value
                end
            elseif dkey then
                data = data or {}
                if dkey == "need_timer" or dkey == "countdown_timer" then
                    if value == "true" then
                        data[dkey] = true
                    elseif value == "false" then
                        data[dkey] = false
                    else
                        report(key, "type", "expected true or false, found \"" .. value .. "\"")
                    end
                else
                    data[dkey] = value
                end
            elseif index then
                local i = tonumber(index)
                if (#index > 1 and sub(index, 1, 1) == "0") or i >= MAX_FORM_LINKS then
                    report(key, "format", "index must be 0.." .. (MAX_FORM_LINKS - 1) .. " without leading zeros")
                else
                    links = links or {}
                    links[i + 1] = links[i + 1] or {}
                    links[i + 1][lkey] = value
                end
            else
                report(key, "unknown_field", "is not a field of the contract")
            end
        end
    end
    if links then
        local n = 0
        for i in pairs(links) do if i > n then n = i end end
        for i = 1, n do
            if links[i] == nil then
                report("deeplinks[" .. (i - 1) .. "]", "required",
                    "is missing: indexes must run 0, 1, ... without gaps")
                links[i] = {}
                reported["deeplinks[" .. (i - 1) .. "][link]"] = true
                reported["deeplinks[" .. (i - 1) .. "][type]"] = true
            end
        end
        status.deeplinks = links
    end
    if data then status.external_data = data end
    return status, list, reported
end

--- Registered statuses as name -> 1-based index (the external_status_id).
function rules.index_statuses(statuses)
    local index = {}
    for i, s in ipairs(statuses) do index[s] = i end
    return index
end

--- Merge the configured limits over the defaults.
function rules.limits(configured)
    local limits = {}
    for k, v in pairs(rules.DEFAULT_LIMITS) do limits[k] = v end
    if type(configured) == "table" then
        for k, v in pairs(configured) do
            if rules.DEFAULT_LIMITS[k] and type(v) == "number" and v > 0 then limits[k] = v end
        end
    end
    return limits
end

return rules
