-- Runs a mapping script with nothing of the host in reach: a fresh global
-- table holding copies of the harmless libraries, no bytecode, and a count
-- hook that stops the script after a fixed number of VM instructions or when
-- the Lua heap grows past a cap.
--
-- The string metatable is shared by every string in the process, and its
-- __index is the real `string` table, so `("").dump` would reach string.dump
-- from inside any sandbox. While the script runs, __index points at the safe
-- copy instead, and it is put back however the script ends.

local sandbox = {}

local floor = math.floor

local DEFAULT_INSTRUCTION_LIMIT = 1000000
local DEFAULT_MEMORY_LIMIT_KB = 64 * 1024
-- `("x"):rep(1e9)` costs one instruction; cap what one call can allocate.
local MAX_REP_BYTES = 1048576

local function copy(lib, without)
    local t = {}
    for k, v in pairs(lib) do
        if not (without and without[k]) then t[k] = v end
    end
    return t
end

local function safe_string_library()
    local s = copy(string, { dump = true })
    local rep = string.rep
    s.rep = function(str, n, sep)
        local piece = #tostring(str) + (sep and #tostring(sep) or 0)
        if type(n) == "number" and n * piece > MAX_REP_BYTES then
            error("string.rep: result over " .. MAX_REP_BYTES .. " bytes", 2)
        end
        return rep(str, n, sep)
    end
    return s
end

-- No pcall/xpcall (a script could swallow the instruction-limit error), no
-- coroutines (a hook is per coroutine), no metatables, no raw access.
local function libraries()
    local env = {
        assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
        select = select, tonumber = tonumber, tostring = tostring, type = type,
        unpack = table.unpack or unpack,
        math = copy(math, { randomseed = true }),
        string = safe_string_library(),
        table = copy(table),
    }
    if utf8 then env.utf8 = copy(utf8) end
    return env
end

local load_chunk
if setfenv then
    load_chunk = function(text, chunkname, env)
        local fn, err = loadstring(text, chunkname)
        if fn then setfenv(fn, env) end
        return fn, err
    end
else
    load_chunk = function(text, chunkname, env)
        return load(text, chunkname, "t", env)
    end
end

--- Fresh copies of the libraries a script may use (string without dump).
sandbox.libraries = libraries

--- Compile `text` as a script whose globals are `env`. Returns the function,
--- or nil and a message.
function sandbox.compile(text, chunkname, env)
    if text:byte(1) == 27 then return nil, "precompiled scripts are not accepted" end
    return load_chunk(text, chunkname, env)
end

--- Run `fn` (from sandbox.compile) under the limits and with the string
--- metatable pointing at `safe_string` (from sandbox.libraries()).
--- opts: chunkname (as given to compile), instruction_limit, memory_limit_kb.
--- Returns true, or false and the error (a message string, or a table
--- {limit = "instructions" | "memory", message} when a limit stopped it).
function sandbox.run(fn, safe_string, opts)
    local limit = opts.instruction_limit or DEFAULT_INSTRUCTION_LIMIT
    local memory_kb = opts.memory_limit_kb or DEFAULT_MEMORY_LIMIT_KB
    local chunkname = opts.chunkname
    if jit then jit.off(fn, true) end -- compiled traces do not call count hooks
    local string_mt = getmetatable("")
    local real_index = string_mt.__index
    local old_hook, old_mask, old_count = debug.gethook()
    local gc, getinfo = collectgarbage, debug.getinfo
    local memory_cap = gc("count") + memory_kb
    local used = 0
    local stopped
    -- The hook runs after every instruction: one `s = s .. s` doubles a
    -- string, so memory is only bounded if it is checked that often.
    local function on_count()
        used = used + 1
        local over
        if used > limit then
            over = "instructions"
        elseif gc("count") > memory_cap then
            gc("collect")
            if gc("count") > memory_cap then over = "memory" end
        end
        -- Raise only inside the script's own code: host code (the vocabulary,
        -- or this function's last lines after pcall) must never see the error.
        if over and getinfo(2, "S").source == chunkname then
            stopped = over
            if over == "instructions" then
                error("the script ran for over " .. limit .. " instructions (an endless loop?)", 2)
            end
            error("the script uses over " .. floor(memory_kb / 1024) .. " MiB of memory", 2)
        end
    end
    string_mt.__index = safe_string
    debug.sethook(on_count, "", 1)
    local ok, err = pcall(fn)
    if old_hook then debug.sethook(old_hook, old_mask, old_count) else debug.sethook() end
    string_mt.__index = real_index
    if not ok and stopped and type(err) == "string" then
        err = { limit = stopped, message = err }
    end
    return ok, err
end

return sandbox
