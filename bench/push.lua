-- Sequential client:push against its two anchors, in one run, all sending the
-- contract's example as the same PUT to the same emulator over one connection:
--   wrk -t1 -c1            the ceiling for one connection
--   bench/c/easy_loop.c    plain C, one reused libcurl easy handle: the floor of any libcurl client
-- Targets: client:push >= 0.9x the C loop and >= 0.7x wrk. Then the client's
-- peak resident memory over 100,000 pushes (a fresh process; target <= 10 MB).
-- Also client:push_many (16 in flight, 20,000 statuses of distinct orders) against the
-- plain C multi loop (bench/c/multi_loop.c, 16 reused handles) and wrk -t2 -c16; target 0.9x the C loop.
--   lua5.4 bench/push.lua [--json] [--seconds N] [--rounds N] [--memory-pushes N] [--many N]
--   (LUA_PATH/LUA_CPATH as `make test` sets them; AO_BENCH_JSON=<file> appends the JSON line)
-- The measurements alternate over several paired rounds, and each ratio is the
-- median of the rounds' ratios, so that a burst of load from elsewhere on the
-- machine hurts neither side of a pair alone.

local ao = require "choco.active_order"
local cjson = require "cjson"
local lib = require "bench.lib"

local args = { seconds = 2, rounds = 5, memory_pushes = 100000, many = 20000, json = false }
do
    local argv = { ... }
    local i = 1
    while i <= #argv do
        local a = argv[i]
        if a == "--json" then args.json = true
        elseif a == "--seconds" then i = i + 1; args.seconds = assert(tonumber(argv[i]), "--seconds N")
        elseif a == "--rounds" then i = i + 1; args.rounds = assert(tonumber(argv[i]), "--rounds N")
        elseif a == "--memory-pushes" then
            i = i + 1
            args.memory_pushes = assert(tonumber(argv[i]), "--memory-pushes N")
        elseif a == "--many" then i = i + 1; args.many = assert(tonumber(argv[i]), "--many N")
        elseif a == "--child-memory" then args.child = true
        else error("unknown argument " .. a) end
        i = i + 1
    end
end

local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }
local CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"

local example = lib.example

-- VmHWM: peak resident set (libraries' file-backed pages included); RssAnon:
-- what the process itself allocated (Lua heap, libcurl's and OpenSSL's buffers).
local memory_kb = lib.memory_kb

local function new_client(url)
    return assert(ao.new { base_url = url, client_id = CLIENT_ID, client_secret = CLIENT_SECRET,
                           statuses = STATUSES })
end

-- The memory child: a fresh interpreter that only pushes, then reports its peak.
if args.child then
    local url = assert(os.getenv("AO_BENCH_URL"))
    local loaded = memory_kb() -- the library and cjson loaded, no client yet
    local c = new_client(url)
    local status = example()
    assert(c:push(status))
    local before = memory_kb()
    for _ = 1, args.memory_pushes do assert(c:push(status)) end
    local after = memory_kb()
    -- push_many over as many statuses, made on demand by a proxy list (where the
    -- interpreter honours __len), so that what is measured is the batch's own memory
    local many_peak
    local honours_len = #setmetatable({}, { __len = function() return 1 end }) == 1
    if honours_len then
        local one = example()
        local list = setmetatable({}, {
            __len = function() return args.memory_pushes end,
            __index = function(_, i)
                one.merchant_order_id = "MANY-" .. i
                return one
            end,
        })
        local _, summary = c:push_many(list, { keep_data = false })
        assert(summary.sent == args.memory_pushes, "push_many failed some statuses")
        many_peak = memory_kb().peak
    end
    io.write(cjson.encode { loaded_rss_kb = loaded.rss, pss_kb = after.pss,
                            before_peak_kb = before.peak, peak_kb = after.peak, anon_kb = after.anon,
                            before_anon_kb = before.anon, file_kb = after.file, many_peak_kb = many_peak }, "\n")
    os.exit(0)
end

local sh_quote, write_file = lib.sh_quote, lib.write_file

local function capture(cmd)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("*a")
    p:close()
    return out
end

local root = os.getenv("AO_ROOT") or "."
local workdir = lib.workdir() -- private: other runs on the machine write their own token

local launcher = require "choco.active_order.emulator.launcher"
local emu = assert(launcher.start { statuses = STATUSES, client_id = CLIENT_ID, client_secret = CLIENT_SECRET })
local ok, failure = xpcall(function()
    local client = new_client(emu.url)
    local status = example()
    local body = assert(client:encode(status))
    assert(client:push(status))
    local bearer = client.tokens.store:get()
    local status_url = emu.url .. "/orders/v2/preorder/external/status"
    local body_file = workdir .. "/push_body.json"
    write_file(body_file, body)

    -- the plain C loops, built with the same libcurl
    local easy_loop = lib.build_anchor("easy_loop")
    local multi_loop = lib.build_anchor("multi_loop")

    -- wrk sends the same PUT with the same headers
    local wrk_script = workdir .. "/push_wrk.lua"
    write_file(wrk_script, ([[
wrk.method = "PUT"
wrk.body = %q
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["Authorization"] = %q
]]):format(body, "Bearer " .. bearer))

    local function client_rate(seconds)
        local clock = require("choco.active_order.core").monotonic
        local n, started = 0, clock()
        local deadline = started + seconds
        repeat
            for _ = 1, 100 do assert(client:push(status)) end
            n = n + 100
        until clock() >= deadline
        return n / (clock() - started)
    end

    local function wrk_rate(seconds)
        local out = capture("wrk -t1 -c1 -d" .. math.floor(seconds) .. "s -s " .. sh_quote(wrk_script) .. " "
            .. sh_quote(status_url) .. " 2>&1")
        assert(not out:find("Non%-2xx"), "wrk got errors:\n" .. out)
        return (assert(tonumber(out:match("Requests/sec:%s*([%d.]+)")), "wrk said:\n" .. out))
    end

    local function c_rate(seconds)
        local out = capture(sh_quote(easy_loop) .. " " .. sh_quote(status_url) .. " " .. sh_quote(bearer) .. " "
            .. sh_quote(body_file) .. " " .. seconds .. "s 2>&1")
        local result = cjson.decode(out:match("{.*}") or "null")
        assert(type(result) == "table" and result.failed == 0, "easy_loop said:\n" .. out)
        return result.requests_per_second
    end

    -- push_many: distinct orders (statuses of one order would be sent one by one)
    local many_list = {}
    for i = 1, args.many do
        local st = example()
        st.merchant_order_id = "MANY-" .. i
        many_list[i] = st
    end
    local function many_rate()
        local clock = require("choco.active_order.core").monotonic
        local t0 = clock()
        local _, summary = client:push_many(many_list, { max_in_flight = 16, keep_data = false })
        assert(summary.sent == args.many, "push_many failed some statuses")
        return args.many / (clock() - t0)
    end
    local function c_multi_rate()
        local out = capture(sh_quote(multi_loop) .. " " .. sh_quote(status_url) .. " " .. sh_quote(bearer) .. " "
            .. sh_quote(body_file) .. " " .. args.many .. " 16 2>&1")
        local result = cjson.decode(out:match("{.*}") or "null")
        assert(type(result) == "table" and result.failed == 0, "multi_loop said:\n" .. out)
        return result.requests_per_second
    end
    local function wrk16_rate(seconds)
        local out = capture("wrk -t2 -c16 -d" .. math.floor(seconds) .. "s -s " .. sh_quote(wrk_script) .. " "
            .. sh_quote(status_url) .. " 2>&1")
        assert(not out:find("Non%-2xx"), "wrk got errors:\n" .. out)
        return (assert(tonumber(out:match("Requests/sec:%s*([%d.]+)")), "wrk said:\n" .. out))
    end

    -- Paired rounds: each round measures the client and its anchors back to
    -- back (which goes first alternates), and a ratio is the median of the
    -- rounds' ratios, so that load from elsewhere, which drifts over seconds,
    -- falls on both sides of each pair. Rates shown are the rounds' medians.
    local rates = { client = {}, wrk = {}, c = {}, many = {}, c_multi = {}, wrk16 = {} }
    local ratios = { c = {}, wrk = {}, many_c = {}, many_wrk = {} }
    client_rate(0.5) -- warm up the emulator and the connection
    for r = 1, args.rounds do
        if r % 2 == 1 then
            rates.c[r] = c_rate(args.seconds)
            rates.client[r] = client_rate(args.seconds)
            rates.wrk[r] = wrk_rate(args.seconds)
        else
            rates.wrk[r] = wrk_rate(args.seconds)
            rates.client[r] = client_rate(args.seconds)
            rates.c[r] = c_rate(args.seconds)
        end
        ratios.c[r] = rates.client[r] / rates.c[r]
        ratios.wrk[r] = rates.client[r] / rates.wrk[r]
        if args.many > 0 then
            rates.c_multi[r] = c_multi_rate()
            rates.many[r] = many_rate()
            rates.wrk16[r] = wrk16_rate(args.seconds)
            ratios.many_c[r] = rates.many[r] / rates.c_multi[r]
            ratios.many_wrk[r] = rates.many[r] / rates.wrk16[r]
        end
    end
    local best, ratio = {}, {}
    for k, v in pairs(rates) do best[k] = #v > 0 and lib.median(v) or 0 end
    for k, v in pairs(ratios) do ratio[k] = #v > 0 and lib.median(v) or nil end
    client:close()

    local lua = os.getenv("AO_LUA") or "lua5.4"
    local mem_out = capture("AO_BENCH_URL=" .. sh_quote(emu.url) .. " " .. lua .. " "
        .. sh_quote(root .. "/bench/push.lua") .. " --child-memory --memory-pushes " .. args.memory_pushes)
    local mem = cjson.decode(mem_out:match("{.*}") or "null")
    assert(type(mem) == "table", "the memory child said:\n" .. mem_out)

    return {
        bench = "push",
        interpreter = (jit and jit.version) or _VERSION,
        client_per_s = math.floor(best.client + 0.5),
        c_easy_loop_per_s = math.floor(best.c + 0.5),
        wrk_per_s = math.floor(best.wrk + 0.5),
        ratio_c = lib.round(ratio.c, 3),
        ratio_wrk = lib.round(ratio.wrk, 3),
        c_over_wrk = lib.round(best.c / best.wrk, 3),
        target_c = 0.9, target_wrk = 0.7,
        peak_rss_kb = mem.peak_kb, peak_rss_before_pushes_kb = mem.before_peak_kb,
        rss_after_loading_kb = mem.loaded_rss_kb, pss_kb = mem.pss_kb,
        rss_anon_kb = mem.anon_kb, rss_anon_before_pushes_kb = mem.before_anon_kb, rss_file_kb = mem.file_kb,
        memory_pushes = args.memory_pushes, target_rss_kb = 10240,
        push_many_peak_rss_kb = mem.many_peak_kb,
        many_statuses = args.many,
        push_many_per_s = math.floor(best.many + 0.5),
        c_multi_loop_per_s = math.floor(best.c_multi + 0.5),
        wrk_t2_c16_per_s = math.floor(best.wrk16 + 0.5),
        many_ratio_c = args.many > 0 and lib.round(ratio.many_c, 3) or nil,
        many_ratio_wrk = args.many > 0 and lib.round(ratio.many_wrk, 3) or nil,
        per_round = rates, ratio_is = "median of the rounds' paired ratios",
        target_many_c = 0.9,
    }
end, debug.traceback)
lib.finish("bench/push.lua", emu, ok, failure)

local r = failure
-- the rows bench/report.lua prints (one table for `make bench`; bench/lib.lua's format)
local seq = "sequential client:push (" .. r.interpreter .. ")"
r.rows = {
    lib.row(seq, r.client_per_s, "req/s", "plain C easy loop, one handle", r.c_easy_loop_per_s, ">= 0.9",
        r.ratio_c),
    lib.row(seq, r.client_per_s, "req/s", "wrk -t1 -c1", r.wrk_per_s, ">= 0.7", r.ratio_wrk),
}
if args.many > 0 then
    local many = "push_many, 16 in flight, " .. r.many_statuses .. " (" .. r.interpreter .. ")"
    r.rows[#r.rows + 1] = lib.row(many, r.push_many_per_s, "req/s", "plain C multi loop, 16 handles",
        r.c_multi_loop_per_s, ">= 0.9", r.many_ratio_c)
    r.rows[#r.rows + 1] = lib.row(many, r.push_many_per_s, "req/s", "wrk -t2 -c16", r.wrk_t2_c16_per_s, nil,
        r.many_ratio_wrk)
end
local mem_figure = "peak resident memory, " .. r.memory_pushes .. " sequential pushes (" .. r.interpreter .. ")"
r.rows[#r.rows + 1] = lib.row(mem_figure, r.peak_rss_kb / 1024, "MB", nil, nil, "<= 10")
r.rows[#r.rows + 1] = lib.row("  growth over the process after loading the library",
    (r.peak_rss_kb - r.rss_after_loading_kb) / 1024, "MB")
r.rows[#r.rows + 1] = lib.row("  process's own memory at the end (RssAnon)", r.rss_anon_kb / 1024, "MB")
if r.pss_kb then
    r.rows[#r.rows + 1] = lib.row("  proportional (Pss: shared library pages divided among their users)",
        r.pss_kb / 1024, "MB")
end
if r.push_many_peak_rss_kb then
    r.rows[#r.rows + 1] = lib.row("  peak resident after push_many of " .. r.memory_pushes .. " more",
        r.push_many_peak_rss_kb / 1024, "MB")
end
r.interpreter = nil -- lib.emit names it "lua"
local line = lib.emit("push", r.rows, r, false)
r.interpreter = lib.interpreter()
if args.json then
    print(line)
else
    print(("sequential push (%s), median of %d paired rounds of %g s"):format(r.interpreter, args.rounds,
        args.seconds))
    print(("  client:push          %8d /s"):format(r.client_per_s))
    print(("  plain C easy loop    %8d /s   push/C   = %.3f (target >= 0.9)"):format(r.c_easy_loop_per_s, r.ratio_c))
    print(("  wrk -t1 -c1          %8d /s   push/wrk = %.3f (target >= 0.7); C/wrk = %.3f")
        :format(r.wrk_per_s, r.ratio_wrk, r.c_over_wrk))
    if args.many > 0 then
        print(("push_many, 16 in flight, %d statuses"):format(r.many_statuses))
        print(("  client:push_many     %8d /s"):format(r.push_many_per_s))
        print(("  plain C multi loop   %8d /s   many/C   = %.3f (target >= 0.9)"):format(r.c_multi_loop_per_s,
            r.many_ratio_c))
        print(("  wrk -t2 -c16         %8d /s   many/wrk = %.3f"):format(r.wrk_t2_c16_per_s, r.many_ratio_wrk))
    end
    print("memory")
    print(("  peak RSS over %d pushes: %.1f MB (target <= 10 MB); %.1f MB after loading the library,"
        .. " %.1f MB before the pushes"):format(r.memory_pushes, r.peak_rss_kb / 1024,
        r.rss_after_loading_kb / 1024, r.peak_rss_before_pushes_kb / 1024))
    print(("    of which the process's own (RssAnon) %.1f MB (%.1f MB before the pushes),"
        .. " shared libraries' pages (RssFile) %.1f MB"):format(
        r.rss_anon_kb / 1024, r.rss_anon_before_pushes_kb / 1024, r.rss_file_kb / 1024))
    if r.push_many_peak_rss_kb then
        print(("  peak RSS after push_many of %d statuses (made on demand): %.1f MB"):format(
            r.memory_pushes, r.push_many_peak_rss_kb / 1024))
    end
end
