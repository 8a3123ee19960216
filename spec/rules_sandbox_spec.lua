-- The sandbox of mapping scripts: nothing of the host is reachable, the
-- string metatable cannot lead to string.dump, and an endless loop ends.

local rules = require "choco.active_order.rules"
local tmpname = require("spec.support.process").tmpname

-- A valid script whose first title is `probe` (an expression evaluated in the sandbox).
local function with_probe(probe, prelude)
    return (prelude or "") .. "\n" .. [[
defaults { button = "Ок", card_link = "https://a.kz/1", button_link = "https://a.kz/2", expires = "1h" }
status "probe" { title = tostring(]] .. probe .. [[) }
]]
end

local function probe(expression, prelude)
    local loaded, err = rules.load_string(with_probe(expression, prelude), "probe.lua")
    assert(loaded, err and tostring(err))
    return loaded.statuses.probe.title.text
end

local function failure(script, opts)
    local loaded, err = rules.load_string(script, "escape.lua", opts)
    assert.is_nil(loaded)
    return err.problems
end

local function has_problem(problems, code, words)
    for _, p in ipairs(problems) do
        if p.code == code and (not words or p.message:find(words, 1, true)) then return p end
    end
    local seen = {}
    for _, p in ipairs(problems) do seen[#seen + 1] = p.code .. ": " .. p.message end
    error("expected " .. code .. (words and (" " .. words) or "") .. ", got: " .. table.concat(seen, " | "), 2)
end

describe("the rules sandbox", function()
    local real_string_index = getmetatable("").__index

    after_each(function()
        -- whatever a script did, the host's strings are untouched
        assert.are.equal(real_string_index, getmetatable("").__index)
        assert.are.equal(string, getmetatable("").__index)
        assert.is_function(string.dump)
        assert.are.equal("AB", ("ab"):upper())
    end)

    it("has no os: os.execute cannot run", function()
        local marker = tmpname()
        local problems = failure('os.execute("touch ' .. marker .. '")\n' .. with_probe('"x"'))
        has_problem(problems, "unknown_name", "unknown word 'os'")
        assert.is_nil(io.open(marker, "r"))
    end)

    it("has no io: io.open cannot write", function()
        local marker = tmpname()
        local problems = failure('local f = io.open("' .. marker .. '", "w")\n' .. with_probe('"x"'))
        has_problem(problems, "unknown_name", "unknown word 'io'")
        assert.is_nil(io.open(marker, "r"))
    end)

    for _, name in ipairs { "require", "load", "loadstring", "dofile", "loadfile", "debug", "setfenv", "getfenv",
                            "collectgarbage", "getmetatable", "setmetatable", "rawget", "rawset", "rawequal",
                            "pcall", "xpcall", "coroutine", "module", "package", "_G", "print", "jit", "newproxy" } do
        it("has no " .. name, function()
            has_problem(failure(with_probe(name)), "unknown_name", "unknown word '" .. name .. "'")
        end)
    end

    it("offers string without dump", function()
        assert.are.equal("nil", probe("string.dump"))
        assert.are.equal("function", probe("type(string.format)"))
    end)

    it("does not reach string.dump through a string's methods", function()
        assert.are.equal("nil", probe('("").dump'))
        assert.are.equal("nil", probe('("x").dump'))
        assert.are.equal("nil", probe('(""):upper() and ("").dump'))
    end)

    it("keeps the host's string library whole when the script changes its copy", function()
        assert.are.equal("changed", probe('"changed"', 'string.upper = nil; string.format = nil; string.rep = nil'))
        assert.is_function(string.upper)
        assert.is_function(string.format)
    end)

    it("gives each script its own copy", function()
        assert.are.equal("changed", probe('"changed"', "string.secret = 1; math.pi = 3"))
        assert.are.equal("nil", probe("string.secret"))
        assert.are.equal("true", probe("math.pi > 3.14"))
        assert.is_nil(rawget(string, "secret"))
        assert.is_true(math.pi > 3.14)
    end)

    it("does not see the host's globals", function()
        rawset(_G, "AO_HOST_SECRET", "s3cr3t")
        local problems = failure(with_probe("AO_HOST_SECRET"))
        rawset(_G, "AO_HOST_SECRET", nil)
        has_problem(problems, "unknown_name", "unknown word 'AO_HOST_SECRET'")
    end)

    it("cannot set the host's globals", function()
        local problems = failure('AO_INJECTED = function() end; string = "x"\n' .. with_probe('"x"'))
        assert.is_nil(rawget(_G, "AO_INJECTED"))
        has_problem(problems, "unknown_setting", "unknown setting 'string'")
    end)

    it("hands out plain values from its vocabulary", function()
        -- the values the vocabulary hands out carry no metatable the script could climb
        assert.are.equal("table", probe('type(field "eta")'))
    end)

    it("stops an endless loop", function()
        local problems = failure("while true do end\n" .. with_probe('"x"'))
        local p = has_problem(problems, "instruction_limit", "instructions (an endless loop?)")
        assert.are.equal(1, p.line)
    end)

    it("stops an endless loop in a function called from C", function()
        local problems = failure('local s = ("x"):gsub(".", function() while true do end end)\n' .. with_probe('"x"'),
            { instruction_limit = 100000 })
        has_problem(problems, "instruction_limit")
    end)

    it("stops endless tail recursion", function()
        local problems = failure("local function f() return f() end\nf()\n" .. with_probe('"x"'),
            { instruction_limit = 100000 })
        has_problem(problems, "instruction_limit")
    end)

    it("stops a script that doubles a string until memory runs out", function()
        local problems = failure('local s = "x"\nfor i = 1, 40 do s = s .. s end\n' .. with_probe('"x"'))
        local p = has_problem(problems, "memory_limit", "the script uses over 64 MiB of memory")
        assert.are.equal(2, p.line)
    end)

    it("stops a script that hoards memory", function()
        local problems = failure('local t = {}\nfor i = 1, 1000 do t[i] = ("x"):rep(1000000) .. i end\n'
            .. with_probe('"x"'), { memory_limit_kb = 8192 })
        has_problem(problems, "memory_limit", "over 8 MiB")
    end)

    it("ends unbounded recursion with an error", function()
        local problems = failure("local function f() return 1 + f() end\nf()\n" .. with_probe('"x"'))
        assert.is_true(#problems >= 1)
    end)

    it("obeys a smaller instruction limit", function()
        local script = "local n = 0 for i = 1, 50000 do n = n + i end\n" .. with_probe('"x"')
        assert(rules.load_string(script, "loop.lua"))
        has_problem(failure(script, { instruction_limit = 10000 }), "instruction_limit")
    end)

    it("restores the caller's debug hook", function()
        local calls = 0
        local function hook() calls = calls + 1 end
        debug.sethook(hook, "", 1000000)
        local ok = pcall(rules.load_string, "while true do end", "loop.lua", { instruction_limit = 10000 })
        local current = debug.gethook()
        debug.sethook()
        assert.is_true(ok)
        assert.are.equal(hook, current)
    end)

    it("caps string.rep", function()
        local problems = failure('local big = ("x"):rep(1e9)\n' .. with_probe('"x"'))
        has_problem(problems, "runtime", "over 1048576 bytes")
        problems = failure('local big = string.rep("x", 2e6)\n' .. with_probe('"x"'))
        has_problem(problems, "runtime", "over 1048576 bytes")
    end)

    it("refuses precompiled scripts", function()
        local problems = failure(string.dump(function() end))
        has_problem(problems, "syntax", "precompiled")
    end)

    it("restores the string metatable after a script that fails", function()
        failure('error("boom")')
        failure("while true do end", { instruction_limit = 10000 })
    end)
end)
