-- ao.encode (which validates every field) against cjson.encode (which
-- validates nothing) of the contract's example, in one run of one
-- interpreter. Prints both times per call and their ratio; the target is a
-- ratio of at most 0.5.
--   lua5.4 bench/encode.lua [--json]      (LUA_PATH/LUA_CPATH as `make test` sets them)
--   AO_BENCH_JSON=<file> appends the JSON line to that file.

local ao = require "choco.active_order"
local cjson = require "cjson"
local lib = require "bench.lib"

local clock = os.clock

local example = lib.example

-- Calls per timed round: enough for one round of the slowest function to take >= 50 ms.
local function calls_per_round(f, status)
    local n = 10000
    while true do
        local t0 = clock()
        for _ = 1, n do f(status) end
        if clock() - t0 >= 0.05 then return n end
        n = n * 2
    end
end

local function round(f, status, n)
    local t0 = clock()
    for _ = 1, n do f(status) end
    return (clock() - t0) / n
end

local status = example()
local body = assert(ao.encode(status))
local decoded = cjson.decode(body)
assert(decoded.external_data.title_active_order_card == status.external_data.title_active_order_card)

local encode, validate, cjson_encode = ao.encode, ao.validate, cjson.encode
local interpreter = (jit and jit.version) or _VERSION
local n = calls_per_round(cjson_encode, status)

-- Rounds interleave the three functions so that load from other processes on
-- the machine falls on all of them alike; the best round of each is kept.
local ao_s, validate_s, cjson_s = math.huge, math.huge, math.huge
for _ = 1, 9 do
    ao_s = math.min(ao_s, round(encode, status, n))
    cjson_s = math.min(cjson_s, round(cjson_encode, status, n))
    validate_s = math.min(validate_s, round(validate, status, n))
end
local ratio = ao_s / cjson_s

local as_json = false
for i = 1, select("#", ...) do
    if select(i, ...) == "--json" then as_json = true end
end

-- One JSON line in the shape bench/report.lua reads (bench/lib.lua).
local function ns(seconds) return seconds * 1e9 end
lib.emit("encode", {
    lib.row("ao.encode, contract example (" .. interpreter .. ")", ns(ao_s), "ns", "cjson.encode", ns(cjson_s),
        "<= 0.5"),
    lib.row("  ao.validate alone (" .. interpreter .. ")", ns(validate_s), "ns", "cjson.encode", ns(cjson_s)),
}, { calls_per_round = n, rounds = 9 }, as_json)

if not as_json then
    print(("%-12s ao.encode %7.0f ns  ao.validate %7.0f ns  cjson.encode %7.0f ns  ratio %.3f (target <= 0.5)")
        :format(interpreter, ao_s * 1e9, validate_s * 1e9, cjson_s * 1e9, ratio))
end
