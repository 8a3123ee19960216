-- Mapping scripts: which internal order state shows which card. A script is
-- written by operations staff in a small vocabulary (base_link, defaults,
-- status, field), run once in a sandbox, checked as a whole (every problem
-- with its file and line), and compiled into templates that render events
-- into status tables the C core has validated.

local errors = require "choco.active_order.errors"
local template = require "choco.active_order.template"
local sandbox = require "choco.active_order.rules.sandbox"
local time = require "choco.active_order.time"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local concat, sort, floor = table.concat, table.sort, math.floor

local rules = {}

local TITLE_LIMIT = 30

-- What a status block may hold; defaults may hold the shared part of it.
local STATUS_KEYS = { "when", "title", "button", "subtitle", "card_link", "button_link",
                      "timer", "expires", "final", "rank", "cancel" }
local DEFAULT_KEYS = { "title", "button", "subtitle", "card_link", "button_link", "timer", "expires" }
local SETTINGS = { "base_link" }
local WORDS = { "status", "defaults", "field", "base_link" }

local TIMERS = {
    none = { need_timer = false, countdown_timer = false },
    count_up = { need_timer = true, countdown_timer = false },
    count_down = { need_timer = true, countdown_timer = true },
}
local TIMER_NAMES = { "none", "count_up", "count_down" }

local function set_of(list)
    local s = {}
    for _, v in ipairs(list) do s[v] = true end
    return s
end
local STATUS_KEY_SET, DEFAULT_KEY_SET = set_of(STATUS_KEYS), set_of(DEFAULT_KEYS)

local function distance(a, b)
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
        local cur = { [0] = i }
        for j = 1, #b do
            local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
            cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        end
        prev = cur
    end
    return prev[#b]
end

--- " (did you mean 'x'?)" for the closest candidate, or "".
local function did_you_mean(word, candidates)
    local best, best_d
    word = tostring(word)
    for _, c in ipairs(candidates) do
        local d = distance(word:lower(), c)
        if not best_d or d < best_d then best, best_d = c, d end
    end
    if best and best_d <= math.max(2, floor(#word / 2)) then
        return " (did you mean '" .. best .. "'?)"
    end
    return ""
end

local function utf8_length(s)
    local _, n = s:gsub("[^\128-\191]", "")
    return n
end

local function quoted(s)
    return "\"" .. tostring(s) .. "\""
end

local function is_absolute(link)
    return link:match("^%a[%w+.-]*://[^/?#{}]+") ~= nil
end

--- Join a link written relative to base_link: "?x" and "#x" are appended,
--- anything else is joined with exactly one "/".
local function join_link(base, link)
    if is_absolute(link) or not base then return link end
    local first = link:sub(1, 1)
    if first == "?" or first == "#" then return base .. link end
    return (base:gsub("/+$", "")) .. "/" .. (link:gsub("^/+", ""))
end

local function is_field_path(name)
    for segment in (name .. "."):gmatch("([^.]*)%.") do
        if not segment:match("^[%w_]+$") then return false end
    end
    return true
end

-- Loading ----------------------------------------------------------------

local Loader = {}
Loader.__index = Loader

local function new_loader(text, name)
    local lines = {}
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    return setmetatable({
        name = name, lines = lines, problems = {},
        declared = {}, defaults = nil, settings = {}, field_refs = setmetatable({}, { __mode = "k" }),
        unknown = {},
    }, Loader)
end

function Loader:problem(line, code, message)
    self.problems[#self.problems + 1] = { file = self.name, line = line or 0, code = code, message = message }
end

-- The line of `key = ...` at or after `from` (tables do not remember lines).
function Loader:key_line(from, key)
    local pattern = "%f[%w_]" .. key:gsub("%p", "%%%0") .. "%f[^%w_]%s*="
    for i = from or 1, #self.lines do
        if self.lines[i]:find(pattern) then return i end
    end
    return from or 0
end

-- The script's line that called into the vocabulary (level 3: the script,
-- above this helper and the vocabulary function).
local function caller_line()
    local info = debug.getinfo(3, "l")
    return info and info.currentline or 0
end

function Loader:environment()
    local loader = self
    local vocabulary = {}
    local libraries = sandbox.libraries()
    self.libraries = libraries
    local UNKNOWN
    UNKNOWN = function() return UNKNOWN end
    self.UNKNOWN = UNKNOWN

    vocabulary.field = function(name)
        local line = caller_line()
        local ref = { field = name }
        if type(name) ~= "string" or not is_field_path(name) then
            loader:problem(line, "bad_value", "field needs the name of an event field in quotes, "
                .. "such as field \"eta\" or field \"delivery.eta\"")
            ref.field = nil
        end
        loader.field_refs[ref] = { name = ref.field, line = line }
        return ref
    end

    vocabulary.defaults = function(spec)
        local line = caller_line()
        if loader.defaults then
            loader:problem(line, "duplicate", "defaults are already given on line " .. loader.defaults.line)
        elseif type(spec) ~= "table" then
            loader:problem(line, "bad_value", "write defaults { key = value, ... }")
        else
            loader.defaults = { spec = spec, line = line }
        end
    end

    vocabulary.status = function(name)
        local line = caller_line()
        local entry = { name = name, line = line, spec = nil }
        loader.declared[#loader.declared + 1] = entry
        return function(spec)
            entry.spec = spec
            entry.body_given = true
        end
    end

    -- Nothing is stored in the environment itself, so every assignment to a
    -- global passes through __newindex and is checked.
    return setmetatable({}, {
        __index = function(_, key)
            if vocabulary[key] then return vocabulary[key] end
            if libraries[key] ~= nil then return libraries[key] end
            if key == "base_link" and loader.settings.base_link then return loader.settings.base_link.value end
            local line = caller_line()
            local id = tostring(key) .. ":" .. line
            if not loader.unknown[id] then
                loader.unknown[id] = true
                loader:problem(line, "unknown_name", "unknown word '" .. tostring(key) .. "'"
                    .. did_you_mean(key, WORDS))
            end
            return UNKNOWN
        end,
        __newindex = function(t, key, value)
            local line = caller_line()
            if key == "defaults" and type(value) == "table" then
                if loader.defaults then
                    loader:problem(line, "duplicate", "defaults are already given on line " .. loader.defaults.line)
                else
                    loader.defaults = { spec = value, line = line }
                end
            elseif key == "base_link" then
                loader.settings.base_link = { value = value, line = line }
            elseif key == "status" or key == "field" or key == "defaults" then
                loader:problem(line, "bad_value", "'" .. key .. "' is a word of the script and cannot be set")
            elseif type(key) == "string" and key:match("^[%a_][%w_]*$") and type(value) == "function" then
                -- a helper function the script defines for itself
                rawset(t, key, value)
            else
                loader:problem(line, "unknown_setting", "unknown setting '" .. tostring(key) .. "'"
                    .. did_you_mean(key, SETTINGS) .. " (use 'local' for your own names)")
            end
        end,
    })
end

-- Checks of one value, shared by status blocks and defaults.

function Loader:text_template(value, line, label, limit)
    if value == self.UNKNOWN then return nil end
    if type(value) ~= "string" then
        self:problem(line, "bad_value", label .. " must be text in quotes, not a " .. type(value))
        return nil
    end
    local compiled, err = template.compile(value, { kind = "text" })
    if not compiled then
        self:problem(line, "template", label .. ": " .. err.message)
        return nil
    end
    if limit then
        local n = utf8_length(compiled.fixed_text)
        if compiled.is_fixed and n > limit then
            self:problem(line, "too_long", label .. " " .. quoted(value) .. " is " .. n
                .. " characters; the limit is " .. limit)
        elseif n > limit then
            self:problem(line, "too_long", label .. " " .. quoted(value) .. " is " .. n
                .. " characters even without its placeholders; the limit is " .. limit)
        end
    end
    return compiled
end

function Loader:link_template(value, line, label, base)
    if value == self.UNKNOWN then return nil end
    if type(value) ~= "string" then
        self:problem(line, "bad_value", label .. " must be text in quotes, not a " .. type(value))
        return nil
    end
    local link = join_link(base, value)
    if not is_absolute(link) then
        self:problem(line, "relative_link", label .. " " .. quoted(value) .. " cannot become an absolute URL"
            .. (base and "" or " (no base_link is set; write it as https://host/...)"))
        return nil
    end
    local compiled, err = template.compile(link, { kind = "link" })
    if not compiled then
        self:problem(line, "template", label .. ": " .. err.message .. " in " .. quoted(link))
        return nil
    end
    return compiled
end

function Loader:expiry(value, line, label)
    if value == self.UNKNOWN then return nil end
    local ref = type(value) == "table" and self.field_refs[value]
    if ref then
        if not ref.name then return nil end
        local path = {}
        for part in ref.name:gmatch("[^.]+") do path[#path + 1] = part end
        return { field = ref.name, path = path }
    end
    local seconds, why = time.duration(value)
    if not seconds then
        self:problem(line, "bad_value", label .. ": " .. why .. ", or field \"name\" for a time in the event")
        return nil
    end
    return { seconds = seconds }
end

function Loader:timer(value, line, label)
    if value == self.UNKNOWN then return nil end
    if TIMERS[value] then return value end
    self:problem(line, "bad_value", label .. " " .. quoted(value) .. " is not a timer; write "
        .. "\"none\", \"count_up\" or \"count_down\"" .. did_you_mean(value, TIMER_NAMES))
    return nil
end

function Loader:check_keys(spec, line, allowed_set, allowed_list, where)
    local keys = {}
    for key in pairs(spec) do keys[#keys + 1] = key end
    sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, key in ipairs(keys) do
        if type(key) ~= "string" then
            self:problem(line, "bad_value", where .. " holds a value without a key ("
                .. tostring(spec[key]) .. "); write key = value")
        elseif not allowed_set[key] then
            self:problem(self:key_line(line, key), "unknown_key", "unknown key '" .. key .. "' in " .. where
                .. did_you_mean(key, allowed_list))
        end
    end
end

function Loader:base_link()
    local setting = self.settings.base_link
    if not setting then return nil end
    local value = setting.value
    if value == self.UNKNOWN then return nil end
    if type(value) ~= "string" or not is_absolute(value) then
        self:problem(setting.line, "relative_link", "base_link must be an absolute URL such as "
            .. "\"https://rahmetapp.kz/webapp/100\", not " .. (type(value) == "string" and quoted(value)
            or "a " .. type(value)))
        return nil
    end
    return value
end

function Loader:build(opts)
    local base = self:base_link()
    local defaults, default_lines = {}, {}
    if self.defaults then
        local d = self.defaults
        self:check_keys(d.spec, d.line, DEFAULT_KEY_SET, DEFAULT_KEYS, "defaults")
        for _, key in ipairs(DEFAULT_KEYS) do
            if d.spec[key] ~= nil then
                defaults[key] = d.spec[key]
                default_lines[key] = self:key_line(d.line, key)
            end
        end
    end
    local registered = opts.statuses and set_of(opts.statuses)

    local compiled = { statuses = {}, order = {}, by_state = {}, state_lines = {} }
    local previous_rank = 0
    for _, entry in ipairs(self.declared) do
        local name, line, spec = entry.name, entry.line, entry.spec
        local where
        if type(name) ~= "string" or name == "" then
            self:problem(line, "bad_value", "a status needs its name in quotes: status \"paid\" { ... }")
            name = nil
        else
            where = "status " .. quoted(name)
            if compiled.statuses[name] then
                self:problem(line, "duplicate", where .. " is already described on line "
                    .. compiled.statuses[name].line)
            elseif registered and not registered[name] then
                local list = {}
                for _, s in ipairs(opts.statuses) do list[#list + 1] = s end
                self:problem(line, "unregistered", where .. " is not registered with Choco"
                    .. did_you_mean(name, list) .. "; registered: " .. concat(list, ", "))
            end
        end
        where = where or "status"
        if not entry.body_given or type(spec) ~= "table" then
            self:problem(line, "bad_value", where .. " needs its description in braces: status \"name\" { ... }")
        else
            self:check_keys(spec, line, STATUS_KEY_SET, STATUS_KEYS, where)
            local st = { name = name, line = line }
            -- A value, its line, and a label naming where it came from.
            local function get(key)
                if spec[key] ~= nil then return spec[key], self:key_line(line, key), where .. ", " .. key end
                if defaults[key] ~= nil then return defaults[key], default_lines[key], "defaults, " .. key end
                return nil, line, where .. ", " .. key
            end
            local function required(key)
                local v, l, label = get(key)
                if v == nil then
                    self:problem(line, "missing", where .. " has no " .. key
                        .. (DEFAULT_KEY_SET[key] and " (give it here or in defaults)" or ""))
                end
                return v, l, label
            end

            local v, l, label = required("title")
            if v ~= nil then st.title = self:text_template(v, l, label, TITLE_LIMIT) end
            v, l, label = required("button")
            if v ~= nil then st.button = self:text_template(v, l, label, TITLE_LIMIT) end
            v, l, label = get("subtitle")
            if v ~= nil then st.subtitle = self:text_template(v, l, label) end
            for _, key in ipairs { "card_link", "button_link" } do
                v, l, label = required(key)
                if v ~= nil then st[key] = self:link_template(v, l, label, base) end
            end
            local timer_value, timer_line, timer_label = get("timer")
            st.timer = timer_value == nil and "none" or self:timer(timer_value, timer_line, timer_label)
            if st.timer and st.timer ~= "none" and get("subtitle") ~= nil then
                local _, subtitle_line, subtitle_label = get("subtitle")
                local blame = spec.timer ~= nil and timer_line or subtitle_line
                self:problem(blame, "subtitle_with_timer", where .. ": a subtitle is shown only without a timer, "
                    .. "but timer is " .. quoted(st.timer) .. " (subtitle from " .. subtitle_label
                    .. "); remove one of them")
            end
            v, l, label = get("expires")
            if v == nil then
                self:problem(line, "missing_expiry", where .. " has no expires: write e.g. expires = \"30m\" "
                    .. "here or in defaults")
            else
                st.expires = self:expiry(v, l, label)
            end
            for _, key in ipairs { "final", "cancel" } do
                if spec[key] ~= nil and type(spec[key]) ~= "boolean" then
                    self:problem(self:key_line(line, key), "bad_value", where .. ", " .. key
                        .. " must be true or false")
                end
                st[key] = spec[key] == true
            end
            -- Without a rank, a status comes right after the one written before it.
            st.rank = previous_rank + 1
            if spec.rank ~= nil then
                if type(spec.rank) ~= "number" then
                    self:problem(self:key_line(line, "rank"), "bad_value", where .. ", rank must be a number")
                else
                    st.rank = spec.rank
                end
            end
            previous_rank = st.rank

            local when = spec.when
            if when == nil then when = name and { name } or {} end
            if type(when) == "string" then when = { when } end
            local when_line = spec.when ~= nil and self:key_line(line, "when") or line
            if type(when) ~= "table" or #when == 0 then
                self:problem(when_line, "bad_value", where .. ", when must be an internal state in quotes "
                    .. "or a list of them: when = {\"paid\", \"confirmed\"}")
                when = {}
            end
            st.states = {}
            for _, state in ipairs(when) do
                if type(state) ~= "string" and type(state) ~= "number" then
                    self:problem(when_line, "bad_value", where .. ", when holds a " .. type(state)
                        .. "; internal states are text in quotes")
                else
                    state = tostring(state)
                    local owner = compiled.by_state[state]
                    if owner and owner ~= name then
                        self:problem(when_line, "duplicate_state", "internal state " .. quoted(state)
                            .. " is mapped to status " .. quoted(owner) .. " (line "
                            .. compiled.state_lines[state] .. ") and to " .. where)
                    elseif not owner and name then
                        compiled.by_state[state] = name
                        compiled.state_lines[state] = when_line
                        st.states[#st.states + 1] = state
                    end
                end
            end
            if name and not compiled.statuses[name] then
                compiled.statuses[name] = st
                compiled.order[#compiled.order + 1] = name
            end
        end
    end
    if #self.declared == 0 then
        self:problem(1, "missing", "the script describes no status; write status \"name\" { ... }")
    end
    return compiled
end

local function script_error_problem(loader, err, code)
    local message = type(err) == "table" and err.message or tostring(err)
    local line, text = message:match(":(%d+): (.*)$")
    if not line then
        line, text = message:match("^[^:]*:(%d+):%s*(.*)$")
    end
    loader:problem(tonumber(line) or 0, code, text or message)
end

local Rules = {}
Rules.__index = Rules

--- Load a mapping script from text. `name` is used in messages (a file name).
--- opts: statuses (registered list), utc_offset (seconds or "+05:00"), limits
--- (passed to validation), instruction_limit (default 1000000), memory_limit_kb
--- (default 65536: how far the Lua heap may grow while the script runs).
--- Returns the rules, or nil and an error whose `problems` lists every problem
--- as {file, line, code, message}, sorted by line.
function rules.load_string(text, name, opts)
    if type(text) ~= "string" then error("rules.load_string: text must be a string", 2) end
    name = name or "rules"
    opts = opts or {}
    local offset, offset_err = time.utc_offset(opts.utc_offset)
    if not offset then error("rules.load_string: " .. offset_err, 2) end

    local loader = new_loader(text, name)
    local env = loader:environment()
    local fn, syntax_err = sandbox.compile(text, "@" .. name, env)
    local compiled
    if not fn then
        script_error_problem(loader, syntax_err, "syntax")
    else
        local ok, err = sandbox.run(fn, loader.libraries.string, { chunkname = "@" .. name,
            instruction_limit = opts.instruction_limit, memory_limit_kb = opts.memory_limit_kb })
        if not ok then
            local limit = type(err) == "table" and err.limit
            script_error_problem(loader, err, limit and (limit == "memory" and "memory_limit" or "instruction_limit")
                or "runtime")
        end
        compiled = loader:build(opts)
    end

    local problems = loader.problems
    if #problems > 0 then
        for i, p in ipairs(problems) do p.index = i end
        sort(problems, function(a, b)
            if a.line ~= b.line then return a.line < b.line end
            return a.index < b.index
        end)
        for _, p in ipairs(problems) do p.index = nil end
        local first = problems[1]
        return nil, errors.new("rules", "invalid_script", name .. ": " .. #problems
            .. (#problems == 1 and " problem" or " problems") .. ", first: line " .. first.line
            .. ": " .. first.message, { problems = problems, file = name })
    end

    return setmetatable({
        name = name,
        statuses = compiled.statuses,
        order = compiled.order,
        by_state = compiled.by_state,
        utc_offset = offset,
        validate_opts = { statuses = opts.statuses, utc_offset = time.offset_text(offset), limits = opts.limits },
    }, Rules)
end

--- Load a mapping script from a file; see rules.load_string.
function rules.load(path, opts)
    if type(path) ~= "string" then error("rules.load: path must be a string", 2) end
    local file, err = io.open(path, "rb")
    if not file then
        return nil, errors.new("rules", "unreadable", "cannot read " .. path .. ": " .. tostring(err),
            { file = path, problems = { { file = path, line = 0, code = "unreadable", message = tostring(err) } } })
    end
    local text = file:read("*a")
    file:close()
    return rules.load_string(text, path, opts)
end

--- "file:line: message" for one problem.
function rules.format_problem(p)
    return p.file .. ":" .. p.line .. ": " .. p.message
end

-- Rendering -----------------------------------------------------------------

local MAX_EXACT = 2 ^ 53

local function whole_number(v)
    if type(v) == "string" and v:match("^%d+$") then v = tonumber(v) end
    if type(v) ~= "number" or v ~= floor(v) or v < 0 or v >= MAX_EXACT then return nil end
    if math.tointeger then return math.tointeger(v) end
    return v
end

local function lookup(values, path)
    local v = values
    for _, key in ipairs(path) do
        if type(v) ~= "table" then return nil end
        v = v[key]
    end
    if type(v) == "userdata" or v == "" then return nil end
    return v
end

--- The names of the statuses, in their order (rank).
function Rules:status_names()
    local names = {}
    for _, name in ipairs(self.order) do names[#names + 1] = name end
    sort(names, function(a, b) return self.statuses[a].rank < self.statuses[b].rank end)
    return names
end

--- The status for an internal state, or nil.
function Rules:status_for(state)
    if state == nil then return nil end
    return self.by_state[tostring(state)]
end

--- Turn an event into a status table validated by the C core.
--- event.state is the internal state; event.order_id (or merchant_order_id),
--- event.user_id and any other fields fill the templates. `now` (seconds since
--- the epoch, default os.time()) is the start of a duration expiry.
--- Returns the status, or nil and an error (kind "rules") naming the status,
--- the field and the problem.
function Rules:render(event, now)
    if type(event) ~= "table" then error("render: event must be a table, got " .. type(event), 2) end
    if now ~= nil and type(now) ~= "number" then error("render: now must be a number", 2) end
    local state = event.state
    if state == nil or type(state) == "userdata" then
        return nil, errors.new("rules", "no_state", "the event has no \"state\" (the internal order state)")
    end
    local name = self:status_for(state)
    if not name then
        return nil, errors.new("rules", "unknown_state", "no status is mapped to the internal state "
            .. quoted(state) .. " in " .. self.name, { state = state })
    end
    local st = self.statuses[name]
    local order_id = event.merchant_order_id
    if order_id == nil or type(order_id) == "userdata" then order_id = event.order_id end
    if type(order_id) == "userdata" then order_id = nil end
    -- Templates may name the order either way, whichever the event uses.
    local values = setmetatable({}, { __index = function(_, key)
        if key == "order_id" or key == "merchant_order_id" then return order_id end
        return event[key]
    end })
    local problems = {}
    local function fail(field, message)
        problems[#problems + 1] = { field = field, message = message }
    end
    local function fill(compiled, field, limit)
        if not compiled then return nil end
        local s, err = compiled:render(values)
        if not s then fail(field, err.message) return nil end
        if limit and utf8_length(s) > limit then
            fail(field, quoted(s) .. " is " .. utf8_length(s) .. " characters after filling; the limit is " .. limit)
        end
        return s
    end
    local title = fill(st.title, "title", TITLE_LIMIT)
    local button = fill(st.button, "button", TITLE_LIMIT)
    local subtitle = fill(st.subtitle, "subtitle")
    local card_link = fill(st.card_link, "card_link")
    local button_link = fill(st.button_link, "button_link")

    local order_text = order_id ~= nil and template.value_text(order_id)
    if not order_text or order_text == "" then
        fail("merchant_order_id", "the event has no order_id (or merchant_order_id)")
    end
    local user_id = whole_number(event.user_id)
    if not user_id then
        fail("user_id", event.user_id == nil and "the event has no user_id"
            or "user_id " .. quoted(event.user_id) .. " is not a whole number")
    end

    local expired_at
    if st.expires.seconds then
        expired_at = time.format((now or os.time()) + st.expires.seconds, self.utc_offset)
    else
        local value = lookup(event, st.expires.path)
        if value == nil then
            fail("expires", "the event has no " .. st.expires.field .. " (the expiry time)")
        else
            local epoch, why = time.parse(value, self.utc_offset)
            if not epoch then
                fail("expires", st.expires.field .. ": " .. why)
            else
                expired_at = time.format(epoch, self.utc_offset)
            end
        end
    end

    local function failure(code, extra)
        local parts = {}
        for _, p in ipairs(problems) do parts[#parts + 1] = p.field .. ": " .. p.message end
        local fields = { problems = problems, status = name, state = state }
        for k, v in pairs(extra or {}) do fields[k] = v end
        return nil, errors.new("rules", code, "status " .. quoted(name) .. ", " .. concat(parts, "; "), fields)
    end
    if #problems > 0 then return failure("render") end

    local timer = TIMERS[st.timer]
    local status = {
        merchant_order_id = order_text,
        user_id = user_id,
        external_status = name,
        deeplinks = {
            { link = button_link, type = "active_order_call_to_action" },
            { link = card_link, type = "active_order_card" },
        },
        external_data = {
            expired_at = expired_at,
            title_active_order_card = title,
            title_call_to_action = button,
            subtitle_active_order_card = subtitle,
            need_timer = timer.need_timer,
            countdown_timer = timer.countdown_timer,
        },
    }
    local ok, invalid = require("choco.active_order").validate(status, self.validate_opts)
    if not ok then
        for _, p in ipairs(invalid or {}) do fail(p.field or "?", p.message or tostring(p.code)) end
        if #problems == 0 then fail("status", "rejected by validation") end
        return failure("invalid_status", { validation = invalid })
    end
    return status
end

--- Whether sending status `to` after status `from` is a step forward: any
--- status may follow nothing (from = nil) and may be sent again; nothing
--- follows a final status; a `cancel` status follows any status that is not
--- final; otherwise the rank must grow. Returns a boolean and, when false, why.
function Rules:allows(from, to)
    local b = self.statuses[to]
    if not b then return false, "unknown status " .. quoted(to) end
    if from == nil then return true end
    local a = self.statuses[from]
    if not a then return false, "unknown status " .. quoted(from) end
    if from == to then return true end
    if a.final then return false, quoted(from) .. " is final" end
    if b.cancel then return true end
    if b.rank > a.rank then return true end
    return false, quoted(to) .. " comes before " .. quoted(from)
end

rules.TITLE_LIMIT = TITLE_LIMIT
rules.TIMERS = TIMER_NAMES

return rules
