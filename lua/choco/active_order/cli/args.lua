-- A small command-line parser: `--name value`, `--name=value`, boolean
-- `--name`, `-h`, and `--` to end options. Unknown options are usage errors,
-- reported with the closest known name.

local args = {}

local function distance(a, b)
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
        local cur = { [0] = i }
        for j = 1, #b do
            cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a:byte(i) == b:byte(j) and 0 or 1))
        end
        prev = cur
    end
    return prev[#b]
end

local function closest(name, options)
    local best, best_d
    for known in pairs(options) do
        local d = distance(name, known)
        if d <= 2 and (not best_d or d < best_d or (d == best_d and known < best)) then best, best_d = known, d end
    end
    return best
end

--- Parse `argv` (an array of strings) against `spec`:
---   spec.options = { json = "flag", at = "value", ... }  (names without "--")
---   spec.short = { h = "help" }
--- Returns { options = {...}, positional = {...} } or nil and a message.
function args.parse(argv, spec)
    local options, positional = {}, {}
    local i = 1
    local only_positional = false
    while i <= #argv do
        local a = argv[i]
        if only_positional or a == "-" or a:sub(1, 1) ~= "-" then
            positional[#positional + 1] = a
        elseif a == "--" then
            only_positional = true
        else
            local name, value = a:match("^%-%-([^=]+)=(.*)$")
            if not name then
                name = a:match("^%-%-(.+)$")
                if not name then
                    local short = a:match("^%-(%a)$")
                    name = short and spec.short and spec.short[short]
                    if not name then return nil, "unknown option " .. a end
                end
            end
            local kind = spec.options[name]
            if not kind then
                local near = closest(name, spec.options)
                return nil, "unknown option --" .. name .. (near and (" (did you mean --" .. near .. "?)") or "")
            end
            if kind == "flag" then
                if value ~= nil then return nil, "--" .. name .. " takes no value" end
                options[name] = true
            else
                if value == nil then
                    i = i + 1
                    value = argv[i]
                    if value == nil then return nil, "--" .. name .. " needs a value" end
                end
                options[name] = value
            end
        end
        i = i + 1
    end
    return { options = options, positional = positional }
end

return args
