-- The command-line tool `choco-active-order`: check, render and push mapping
-- scripts and statuses, and start the gateway emulator. Exit codes are part
-- of the interface: 0 ok, 1 invalid input or a rejected push, 2 usage,
-- 3 network or gateway unavailable.

local cjson = require "cjson.safe"
local args = require "choco.active_order.cli.args"
local errors = require "choco.active_order.errors"
-- the library's strict decoder: its refusals say at which byte the file stops being JSON
local strict_json = require "choco.active_order.json"
local rules = require "choco.active_order.rules"
local time = require "choco.active_order.time"

local cli = {}

local OK, INVALID, USAGE, UNAVAILABLE = 0, 1, 2, 3
cli.EXIT = { ok = OK, invalid = INVALID, usage = USAGE, unavailable = UNAVAILABLE }

local PROGRAM = "choco-active-order"

local HELP = {
    main = [[
Usage: choco-active-order [--json] COMMAND [ARGS]

Check, preview and push Choco "active order" statuses.

Commands:
  check RULES                    check a mapping script; print every problem with file and line
  render RULES EVENT.json        print the JSON body a status would be sent with
  push RULES EVENT.json          render an event and send it
  push STATUS.json               send a ready status
  push [RULES] --batch FILE      send many (one JSON event or status per line)
  emulator ...                   start the gateway emulator (see: emulator --help)
  help [COMMAND]                 show help

Options everywhere:
  --json         machine-readable output: one JSON object on stdout
  -h, --help     help for the tool or the command
  --version      print the version

Exit codes: 0 ok, 1 invalid input or rejected push, 2 usage, 3 network or gateway unavailable.
]],
    check = [[
Usage: choco-active-order check RULES [--statuses LIST] [--json]

Run the mapping script RULES in its sandbox and print every problem as
FILE:LINE: MESSAGE. Exit 0 when there is none, 1 otherwise.

  --statuses LIST    comma-separated statuses registered with Choco
                     (default: $CHOCO_STATUSES; unchecked when neither is set)
]],
    render = [[
Usage: choco-active-order render RULES EVENT.json [--at TIME] [--statuses LIST] [--utc-offset OFFSET] [--json]

Render the event (a JSON object with "state", "order_id", "user_id" and the
fields the templates use) with the mapping script and print the JSON body
that would be sent. Nothing is sent.

  --at TIME            the moment durations count from: seconds since 1970 or
                       "YYYY-MM-DD HH:MM:SS" in the merchant's zone (default: now)
  --statuses LIST      comma-separated registered statuses (default: $CHOCO_STATUSES)
  --utc-offset OFFSET  the merchant's zone, "+05:00" (default) or "-03:30"
]],
    push = [[
Usage: choco-active-order push RULES EVENT.json [options]
       choco-active-order push STATUS.json [options]
       choco-active-order push [RULES] --batch EVENTS.jsonl [--failed FILE] [options]

Send one status (rendered from an event, or ready in a JSON file), or many
from a file with one JSON object per line. Credentials and the gateway come
from the environment or options; secrets are never printed.

  --base-url URL         gateway ($CHOCO_BASE_URL); "test" and "production" name the two hosts
  --client-id ID         client id ($CHOCO_CLIENT_ID)
  --client-secret S      client secret ($CHOCO_CLIENT_SECRET; prefer the variable:
                         options are visible to other users in the process list)
  --timeout SECONDS      per-request timeout given to the client
  --max-attempts N       attempts per status, the first included (default: the client's, 4)
  --ca-file FILE         CA certificates to trust for the gateway's TLS
  --dry-run              validate and print the body without sending
  --batch FILE           send every line of FILE
  --failed FILE          with --batch: write the lines that failed to FILE, for a retry
  --no-progress          with --batch: no progress bar even on a terminal
  --at TIME, --statuses LIST, --utc-offset OFFSET   as for render

Exit codes: 0 all sent, 1 invalid input or rejected by the gateway,
2 usage (including missing credentials), 3 network or gateway unavailable.
]],
}

-- Output -------------------------------------------------------------------

local Output = {}
Output.__index = Output

local function new_output(json, stdout, stderr)
    return setmetatable({ json = json, stdout = stdout or io.stdout, stderr = stderr or io.stderr }, Output)
end

function Output:line(text) self.stdout:write(text, "\n") end
function Output:note(text) self.stderr:write(text, "\n") end
function Output:object(t) self.stdout:write(assert(cjson.encode(t)), "\n") end

local function error_table(err)
    if errors.is_error(err) then
        local t = { kind = err.kind, code = err.code, message = err.message,
                    http_status = err.http_status, error_code = err.error_code }
        if type(err.problems) == "table" then
            t.problems = {}
            for i, p in ipairs(err.problems) do
                t.problems[i] = { file = p.file, line = p.line, field = p.field, code = p.code, message = p.message }
            end
        end
        return t
    end
    return { message = tostring(err) }
end

--- Report a failure (an error value or text) and return `code`.
function Output:fail(code, err, secrets)
    local t = error_table(err)
    t.message = errors.redact(t.message, secrets)
    if self.json then
        self:object { ok = false, exit_code = code, error = t }
    else
        self:note(PROGRAM .. ": " .. errors.redact(tostring(err), secrets))
        -- a rules error already names its fields in the message; others list them here
        if type(t.problems) == "table" and t.kind ~= "rules" then
            for _, p in ipairs(t.problems) do
                self:note("  " .. tostring(p.field or "?") .. ": " .. tostring(p.message))
            end
        end
    end
    return code
end

function Output:usage(command, message)
    local topic = command and (" " .. command) or ""
    if self.json then
        self:object { ok = false, exit_code = USAGE, error = { kind = "usage", message = message } }
    else
        self:note(PROGRAM .. topic .. ": " .. message)
        self:note("Try '" .. PROGRAM .. topic .. " --help'.")
    end
    return USAGE
end

-- Inputs -------------------------------------------------------------------

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, errors.new("config", "unreadable", "cannot read " .. tostring(err)) end
    local text = f:read("*a")
    f:close()
    return text
end

local function read_json(path)
    local text, err = read_file(path)
    if not text then return nil, err end
    local value, why = strict_json.decode(text)
    if type(value) ~= "table" then
        return nil, errors.new("config", "bad_json", path .. " is not a JSON object"
            .. (why and (": " .. why.message) or ""))
    end
    return value
end

local function split_list(s)
    if not s or s == "" then return nil end
    local list = {}
    for item in s:gmatch("[^,%s]+") do list[#list + 1] = item end
    return list
end

-- Options shared by render and push: registered statuses, zone, moment.
local function common_options(o, env)
    local statuses = split_list(o.statuses or env("CHOCO_STATUSES"))
    local offset_text = o["utc-offset"]
    local utc_offset
    if offset_text then
        utc_offset = offset_text
        local ok, why = time.utc_offset(utc_offset)
        if not ok then return nil, "--utc-offset: " .. why end
    end
    local now
    if o.at then
        local why
        now, why = time.parse(o.at, time.utc_offset(utc_offset))
        if not now then return nil, "--at: " .. why end
    end
    return { statuses = statuses, utc_offset = utc_offset, now = now }
end

local function load_rules(path, common)
    return rules.load(path, { statuses = common.statuses, utc_offset = common.utc_offset })
end

local function validation_opts(common)
    return { statuses = common.statuses, utc_offset = common.utc_offset }
end

local function rules_failure(out, err)
    if out.json then return out:fail(INVALID, err) end
    if err.code == "invalid_script" or err.code == "unreadable" then
        for _, p in ipairs(err.problems) do out:note(rules.format_problem(p)) end
        return INVALID
    end
    return out:fail(INVALID, err)
end

-- check -----------------------------------------------------------------------

local function cmd_check(out, parsed, env)
    local pos = parsed.positional
    if #pos ~= 1 then return out:usage("check", "expects exactly one mapping script") end
    local statuses = split_list(parsed.options.statuses or env("CHOCO_STATUSES"))
    local loaded, err = rules.load(pos[1], { statuses = statuses })
    if not loaded then
        if out.json then
            out:object { ok = false, exit_code = INVALID, file = pos[1], problems = error_table(err).problems }
        else
            for _, p in ipairs(err.problems) do out:line(rules.format_problem(p)) end
            out:note(pos[1] .. ": " .. #err.problems .. (#err.problems == 1 and " problem" or " problems"))
        end
        return INVALID
    end
    local names = loaded:status_names()
    if out.json then
        local list = {}
        for i, name in ipairs(names) do
            local st = loaded.statuses[name]
            list[i] = { name = name, rank = st.rank, final = st.final, cancel = st.cancel,
                        states = st.states, timer = st.timer }
        end
        out:object { ok = true, file = pos[1], statuses = list }
    else
        out:line(pos[1] .. ": ok, " .. #names .. " statuses: " .. table.concat(names, ", "))
    end
    return OK
end

-- render ----------------------------------------------------------------------

local function render_event(rules_path, event_path, common)
    local loaded, err = load_rules(rules_path, common)
    if not loaded then return nil, err end
    local event
    event, err = read_json(event_path)
    if not event then return nil, err end
    return loaded:render(event, common.now)
end

local function cmd_render(out, parsed, env)
    local pos = parsed.positional
    if #pos ~= 2 then return out:usage("render", "expects RULES and EVENT.json") end
    local common, why = common_options(parsed.options, env)
    if not common then return out:usage("render", why) end
    local status, err = render_event(pos[1], pos[2], common)
    if not status then return rules_failure(out, err) end
    local ao = require "choco.active_order"
    local body, problems = ao.encode(status, validation_opts(common))
    if not body then
        return out:fail(INVALID, errors.new("validation", "invalid", "the status is not valid",
            { problems = problems }))
    end
    if out.json then
        out:line('{"ok":true,"external_status":' .. cjson.encode(status.external_status) .. ',"body":' .. body .. "}")
    else
        out:line(body)
    end
    return OK
end

-- push ------------------------------------------------------------------------

-- Exit code for a client error: the gateway could not be reached or is
-- failing (3), or it refused what was sent (1).
local function push_exit_code(err)
    if not errors.is_error(err) then return UNAVAILABLE end
    if err.kind == "transport" or err.kind == "too_large" or err.kind == "decode" then return UNAVAILABLE end
    local http_status = tonumber(err.http_status)
    if http_status and (http_status >= 500 or http_status == 429) then return UNAVAILABLE end
    if err.kind == "http" and not http_status then return UNAVAILABLE end
    if err.kind == "config" then return USAGE end
    return INVALID
end

local BASE_ALIASES = { test = "TEST", production = "PRODUCTION" }

local function client_options(o, env, common)
    local base_url = o["base-url"] or env("CHOCO_BASE_URL")
    if base_url and BASE_ALIASES[base_url] then
        base_url = require("choco.active_order")[BASE_ALIASES[base_url]]
    end
    local client_id = o["client-id"] or env("CHOCO_CLIENT_ID")
    local client_secret = o["client-secret"] or env("CHOCO_CLIENT_SECRET")
    local missing = {}
    if not base_url or base_url == "" then missing[#missing + 1] = "a base URL (--base-url or CHOCO_BASE_URL)" end
    if not client_id or client_id == "" then missing[#missing + 1] = "a client id (--client-id or CHOCO_CLIENT_ID)" end
    if not client_secret or client_secret == "" then
        missing[#missing + 1] = "a client secret (CHOCO_CLIENT_SECRET)"
    end
    if #missing > 0 then return nil, "needs " .. table.concat(missing, ", ") end
    local timeout, retry
    if o.timeout then
        timeout = tonumber(o.timeout)
        if not timeout or timeout <= 0 then return nil, "--timeout must be a positive number of seconds" end
    end
    if o["max-attempts"] then
        local n = tonumber(o["max-attempts"])
        if not n or n < 1 or n ~= math.floor(n) then return nil, "--max-attempts must be a whole number from 1" end
        retry = { max_attempts = n }
    end
    return { base_url = base_url, client_id = client_id, client_secret = client_secret,
             statuses = common.statuses, utc_offset = common.utc_offset, timeout = timeout, retry = retry,
             ca_file = o["ca-file"] }
end

local function describe(status)
    return tostring(status.external_status) .. " for order " .. tostring(status.merchant_order_id)
end

local function push_one(out, parsed, env, common)
    local pos = parsed.positional
    local status, err
    if #pos == 2 then
        status, err = render_event(pos[1], pos[2], common)
        if not status then return rules_failure(out, err) end
    elseif #pos == 1 then
        status, err = read_json(pos[1])
        if not status then return out:fail(INVALID, err) end
        if status.state ~= nil and status.external_status == nil then
            return out:usage("push", pos[1] .. " looks like an event (it has \"state\"); give the mapping script too: "
                .. "push RULES " .. pos[1])
        end
    else
        return out:usage("push", "expects RULES EVENT.json, or STATUS.json, or --batch FILE")
    end
    local ao = require "choco.active_order"
    local vopts = validation_opts(common)
    local body, problems = ao.encode(status, vopts)
    if not body then
        return out:fail(INVALID, errors.new("validation", "invalid", "the status is not valid",
            { problems = problems }))
    end
    if parsed.options["dry-run"] then
        if out.json then
            out:line('{"ok":true,"dry_run":true,"external_status":' .. cjson.encode(status.external_status)
                .. ',"body":' .. body .. "}")
        else
            out:line(body)
            out:note("dry run: " .. describe(status) .. " is valid; nothing was sent")
        end
        return OK
    end
    local copts, why = client_options(parsed.options, env, common)
    if not copts then return out:usage("push", why) end
    local secrets = { copts.client_secret }
    local client, cerr = ao.new(copts)
    if not client then return out:fail(push_exit_code(cerr), cerr, secrets) end
    local data, perr = client:push(status)
    if data == nil and perr then return out:fail(push_exit_code(perr), perr, secrets) end
    if out.json then
        out:object { ok = true, external_status = status.external_status,
                     merchant_order_id = status.merchant_order_id, data = type(data) == "table" and data or nil }
    else
        out:line("pushed " .. describe(status))
    end
    return OK
end

-- Whether stderr is a terminal: `test -t 2` in a shell that inherits it.
local function stderr_is_terminal()
    local ok, _, code = os.execute("test -t 2")
    if type(ok) == "number" then return ok == 0 end
    return ok == true and (code == nil or code == 0)
end

local function clock()
    local has_socket, socket = pcall(require, "socket")
    if has_socket and socket.gettime then return socket.gettime end
    return os.time
end

-- One result of push_many (the gateway's data, true, or an error value):
-- nil when it succeeded, else its error.
local function result_error(r)
    if r == nil then return errors.new("transport", "no_result", "no result for this status") end
    if errors.is_error(r) then return r end
    return nil
end

local function error_text(err)
    if errors.is_error(err) then return tostring(err) end
    if type(err) == "table" then return tostring(err.message or err.code or "failed") end
    return tostring(err)
end

local function push_batch(out, parsed, env, common)
    local o = parsed.options
    local pos = parsed.positional
    if #pos > 1 then return out:usage("push", "--batch takes at most one mapping script") end
    local loaded
    if #pos == 1 then
        local err
        loaded, err = load_rules(pos[1], common)
        if not loaded then return rules_failure(out, err) end
    end
    local copts, why
    if not o["dry-run"] then
        copts, why = client_options(o, env, common)
        if not copts then return out:usage("push", why) end
    end
    local text, rerr = read_file(o.batch)
    if not text then return out:fail(INVALID, rerr) end
    local failed_file
    if o.failed then
        local ferr
        failed_file, ferr = io.open(o.failed, "wb")
        if not failed_file then return out:fail(INVALID, "cannot write --failed file: " .. tostring(ferr)) end
    end

    local ao = require "choco.active_order"
    local vopts = validation_opts(common)
    local failures, statuses, sources = {}, {}, {}
    local counts = { invalid = 0, rejected = 0, unavailable = 0 }
    local function failed(line_no, line, err, kind)
        counts[kind] = counts[kind] + 1
        failures[#failures + 1] = { line = line_no, error = error_text(err) }
        if failed_file then failed_file:write(line, "\n") end
    end
    local line_no = 0
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
        line_no = line_no + 1
        line = line:gsub("\r$", "")
        if line:match("%S") then
            local value, jerr = strict_json.decode(line)
            local status, err
            if type(value) ~= "table" then
                err = "not a JSON object" .. (jerr and (": " .. jerr.message) or "")
            elseif loaded then
                status, err = loaded:render(value, common.now)
            else
                status = value
                local ok, problems = ao.validate(status, vopts)
                if not ok then
                    local parts = {}
                    for _, p in ipairs(problems or {}) do
                        parts[#parts + 1] = tostring(p.field) .. ": " .. tostring(p.message)
                    end
                    err = "invalid status: " .. table.concat(parts, "; ")
                end
            end
            if err then
                failed(line_no, line, err, "invalid")
            else
                statuses[#statuses + 1] = status
                sources[#statuses] = { line_no = line_no, line = line }
            end
        end
    end

    local total = #statuses + counts.invalid
    local sent_ok = 0
    local now = clock()
    local started = now()
    if o["dry-run"] then
        sent_ok = #statuses
    elseif #statuses > 0 then
        local progress
        if not out.json and not o["no-progress"] then
            local tty = stderr_is_terminal()
            local last_step, last_draw = -1, -1
            progress = function(c)
                local done, n = c.done, c.total
                local bad = c.failed + counts.invalid
                local t = now()
                local elapsed = math.max(t - started, 1e-3)
                local rate = done / elapsed
                if tty then
                    -- at most ten redraws a second, and always the last one
                    if done < n and t - last_draw < 0.1 then return end
                    last_draw = t
                    local width = 30
                    local filled = n > 0 and math.floor(width * done / n) or width
                    out.stderr:write(string.format("\r[%s%s] %d/%d  %.1f/s  errors: %d ",
                        string.rep("#", filled), string.rep(".", width - filled), done, n, rate, bad))
                    if done >= n then out.stderr:write("\n") end
                else
                    local step = n > 0 and math.floor(10 * done / n) or 10
                    if step ~= last_step then
                        last_step = step
                        out.stderr:write(string.format("progress: %d/%d sent, %d errors, %.1f/s\n",
                            done, n, bad, rate))
                    end
                end
            end
        end
        local client, cerr = ao.new(copts)
        if not client then
            if failed_file then failed_file:close() end
            return out:fail(push_exit_code(cerr), cerr, { copts.client_secret })
        end
        -- Lines of one order go out in file order: each wave holds at most one
        -- status per order, and a wave starts when the one before has finished.
        local waves, seen = {}, {}
        for i, status in ipairs(statuses) do
            local key = tostring(status.merchant_order_id)
            local w = (seen[key] or 0) + 1
            seen[key] = w
            waves[w] = waves[w] or {}
            waves[w][#waves[w] + 1] = i
        end
        local done_before, failed_before = 0, 0
        for _, wave in ipairs(waves) do
            local list = {}
            for k, i in ipairs(wave) do list[k] = statuses[i] end
            local on_progress = progress and function(c)
                progress { done = done_before + c.done, failed = failed_before + c.failed, total = #statuses }
            end
            local results = client:push_many(list, { on_progress = on_progress })
            for k, i in ipairs(wave) do
                local err = result_error(results and results[k])
                if err then
                    failed_before = failed_before + 1
                    local code = push_exit_code(err)
                    failed(sources[i].line_no, sources[i].line,
                        errors.redact(error_text(err), { copts.client_secret }),
                        code == UNAVAILABLE and "unavailable" or "rejected")
                else
                    sent_ok = sent_ok + 1
                end
            end
            done_before = done_before + #wave
        end
        if client.close then client:close() end
    end
    if failed_file then failed_file:close() end
    local seconds = now() - started
    table.sort(failures, function(a, b) return a.line < b.line end)

    local code = OK
    if counts.unavailable > 0 then code = UNAVAILABLE
    elseif counts.invalid + counts.rejected > 0 then code = INVALID end
    if out.json then
        local shown = {}
        for i = 1, math.min(#failures, 100) do shown[i] = failures[i] end
        out:object { ok = code == OK, exit_code = code, dry_run = o["dry-run"] == true, total = total,
                     succeeded = sent_ok, failed = #failures, invalid = counts.invalid,
                     rejected = counts.rejected, unavailable = counts.unavailable,
                     seconds = seconds, failures = shown, failed_file = o.failed }
    else
        for i = 1, math.min(#failures, 20) do
            out:note("line " .. failures[i].line .. ": " .. failures[i].error)
        end
        if #failures > 20 then out:note("... and " .. (#failures - 20) .. " more failures") end
        local rate = seconds > 0 and string.format(", %.1f/s", sent_ok / seconds) or ""
        out:line(string.format("%s%d lines: %d %s, %d failed (%d invalid, %d rejected, %d network) in %.2f s%s",
            o["dry-run"] and "dry run: " or "", total, sent_ok, o["dry-run"] and "valid" or "sent",
            #failures, counts.invalid, counts.rejected, counts.unavailable, seconds, rate))
        if o.failed and #failures > 0 then out:line("failed lines written to " .. o.failed) end
    end
    return code
end

local function cmd_push(out, parsed, env)
    local common, why = common_options(parsed.options, env)
    if not common then return out:usage("push", why) end
    if parsed.options.batch then return push_batch(out, parsed, env, common) end
    if parsed.options.failed then return out:usage("push", "--failed goes with --batch") end
    return push_one(out, parsed, env, common)
end

-- emulator --------------------------------------------------------------------

local function cmd_emulator(out, argv)
    local ok, launcher = pcall(require, "choco.active_order.emulator.launcher")
    if not ok then
        local why = tostring(launcher):match("^[^\n]*")
        return out:fail(INVALID, "the gateway emulator is not installed (" .. why .. ")")
    end
    local code = launcher.main(argv)
    if type(code) == "boolean" then return code and OK or INVALID end
    return tonumber(code) or OK
end

-- dispatch --------------------------------------------------------------------

local COMMON = { json = "flag", help = "flag" }
local SPECS = {
    check = { statuses = "value" },
    render = { at = "value", statuses = "value", ["utc-offset"] = "value" },
    push = { at = "value", statuses = "value", ["utc-offset"] = "value", ["base-url"] = "value",
             ["client-id"] = "value", ["client-secret"] = "value", timeout = "value", ["dry-run"] = "flag",
             ["max-attempts"] = "value", ["ca-file"] = "value",
             batch = "value", failed = "value", ["no-progress"] = "flag" },
}
local COMMANDS = { check = cmd_check, render = cmd_render, push = cmd_push }

local function spec_for(command)
    local options = {}
    for k, v in pairs(COMMON) do options[k] = v end
    for k, v in pairs(SPECS[command] or {}) do options[k] = v end
    options.version = command == nil and "flag" or nil
    return { options = options, short = { h = "help" } }
end

--- Run the tool. `argv` is the script's `arg` (1-based); `io_` may give
--- stdout, stderr and getenv (for embedding). Returns the exit code.
function cli.main(argv, io_)
    io_ = io_ or {}
    local env = io_.getenv or os.getenv
    local list = {}
    for i = 1, #(argv or {}) do list[i] = tostring(argv[i]) end

    -- Options before the command belong to the tool; the first word is the command.
    local json = false
    local i = 1
    local before = {}
    while list[i] and list[i]:sub(1, 1) == "-" and list[i] ~= "-" do
        before[#before + 1] = list[i]
        i = i + 1
    end
    local command = list[i]
    for _, a in ipairs(before) do if a == "--json" then json = true end end
    local out = new_output(json, io_.stdout, io_.stderr)

    if command == "emulator" then
        local rest = {}
        for k = i + 1, #list do rest[#rest + 1] = list[k] end
        return cmd_emulator(out, rest)
    end

    local top, why = args.parse(before, spec_for(nil))
    if not top then return out:usage(nil, why) end
    if top.options.version then
        local version = require("choco.active_order").VERSION
        if json then out:object { ok = true, version = version } else out:line(PROGRAM .. " " .. version) end
        return OK
    end
    if command == "help" then
        local topic = list[i + 1]
        if topic and not HELP[topic] and topic ~= "emulator" then return out:usage(nil, "no command " .. topic) end
        if topic == "emulator" then return cmd_emulator(out, { "--help" }) end
        out:line(HELP[topic or "main"])
        return OK
    end
    if command == nil then
        if top.options.help then out:line(HELP.main) return OK end
        return out:usage(nil, "missing command (check, render, push, emulator, help)")
    end
    if not COMMANDS[command] then
        local hint = ""
        for name in pairs(HELP) do
            if name ~= "main" and name:sub(1, 2) == command:sub(1, 2) then hint = " (did you mean " .. name .. "?)" end
        end
        return out:usage(nil, "unknown command " .. command .. hint)
    end

    local rest = {}
    for k = i + 1, #list do rest[#rest + 1] = list[k] end
    local parsed
    parsed, why = args.parse(rest, spec_for(command))
    if not parsed then return out:usage(command, why) end
    if parsed.options.json then out.json = true end
    if parsed.options.help or top.options.help then
        out:line(HELP[command])
        return OK
    end
    local ok, code = pcall(COMMANDS[command], out, parsed, env)
    if not ok then
        return out:fail(INVALID, "internal error: " .. tostring(code))
    end
    return code
end

return cli
