-- core.json_decode against cjson.decode of the body the OpenResty example app
-- receives on POST /push: the contract's example status as cjson.encode writes
-- it (552 bytes, slashes escaped). Prints both times per decode and their
-- ratio (json_decode / cjson.decode, lower is better; target <= 0.5, as for
-- ao.encode against cjson.encode).
--   lua5.4 bench/decode.lua [--json] [--callgrind]   (LUA_PATH/LUA_CPATH as `make test` sets them)
--   --callgrind also counts instructions per decode under valgrind's callgrind
--   (deterministic, unlike the times): the run with 3000 decodes minus the run
--   with 1000, divided by 2000, so start-up and loading cancel out.
--   AO_BENCH_JSON=<file> appends the JSON line to that file.
--   (internal) --count NAME N: decode N times with one decoder and exit, for callgrind.

local core = require "choco.active_order.core"
local cjson = require "cjson"
local lib = require "bench.lib"

local clock = os.clock
local json_decode, cjson_decode, null = core.json_decode, cjson.decode, cjson.null

local body = cjson.encode(lib.example())

-- Deep equality, so the bench never times a decoder that gives something else.
local function same(a, b)
    if type(a) ~= "table" or type(b) ~= "table" then return a == b end
    for k, v in pairs(a) do if not same(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
end
assert(same(json_decode(body, null), cjson_decode(body)), "json_decode and cjson.decode disagree on the body")

local args = { ... }
local options = {}
for i = 1, #args do
    if args[i] == "--count" then
        local name, n = args[i + 1], assert(tonumber(args[i + 2]), "--count json_decode|cjson N")
        -- each decoder called straight from the loop, as an application would
        if name == "json_decode" then
            for _ = 1, n do json_decode(body, null) end
        else
            assert(name == "cjson", "--count json_decode|cjson N")
            for _ = 1, n do cjson_decode(body) end
        end
        return
    end
    options[args[i]] = true
end

-- Decodes per timed round: enough for one round of the slower decoder to take >= 50 ms.
local function calls_per_round(time_one_round)
    local n = 5000
    while time_one_round(n) * n < 0.05 do n = n * 2 end
    return n
end

-- One timed round per decoder, each called straight from its loop.
local rounds = {
    json_decode = function(n)
        local t0 = clock()
        for _ = 1, n do json_decode(body, null) end
        return (clock() - t0) / n
    end,
    cjson = function(n)
        local t0 = clock()
        for _ = 1, n do cjson_decode(body) end
        return (clock() - t0) / n
    end,
}

local interpreter = lib.interpreter()
local n = calls_per_round(rounds.cjson)

-- Paired rounds: each round times both decoders back to back, so load from
-- other processes falls on both alike; the best round of each is kept.
local json_s, cjson_s = math.huge, math.huge
for _ = 1, 9 do
    json_s = math.min(json_s, rounds.json_decode(n))
    cjson_s = math.min(cjson_s, rounds.cjson(n))
end
collectgarbage()

local function ns(seconds) return seconds * 1e9 end
local rows = {
    lib.row("core.json_decode, example status " .. #body .. " B (" .. interpreter .. ")", ns(json_s), "ns",
        "cjson.decode", ns(cjson_s), "<= 0.5"),
}
print(("%-12s json_decode %7.0f ns  cjson.decode %7.0f ns  ratio %.3f (target <= 0.5)  (%d B body, %d decodes x 9)")
    :format(interpreter, ns(json_s), ns(cjson_s), json_s / cjson_s, #body, n))

-- Instructions per decode under callgrind: this same script run with --count.
local function instructions(name, count)
    local lua = os.getenv("AO_LUA") or (arg and arg[-1]) or "lua5.4"
    local out = lib.capture(("valgrind --tool=callgrind --callgrind-out-file=%s/callgrind.out %s %s --count %s %d")
        :format(lib.workdir(), lib.sh_quote(lua), lib.sh_quote(arg and arg[0] or "bench/decode.lua"), name, count))
    local collected = out:match("Collected%s*:%s*(%d+)")
    return assert(tonumber(collected), "callgrind gave no count: " .. out)
end

local extra = { calls_per_round = n, rounds = 9, body_bytes = #body }
if options["--callgrind"] then
    local per = {}
    for _, name in ipairs { "json_decode", "cjson" } do
        per[name] = (instructions(name, 3000) - instructions(name, 1000)) / 2000
    end
    lib.cleanup()
    rows[#rows + 1] = lib.row("  callgrind instructions per decode (" .. interpreter .. ")", per.json_decode,
        "instr", "cjson.decode", per.cjson)
    extra.instructions = per
    print(("%-12s callgrind: json_decode %.0f instr  cjson.decode %.0f instr  ratio %.3f")
        :format(interpreter, per.json_decode, per.cjson, per.json_decode / per.cjson))
end

lib.emit("decode", rows, extra, options["--json"])
