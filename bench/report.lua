-- Prints the one table of `make bench` from the JSON lines the benchmarks wrote.
-- Each line: {"bench": name, "rows": [{"figure", "value", "unit", "anchor",
-- "anchor_value", "ratio", "target", "ok"}]}; ratio and target are the bench's own.
local cjson = require "cjson.safe"

local path = assert(arg[1], "usage: report.lua FIGURES.jsonl")
local f = assert(io.open(path, "r"))
local rows, failed = {}, 0
for line in f:lines() do
    local rec = cjson.decode(line)
    if type(rec) == "table" and type(rec.rows) == "table" then
        for _, r in ipairs(rec.rows) do
            r.bench = rec.bench
            rows[#rows + 1] = r
        end
    end
end
f:close()

local function num(v, unit)
    if type(v) ~= "number" then return "-" end
    local s = (v >= 100) and string.format("%.0f", v) or string.format("%.3g", v)
    return unit and (s .. " " .. unit) or s
end

local header = { "figure", "value", "anchor", "anchor value", "ratio", "target", "" }
local out = { header }
for _, r in ipairs(rows) do
    local verdict = ""
    if r.ok == true then verdict = "ok" elseif r.ok == false then verdict = "MISSED"; failed = failed + 1 end
    out[#out + 1] = {
        tostring(r.figure), num(r.value, r.unit), tostring(r.anchor or (r.target and "(absolute)" or "")),
        num(r.anchor_value, r.unit), r.ratio and string.format("%.2fx", r.ratio) or "-",
        tostring(r.target or "-"), verdict,
    }
end
local width = {}
for _, row in ipairs(out) do
    for i, cell in ipairs(row) do
        local n = #cell:gsub("[\128-\191]", "")
        if n > (width[i] or 0) then width[i] = n end
    end
end
for k, row in ipairs(out) do
    local cells = {}
    for i, cell in ipairs(row) do
        cells[i] = cell .. string.rep(" ", width[i] - #cell:gsub("[\128-\191]", ""))
    end
    print("| " .. table.concat(cells, " | ") .. " |")
    if k == 1 then
        local sep = {}
        for i = 1, #row do sep[i] = string.rep("-", width[i]) end
        print("| " .. table.concat(sep, " | ") .. " |")
    end
end
print(string.format("%d figures, %d below target", #rows, failed))
