-- client:push_many, 16 in flight, against its anchors in one run, all sending
-- the contract's example to the same emulator:
--   bench/c/multi_loop.c   plain C: one libcurl multi handle, 16 reused easy handles in
--                          flight, sending the batch's own 20,000 bodies (encoded beforehand)
--   the same C loop repeating one order's PUT (reported: the emulator does a little less
--                          work per request for an order it has just seen)
--   wrk -t2 -c16           that one PUT (reported; its two threads compete with the server)
-- The batch is 20,000 statuses of 20,000 distinct orders (statuses of one order go one
-- after another, so distinct orders are what lets 16 be in flight). For scale it also
-- times 20,000 statuses over 2,000 orders (10 consecutive statuses each). Target:
-- push_many >= 0.9x the plain C loop sending the same bodies. Each round measures push_many and the C loop
-- back to back (which goes first alternates); the ratio is the median of the
-- rounds' ratios, so that load from elsewhere, which drifts over seconds, falls on
-- both sides of each pair. Rates shown are the medians of the rounds.
--   lua5.4 bench/batch.lua [--json] [--statuses N] [--in-flight N] [--rounds N] [--seconds N]
--   (LUA_PATH/LUA_CPATH as `make test` sets them; AO_BENCH_JSON=<file> appends the JSON line)

local ao = require "choco.active_order"
local emulator = require "spec.support.emulator"
local lib = require "bench.lib"

local args = lib.parse_args({ json = false, statuses = 20000, in_flight = 16, rounds = 5, seconds = 2,
                              per_order = 10 }, { ... })
local STATUSES = { "created", "paid", "cooking", "delivering", "delivered", "cancelled" }

-- n statuses; every `per_order` consecutive ones share an order id
local function statuses(n, per_order, prefix)
    local list = {}
    for i = 1, n do
        local st = lib.example()
        st.merchant_order_id = prefix .. math.floor((i - 1) / per_order)
        list[i] = st
    end
    return list
end

local emu = emulator.start { statuses = STATUSES, client_id = "bench-client", client_secret = "bench-secret" }
local ok, result = xpcall(function()
    local client = assert(ao.new { base_url = emu.url, client_id = emu.client_id,
                                   client_secret = emu.client_secret, statuses = STATUSES })
    local body = assert(client:encode(lib.example()))
    local token = emu:token()
    local status_url = emu.url .. lib.STATUS_PATH
    local workdir = lib.workdir()
    local body_file = lib.write_file(workdir .. "/batch_body.json", body)
    local multi_loop = lib.build_anchor("multi_loop")
    local wrk_script = lib.wrk_script(workdir .. "/batch_wrk.lua", "PUT", body, {
        ["Content-Type"] = "application/json", ["Accept"] = "application/json",
        ["Authorization"] = "Bearer " .. token })

    local distinct = statuses(args.statuses, 1, "MANY-")
    local grouped = statuses(args.statuses, args.per_order, "GROUP-")
    -- the C loop's copy of the batch: the same bodies, one per line (JSON has no raw newline)
    local bodies_file
    do
        local bodies = {}
        for i = 1, #distinct do bodies[i] = assert(client:encode(distinct[i])) end
        bodies_file = lib.write_file(workdir .. "/batch_bodies.jsonl", table.concat(bodies, "\n") .. "\n")
    end
    local function many_rate(list)
        local t0 = lib.clock()
        local _, summary = client:push_many(list, { max_in_flight = args.in_flight, keep_data = false })
        local elapsed = lib.clock() - t0
        assert(summary and summary.sent == #list, "push_many failed some statuses: "
            .. tostring(summary and summary.failed))
        return #list / elapsed
    end

    -- token, connections and the emulator's records of these orders ready before any timing
    -- (the C loop's one order exists already too)
    assert(client:push(lib.example()))
    many_rate(distinct)
    many_rate(grouped)
    local function c_rate(file)
        return lib.run_anchor(multi_loop, status_url, token, file or bodies_file, args.statuses, args.in_flight)
            .requests_per_second
    end
    local function wrk_rate()
        return lib.wrk_rate { threads = 2, connections = args.in_flight, seconds = args.seconds,
                              script = wrk_script, url = status_url }
    end
    local rates = { many = {}, grouped = {}, c = {}, c_one = {}, wrk = {} }
    local ratios = { c = {}, c_one = {}, wrk = {}, grouped = {} }
    for r = 1, args.rounds do
        if r % 2 == 1 then
            rates.c[r] = c_rate()
            rates.many[r] = many_rate(distinct)
            rates.c_one[r] = c_rate(body_file)
            rates.wrk[r] = wrk_rate()
            rates.grouped[r] = many_rate(grouped)
        else
            rates.grouped[r] = many_rate(grouped)
            rates.wrk[r] = wrk_rate()
            rates.c_one[r] = c_rate(body_file)
            rates.many[r] = many_rate(distinct)
            rates.c[r] = c_rate()
        end
        ratios.c[r] = rates.many[r] / rates.c[r]
        ratios.c_one[r] = rates.many[r] / rates.c_one[r]
        ratios.wrk[r] = rates.many[r] / rates.wrk[r]
        ratios.grouped[r] = rates.grouped[r] / rates.c[r]
    end
    client:close()
    local m, mr = {}, {}
    for k, v in pairs(rates) do m[k] = lib.median(v) end
    for k, v in pairs(ratios) do mr[k] = lib.median(v) end
    return { median = m, ratio = mr, rounds = rates }
end, debug.traceback)
lib.finish("bench/batch.lua", emu, ok, result)

local m, mr = result.median, result.ratio
local lua = lib.interpreter()
local figure = ("push_many, %d in flight, %d statuses (%s)"):format(args.in_flight, args.statuses, lua)
local rows = {
    lib.row(figure, m.many, "req/s", "plain C multi loop, " .. args.in_flight .. " handles, same bodies", m.c,
        ">= 0.9", mr.c),
    lib.row(figure, m.many, "req/s", "the C loop repeating one order's PUT", m.c_one, nil, mr.c_one),
    lib.row(figure, m.many, "req/s", "wrk -t2 -c" .. args.in_flight, m.wrk, nil, mr.wrk),
    lib.row(("  same, %d statuses per order (%d orders)"):format(args.per_order,
        math.ceil(args.statuses / args.per_order)), m.grouped, "req/s", "plain C multi loop", m.c, nil,
        mr.grouped),
}
lib.emit("batch", rows, { statuses = args.statuses, in_flight = args.in_flight, rounds = args.rounds,
                          orders = "distinct", per_round = result.rounds,
                          ratio_is = "median of the rounds' paired ratios" }, args.json)
if not args.json then
    print(("push_many (%s), %d statuses, %d in flight, median of %d rounds"):format(lua, args.statuses,
        args.in_flight, args.rounds))
    print(("  client:push_many, distinct orders %8.0f /s"):format(m.many))
    print(("  plain C multi loop, same bodies   %8.0f /s   many/C   = %.3f (target >= 0.9)"):format(m.c,
        mr.c))
    print(("  the C loop, one order's PUT       %8.0f /s   many/C   = %.3f"):format(m.c_one, mr.c_one))
    print(("  wrk -t2 -c%-2d                      %8.0f /s   many/wrk = %.3f"):format(args.in_flight, m.wrk,
        mr.wrk))
    print(("  client:push_many, %d per order    %8.0f /s"):format(args.per_order, m.grouped))
end
