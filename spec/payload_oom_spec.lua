-- The C module under memory exhaustion: fuzz/oom.c runs validate, encode,
-- compile_options, session and multi in a Lua state whose allocator refuses
-- every allocation from the k-th on, for every k, built with ASan and UBSan
-- so that a leak, a use after free or a crash fails it. LuaJIT on x86-64
-- cannot take a custom allocator, so its run builds the harness against Lua
-- 5.1, whose C API the LuaJIT build shares.

local root = os.getenv("AO_ROOT") or "."
local target = os.getenv("AO_LUA") or "lua5.4"
local headers = ({ ["lua5.1"] = "lua5.1", luajit = "lua5.1", ["lua5.3"] = "lua5.3", ["lua5.4"] = "lua5.4" })[target]

local function capture(cmd)
    local pipe = assert(io.popen(cmd .. " 2>&1"))
    local out = pipe:read("*a")
    local ok, _, code = pipe:close()
    if type(ok) == "number" then code = ok end   -- Lua 5.1 and LuaJIT return the status alone
    return out, ok == true or code == 0
end

describe("the C module when memory runs out", function()
    local dir

    setup(function()
        dir = capture("mktemp -d"):gsub("%s+$", "")
    end)

    teardown(function()
        if dir and dir:match("^/tmp/") then os.execute("rm -rf '" .. dir .. "'") end
    end)

    it("turns every refused allocation into a Lua error, leaks nothing and stays usable", function()
        assert.is_truthy(headers, "unknown AO_LUA " .. target)
        local sources = {}
        for _, f in ipairs({ "buffer", "clock", "core", "envelope", "http", "json", "multi", "payload", "session",
                             "text" }) do
            sources[#sources + 1] = root .. "/src/" .. f .. ".c"
        end
        local harness = dir .. "/oom"
        -- Under `make asan` the ASan runtime is preloaded into everything started from here;
        -- the compiler must run without it, and the harness links its own.
        local clean_env = "env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS "
        local build = (clean_env .. "cc -std=c99 -D_POSIX_C_SOURCE=200809L -g -O1 -fsanitize=address,undefined "
            .. "-fno-sanitize-recover=all -fno-omit-frame-pointer $(pkg-config --cflags %s libcurl) -I %s/src "
            .. "%s/fuzz/oom.c %s $(pkg-config --libs %s) -lcurl -o %s")
            :format(headers, root, root, table.concat(sources, " "), headers, harness)
        local out, built = capture(build)
        assert(built, "building the harness failed:\n" .. out)

        local passed
        out, passed = capture(clean_env .. "ASAN_OPTIONS=detect_leaks=1:exitcode=86 " .. harness)
        assert(passed, "the harness failed (a leak report exits 86):\n" .. out)
        -- Every scenario reports how many refusal points it went through; none may fail.
        assert.matches("10 passed, 0 failed", out, 1, true)
        assert.not_matches("ERROR: AddressSanitizer", out, 1, true)
        assert.not_matches("ERROR: LeakSanitizer", out, 1, true)
        assert.not_matches("runtime error", out, 1, true)
        assert.matches("ok encode a status with many kinds of problems %(%d+ refusal points%)", out)
    end)
end)
