-- The command-line tool end to end, as a subprocess of the interpreter under
-- test (AO_LUA, with LUA_PATH and LUA_CPATH inherited): exit codes, output,
-- --dry-run, --json, secrets, and pushes against the real gateway emulator.

local cjson = require "cjson"
local process = require "spec.support.process"

local ROOT = assert(os.getenv("AO_ROOT"), "run through make test (AO_ROOT)")
local LUA = os.getenv("AO_LUA") or "lua"
local TOOL = ROOT .. "/bin/choco-active-order"
local DELIVERY = ROOT .. "/examples/rules/delivery.lua"
local EVENTS = ROOT .. "/examples/events/"
local DELIVERY_STATUSES = "created,cooking,on_the_way,delivered,cancelled"

local quote, tmpname, slurp, spit = process.quote, process.tmpname, process.read, process.write

-- The line where a pattern first occurs in a file, so that expectations
-- follow the example scripts when they are edited.
local function line_of(path, needle)
    local n = 0
    for line in io.lines(path) do
        n = n + 1
        if line:find(needle, 1, true) then return n end
    end
    error(needle .. " not found in " .. path)
end

-- Run the tool; env is a table of variables to set (the CHOCO_ ones are
-- cleared first). Returns exit code, stdout, stderr.
local function run(argv, env)
    local parts = { "env", "-u", "CHOCO_BASE_URL", "-u", "CHOCO_CLIENT_ID", "-u", "CHOCO_CLIENT_SECRET",
                    "-u", "CHOCO_STATUSES" }
    for k, v in pairs(env or {}) do parts[#parts + 1] = quote(k .. "=" .. v) end
    parts[#parts + 1] = quote(LUA)
    parts[#parts + 1] = quote(TOOL)
    for _, a in ipairs(argv) do parts[#parts + 1] = quote(a) end
    local err_file = tmpname()
    local command = table.concat(parts, " ") .. " 2>" .. quote(err_file) .. " </dev/null; echo \"exit:$?\""
    local pipe = assert(io.popen(command))
    local out = pipe:read("*a")
    pipe:close()
    local stderr = slurp(err_file) or ""
    os.remove(err_file)
    local code = tonumber(out:match("exit:(%d+)\n?$"))
    out = out:gsub("exit:%d+\n?$", "")
    return code, out, stderr
end

local function json_of(out)
    local value = cjson.decode(out)
    assert.is_table(value)
    return value
end

describe("choco-active-order", function()
    describe("help and usage", function()
        it("prints help for the tool", function()
            for _, argv in ipairs { { "--help" }, { "-h" }, { "help" } } do
                local code, out = run(argv)
                assert.are.equal(0, code)
                assert.matches("Usage: choco%-active%-order %[%-%-json%] COMMAND", out)
                assert.matches("Exit codes: 0 ok, 1 invalid input or rejected push, 2 usage, 3 network", out)
            end
        end)

        for _, command in ipairs { "check", "render", "push" } do
            it("prints help for " .. command, function()
                for _, argv in ipairs { { command, "--help" }, { "help", command }, { "--help", command } } do
                    local code, out = run(argv)
                    assert.are.equal(0, code)
                    assert.matches("Usage: choco%-active%-order " .. command, out)
                end
            end)
        end

        it("forwards emulator --help to the emulator", function()
            local code, out = run { "emulator", "--help" }
            assert.are.equal(0, code)
            assert.matches("emulator", out)
        end)

        it("prints its version", function()
            local code, out = run { "--version" }
            assert.are.equal(0, code)
            assert.matches("^choco%-active%-order %d+%.%d+%.%d+\n$", out)
        end)

        it("exits 2 on usage errors", function()
            local cases = {
                { {}, "missing command" },
                { { "chek", "x" }, "unknown command chek (did you mean check?)" },
                { { "check" }, "expects exactly one mapping script" },
                { { "render", DELIVERY }, "expects RULES and EVENT.json" },
                { { "render", DELIVERY, "x.json", "--att", "1" }, "unknown option --att (did you mean --at?)" },
                { { "render", DELIVERY, "x.json", "--at" }, "--at needs a value" },
                { { "render", DELIVERY, EVENTS .. "delivery_cooking.json", "--at", "tomorrow" }, "--at:" },
                { { "push", "--dry-run=yes", "x.json" }, "--dry-run takes no value" },
                { { "push", "a", "b", "c" }, "expects RULES EVENT.json, or STATUS.json" },
                { { "push", "x.json", "--failed", "f" }, "--failed goes with --batch" },
            }
            for _, case in ipairs(cases) do
                local code, out, err = run(case[1])
                assert.are.equal(2, code, table.concat(case[1], " "))
                assert.are.equal("", out)
                assert.matches(case[2], err, 1, true)
                assert.matches("Try 'choco%-active%-order", err)
            end
        end)

        it("reports usage errors as JSON with --json", function()
            local code, out, err = run { "--json", "render" }
            assert.are.equal(2, code)
            assert.are.equal("", err)
            local value = json_of(out)
            assert.is_false(value.ok)
            assert.are.equal("usage", value.error.kind)
            assert.are.equal(2, value.exit_code)
        end)
    end)

    describe("check", function()
        it("accepts the examples", function()
            for _, name in ipairs { "delivery", "pickup", "retail" } do
                local path = ROOT .. "/examples/rules/" .. name .. ".lua"
                local code, out = run { "check", path }
                assert.are.equal(0, code)
                assert.matches(path .. ": ok, 5 statuses: ", out, 1, true)
            end
        end)

        it("prints every problem with file and line and exits 1", function()
            local path = tmpname()
            spit(path, table.concat({
                'base_link = "https://a.kz"',
                'defaults { button = "Ок", card_link = "/1", button_link = "/2", expires = "1h" }',
                'status "created" { titel = "Оформлен" }',
                'status "cooking" { title = "Готовим", timer = "count_up", subtitle = "x" }',
            }, "\n"))
            local code, out, err = run { "check", path, "--statuses", "created,cooking" }
            os.remove(path)
            assert.are.equal(1, code)
            assert.are.equal(table.concat({
                path .. ":3: unknown key 'titel' in status \"created\" (did you mean 'title'?)",
                path .. ":3: status \"created\" has no title (give it here or in defaults)",
                path .. ":4: status \"cooking\": a subtitle is shown only without a timer, but timer is "
                    .. "\"count_up\" (subtitle from status \"cooking\", subtitle); remove one of them",
            }, "\n") .. "\n", out)
            assert.matches("3 problems", err)
        end)

        it("checks registration against --statuses and CHOCO_STATUSES", function()
            local code, out = run { "check", DELIVERY, "--statuses", "created,cooking" }
            assert.are.equal(1, code)
            assert.matches(":" .. line_of(DELIVERY, 'status "on_the_way"')
                .. ': status "on_the_way" is not registered with Choco', out, 1, true)
            code = run({ "check", DELIVERY }, { CHOCO_STATUSES = DELIVERY_STATUSES })
            assert.are.equal(0, code)
            code = run({ "check", DELIVERY }, { CHOCO_STATUSES = "created" })
            assert.are.equal(1, code)
        end)

        it("gives JSON with --json", function()
            local code, out = run { "check", DELIVERY, "--json" }
            assert.are.equal(0, code)
            local value = json_of(out)
            assert.is_true(value.ok)
            assert.are.equal("on_the_way", value.statuses[3].name)
            assert.are.equal("count_down", value.statuses[3].timer)
            assert.are.same({ "courier_picked_up", "on_the_way" }, value.statuses[3].states)

            code, out = run { "--json", "check", DELIVERY, "--statuses", "created" }
            assert.are.equal(1, code)
            value = json_of(out)
            assert.is_false(value.ok)
            assert.are.equal("unregistered", value.problems[1].code)
            assert.are.equal(DELIVERY, value.problems[1].file)
            assert.are.equal(line_of(DELIVERY, 'status "cooking"'), value.problems[1].line)
        end)

        it("exits 1 for a missing script", function()
            local code, _, err = run { "check", "/nonexistent/rules.lua" }
            assert.are.equal(1, code)
            assert.matches("/nonexistent/rules.lua", err, 1, true)
        end)
    end)

    describe("render", function()
        it("prints the body that would be sent", function()
            local code, out = run { "render", DELIVERY, EVENTS .. "delivery_on_the_way.json" }
            assert.are.equal(0, code)
            local body = json_of(out)
            assert.are.equal("D-1042", body.merchant_order_id)
            assert.are.equal(1234567, body.user_id)
            assert.are.equal("on_the_way", body.external_status)
            assert.are.equal("https://rahmetapp.kz/webapp/delivery/orders/D-1042/map?courier=77",
                body.deeplinks[1].link)
            assert.are.equal("active_order_call_to_action", body.deeplinks[1].type)
            assert.are.equal("2026-11-29 19:45:00", body.external_data.expired_at)
            assert.are.equal("Айдар в пути", body.external_data.title_active_order_card)
            assert.is_true(body.external_data.countdown_timer)
            assert.matches('"user_id":1234567,', out, 1, true)
        end)

        it("counts durations from --at", function()
            for _, at in ipairs { "2026-11-29 12:00:00", "1795935600", "2026-11-29T07:00:00Z" } do
                local code, out = run { "render", DELIVERY, EVENTS .. "delivery_cooking.json", "--at", at }
                assert.are.equal(0, code)
                assert.are.equal("2026-11-29 14:00:00", json_of(out).external_data.expired_at)
            end
            local code, out = run { "render", DELIVERY, EVENTS .. "delivery_cooking.json", "--at", "1795935600",
                                    "--utc-offset", "+06:00" }
            assert.are.equal(0, code)
            assert.are.equal("2026-11-29 15:00:00", json_of(out).external_data.expired_at)
        end)

        it("wraps the body with --json", function()
            local code, out = run { "render", "--json", DELIVERY, EVENTS .. "delivery_cooking.json", "--at", "0" }
            assert.are.equal(0, code)
            local value = json_of(out)
            assert.is_true(value.ok)
            assert.are.equal("cooking", value.external_status)
            assert.are.equal("1970-01-01 07:00:00", value.body.external_data.expired_at)
        end)

        it("exits 1 on an event it cannot render, naming status and field", function()
            local path = tmpname()
            spit(path, '{"state": "on_the_way", "order_id": "D-1", "user_id": 1}')
            local code, out, err = run { "render", DELIVERY, path }
            assert.are.equal(1, code)
            assert.are.equal("", out)
            assert.matches('status "on_the_way", button_link: missing value for {courier.id}', err, 1, true)
            code, out = run { "render", DELIVERY, path, "--json" }
            assert.are.equal(1, code)
            local value = json_of(out)
            assert.are.equal("rules", value.error.kind)
            assert.are.equal("button_link", value.error.problems[1].field)

            spit(path, '{"state": "teleported", "order_id": "D-1", "user_id": 1}')
            local _
            code, _, err = run { "render", DELIVERY, path }
            assert.are.equal(1, code)
            assert.matches('internal state "teleported"', err, 1, true)

            spit(path, '{"state": ')
            code, _, err = run { "render", DELIVERY, path }
            assert.are.equal(1, code)
            assert.matches("is not a JSON object", err, 1, true)
            -- where the file stops being JSON, counted in bytes from 1
            assert.matches("invalid JSON at byte 11", err, 1, true)
            -- strict: a byte that is not UTF-8 is refused where it stands
            spit(path, '{"state": "cooking", "order_id": "D-\255", "user_id": 1}')
            code, _, err = run { "render", DELIVERY, path }
            assert.are.equal(1, code)
            assert.matches("is not a JSON object: invalid JSON at byte 37: invalid UTF-8", err, 1, true)
            os.remove(path)

            code = run { "render", DELIVERY, "/nonexistent/event.json" }
            assert.are.equal(1, code)
        end)

        it("exits 1 on a broken script, listing its problems", function()
            local path = tmpname()
            spit(path, 'status "x" { title = "x" }')
            local code, _, err = run { "render", path, EVENTS .. "delivery_cooking.json" }
            os.remove(path)
            assert.are.equal(1, code)
            assert.matches(path .. ":1: status \"x\" has no button", err, 1, true)
        end)
    end)

    describe("push --dry-run", function()
        it("renders, validates and prints without credentials or network", function()
            local code, out, err = run { "push", "--dry-run", DELIVERY, EVENTS .. "delivery_cooking.json" }
            assert.are.equal(0, code)
            assert.are.equal("cooking", json_of(out).external_status)
            assert.matches("dry run: cooking for order D%-1042 is valid; nothing was sent", err)
        end)

        it("takes a ready status", function()
            local code, out = run { "push", EVENTS .. "status_created.json", "--dry-run", "--json" }
            assert.are.equal(0, code)
            local value = json_of(out)
            assert.is_true(value.ok)
            assert.is_true(value.dry_run)
            assert.are.equal("WEE-11122", value.body.merchant_order_id)
        end)

        it("exits 1 on an invalid status and names the fields", function()
            local path = tmpname()
            local status = cjson.decode(slurp(EVENTS .. "status_created.json"))
            status.user_id = 0
            status.external_data.title_active_order_card = ("Ж"):rep(31)
            spit(path, cjson.encode(status))
            local code, _, err = run { "push", path, "--dry-run" }
            assert.are.equal(1, code)
            assert.matches("user_id", err, 1, true)
            assert.matches("external_data.title_active_order_card", err, 1, true)
            code = run { "push", path, "--dry-run", "--statuses", "paid" }
            assert.are.equal(1, code)
            os.remove(path)
        end)

        it("tells an event from a status", function()
            local code, _, err = run { "push", EVENTS .. "delivery_cooking.json", "--dry-run" }
            assert.are.equal(2, code)
            assert.matches("looks like an event", err, 1, true)
        end)

        it("checks a batch and writes the failed lines", function()
            local failed = tmpname()
            local code, out, err = run { "push", DELIVERY, "--batch", EVENTS .. "delivery_day.jsonl", "--dry-run",
                                         "--failed", failed }
            assert.are.equal(1, code)
            assert.matches("dry run: 8 lines: 6 valid, 2 failed (2 invalid, 0 rejected, 0 network)", out, 1, true)
            assert.matches("line 7: .*courier.id", err)
            assert.matches("line 8: .*teleported", err)
            local lines = {}
            for line in slurp(failed):gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(line).order_id end
            assert.are.same({ "D-2003", "D-2004" }, lines)
            os.remove(failed)

            code, out = run { "push", DELIVERY, "--batch", EVENTS .. "delivery_day.jsonl", "--dry-run", "--json" }
            assert.are.equal(1, code)
            local value = json_of(out)
            assert.are.same({ 8, 6, 2, 2 }, { value.total, value.succeeded, value.failed, value.invalid })
            assert.are.equal(7, value.failures[1].line)
        end)

        it("says where a batch line stops being JSON", function()
            local batch = tmpname()
            spit(batch, '{"state": "accepted", "order_id": "D-1", "user_id": 1}\n{"state": "accepted",, }\n')
            local code, out = run { "push", DELIVERY, "--batch", batch, "--dry-run", "--json" }
            assert.are.equal(1, code)
            local value = json_of(out)
            assert.are.same({ 2, 1, 1 }, { value.total, value.succeeded, value.invalid })
            assert.are.equal(2, value.failures[1].line)
            assert.matches("not a JSON object: invalid JSON at byte 22", value.failures[1].error, 1, true)
            os.remove(batch)
        end)
    end)

    describe("push", function()
        local SECRET = "cli-spec-secret-5f1e2d"

        it("exits 2 without credentials and says which are missing", function()
            local code, out, err = run { "push", DELIVERY, EVENTS .. "delivery_cooking.json" }
            assert.are.equal(2, code)
            assert.are.equal("", out)
            assert.matches("CHOCO_BASE_URL", err, 1, true)
            assert.matches("CHOCO_CLIENT_SECRET", err, 1, true)
        end)

        it("exits 3 when the gateway cannot be reached, without printing the secret", function()
            local env = { CHOCO_BASE_URL = "http://127.0.0.1:1", CHOCO_CLIENT_ID = "id", CHOCO_CLIENT_SECRET = SECRET }
            local code, out, err = run({ "push", DELIVERY, EVENTS .. "delivery_cooking.json", "--max-attempts", "1" },
                env)
            assert.are.equal(3, code)
            assert.matches("transport", err)
            assert.is_nil(out:find(SECRET, 1, true))
            assert.is_nil(err:find(SECRET, 1, true))
            code, out = run({ "push", DELIVERY, EVENTS .. "delivery_cooking.json", "--max-attempts", "1", "--json",
                              "--client-secret", SECRET }, env)
            assert.are.equal(3, code)
            assert.are.equal("transport", json_of(out).error.kind)
            assert.is_nil(out:find(SECRET, 1, true))
        end)

        describe("against the gateway emulator", function()
            local emulator = require "spec.support.emulator"
            local emu, env

            setup(function()
                emu = emulator.start { statuses = { "created", "cooking", "on_the_way", "delivered", "cancelled" } }
                env = { CHOCO_BASE_URL = emu.url, CHOCO_CLIENT_ID = emu.client_id,
                        CHOCO_CLIENT_SECRET = emu.client_secret }
            end)
            teardown(function()
                if emu then emu:stop() end
            end)

            it("pushes a rendered event", function()
                local code, out, err = run({ "push", DELIVERY, EVENTS .. "delivery_on_the_way.json" }, env)
                assert.are.equal(0, code, err)
                assert.are.equal("pushed on_the_way for order D-1042\n", out)
                local order = assert(emu:history("D-1042"))
                assert.are.equal("on_the_way", order.last)
                assert.are.equal("Айдар в пути", order.last_body.external_data.title_active_order_card)
                assert.are.equal("https://rahmetapp.kz/webapp/delivery/orders/D-1042/map?courier=77",
                    order.last_body.deeplinks[1].link)
                assert.is_nil((out .. err):find(emu.client_secret, 1, true))
            end)

            it("pushes a ready status with --json", function()
                local code, out = run({ "--json", "push", EVENTS .. "status_created.json" }, env)
                assert.are.equal(0, code)
                local value = json_of(out)
                assert.is_true(value.ok)
                assert.are.equal("WEE-11122", value.merchant_order_id)
                assert.are.equal("created", assert(emu:history("WEE-11122")).last)
            end)

            it("exits 1 when the gateway rejects the push", function()
                local code, _, err = run({ "push", EVENTS .. "status_created.json" },
                    { CHOCO_BASE_URL = emu.url, CHOCO_CLIENT_ID = emu.client_id, CHOCO_CLIENT_SECRET = SECRET })
                assert.are.equal(1, code)
                assert.matches("auth", err)
                assert.is_nil(err:find(SECRET, 1, true))
            end)

            it("exits 3 when the gateway keeps failing", function()
                emu:faults("status", { { kind = "http", status = 503 }, { kind = "http", status = 503 } })
                local code, _, err = run({ "push", EVENTS .. "status_created.json", "--max-attempts", "2" }, env)
                assert.are.equal(3, code)
                assert.matches("503", err)
            end)

            it("pushes a batch and ends with a summary", function()
                if not pcall(require, "choco.active_order.batch") then
                    pending("client:push_many (choco.active_order.batch) has not landed yet")
                    return
                end
                local failed = tmpname()
                local code, out, err = run({ "push", DELIVERY, "--batch", EVENTS .. "delivery_day.jsonl",
                                             "--failed", failed }, env)
                assert.are.equal(1, code, err)
                assert.matches("8 lines: 6 sent, 2 failed (2 invalid, 0 rejected, 0 network)", out, 1, true)
                assert.matches("progress: 6/6 sent", err, 1, true) -- not a terminal: plain lines
                assert.are.equal("delivered", assert(emu:history("D-2001")).last)
                assert.are.equal("cancelled", assert(emu:history("D-2002")).last)
                assert.is_nil(emu:history("D-2003"))
                local lines = 0
                for _ in slurp(failed):gmatch("[^\n]+") do lines = lines + 1 end
                assert.are.equal(2, lines)
                os.remove(failed)
            end)

            it("counts a batch's network failures and exits 3", function()
                if not pcall(require, "choco.active_order.batch") then
                    pending("client:push_many (choco.active_order.batch) has not landed yet")
                    return
                end
                emu:reset()
                local status = cjson.decode(slurp(EVENTS .. "status_created.json"))
                local lines = {}
                for i = 1, 2 do
                    status.merchant_order_id = "B-" .. i
                    lines[i] = cjson.encode(status)
                end
                lines[3] = '{"merchant_order_id": "B-3"}'
                local path = tmpname()
                spit(path, table.concat(lines, "\n") .. "\n")
                emu:faults("status", { { kind = "http", status = 503 }, { kind = "http", status = 503 } })
                local code, out = run({ "push", "--batch", path, "--max-attempts", "1", "--json" }, env)
                os.remove(path)
                assert.are.equal(3, code)
                local value = json_of(out)
                assert.is_false(value.ok)
                assert.are.same({ 3, 0, 3, 1, 2 },
                    { value.total, value.succeeded, value.failed, value.invalid, value.unavailable })
                assert.are.equal(3, value.failures[3].line)
            end)

            it("draws a progress bar when stderr is a terminal", function()
                if not pcall(require, "choco.active_order.batch") then
                    pending("client:push_many (choco.active_order.batch) has not landed yet")
                    return
                end
                local found = os.execute("command -v script >/dev/null 2>&1")
                if found ~= true and found ~= 0 then
                    pending("util-linux script(1) is not installed")
                    return
                end
                -- script(1) gives the tool a pseudo-terminal for stdin, stdout and stderr. Under
                -- the sanitizers only the tool gets the preloaded runtime, not script(1) itself.
                local preload = os.getenv("LD_PRELOAD")
                local inner = table.concat({ preload and ("env LD_PRELOAD=" .. quote(preload)) or "",
                                             quote(LUA), quote(TOOL), "push", quote(DELIVERY), "--batch",
                                             quote(EVENTS .. "delivery_day.jsonl") }, " ")
                local code, out = (function()
                    local parts = {}
                    for k, v in pairs(env) do parts[#parts + 1] = quote(k .. "=" .. v) end
                    local pipe = assert(io.popen("env -u LD_PRELOAD " .. table.concat(parts, " ") .. " script -qec "
                        .. quote(inner) .. " /dev/null </dev/null; echo \"exit:$?\""))
                    local text = pipe:read("*a")
                    pipe:close()
                    return tonumber(text:match("exit:(%d+)\n?$")), text
                end)()
                assert.are.equal(1, code)
                assert.matches("\r%[#+%] 6/6 +[%d.]+/s +errors: 2", out)
                assert.matches("8 lines: 6 sent, 2 failed", out, 1, true)
                assert.is_nil(out:find("progress: ", 1, true))
            end)
        end)
    end)
end)
