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

return process
