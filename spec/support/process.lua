-- Spec helper: the shell and file plumbing that specs running commands share.

local process = {}

--- s as one single-quoted shell word.
function process.quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- A fresh temporary path that does not exist yet (os.tmpname creates the file).
function process.tmpname()
    local name = os.tmpname()
    os.remove(name)
    return name
end

--- The whole file, or nil when it cannot be opened.
function process.read(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

--- Replaces the file's content with text; raises when it cannot be written.
function process.write(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
end

--- Runs a shell command; true when it exited 0 (os.execute's result differs
--- between Lua 5.1 and 5.2+).
function process.run(cmd)
    local a, _, c = os.execute(cmd)
    return a == true or a == 0 or (a == nil and c == 0)
end

--- A TCP port on 127.0.0.1 that was free a moment ago.
function process.free_port()
    local server = assert(require("socket").bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    server:close()
    return tonumber(port)
end

return process
