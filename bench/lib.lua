-- Helpers shared by the bench scripts: the contract's example, shell and file
-- plumbing, the plain C anchors, wrk runs, memory readings, and the one JSON
-- line every bench writes for bench/report.lua:
--   {"bench": name, "lua": interpreter, "rows": [{"figure", "value", "unit",
--    "anchor", "anchor_value", "ratio", "target", "ok"}], ...extra fields}
-- A row's ratio is value / anchor_value for rates and times alike; its target
-- says which way is good ("<= 0.5x" for times, ">= 0.9x" for rates).

local cjson = require "cjson"

local lib = {}

lib.STATUS_PATH = "/orders/v2/preorder/external/status"

--- The contract's example status (a fresh table each call); the specs' fixture,
--- so that benches and specs send the same bytes.
lib.example = require("spec.support.fixtures").example

function lib.interpreter()
    return (rawget(_G, "jit") and _G.jit.version) or _VERSION
end

function lib.sh_quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Output (stdout and stderr) of a shell command.
function lib.capture(cmd)
    local p = assert(io.popen(cmd .. " 2>&1", "r"))
    local out = p:read("*a")
    p:close()
    return out
end

--- os.execute's success on every Lua version.
function lib.run(cmd)
    local a, _, c = os.execute(cmd)
    return a == true or a == 0 or c == 0
end

function lib.write_file(path, content)
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
    return path
end

function lib.root()
    return os.getenv("AO_ROOT") or "."
end

--- A private scratch directory for this process (bodies, wrk scripts): other
--- runs on the machine must not overwrite our files. lib.cleanup() removes it.
local scratch
function lib.workdir()
    if not scratch then
        scratch = lib.capture("mktemp -d /tmp/ao-bench.XXXXXX"):match("%S+")
        assert(scratch and scratch:find("^/tmp/ao%-bench%."), "cannot create a scratch directory")
    end
    return scratch
end

function lib.cleanup()
    if scratch then
        lib.run("rm -rf " .. lib.sh_quote(scratch))
        scratch = nil
    end
end

--- After a bench's body ran under pcall/xpcall: stop its emulator, remove the
--- scratch directory and, when the body failed, exit 1 saying why.
function lib.finish(script, emu, ok, err)
    emu:stop()
    lib.cleanup()
    if not ok then
        io.stderr:write(script, ": ", tostring(err), "\n")
        os.exit(1)
    end
end

--- Monotonic seconds (the C core's clock when it has one, else LuaSocket's).
function lib.clock()
    local ok, core = pcall(require, "choco.active_order.core")
    if ok and type(core) == "table" and core.monotonic then return core.monotonic() end
    return require("socket").gettime()
end

function lib.median(list)
    local s = {}
    for i, v in ipairs(list) do s[i] = v end
    table.sort(s)
    local n = #s
    if n == 0 then return nil end
    if n % 2 == 1 then return s[(n + 1) / 2] end
    return (s[n / 2] + s[n / 2 + 1]) / 2
end

function lib.round(x, places)
    local m = 10 ^ (places or 0)
    return math.floor(x * m + 0.5) / m
end

--- Build bench/c/NAME.c with the system's libcurl into build/bench/NAME (again
--- only when it or bench/c/anchor.h is newer; built aside and renamed, so that a concurrent
--- run never sees half a binary); returns the binary's path.
function lib.build_anchor(name)
    local src = lib.root() .. "/bench/c/" .. name .. ".c"
    local dir = lib.root() .. "/build/bench"
    local bin = dir .. "/" .. name
    local tmp = lib.workdir() .. "/" .. name
    local cc = os.getenv("CC") or "cc"
    local q = lib.sh_quote
    local header = lib.root() .. "/bench/c/anchor.h"
    local cmd = ("mkdir -p %s && { { [ %s -nt %s ] && [ %s -nt %s ]; } || { %s -std=c99 -O2 -Wall -Wextra -o %s %s"
        .. " $(pkg-config --cflags --libs libcurl 2>/dev/null || echo -lcurl) && mv -f %s %s; }; }")
        :format(q(dir), q(bin), q(src), q(bin), q(header), cc, q(tmp), q(src), q(tmp), q(bin))
    assert(lib.run(cmd), "cannot build " .. src)
    return bin
end

--- Run a plain C anchor (easy_loop or multi_loop): amount is a count ("20000")
--- or a duration ("3s"). Returns its decoded JSON line (requests_per_second...).
function lib.run_anchor(bin, url, token, body_file, amount, in_flight)
    local cmd = table.concat({ lib.sh_quote(bin), lib.sh_quote(url), lib.sh_quote(token),
        lib.sh_quote(body_file), tostring(amount), in_flight and tostring(in_flight) or "" }, " ")
    local out = lib.capture(cmd)
    local ok, result = pcall(cjson.decode, out:match("{.*}") or "null")
    assert(ok and type(result) == "table" and result.failed == 0 and result.requests_per_second,
        bin .. " said:\n" .. out)
    return result
end

--- Write a wrk script that sends one fixed request; returns its path.
function lib.wrk_script(path, method, body, headers)
    local lines = { ("wrk.method = %q"):format(method), ("wrk.body = %q"):format(body or "") }
    local names = {}
    for k in pairs(headers or {}) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do lines[#lines + 1] = ("wrk.headers[%q] = %q"):format(k, headers[k]) end
    return lib.write_file(path, (table.concat(lines, "\n"):gsub("\\\n", "\\n")) .. "\n")
end

--- wrk -tT -cC -dSs with a script; returns requests/s. Raises when wrk failed or
--- any answer was not 2xx, or a socket error happened.
function lib.wrk_rate(opts)
    local out = lib.capture(("env -u LD_PRELOAD wrk -t%d -c%d -d%ds -s %s %s"):format(opts.threads or 1,
        opts.connections or 1, math.max(1, math.floor(opts.seconds or 2)), lib.sh_quote(opts.script),
        lib.sh_quote(opts.url)))
    local rate = tonumber(out:match("Requests/sec:%s*([%d.]+)"))
    assert(rate, "wrk said:\n" .. out)
    assert(not out:find("Non%-2xx") and not out:find("Socket errors"), "wrk got errors:\n" .. out)
    return rate
end

--- This process's memory from /proc/self/status, in kB: peak (VmHWM), rss,
--- anon (RssAnon: its own allocations), file (RssFile: mapped libraries), pss.
function lib.memory_kb()
    local f = io.open("/proc/self/status", "r")
    if not f then return {} end
    local s = f:read("*a")
    f:close()
    -- Pss: resident pages with each shared page divided among the processes that map it
    local rollup = io.open("/proc/self/smaps_rollup", "r")
    local pss = rollup and tonumber(rollup:read("*a"):match("\nPss:%s*(%d+)"))
    if rollup then rollup:close() end
    return { peak = tonumber(s:match("VmHWM:%s*(%d+)")), rss = tonumber(s:match("VmRSS:%s*(%d+)")),
             anon = tonumber(s:match("RssAnon:%s*(%d+)")), file = tonumber(s:match("RssFile:%s*(%d+)")),
             pss = pss }
end

--- Parse "--name value" and "--flag" arguments into defaults (a table whose
--- values give the types: booleans are flags, numbers are numbers).
function lib.parse_args(defaults, argv)
    local args = {}
    for k, v in pairs(defaults) do args[k] = v end
    local i = 1
    while i <= #argv do
        local name = argv[i]:match("^%-%-([%w_-]+)$")
        local key = name and name:gsub("-", "_")
        if not key or defaults[key] == nil then error("unknown argument " .. tostring(argv[i]), 0) end
        if type(defaults[key]) == "boolean" then
            args[key] = true
            i = i + 1
        else
            local v = argv[i + 1]
            args[key] = type(defaults[key]) == "number" and tonumber(v) or v
            if args[key] == nil then error(argv[i] .. " needs a value", 0) end
            i = i + 2
        end
    end
    return args
end

--- A table row comparing value to an anchor. target is ">= R" or "<= R" (a
--- ratio, or an absolute bound in unit when there is no anchor); without one
--- the row is informational. ratio defaults to value / anchor_value; a bench
--- that pairs rounds passes the median of the per-round ratios instead.
function lib.row(figure, value, unit, anchor, anchor_value, target, ratio)
    local r = { figure = figure, value = lib.round(value, 3), unit = unit }
    if anchor then
        r.anchor, r.anchor_value = anchor, lib.round(anchor_value, 3)
        if ratio then
            r.ratio = lib.round(ratio, 3)
        elseif anchor_value and anchor_value > 0 then
            r.ratio = lib.round(value / anchor_value, 3)
        end
    end
    if target then
        local op, bound = target:match("^([<>]=)%s*([%d.]+)")
        bound = assert(tonumber(bound), "target like '>= 0.9'")
        local measured = anchor and r.ratio or value
        r.target = op .. " " .. bound .. (anchor and "x" or (unit and " " .. unit or ""))
        if measured then
            if op == ">=" then r.ok = measured >= bound else r.ok = measured <= bound end
        end
    end
    return r
end

--- Write the bench's JSON line: appended to $AO_BENCH_JSON when set, printed
--- when as_json. extra fields are merged into the record.
function lib.emit(bench, rows, extra, as_json)
    local rec = {}
    for k, v in pairs(extra or {}) do rec[k] = v end
    rec.bench, rec.lua, rec.rows = bench, lib.interpreter(), rows
    local line = cjson.encode(rec)
    local file_name = os.getenv("AO_BENCH_JSON")
    if file_name and file_name ~= "" then
        local f = assert(io.open(file_name, "a"))
        f:write(line, "\n")
        f:close()
    end
    if as_json then print(line) end
    return line
end

return lib
